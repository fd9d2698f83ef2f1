"""Launch and stop orchestration: validate, claim an account (and slot) through the engine, create + start, wait
until ready. Written once for both backends (a container on one engine, a service on a swarm: sipmediagw/backends).

Any failure after a claim was made removes what was made (gateway, claims), so a failed launch holds no slot and no
account; so does SIGTERM/SIGINT while `launch` waits (the CLI turns them into an exception).
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

from . import __version__, claims, dockerops, labels, seccomp
from .accounts import load_accounts
from .allocator import Allocation, Holding, allocate, choose_media, free_resources, holding_from_labels
from .backends import LOG_DRIVER, LOG_OPTIONS, Backend, GatewaySpec, Handle, select_backend
from .backends.engine import is_local_engine
from .devices import Discovery, discover
from .dispatch import ENV_VAR as DISPATCH_VAR
from .dispatch import Dispatcher, rules_to_json
from .errors import (ConfigError, DockerUnavailable, GatewayExists, GatewayNotFound, LaunchFailed, ResourceError,
                     SipMediaGwError, ValidationError)
from .names import GATEWAY_NAME, container_name, validate_gateway_name, validate_room_name
from .redaction import redact
from .resources import Budget, HostResources, sample_host
from .room import DRIVER_SUFFIXES, PLATFORM_NAME, RoomDrivers, check_base_url
from .room_options import ENV_VAR as ROOM_OPTIONS_VAR
from .room_options import check_against_driver, read_secret_file, secret_lines
from .room_options import to_env as options_to_env
from .settings import CONTAINER_UID, Settings
from .state import STATE_FILE_NAME, GatewayState

# Paths inside the gateway container (docs/contracts.md)
CONTAINER_LOG_DIR = "/var/log/sipmediagw"
CONTAINER_BROWSING_DIR = "/opt/sipmediagw/browsing"
CONTAINER_BARESIP_DIR = "/opt/sipmediagw/baresip"
# Only the template is mounted, never the baresip/ folder itself: it usually holds the accounts file, and one
# gateway must not be able to read every other gateway's password.
BARESIP_TEMPLATE = "config_default"
CONTAINER_ACCOUNT_FILE = "/run/secrets/sipmediagw-account"

# Restart policies (the single engine; a swarm service has its own, backends/swarm.py). A gateway comes back after an
# engine restart or a host reboot: the engine's shutdown stops it with SIGTERM, on which the supervisor exits 0, so
# only unless-stopped brings it back, and `docker stop` / `sipmediagw stop` stay final. A --once gateway ends with
# exit 0 after its call and must stay ended: it is restarted only after a failure, a few times (so it does not come
# back after an engine restart either).
CPU_BURST = 2.0  # a gateway's CPU quota is this many times its budget (cpu_limit)
RESTART_POLICY = {"Name": "unless-stopped", "MaximumRetryCount": 0}
ONCE_RESTART_POLICY = {"Name": "on-failure", "MaximumRetryCount": 3}
#: the gateway's /tmp (a tmpfs): a call used 6 MB of it (X sockets, PulseAudio, baresip's config, Chromium's profile)
TMP_OPTIONS = "mode=1777,size=256m"

Progress = Callable[[str], None]
#: seconds between readiness polls: a swarm observation reads the task's log through the manager, poll it less often
POLL_INTERVAL = {"engine": 0.25, "swarm": 1.0}


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
    backend: str = "engine"
    node: str | None = None  # where it runs (known once ready)

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
    """``meet.example.org`` -> ``https://meet.example.org``; reject what is not an http(s) URL of a host (with an
    optional port and path), e.g. one with credentials, a query or a fragment (the drivers append the room to it).
    Errors show the URL with any user:password masked."""
    text = (value or "").strip()
    if not text:
        raise ValidationError("no conferencing service given: pass --domain URL (or base_url in sipmediagw.yaml)")
    if "://" not in text:
        text = "https://" + text
    return check_base_url(text, "conferencing service URL")


def validate_platform(platform: str, browsing_dir: Path) -> str:
    """The platform must name a driver module ``browsing/<platform>.py`` in the folder mounted into the gateway."""
    if not PLATFORM_NAME.fullmatch(platform or ""):
        raise ValidationError(f"invalid platform name {platform!r}: lowercase letters, digits and '_'")
    if not browsing_dir.is_dir():
        raise ValidationError(f"browsing folder {browsing_dir} does not exist (setting browsing_dir)")
    if not any((browsing_dir / f"{platform}{ext}").is_file() for ext in DRIVER_SUFFIXES):
        known = sorted({p.stem for ext in DRIVER_SUFFIXES for p in browsing_dir.glob(f"*{ext}")
                        if not p.stem.startswith("_")})
        raise ValidationError(
            f"unknown platform {platform!r}: no {browsing_dir / (platform + '.py')} nor {platform}.yaml "
            f"(available: {', '.join(known) or 'none'})"
        )
    return platform


def check_driver_room(browsing_dir: Path, platform: str, base_url: str, room: str,
                      options: dict[str, Any] | None = None) -> None:
    """The driver's own rules for a fixed room (a Janus room is a number, ...) and its options, on the host before
    anything starts: the gateway would only find out when the first call tries to join."""
    try:
        RoomDrivers(browsing_dir).check(platform, base_url, room, options)
    except ConfigError:
        raise
    except Exception as exc:  # a driver that does not even import (syntax error, missing module)
        raise ValidationError(f"{browsing_dir / (platform + '.py')}: the driver cannot be loaded: "
                              f"{exc.__class__.__name__}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class RoomPlan:
    """Where a gateway's calls go, checked: the default rule's base URL ("" when a pool gateway has only rules) and
    the driver's options, plain (to the environment) and secret (to the account's secret file)."""

    base_url: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    secrets: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)


def room_options(settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """The room options of `settings` checked by the driver of its platform: (plain, secret values read from their
    files). Options go to the gateway's own platform (a pool's dispatch rules to other platforms get none)."""
    if not settings.room_options and not settings.room_secrets:
        return {}, {}
    validate_platform(settings.platform, settings.browsing_dir)
    secrets = {key: read_secret_file(key, path) for key, path in settings.room_secrets.items()}
    try:
        driver = RoomDrivers(settings.browsing_dir).get(settings.platform)
    except ConfigError:
        raise
    except Exception as exc:  # a driver that does not even import
        raise ValidationError(f"{settings.browsing_dir / (settings.platform + '.py')}: the driver cannot be loaded: "
                              f"{exc.__class__.__name__}: {exc}") from None
    checked = check_against_driver(driver, settings.room_options, secrets)
    return {key: checked[key] for key in settings.room_options}, secrets  # typed: "2" -> 2 for an int option


def check_rooms(settings: Settings, request: LaunchRequest) -> RoomPlan:
    """Validate where the gateway's calls can go (its fixed room, the dispatch rules and their drivers, the room
    options). Nothing is started before this passes."""
    options, secrets = room_options(settings)
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
        if request.room is not None:
            check_driver_room(settings.browsing_dir, settings.platform, base_url, request.room,
                              {**options, **secrets})
    dispatcher = Dispatcher.build(settings.dispatch, settings.platform, base_url)
    dispatcher.check_platforms(lambda platform: validate_platform(platform, settings.browsing_dir))
    return RoomPlan(base_url, options, secrets)


def secret_payload(account: Any, secrets: dict[str, str]) -> bytes:
    """The gateway's secret file: its account line, then its secret room options (room_options.secret_lines)."""
    return (account.line + "\n" + secret_lines(secrets)).encode("utf-8")


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


def cpu_limit(budget: float, engine_cpus: int | None = None) -> float:
    """A gateway's CPU quota: CPU_BURST times its budget, at most the engine's CPUs (Docker refuses more). The budget
    is an average: a call's peaks (key frames, a page's scripts, joining) go above it, and a quota at the budget
    itself chops the call's audio (measured: a 0.6-core quota for a 0.6-core budget left 11-39 % of the audio frames
    or tone blocks missing in the e2e calls)."""
    limit = budget * CPU_BURST
    return max(budget, min(limit, float(engine_cpus))) if engine_cpus else limit


def container_config(
    settings: Settings, request: LaunchRequest, allocation: Allocation, base_url: str, engine_cpus: int | None = None,
    options: dict[str, Any] | None = None,
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
    if options:  # plain ones only: secret options travel in the account's secret file
        environment[ROOM_OPTIONS_VAR] = options_to_env(options)
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
        # our seccomp profile: Docker's default refuses the user namespaces of Chromium's sandbox (seccomp.py)
        "security_opt": ["no-new-privileges", seccomp.security_opt()],
        # a fresh /tmp at every start: a gateway that the restart policy starts again must not find the previous
        # run's X server locks (Xvfb refuses a display whose /tmp/.X0-lock exists), sockets or browser profile. Sized:
        # it counts against the memory limit, and Chromium sizes its disk cache (in its profile, here) by free space
        "tmpfs": {"/tmp": TMP_OPTIONS},
        # the budget is a limit too, so no gateway can starve its neighbours (or the host) of memory, CPU or pids
        "mem_limit": settings.memory_per_gateway,
        "memswap_limit": settings.memory_per_gateway,  # no swap on top of it
        "nano_cpus": round(cpu_limit(settings.cpu_per_gateway, engine_cpus) * 1e9),
        "pids_limit": settings.pids_per_gateway,
        "restart_policy": dict(ONCE_RESTART_POLICY if settings.once else RESTART_POLICY),
        "log_config": {"type": LOG_DRIVER, "config": dict(LOG_OPTIONS)},
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


def tail_log(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a gateway's log file, reaching into its newest rotated file (app.log.1) when the
    current one has fewer (it was just rotated). A rotated file that is a symbolic link is not followed: the folder is
    writable by the container user."""
    found = tail_file(path, lines)
    older = path.with_name(path.name + ".1")
    if len(found) < lines and not older.is_symlink():
        found = tail_file(older, lines - len(found)) + found
    return found


def failure_report(backend: Backend, handle: Handle | None, reason: str, hint: str, lines: int = 15) -> str:
    """Why the launch failed: what the engine says of the gateway, its last log lines, a hint. Secrets masked."""
    parts = [reason]
    if handle is not None:
        parts.extend(backend.diagnostics(handle, lines))
    parts.append(f"hint: {hint}")
    return "\n".join(redact(part) for part in parts)


def registration_hint(reason: str | None) -> str:
    """What to check for a registration failure, by the registrar's answer."""
    code = (reason or "")[:3]
    if code in ("401", "407", "403"):
        return "check the account's user and auth_pass (and the registrar's users/realm)"
    if code == "404":
        return "the registrar does not know this user or domain: check the account's sip:user@domain"
    if code.isdigit():
        return "the registrar refused the REGISTER: see its answer above and its own log"
    return "is the registrar reachable from the gateway (address, port, transport, firewall)?"


def wait_ready(
    backend: Backend,
    handle: Handle,
    timeout: float,
    progress: Progress,
    poll_interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Poll the gateway through the engine until it says ready; return its node. LaunchFailed (with a report) on
    error, exit or timeout."""
    deadline = clock() + timeout
    last_said = ""
    while True:
        seen = backend.observe(handle)
        if seen.runtime == "gone":
            raise LaunchFailed(failure_report(backend, None, f"gateway {handle.name} disappeared",
                                              "was it removed from outside?"))
        if seen.runtime in ("exited", "restarting") or seen.restarts:
            # a restart policy would start a gateway that failed while starting again and again: fail at once
            raise LaunchFailed(failure_report(
                backend, handle, "the gateway exited before it was ready" + (f" ({seen.detail})" if seen.detail else ""),
                "see the log lines above; `sipmediagw doctor` checks the image and host"))
        status = seen.status
        if status is not None:
            if status.state in (GatewayState.READY, GatewayState.IN_CALL) and seen.runtime == "running":
                progress(f"ready ({status.sip_uri or 'registered'})" + (f" on {seen.node}" if seen.node else ""))
                return seen.node
            if status.state in (GatewayState.ERROR, GatewayState.EXITED):
                reason = f"the gateway reported {status.state.value}" + (f": {status.last_error}" if status.last_error else "")
                raise LaunchFailed(failure_report(backend, handle, reason,
                                                  "fix the cause above (account, registrar, room URL) and launch again"))
            if status.registration == "failed":  # the registrar refused, or nobody answers: waiting will not help
                raise LaunchFailed(failure_report(
                    backend, handle, f"{status.sip_uri or 'the account'} could not register: "
                    f"{status.registration_reason or 'no reason given'}", registration_hint(status.registration_reason)))
            waiting = sorted(n for n, c in status.components.items() if c.state.value != "running")
            said = f"{status.state.value}" + (f" (waiting for {', '.join(waiting)})" if waiting else "")
        else:
            said = "started, waiting for its first state report" + (f" ({seen.detail})" if seen.detail else "")
        if said != last_said:
            progress(said)
            last_said = said
        if clock() >= deadline:
            raise LaunchFailed(failure_report(
                backend, handle, f"the gateway was not ready after {timeout:g} s",
                "is the SIP registrar reachable from the gateway? raise --timeout if the host is slow"))
        sleep(poll_interval)


def _holdings(backend: Backend, store: claims.ClaimStore, gateway: str) -> list[Holding]:
    """What is held: every other live gateway, and the live claims whose account no gateway shows yet (a launch
    in progress elsewhere)."""
    held = [holding_from_labels(h.labels) for h in backend.list() if h.gateway != gateway and backend.holds(h)]
    # a gateway's own claims are already counted through it: admission counts gateways, so count each once
    shown = {h.gateway for h in held}
    launching: dict[str, Holding] = {}  # launches in progress elsewhere: their claims, one holding each
    for claim in claims.live_claims(store):
        if claim.gateway in shown:
            continue
        so_far = launching.get(claim.gateway, Holding(claim.gateway, None, "", ""))
        if claim.kind == claims.ACCOUNT:
            launching[claim.gateway] = dataclasses.replace(so_far, account=claim.value)
        elif claim.kind == claims.SLOT:
            media, _, slot = claim.value.rpartition("-")
            if slot.isdigit():
                launching[claim.gateway] = dataclasses.replace(so_far, slot=int(slot), media=media)
    return held + list(launching.values())


def claim_resources(
    backend: Backend, store: claims.ClaimStore, request: LaunchRequest, media: str, accounts: list,
    discovery: Discovery, budget: Budget, host: HostResources | None, secrets: dict[str, str] | None = None,
) -> tuple[Allocation, list[claims.Claim]]:
    """Propose an allocation, claim it through the engine; when another launch won a race for an account or slot,
    count it as held and propose again. ResourceError (from `allocate`) when nothing is left."""
    held = _holdings(backend, store, request.gateway)
    swarm = backend.kind == "swarm"
    while True:
        allocation = allocate(media, accounts, discovery, held, budget, host)
        account = allocation.account
        # on a swarm the account claim is the secret that carries the account line (and room secrets) to the task
        payload = secret_payload(account, secrets or {}) if swarm else None
        account_claim = claims.take(store, claims.ACCOUNT, account.sip_uri, request.gateway, payload)
        if account_claim is None:
            held.append(Holding("(another launch)", None, account.sip_uri, media))
            continue
        if backend.kind != "engine":
            return allocation, [account_claim]
        # Slots are per engine (devices in kernel mode): never two gateways on one. The account is claimed first and
        # kept while a slot is sought, so only launches that hold an account ever hold a slot: a launch that lost a
        # slot race tries the next slot instead of giving its account back (which would make another launch see
        # every account taken for a moment and fail for nothing).
        mine = Holding(request.gateway, None, account.sip_uri, media)
        slot, tried = allocation.slot, set()
        try:
            while (slot_claim := claims.take(store, claims.SLOT, f"{media}-{slot}", request.gateway)) is None:
                tried.add(slot)
                held.append(Holding("(another launch)", slot, "", media))
                free = free_resources(media, accounts, discovery, [*held, mine], budget, host)
                left = [s for s in free.slots if s not in tried]
                if not left:
                    raise ResourceError(f"no free {media} slot: all are in use")
                slot = left[0]
        except BaseException:
            claims.release(store, [account_claim])
            raise
        device = next((d for d in discovery.slots if d.index == slot), None) if media == "kernel" else None
        return dataclasses.replace(allocation, slot=slot, device_slot=device), [account_claim, slot_claim]


def gateway_spec(settings: Settings, request: LaunchRequest, allocation: Allocation, base_url: str,
                 local_engine: bool, engine_cpus: int | None = None,
                 options: dict[str, Any] | None = None) -> GatewaySpec:
    """The gateway as a backend creates it. Host folders are bind-mounted only into a local engine's containers."""
    create, host_config = container_config(settings, request, allocation, base_url, engine_cpus, options)
    gateway_labels = dict(create["labels"])
    if not local_engine:
        host_config = {k: v for k, v in host_config.items() if k != "binds"}
        gateway_labels.pop(labels.LOGS, None)
    return GatewaySpec(
        gateway=request.gateway, name=create["name"], image=create["image"], labels=gateway_labels,
        environment=dict(create["environment"]), stop_timeout=create["stop_timeout"], cpu=settings.cpu_per_gateway,
        memory=settings.memory_per_gateway, shm_size=settings.shm_size, host_config=host_config,
        constraints=settings.constraints, account_file=CONTAINER_ACCOUNT_FILE, pids=settings.pids_per_gateway)


def launch(
    settings: Settings,
    request: LaunchRequest,
    client: docker.DockerClient,
    wait: bool = True,
    progress: Progress = lambda message: None,
    host_sampler: Callable[[], HostResources] = sample_host,
    backend: Backend | None = None,
    keep_lease: bool = False,
) -> LaunchResult:
    """Start one gateway; on any failure nothing is left behind (no gateway, no claim: no held slot or account).

    `keep_lease`: the launch lease outlives this call (a pool waits for its gateways afterwards and drops each lease
    with claims.release_lease when that gateway is ready)."""
    validate_gateway_name(request.gateway)
    plan = check_rooms(settings, request)
    for folder_setting in ("browsing_dir", "baresip_dir", "logs_dir"):
        value = getattr(settings, folder_setting)
        if folder_setting != "logs_dir" and not value.is_dir():
            raise ValidationError(f"{folder_setting} {value} is not a folder")
        if ":" in str(value.resolve()):
            raise ValidationError(f"{folder_setting} {value}: Docker bind mounts cannot take a path with ':'")
    if not (settings.baresip_dir / BARESIP_TEMPLATE).is_file():
        raise ValidationError(f"baresip template {settings.baresip_dir / BARESIP_TEMPLATE} is missing")
    accounts = load_accounts(settings.accounts_file)
    backend = backend or select_backend(client, settings.backend)
    if backend.kind == "swarm":
        if settings.media == "kernel":
            raise ValidationError("swarm services cannot map devices (moby/swarmkit#1244): kernel media is for the "
                                  "single-engine backend; use --media userspace (or auto)")
        discovery, media, host = Discovery((), (), (), ()), "userspace", None  # Swarm's scheduler admits and places
    else:
        discovery = discover(settings.sysroot)
        media = choose_media(settings.media, discovery)
        host = host_sampler()
        if not dockerops.image_present(client, settings.image):
            raise DockerUnavailable(f"image {settings.image} not found: build it with `sipmediagw build`")
    local = backend.kind == "engine" and is_local_engine(client)
    budget = Budget(settings.cpu_per_gateway, settings.memory_per_gateway)
    folder = log_folder(settings, request.gateway)
    store = backend.claims(settings.image)

    reclaim_abandoned(backend, store, progress)
    # the lease first: a second launch of this name is refused while this one runs, and a `kill -9` of this CLI
    # leaves the lease behind, past its deadline, for the next launch or status to clean up after us
    deadline = time.time() + (settings.ready_timeout if wait or keep_lease else 0.0) + LEASE_MARGIN
    lease = claims.take(store, claims.LAUNCH, request.gateway, request.gateway, deadline=deadline)
    if lease is None:
        raise GatewayExists(f"gateway {request.gateway} is being launched by another `sipmediagw launch` right now")
    try:
        result = _launch_under_lease(settings, request, backend, store, lease, accounts, discovery, media, host,
                                     plan, folder, budget, local, wait, progress)
    except BaseException:
        claims.release(store, [lease])
        raise
    if not keep_lease:
        claims.release(store, [lease])
    return result


def _launch_under_lease(settings: Settings, request: LaunchRequest, backend: Backend, store: claims.ClaimStore,
                        lease: claims.Claim, accounts: list[Any], discovery: Discovery, media: str,
                        host: HostResources | None, plan: RoomPlan, folder: Path, budget: Budget, local: bool,
                        wait: bool, progress: Progress) -> LaunchResult:
    old = backend.find(request.gateway)
    if old is not None:
        if backend.holds(old):
            raise GatewayExists(f"gateway {request.gateway} already exists ({old.name}); stop it first")
        remove_gateway(backend, old, 0)  # a dead gateway of the same name: it only blocks the name (and its claims)
    progress(f"claiming a SIP account{' and a slot' if backend.kind == 'engine' else ''} ({backend.kind} backend)")
    allocation, made = claim_resources(backend, store, request, media, accounts, discovery, budget, host,
                                       plan.secrets)
    handle: Handle | None = None
    try:
        spec = gateway_spec(settings, request, allocation, plan.base_url, local,
                            host.cpu_count if host is not None else None, plan.options)
        spec = dataclasses.replace(spec, labels={**spec.labels, labels.LEASE: lease.id})
        if local:
            prepare_log_folder(folder)
        handle = backend.create(spec, secret_payload(allocation.account, plan.secrets), made[0])
        progress(f"created {handle.name}: slot {allocation.slot} ({media}), account {allocation.account.sip_uri}; "
                 "starting")
        try:
            backend.start(handle)
        except docker.errors.APIError as exc:
            raise LaunchFailed(failure_report(backend, handle, f"docker could not start the gateway: "
                                              f"{exc.explanation or exc}",
                                              "check the mounts and devices above with `sipmediagw doctor`")) from exc
        node = wait_ready(backend, handle, settings.ready_timeout, progress,
                          poll_interval=POLL_INTERVAL[backend.kind]) if wait else None
    except BaseException:
        if handle is not None:
            backend.remove(handle, 0)
        claims.release(store, made)
        raise
    return LaunchResult(
        gateway=request.gateway,
        container=handle.name,
        sip_uri=allocation.account.sip_uri,
        slot=allocation.slot,
        media=media,
        room=request.room,
        platform=settings.platform,
        ready=wait,
        audio_only=settings.audio_only,
        backend=backend.kind,
        node=node,
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
    backend = select_backend(client, settings.backend)
    started: list[LaunchResult] = []
    failure: tuple[str, SipMediaGwError] | None = None
    for name in names:
        try:
            started.append(launch(settings, LaunchRequest(name), client, wait=False,
                                  progress=lambda message, name=name: progress(f"{name}: {message}"),
                                  host_sampler=host_sampler, backend=backend, keep_lease=wait))
        except SipMediaGwError as exc:
            if not started:
                raise
            failure = (name, exc)
            break
    if wait:

        def ready(result: LaunchResult) -> LaunchResult:
            handle = backend.find(result.gateway)
            if handle is None:
                raise LaunchFailed(f"gateway {result.container} disappeared")
            try:
                node = wait_ready(backend, handle, settings.ready_timeout,
                                  lambda message: progress(f"{result.gateway}: {message}"),
                                  poll_interval=POLL_INTERVAL[backend.kind])
            except BaseException:
                remove_gateway(backend, handle, 0)
                claims.release_lease(backend.claims(""), result.gateway)
                raise
            claims.release_lease(backend.claims(""), result.gateway)
            return dataclasses.replace(result, ready=True, node=node)

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


LEASE_MARGIN = 30.0  # seconds a launch may take beyond its ready timeout (claims, create, start, clean-up)


def reclaim_abandoned(backend: Backend, store: claims.ClaimStore, progress: Progress = lambda message: None,
                      clock: Callable[[], float] = time.time) -> list[str]:
    """Remove what launches that died without unwinding (`kill -9`, a crash) left: the gateway made under each
    expired lease, and the claims made for that name before the deadline. Return the gateways' names."""
    reclaimed = []
    for lease in claims.abandoned_leases(store, clock):
        handle = backend.find(lease.gateway)
        if handle is not None and handle.labels.get(labels.LEASE) == lease.id:  # not a newer gateway of that name
            backend.remove(handle, 0)
        cutoff = lease.deadline if lease.deadline is not None else lease.created
        claims.release(store, [c for c in store.list() if c.gateway == lease.gateway and c.created <= cutoff])
        progress(f"reclaimed gateway {lease.gateway}: its launch was interrupted before it was ready")
        reclaimed.append(lease.gateway)
    return reclaimed


def remove_gateway(backend: Backend, handle: Handle, timeout: int) -> None:
    """Stop (SIGTERM, `timeout` s, SIGKILL) and remove a gateway, then its claims."""
    backend.remove(handle, timeout)
    claims.release_gateway(backend.claims(""), handle.gateway)


def discard_gateway(client: docker.DockerClient, gateway: str, backend: Backend | None = None) -> None:
    """Remove `gateway` at once (no grace period) and its claims, whatever is left of them: for cleanups."""
    backend = backend or select_backend(client)
    handle = backend.find(gateway)
    if handle is not None:
        backend.remove(handle, 0)
    claims.release_gateway(backend.claims(""), gateway, leases=True)


def stop_gateway(client: docker.DockerClient, gateway: str, timeout: int, backend: Backend | None = None) -> str:
    """Gracefully stop then remove `gateway` and its claims; GatewayNotFound if there is none. Returns its name."""
    backend = backend or select_backend(client)
    handle = backend.find(gateway)
    if handle is None:
        raise GatewayNotFound(f"no gateway named {gateway!r} (see `sipmediagw status`)")
    remove_gateway(backend, handle, timeout)
    return handle.name


def stop_all(client: docker.DockerClient, timeout: int, progress: Progress = lambda message: None,
             backend: Backend | None = None) -> list[str]:
    """Stop and remove every gateway and its claims, in parallel (each may take the whole grace period); claims
    left by launches that died are removed too."""
    backend = backend or select_backend(client)
    handles = backend.list()

    def stop_one(handle: Handle) -> str:
        progress(f"stopping {handle.gateway}")
        remove_gateway(backend, handle, timeout)
        return handle.gateway

    stopped: list[str] = []
    if handles:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(handles))) as pool:
            stopped = list(pool.map(stop_one, handles))
    store = backend.claims("")
    now = time.time()
    claims.release(store, [c for c in store.list() if claims.is_stale(c, store, now)])
    return stopped
