"""Launch and stop orchestration: validate, allocate under the host lock, create + start, wait until ready.

Any failure after the container was created removes it again, so a failed launch holds no slot and no account.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import docker
from docker.models.containers import Container

from . import __version__, dockerops, labels
from .accounts import load_accounts, redact_text
from .allocator import Allocation, allocate, choose_media, holding_from_labels, host_lock
from .devices import discover
from .dispatch import ENV_VAR as DISPATCH_VAR
from .dispatch import Dispatcher, rules_to_json
from .errors import (DockerUnavailable, GatewayExists, GatewayNotFound, LaunchFailed, SipMediaGwError,
                     ValidationError)
from .names import GATEWAY_NAME, container_name, validate_gateway_name, validate_room_name
from .resources import Budget, HostResources, sample_host
from .room import PLATFORM_NAME
from .settings import CONTAINER_UID, Settings
from .state import STATE_FILE_NAME, GatewayState, read_state

# Paths inside the gateway container (docs/contracts.md)
CONTAINER_LOG_DIR = "/var/log/sipmediagw"
CONTAINER_BROWSING_DIR = "/opt/sipmediagw/browsing"
CONTAINER_BARESIP_DIR = "/opt/sipmediagw/baresip"
# Only the template is mounted, never the baresip/ folder itself: it usually holds the accounts file, and one
# gateway must not be able to read every other gateway's password.
BARESIP_TEMPLATE = "config_default"
CONTAINER_ACCOUNT_FILE = "/run/secrets/sipmediagw-account"

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class LaunchRequest:
    """What the operator asked for: a fixed gateway in `room`, or (no room) a pool gateway."""

    gateway: str
    room: str | None = None

    @property
    def mode(self) -> str:
        """``fixed`` or ``pool``."""
        return "pool" if self.room is None else "fixed"


@dataclasses.dataclass(frozen=True)
class LaunchResult:
    """What was started."""

    gateway: str
    container: str
    sip_uri: str
    slot: int
    media: str
    room: str | None  # None: a pool gateway
    platform: str
    ready: bool
    audio_only: bool = False

    @property
    def mode(self) -> str:
        """``fixed`` or ``pool``."""
        return "pool" if self.room is None else "fixed"


class PartialLaunch(SipMediaGwError):
    """`launch --count`: some gateways started, then one could not; those started keep running."""

    def __init__(self, message: str, started: list[LaunchResult], cause: SipMediaGwError) -> None:
        super().__init__(message)
        self.started = started
        self.cause = cause
        self.exit_code = cause.exit_code


def normalise_base_url(value: str) -> str:
    """``meet.example.org`` -> ``https://meet.example.org``; reject what is not an http(s) URL or holds credentials."""
    text = (value or "").strip()
    if not text:
        raise ValidationError("no conferencing service given: pass --domain URL (or base_url in sipmediagw.yaml)")
    if "://" not in text:
        text = "https://" + text
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError(f"invalid conferencing service URL {value!r}: expected https://host[:port][/path]")
    if parsed.username or parsed.password:
        raise ValidationError("the conferencing service URL must not contain a user or password")
    if any(ch.isspace() for ch in text):
        raise ValidationError(f"invalid conferencing service URL {value!r}: contains whitespace")
    return text.rstrip("/")


def validate_platform(platform: str, browsing_dir: Path) -> str:
    """The platform must name a driver module ``browsing/<platform>.py`` in the folder mounted into the gateway."""
    if not PLATFORM_NAME.fullmatch(platform or ""):
        raise ValidationError(f"invalid platform name {platform!r}: lowercase letters, digits and '_'")
    if not browsing_dir.is_dir():
        raise ValidationError(f"browsing folder {browsing_dir} does not exist (setting browsing_dir)")
    if not (browsing_dir / f"{platform}.py").is_file():
        known = sorted(p.stem for p in browsing_dir.glob("*.py") if not p.stem.startswith("_"))
        raise ValidationError(
            f"unknown platform {platform!r}: no {browsing_dir / (platform + '.py')} (available: {', '.join(known) or 'none'})"
        )
    return platform


def check_rooms(settings: Settings, request: LaunchRequest) -> str:
    """Validate where the gateway's calls can go (its fixed room, the dispatch rules and their drivers); return the
    default rule's base URL ("" when a pool gateway has only rules). Nothing is started before this passes."""
    if request.room is not None:
        validate_room_name(request.room)
    if request.room is None and not settings.base_url and settings.dispatch:
        base_url = ""  # a pool that dispatches by its rules only: no default rule
    else:
        if request.room is None and not settings.base_url:
            raise ValidationError("a pool gateway needs a conferencing service for its default rule (--domain URL, "
                                  "base_url in sipmediagw.yaml) or dispatch rules (setting dispatch)")
        validate_platform(settings.platform, settings.browsing_dir)
        base_url = normalise_base_url(settings.base_url)
    dispatcher = Dispatcher.build(settings.dispatch, settings.platform, base_url)
    dispatcher.check_platforms(lambda platform: validate_platform(platform, settings.browsing_dir))
    return base_url


def pool_names(prefix: str, count: int) -> list[str]:
    """PREFIX-1 .. PREFIX-count, each a valid gateway name (else ValidationError before anything starts)."""
    if count < 1:
        raise ValidationError(f"--count must be at least 1, not {count}")
    names = [f"{prefix}-{number}" for number in range(1, count + 1)]
    if not GATEWAY_NAME.fullmatch(names[-1]):
        raise ValidationError(f"invalid gateway name prefix {prefix!r}: {names[-1]!r} must be 1-40 letters, digits, "
                              "'-', '_' or '.', starting with a letter or digit")
    return names


def log_folder(settings: Settings, gateway: str) -> Path:
    """The host folder holding this gateway's app.log, err.log and state.json."""
    return settings.logs_dir.resolve() / gateway


def container_config(
    settings: Settings, request: LaunchRequest, allocation: Allocation, base_url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(create_container kwargs, host_config kwargs) of the gateway container; nothing secret in either."""
    name = container_name(request.gateway)
    folder = log_folder(settings, request.gateway)
    container_labels = {
        labels.MANAGED: "true",
        labels.GATEWAY: request.gateway,
        labels.SLOT: str(allocation.slot),
        labels.ACCOUNT: allocation.account.sip_uri,
        labels.MODE: request.mode,
        labels.PLATFORM: settings.platform,
        labels.MEDIA: allocation.media,
        labels.AUDIO_ONLY: "true" if settings.audio_only else "false",
        labels.VERSION: __version__,
        labels.LOGS: str(folder),
    }
    environment = {"SIPMEDIAGW_GATEWAY": request.gateway}
    if request.room is not None:
        container_labels[labels.ROOM] = request.room
        environment["SIPMEDIAGW_ROOM"] = request.room
    environment["SIPMEDIAGW_PLATFORM"] = settings.platform
    if base_url:  # a pool gateway may do without the default rule when dispatch rules give every room
        environment["SIPMEDIAGW_BASE_URL"] = base_url
    if request.room is None:
        environment["SIPMEDIAGW_SERVICE_USER"] = settings.service_user
        if settings.dispatch:
            environment[DISPATCH_VAR] = rules_to_json(settings.dispatch)
    environment.update({
        "SIPMEDIAGW_MEDIA": allocation.media,
        "SIPMEDIAGW_ONCE": "1" if settings.once else "0",
        "SIPMEDIAGW_AUDIO_ONLY": "1" if settings.audio_only else "0",
        "SIPMEDIAGW_ALONE_TIMEOUT": f"{settings.alone_timeout:g}",
        "SIPMEDIAGW_NO_MEDIA_TIMEOUT": f"{settings.no_media_timeout:g}",
        "SIPMEDIAGW_MAX_CALL_DURATION": f"{settings.max_call_duration:g}",
        "SIPMEDIAGW_ACCOUNT_FILE": CONTAINER_ACCOUNT_FILE,
        "SIPMEDIAGW_LOG_DIR": CONTAINER_LOG_DIR,
        "SIPMEDIAGW_BROWSING_DIR": CONTAINER_BROWSING_DIR,
        "SIPMEDIAGW_BARESIP_DIR": CONTAINER_BARESIP_DIR,
    })
    host_config: dict[str, Any] = {
        # a list, not a dict keyed by host path: one host folder may legitimately back two targets
        "binds": [
            f"{folder}:{CONTAINER_LOG_DIR}:rw",
            f"{settings.browsing_dir.resolve()}:{CONTAINER_BROWSING_DIR}:ro",
            f"{(settings.baresip_dir / BARESIP_TEMPLATE).resolve()}:{CONTAINER_BARESIP_DIR}/{BARESIP_TEMPLATE}:ro",
        ],
        "init": True,
        "shm_size": settings.shm_size,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
    if allocation.device_slot is not None:
        cards = allocation.device_slot.cards
        environment["SIPMEDIAGW_ALSA_CARDS"] = f"{cards[0].index},{cards[1].index}"
        environment["SIPMEDIAGW_VIDEO_DEVICE"] = "/dev/video0"
        host_config["devices"] = allocation.device_slot.docker_devices()
    create = {
        "image": settings.image,
        "name": name,
        "hostname": name[:63],
        "labels": container_labels,
        "environment": environment,
        "stop_signal": "SIGTERM",
        "stop_timeout": settings.stop_timeout,
        "detach": True,
    }
    return create, host_config


def prepare_log_folder(folder: Path) -> None:
    """Create the gateway's log folder writable by the container user and drop a previous run's state file."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chown(folder, CONTAINER_UID, CONTAINER_UID)
        os.chmod(folder, 0o755)
    except PermissionError:
        # not root: the container user can only write if the folder is open to all (it holds no secret)
        os.chmod(folder, 0o777)
    try:
        (folder / STATE_FILE_NAME).unlink()
    except FileNotFoundError:
        pass


def tail_file(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file ([] if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:] if lines > 0 else []


def failure_report(container: Container | None, folder: Path, reason: str, hint: str, lines: int = 15) -> str:
    """Why the launch failed: the container's state, the last log lines, a hint. Secrets are masked."""
    parts = [reason]
    if container is not None and dockerops.refresh(container) is not None:
        state = container.attrs.get("State", {})
        parts.append(
            f"container {container.name}: status={state.get('Status')} exit_code={state.get('ExitCode')} "
            f"oom_killed={state.get('OOMKilled')}" + (f" error={state['Error']}" if state.get("Error") else "")
        )
    shown = False
    for name in ("app.log", "err.log"):
        tail = tail_file(folder / name, lines)
        if tail:
            shown = True
            parts.append(f"last lines of {folder / name}:")
            parts.extend("  " + redact_text(line) for line in tail)
    if not shown and container is not None:
        docker_tail = dockerops.container_logs(container, lines).splitlines()
        if docker_tail:
            parts.append("last lines of docker logs:")
            parts.extend("  " + redact_text(line) for line in docker_tail)
    parts.append(f"hint: {hint}")
    return "\n".join(parts)


def wait_ready(
    container: Container,
    folder: Path,
    timeout: float,
    progress: Progress,
    poll_interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll the state file until it says ready; raise LaunchFailed (with a report) on error, exit or timeout."""
    deadline = clock() + timeout
    last_said = ""
    while True:
        if dockerops.refresh(container) is None:
            raise LaunchFailed(failure_report(None, folder, f"container {container.name} disappeared", "was it removed from outside?"))
        if container.status in ("exited", "dead"):
            raise LaunchFailed(
                failure_report(container, folder, "the gateway container exited before it was ready",
                               "see the log lines above; `sipmediagw doctor` checks the image and host")
            )
        status = read_state(folder)
        if status is not None:
            if status.state in (GatewayState.READY, GatewayState.IN_CALL):
                progress(f"ready ({status.sip_uri or 'registered'})")
                return
            if status.state in (GatewayState.ERROR, GatewayState.EXITED):
                reason = f"the gateway reported {status.state.value}" + (f": {status.last_error}" if status.last_error else "")
                raise LaunchFailed(failure_report(container, folder, redact_text(reason),
                                                  "fix the cause above (account, registrar, room URL) and launch again"))
            waiting = sorted(n for n, c in status.components.items() if c.state.value != "running")
            said = f"{status.state.value}" + (f" (waiting for {', '.join(waiting)})" if waiting else "")
        else:
            said = "container started, waiting for its state file"
        if said != last_said:
            progress(said)
            last_said = said
        if clock() >= deadline:
            raise LaunchFailed(
                failure_report(container, folder, f"the gateway was not ready after {timeout:g} s",
                               "is the SIP registrar reachable from the container? raise --timeout if the host is slow")
            )
        sleep(poll_interval)


def launch(
    settings: Settings,
    request: LaunchRequest,
    client: docker.DockerClient,
    wait: bool = True,
    progress: Progress = lambda message: None,
    host_sampler: Callable[[], HostResources] = sample_host,
) -> LaunchResult:
    """Start one gateway; on any failure nothing is left behind (no container, so no held slot or account)."""
    validate_gateway_name(request.gateway)
    base_url = check_rooms(settings, request)
    for folder_setting in ("browsing_dir", "baresip_dir", "logs_dir"):
        value = getattr(settings, folder_setting)
        if folder_setting != "logs_dir" and not value.is_dir():
            raise ValidationError(f"{folder_setting} {value} is not a folder")
        if ":" in str(value.resolve()):
            raise ValidationError(f"{folder_setting} {value}: Docker bind mounts cannot take a path with ':'")
    if not (settings.baresip_dir / BARESIP_TEMPLATE).is_file():
        raise ValidationError(f"baresip template {settings.baresip_dir / BARESIP_TEMPLATE} is missing")
    accounts = load_accounts(settings.accounts_file)
    discovery = discover(settings.sysroot)
    media = choose_media(settings.media, discovery)
    if not dockerops.image_present(client, settings.image):
        raise DockerUnavailable(f"image {settings.image} not found: build it with `sipmediagw build`")
    budget = Budget(settings.cpu_per_gateway, settings.memory_per_gateway)
    folder = log_folder(settings, request.gateway)

    progress(f"allocating a slot and an account (lock {settings.lock_file})")
    with host_lock(settings.lock_file):
        containers = dockerops.list_gateways(client, include_stopped=True)
        mine = [c for c in containers if c.labels.get(labels.GATEWAY) == request.gateway]
        for old in mine:
            if dockerops.holds_resources(old):
                raise GatewayExists(f"gateway {request.gateway} already exists ({old.name}, {old.status}); stop it first")
            dockerops.remove_container(old)  # a dead gateway of the same name: its container only blocks the name
        holdings = [holding_from_labels(c.labels) for c in containers if c not in mine and dockerops.holds_resources(c)]
        allocation = allocate(media, accounts, discovery, holdings, budget, host_sampler())
        create, host_config = container_config(settings, request, allocation, base_url)
        prepare_log_folder(folder)
        try:
            created = client.api.create_container(host_config=client.api.create_host_config(**host_config), **create)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise GatewayExists(f"a container named {create['name']} already exists; stop it first") from exc
            raise DockerUnavailable(f"cannot create the container: {exc.explanation or exc}") from exc
        container = client.containers.get(created["Id"])
        try:
            secret = (allocation.account.line + "\n").encode("utf-8")
            dockerops.put_secret(container, CONTAINER_ACCOUNT_FILE, secret, CONTAINER_UID)
        except BaseException:
            dockerops.remove_container(container)
            raise
    progress(
        f"created {container.name}: slot {allocation.slot} ({media}), account {allocation.account.sip_uri}; starting"
    )
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise LaunchFailed(
                failure_report(container, folder, f"docker could not start the container: {exc.explanation or exc}",
                               "check the mounts and devices above with `sipmediagw doctor`")
            ) from exc
        if wait:
            wait_ready(container, folder, settings.ready_timeout, progress)
    except BaseException:
        dockerops.remove_container(container)
        raise
    return LaunchResult(
        gateway=request.gateway,
        container=container.name,
        sip_uri=allocation.account.sip_uri,
        slot=allocation.slot,
        media=media,
        room=request.room,
        platform=settings.platform,
        ready=wait,
        audio_only=settings.audio_only,
    )


def launch_pool(
    settings: Settings,
    prefix: str,
    count: int,
    client: docker.DockerClient,
    wait: bool = True,
    progress: Progress = lambda message: None,
    host_sampler: Callable[[], HostResources] = sample_host,
) -> list[LaunchResult]:
    """Start `count` pool gateways PREFIX-1..PREFIX-count, each on its own account, then wait for them in parallel.

    The first gateway that cannot start (no free account or slot, a name in use...) ends the series: those already
    started are still waited for and keep running, and PartialLaunch says which, with the cause's exit code. One
    that never becomes ready is removed (as `launch` does) and reported the same way.
    """
    names = pool_names(prefix, count)
    started: list[LaunchResult] = []
    failure: tuple[str, SipMediaGwError] | None = None
    for name in names:
        try:
            started.append(launch(settings, LaunchRequest(name), client, wait=False,
                                  progress=lambda message, name=name: progress(f"{name}: {message}"),
                                  host_sampler=host_sampler))
        except SipMediaGwError as exc:
            if not started:
                raise
            failure = (name, exc)
            break
    if wait:

        def ready(result: LaunchResult) -> LaunchResult:
            container = dockerops.find_gateway(client, result.gateway)
            if container is None:
                raise LaunchFailed(f"container {result.container} disappeared")
            try:
                wait_ready(container, log_folder(settings, result.gateway), settings.ready_timeout,
                           lambda message: progress(f"{result.gateway}: {message}"))
            except BaseException:
                dockerops.remove_container(container)
                raise
            return dataclasses.replace(result, ready=True)

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(started))) as pool:
            futures = [pool.submit(ready, result) for result in started]
        kept = [future.result() for future in futures if future.exception() is None]
        for result, future in zip(started, futures):
            error = future.exception()
            if failure is None and error is not None:
                if not isinstance(error, SipMediaGwError):
                    raise error
                failure = (f"{result.gateway} (removed)", error)
        started = kept
    if failure is not None:
        name, exc = failure
        raise PartialLaunch(f"started {len(started)} of {count} pool gateways "
                            f"({', '.join(r.gateway for r in started) or 'none'}: kept running); {name}: {exc}",
                            started, exc)
    return started


def stop_gateway(client: docker.DockerClient, gateway: str, timeout: int) -> str:
    """Gracefully stop then remove `gateway`'s container; GatewayNotFound if there is none. Returns its name."""
    container = dockerops.find_gateway(client, gateway)
    if container is None:
        raise GatewayNotFound(f"no gateway named {gateway!r} (see `sipmediagw status`)")
    dockerops.stop_container(container, timeout)
    dockerops.remove_container(container)
    return container.name


def stop_all(client: docker.DockerClient, timeout: int, progress: Progress = lambda message: None) -> list[str]:
    """Stop and remove every gateway container, in parallel (each may take the whole grace period)."""
    containers = dockerops.list_gateways(client, include_stopped=True)

    def stop_one(container: Container) -> str:
        gateway = container.labels.get(labels.GATEWAY, container.name)
        progress(f"stopping {gateway}")
        dockerops.stop_container(container, timeout)
        dockerops.remove_container(container)
        return gateway

    if not containers:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(containers))) as pool:
        return list(pool.map(stop_one, containers))
