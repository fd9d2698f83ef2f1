"""The single-engine backend: one container per gateway on one Docker engine, local or remote.

Everything goes through the engine's API: the state document is read from the container with the archive API
(``docker cp``), logs with the logs API, the account is written into the created container with the archive API.
Only a *local* engine (the unix socket) also gets the host's log, driver and template folders bind-mounted: a remote
engine's host paths are not ours, so its gateways use the drivers and template built into the image.
"""

from __future__ import annotations

import datetime as _dt
import io
import tarfile
import time
from typing import Any, Iterator

import docker
import docker.errors
from docker.models.containers import Container

from .. import dockerops, labels
from ..claims import ABSENT, DEAD, HOLDS, Claim, ClaimTaken
from ..errors import DockerUnavailable, GatewayExists
from ..gateway.logs import ERR_LOG, LOG_MAX_BYTES
from ..settings import CONTAINER_UID
from ..state import STATE_FILE_NAME, GatewayStatus, parse_state
from . import GatewaySpec, Handle, Observation

#: where the gateway keeps its logs and state document in the container (docs/contracts.md)
CONTAINER_LOG_DIR = "/var/log/sipmediagw"
#: a created-never-started claim container needs a command to exist; it is never run
_CLAIM_COMMAND = ["true"]
#: `launch` starts a gateway's container right after creating it: one started this much later was started again by
#: the engine (restart policy after an engine restart or a host reboot, which sets RestartCount back to 0)
LATE_START_S = 60.0


def is_local_engine(client: docker.DockerClient) -> bool:
    """True when the client talks to this host's engine over its unix socket (host paths mean the same there)."""
    return str(getattr(client.api, "base_url", "")).startswith("http+docker://localhost")


def parse_docker_time(raw: str) -> _dt.datetime | None:
    """Docker's RFC 3339 time with nanoseconds -> an aware datetime (None for the zero time or garbage)."""
    if not raw or raw.startswith("0001-"):
        return None
    head, _, frac = raw.rstrip("Z").partition(".")
    frac = frac.split("+")[0].split("-")[0]
    text = head + ("." + frac[:6] if frac else "") + "+00:00"
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def read_container_file(container: Container, path: str, limit: int = 1024 * 1024) -> bytes | None:
    """The content of regular file `path` in the container (None when absent, not a file, or the engine refuses)."""
    try:
        stream, stat = container.get_archive(path)
    except (docker.errors.NotFound, docker.errors.APIError):
        return None
    if stat.get("size", 0) > limit:
        return None
    data = b"".join(stream)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile() or member.size > limit:
                return None  # a symlink placed by the container must not lead the host anywhere
            handle = tar.extractfile(member)
            return handle.read() if handle else None
    except tarfile.TarError:
        return None


def restart_note(attrs: dict[str, Any]) -> str | None:
    """'restarted 2x by Docker' or 'started again by Docker at ... (engine restart or host reboot?)' from a container's
    inspect document; None when it runs since `launch` started it."""
    count = int(attrs.get("RestartCount") or 0)
    if count:
        return f"restarted {count}x by Docker"
    created = parse_docker_time(attrs.get("Created", ""))
    started = parse_docker_time((attrs.get("State") or {}).get("StartedAt", ""))
    if created and started and (started - created).total_seconds() > LATE_START_S:
        return f"started again by Docker at {started:%Y-%m-%d %H:%M:%S} UTC (engine restart or host reboot?)"
    return None


def container_status(container: Container) -> GatewayStatus | None:
    """The gateway's state document, read through the engine."""
    raw = read_container_file(container, f"{CONTAINER_LOG_DIR}/{STATE_FILE_NAME}")
    return parse_state(raw) if raw is not None else None


class EngineClaims:
    """Claims as created-never-started containers: the engine keeps container names unique."""

    def __init__(self, client: docker.DockerClient, image: str) -> None:
        self.client = client
        self.image = image

    def create(self, name: str, claim_labels: dict[str, str], payload: bytes | None) -> Claim:
        try:
            created = self.client.api.create_container(
                image=self.image, name=name, labels=claim_labels, command=_CLAIM_COMMAND, entrypoint=[],
                network_disabled=True, host_config=self.client.api.create_host_config(network_mode="none"))
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise ClaimTaken(self._get(name)) from None
            raise DockerUnavailable(f"cannot create the allocation claim {name}: {exc.explanation or exc}") from exc
        return Claim.from_labels(created["Id"], name, claim_labels)

    def _get(self, name: str) -> Claim | None:
        try:
            return self._claim(self.client.containers.get(name))
        except docker.errors.NotFound:
            return None

    @staticmethod
    def _claim(container: Container) -> Claim | None:
        created = parse_docker_time(container.attrs.get("Created", ""))
        return Claim.from_labels(container.id, container.name, container.labels,
                                 created.timestamp() if created else None)

    def remove(self, claim_id: str) -> None:
        try:
            self.client.api.remove_container(claim_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: another launch is removing the same stale claim right now
                raise

    def list(self) -> list[Claim]:
        # the summary listing, not containers.list(): that one inspects each container afterwards, and concurrent
        # launches remove claims all the time (a claim gone between the two calls would fail the whole listing)
        found = self.client.api.containers(all=True, filters={"label": labels.CLAIM})
        claims = (Claim.from_labels(summary["Id"], (summary.get("Names") or ["/"])[0].lstrip("/"),
                                    summary.get("Labels") or {}, summary.get("Created")) for summary in found)
        return [claim for claim in claims if claim is not None]

    def gateway_presence(self, gateway: str) -> str:
        container = dockerops.find_gateway(self.client, gateway)
        if container is None:
            return ABSENT
        return HOLDS if dockerops.holds_resources(container) else DEAD


class EngineBackend:
    """Gateways as containers of one engine."""

    kind = "engine"

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self._engine_name: str | None = None

    def claims(self, image: str) -> EngineClaims:
        return EngineClaims(self.client, image)

    @staticmethod
    def _handle(container: Container) -> Handle:
        return Handle(container.labels.get(labels.GATEWAY, container.name), container.name, container.labels,
                      container)

    def find(self, gateway: str) -> Handle | None:
        container = dockerops.find_gateway(self.client, gateway)
        return self._handle(container) if container is not None else None

    def list(self) -> list[Handle]:
        return [self._handle(c) for c in dockerops.list_gateways(self.client, include_stopped=True)]

    def holds(self, handle: Handle) -> bool:
        return dockerops.holds_resources(handle.ref)

    def create(self, spec: GatewaySpec, account_line: bytes, account_claim: Any) -> Handle:
        try:
            created = self.client.api.create_container(
                image=spec.image, name=spec.name, hostname=spec.name[:63], labels=spec.labels,
                environment=spec.environment, stop_signal="SIGTERM", stop_timeout=spec.stop_timeout, detach=True,
                host_config=self.client.api.create_host_config(**spec.host_config))
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise GatewayExists(f"a container named {spec.name} already exists; stop it first") from exc
            raise DockerUnavailable(f"cannot create the container: {exc.explanation or exc}") from exc
        container = self.client.containers.get(created["Id"])
        try:
            dockerops.put_secret(container, spec.account_file, account_line, CONTAINER_UID)
        except BaseException:
            dockerops.remove_container(container)
            raise
        return self._handle(container)

    def start(self, handle: Handle) -> None:
        handle.ref.start()

    def _node(self) -> str | None:
        if self._engine_name is None:
            try:
                self._engine_name = str(self.client.info().get("Name") or "")
            except docker.errors.APIError:
                self._engine_name = ""
        return self._engine_name or None

    def observe(self, handle: Handle) -> Observation:
        container: Container = handle.ref
        if dockerops.refresh(container) is None:
            return Observation("gone")
        state = container.attrs.get("State", {})
        restarts = int(container.attrs.get("RestartCount") or 0)
        why = f"exit code {state.get('ExitCode')}" + (", killed: out of memory" if state.get("OOMKilled") else "") \
            + (f", {state['Error']}" if state.get("Error") else "")
        if container.status in ("exited", "dead"):
            detail = why + (f", after {restarts} restart(s) by Docker" if restarts else "")
            return Observation("exited", node=self._node(), detail=detail, exit_code=state.get("ExitCode"),
                               restarts=restarts)
        if container.status == "restarting":  # between two runs: it still holds its slot and account
            return Observation("restarting", node=self._node(), detail=f"restarting after {why} "
                               f"(restarted {restarts}x by Docker so far)", exit_code=state.get("ExitCode"),
                               restarts=restarts)
        if container.status == "created":
            return Observation("starting", node=self._node())
        return Observation("running", status=container_status(container), node=self._node(),
                           started=parse_docker_time(state.get("StartedAt", "")),
                           detail=restart_note(container.attrs), restarts=restarts)

    def stats(self, handle: Handle) -> dict[str, Any] | None:
        return dockerops.container_stats(handle.ref)

    def remove(self, handle: Handle, timeout: int) -> None:
        dockerops.stop_container(handle.ref, timeout)
        dockerops.remove_container(handle.ref)

    def logs(self, handle: Handle, tail: int, follow: bool, error_log: bool) -> Iterator[str]:
        container: Container = handle.ref
        if error_log:
            # err.log exists only as a file in the container: read it through the engine, then poll for more
            yield from _follow_file(container, f"{CONTAINER_LOG_DIR}/{ERR_LOG}", tail, follow)
            return
        try:
            if not follow:
                yield from container.logs(tail=tail).decode("utf-8", errors="replace").splitlines()
                return
            pending = b""
            for chunk in container.logs(stream=True, follow=True, tail=tail):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            if pending:
                yield pending.decode("utf-8", errors="replace")
        except docker.errors.APIError as exc:
            raise DockerUnavailable(f"cannot read the logs of {container.name}: {exc.explanation or exc}") from exc

    def diagnostics(self, handle: Handle, lines: int) -> list[str]:
        container: Container = handle.ref
        parts: list[str] = []
        if dockerops.refresh(container) is not None:
            state = container.attrs.get("State", {})
            restarts = int(container.attrs.get("RestartCount") or 0)
            parts.append(
                f"container {container.name}: status={state.get('Status')} exit_code={state.get('ExitCode')} "
                f"oom_killed={state.get('OOMKilled')}" + (f" restarts={restarts}" if restarts else "")
                + (f" error={state['Error']}" if state.get("Error") else ""))
        tail = dockerops.container_logs(container, lines).splitlines()
        if tail:
            parts.append("last lines of its log:")
            parts.extend("  " + line for line in tail)
        return parts


#: a gateway log file is rotated at LOG_MAX_BYTES (sipmediagw/gateway/logs.py); the margin covers the line that
#: crosses it
_LOG_READ_LIMIT = LOG_MAX_BYTES + 256 * 1024


def _follow_file(container: Container, path: str, tail: int, follow: bool, interval: float = 1.0) -> Iterator[str]:
    """The last `tail` lines of a log file in the container (reaching into its newest rotated file, ``path``.1, when
    the current one has fewer), then (follow) what is appended while it runs."""
    raw = read_container_file(container, path, _LOG_READ_LIMIT)
    if raw is None:
        if dockerops.refresh(container) is None or container.status != "running":
            return
        raw = b""
    lines = raw.decode("utf-8", errors="replace").splitlines()
    if len(lines) < tail:
        older = read_container_file(container, f"{path}.1", _LOG_READ_LIMIT) or b""
        lines = older.decode("utf-8", errors="replace").splitlines() + lines
    yield from (lines[-tail:] if tail > 0 else [])
    seen = len(raw)
    while follow:
        time.sleep(interval)  # polling the engine's archive API: it has no notification to wait on
        if dockerops.refresh(container) is None or container.status != "running":
            return
        raw = read_container_file(container, path, _LOG_READ_LIMIT) or b""
        if len(raw) < seen:
            seen = 0  # the file was rotated (or truncated): all of the new one is new
        if len(raw) > seen:
            fresh = raw[seen:].decode("utf-8", errors="replace")
            seen = len(raw)
            yield from fresh.splitlines()
