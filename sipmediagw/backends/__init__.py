"""Where gateways run: one Docker engine (a container per gateway) or a Docker Swarm (a service per gateway).

The commands (launch, stop, status, logs, doctor) are written once against `Backend`; the two implementations
answer the same questions through the engine's API only, so a remote ``DOCKER_HOST`` (tcp with TLS, ssh) works as
the local socket does. `select_backend` picks one: the setting ``backend`` (``--backend``) or, with ``auto``, swarm
when the engine is a swarm manager.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Iterator, Protocol

import docker

from ..claims import ClaimStore
from ..errors import ConfigError, DockerUnavailable
from ..settings import BACKENDS
from ..state import GatewayStatus


#: Docker's log of every gateway (its stdout, which mirrors app.log): json-file, which `docker logs` and `docker service
#: logs` read, rotated so that a gateway that talks too much cannot fill the engine's disk (30 MB at most)
LOG_DRIVER = "json-file"
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}


@dataclasses.dataclass
class Handle:
    """One gateway as the engine holds it: a container, or a service."""

    gateway: str
    name: str  # the container's or the service's name
    labels: dict[str, str]
    ref: Any  # docker-py Container | service id


@dataclasses.dataclass
class Observation:
    """What the engine says about a gateway now."""

    runtime: str  # "starting" | "running" | "restarting" (exited, the engine starts it again) | "exited" | "gone"
    status: GatewayStatus | None = None  # the gateway's own state document (None: none readable yet)
    node: str | None = None  # where it runs: the engine's or the swarm node's hostname
    started: _dt.datetime | None = None
    detail: str | None = None  # why it is not running, that it was restarted (engine) or moved (swarm)
    exit_code: int | None = None
    restarts: int = 0  # restarts by the engine's restart policy (Docker's RestartCount; an engine restart resets it)


@dataclasses.dataclass(frozen=True)
class GatewaySpec:
    """Everything a backend needs to create one gateway; nothing secret (the account travels apart)."""

    gateway: str
    name: str
    image: str
    labels: dict[str, str]
    environment: dict[str, str]
    stop_timeout: int
    cpu: float  # cores budgeted: also its limit
    memory: int  # bytes budgeted: also its limit
    shm_size: str
    host_config: dict[str, Any]  # the single engine's HostConfig (launcher.container_config): binds, devices, ...
    constraints: tuple[str, ...] = ()  # swarm placement constraints
    account_file: str = "/run/secrets/sipmediagw-account"
    pids: int = 0  # limit of processes + threads (0: none)


class Backend(Protocol):
    """The operations the CLI needs; see EngineBackend and SwarmBackend."""

    kind: str
    client: docker.DockerClient

    def claims(self, image: str) -> ClaimStore: ...

    def find(self, gateway: str) -> Handle | None: ...

    def list(self) -> list[Handle]: ...

    def holds(self, handle: Handle) -> bool: ...

    def create(self, spec: GatewaySpec, account_line: bytes, account_claim: Any) -> Handle: ...

    def start(self, handle: Handle) -> None: ...

    def observe(self, handle: Handle) -> Observation: ...

    def stats(self, handle: Handle) -> dict[str, Any] | None: ...

    def remove(self, handle: Handle, timeout: int) -> None: ...

    def logs(self, handle: Handle, tail: int, follow: bool, error_log: bool) -> Iterator[str]: ...

    def diagnostics(self, handle: Handle, lines: int) -> list[str]: ...


def is_swarm_manager(client: docker.DockerClient) -> bool:
    """Whether the engine manages a swarm (it can create services)."""
    try:
        swarm = client.info().get("Swarm") or {}
    except docker.errors.APIError as exc:
        raise DockerUnavailable(f"cannot ask the Docker engine what it is: {exc.explanation or exc}") from exc
    return bool(swarm.get("ControlAvailable"))


def select_backend(client: docker.DockerClient, choice: str = "auto") -> Backend:
    """The backend for `choice` (auto: swarm on a swarm manager, else the single engine)."""
    from .engine import EngineBackend
    from .swarm import SwarmBackend

    if choice not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {choice!r}")
    if choice == "auto":
        choice = "swarm" if is_swarm_manager(client) else "engine"
    elif choice == "swarm" and not is_swarm_manager(client):
        raise DockerUnavailable("--backend swarm: this Docker engine is not a swarm manager (docker swarm init, or "
                                "point DOCKER_HOST at a manager)")
    return SwarmBackend(client) if choice == "swarm" else EngineBackend(client)
