"""The swarm backend: one Docker Swarm service per gateway (1 replica), placed and restarted by Swarm.

- The account line is a Docker secret (encrypted in the managers' store, mounted only into that service's task, on
  tmpfs, owner uid 10001 mode 0400). Its name derives from the account (claims.claim_name): the secret *is* the
  account's claim, so two `launch`es against any managers of the swarm never get one account twice.
- CPU and memory reservations and limits come from the per-gateway budget, so Swarm's scheduler does admission and
  placement (it prefers the node with the fewest tasks: gateways spread over nodes); constraints are optional. The
  pids limit too (engines of API 1.41+), and Docker's log is the single engine's (json-file, rotated).
- Restart on failure, a bounded number of times; a node lost: Swarm reschedules the task elsewhere.
- State: a task runs only once the image's HEALTHCHECK passed (Swarm holds it in "starting" until healthy); what
  the gateway is doing comes from the last ``state:`` line of the current task's log (`state.last_state_in_log`),
  read through the manager's service-logs API: the only view a manager has of a task on another node.
- Swarm services cannot map devices (moby/swarmkit#1244): userspace media only.
- Nor carry a seccomp profile (services take one from engine API 1.44; here 1.41): Docker's default profile refuses
  the user namespaces of Chromium's sandbox, so a swarm gateway finds that out at start and runs Chromium with
  --no-sandbox, saying so in its log and its state (``sandbox: off: ...``); `doctor` warns (gateway/sandbox.py).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Iterator

import docker
import docker.errors
from docker.types import Mount, Resources, RestartPolicy, SecretReference
from docker.utils import version_gte

from .. import labels
from ..claims import ABSENT, HOLDS, Claim, ClaimTaken
from ..errors import DockerUnavailable, GatewayExists, ValidationError
from ..settings import CONTAINER_UID
from ..state import last_state_in_log
from .engine import parse_docker_time
from . import LOG_DRIVER, LOG_OPTIONS, GatewaySpec, Handle, Observation

#: restarts of a failing gateway before Swarm gives up (then `status` shows it exited, with the task's error)
MAX_RESTARTS = 3
RESTART_DELAY_S = 5
#: how long a non-follow read of a service's logs may take: a task on a dead node can make the manager's
#: service-logs stream hang without end (field notes)
LOG_READ_TIMEOUT = 8.0
#: lines of the current task's log searched for its latest state line
STATE_LOG_TAIL = 400

_STARTING_TASK_STATES = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")
_ENDED_TASK_STATES = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")
_NANO = 1_000_000_000
#: the first API version whose services take a pids limit (TaskTemplate.Resources.Limits.Pids: Docker 20.10)
PIDS_LIMIT_API = "1.41"


def service_name(gateway: str) -> str:
    """The service's name, as the single engine names its container."""
    return f"sipmediagw-{gateway}"


class SecretClaims:
    """Claims as swarm secrets: the managers keep secret names unique across the whole swarm."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def create(self, name: str, claim_labels: dict[str, str], payload: bytes | None) -> Claim:
        try:
            created = self.client.api.create_secret(name, payload or b"claim", labels=claim_labels)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise ClaimTaken(self._get(name)) from None
            raise DockerUnavailable(f"cannot create the swarm secret {name}: {exc.explanation or exc}") from exc
        return Claim.from_labels(created["ID"], name, claim_labels)

    def _get(self, name: str) -> Claim | None:
        found = [s for s in self.client.api.secrets(filters={"name": name}) if s["Spec"]["Name"] == name]
        return self._claim(found[0]) if found else None

    @staticmethod
    def _claim(secret: dict[str, Any]) -> Claim | None:
        spec = secret.get("Spec", {})
        created = parse_docker_time(secret.get("CreatedAt", ""))
        return Claim.from_labels(secret["ID"], spec.get("Name", ""), spec.get("Labels") or {},
                                 created.timestamp() if created else None)

    def remove(self, claim_id: str) -> None:
        try:
            self.client.api.remove_secret(claim_id)
        except docker.errors.NotFound:
            pass

    def list(self) -> list[Claim]:
        found = self.client.api.secrets(filters={"label": labels.CLAIM})
        return [claim for claim in (self._claim(s) for s in found) if claim is not None]

    def gateway_presence(self, gateway: str) -> str:
        # a service holds its account until it is removed (Swarm restarts or reschedules its task)
        named = [s for s in self.client.api.services(filters={"name": service_name(gateway)})
                 if s["Spec"]["Name"] == service_name(gateway)]
        return HOLDS if named else ABSENT


@dataclasses.dataclass(frozen=True)
class NodeCapacity:
    """One swarm node, what it has and how many more gateways of a budget fit on it."""

    node_id: str
    hostname: str
    role: str  # manager | worker
    state: str  # ready | down | unknown
    availability: str  # active | pause | drain
    address: str
    cpus: float
    memory: int
    reserved_cpus: float
    reserved_memory: int
    fits: int  # further gateways of the budget (0 when the node is not ready and active)


def node_capacity(client: docker.DockerClient, cpu: float, memory: int) -> list[NodeCapacity]:
    """Every node with its free CPU/memory (by running tasks' reservations) and how many gateways still fit."""
    reserved: dict[str, list[float]] = {}
    for task in client.api.tasks(filters={"desired-state": "running"}):
        res = (task.get("Spec", {}).get("Resources") or {}).get("Reservations") or {}
        entry = reserved.setdefault(task.get("NodeID", ""), [0.0, 0.0])
        entry[0] += res.get("NanoCPUs", 0) / _NANO
        entry[1] += res.get("MemoryBytes", 0)
    nodes = []
    for node in client.api.nodes():
        desc = node.get("Description", {})
        resources = desc.get("Resources", {})
        cpus = resources.get("NanoCPUs", 0) / _NANO
        total_memory = int(resources.get("MemoryBytes", 0))
        used_cpu, used_memory = reserved.get(node["ID"], [0.0, 0.0])
        state = node.get("Status", {}).get("State", "unknown")
        availability = node.get("Spec", {}).get("Availability", "active")
        fits = 0
        if state == "ready" and availability == "active":
            fits = max(0, min(int((cpus - used_cpu + 1e-9) // cpu), int((total_memory - used_memory) // memory)))
        nodes.append(NodeCapacity(node["ID"], desc.get("Hostname", node["ID"][:12]), node["Spec"].get("Role", ""),
                                  state, availability, node.get("Status", {}).get("Addr", ""), cpus, total_memory,
                                  used_cpu, int(used_memory), fits))
    return sorted(nodes, key=lambda n: (n.role != "manager", n.hostname))


def _split_details(line: str) -> tuple[str, str]:
    """(task id, message) of a service-log line read with details=True."""
    if line.startswith("com.docker.swarm."):
        details, _, message = line.partition(" ")
        fields = dict(item.partition("=")[::2] for item in details.split(","))
        return fields.get("com.docker.swarm.task.id", ""), message
    return "", line


def service_log_lines(client: docker.DockerClient, service_id: str, tail: int | str, follow: bool = False,
                      timeout: float = LOG_READ_TIMEOUT) -> Iterator[tuple[str, str]]:
    """(task id, line) of a service's log, oldest first. Without follow, reading stops after `timeout` seconds:
    the manager's stream can stay open without end when a task's node is gone."""
    lines: queue.Queue[tuple[str, str] | None | BaseException] = queue.Queue()

    def read() -> None:
        pending = b""
        try:
            for chunk in client.api.service_logs(service_id, details=True, stdout=True, stderr=True, tail=tail,
                                                 follow=follow):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    lines.put(_split_details(raw.decode("utf-8", errors="replace")))
            if pending:
                lines.put(_split_details(pending.decode("utf-8", errors="replace")))
            lines.put(None)
        except BaseException as exc:  # handed to the reading side
            lines.put(exc)

    threading.Thread(target=read, name=f"service-logs-{service_id[:12]}", daemon=True).start()
    deadline = None if follow else time.monotonic() + timeout
    while True:
        try:
            item = lines.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return  # the stream did not end in time: what was read is what there is
        if item is None:
            return
        if isinstance(item, docker.errors.APIError):
            raise DockerUnavailable(f"cannot read the service's logs: {item.explanation or item}")
        if isinstance(item, BaseException):
            raise DockerUnavailable(f"cannot read the service's logs: {item}")
        yield item


class SwarmBackend:
    """Gateways as swarm services."""

    kind = "swarm"

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self._hostnames: dict[str, tuple[str, str]] = {}

    def claims(self, image: str) -> SecretClaims:
        return SecretClaims(self.client)

    @staticmethod
    def _handle(service: dict[str, Any]) -> Handle:
        spec = service.get("Spec", {})
        tags = spec.get("Labels") or {}
        return Handle(tags.get(labels.GATEWAY, spec.get("Name", "")), spec.get("Name", ""), tags, service["ID"])

    def find(self, gateway: str) -> Handle | None:
        found = self.client.api.services(filters={"label": [f"{labels.MANAGED}=true", f"{labels.GATEWAY}={gateway}"]})
        return self._handle(found[0]) if found else None

    def list(self) -> list[Handle]:
        return [self._handle(s) for s in self.client.api.services(filters={"label": f"{labels.MANAGED}=true"})]

    def holds(self, handle: Handle) -> bool:
        return True  # a service holds its account until it is removed; Swarm restarts or reschedules its task

    def create(self, spec: GatewaySpec, account_line: bytes, account_claim: Any) -> Handle:
        if spec.host_config.get("devices"):
            raise ValidationError("swarm services cannot map devices (moby/swarmkit#1244): use --media userspace")
        folder, _, file_name = spec.account_file.rpartition("/")
        if folder != "/run/secrets":
            raise ValidationError(f"the account file must be under /run/secrets for a swarm secret, not {folder}")
        secret = SecretReference(account_claim.id, account_claim.name, filename=file_name, uid=str(CONTAINER_UID),
                                 gid=str(CONTAINER_UID), mode=0o400)
        resources = Resources(cpu_limit=int(spec.cpu * _NANO), mem_limit=spec.memory,
                              cpu_reservation=int(spec.cpu * _NANO), mem_reservation=spec.memory)
        if spec.pids and version_gte(self.client.api.api_version, PIDS_LIMIT_API):
            # docker-py (7.1) has no argument for it; Resources is the API's own document. An older manager would
            # drop the field without a word: below 1.41 the tasks run without a pids limit.
            resources["Limits"]["Pids"] = spec.pids
        shm = Mount(target="/dev/shm", source="", type="tmpfs", tmpfs_size=_size_bytes(spec.shm_size))
        try:
            service = self.client.services.create(
                spec.image, name=spec.name, labels=spec.labels, container_labels=spec.labels,
                env=[f"{k}={v}" for k, v in spec.environment.items()], hostname=spec.name[:63],
                secrets=[secret], resources=resources, mounts=[shm], init=True, cap_drop=["ALL"],
                log_driver=LOG_DRIVER, log_driver_options=dict(LOG_OPTIONS),
                stop_grace_period=spec.stop_timeout * _NANO, stop_signal="SIGTERM",
                restart_policy=RestartPolicy(condition="on-failure", delay=RESTART_DELAY_S * _NANO,
                                             max_attempts=MAX_RESTARTS),
                constraints=list(spec.constraints) or None)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise GatewayExists(f"a service named {spec.name} already exists; stop it first") from exc
            raise DockerUnavailable(f"cannot create the swarm service: {exc.explanation or exc}") from exc
        return Handle(spec.gateway, spec.name, spec.labels, service.id)

    def start(self, handle: Handle) -> None:
        """A service starts as soon as it is created."""

    def _node(self, node_id: str) -> tuple[str, str]:
        """(hostname, state) of a node; refreshed when unknown."""
        if node_id not in self._hostnames:
            for node in self.client.api.nodes():
                self._hostnames[node["ID"]] = (node.get("Description", {}).get("Hostname", node["ID"][:12]),
                                               node.get("Status", {}).get("State", "unknown"))
        return self._hostnames.get(node_id, (node_id[:12] or "-", "unknown"))

    def tasks(self, handle: Handle) -> list[dict[str, Any]]:
        """The service's tasks, oldest first."""
        try:
            found = self.client.api.tasks(filters={"service": handle.ref})
        except docker.errors.NotFound:  # the service is gone (engines answer 404 to a filter on an unknown one)
            return []
        return sorted(found, key=lambda t: (t.get("CreatedAt", ""), t.get("Version", {}).get("Index", 0)))

    def observe(self, handle: Handle) -> Observation:
        try:
            self.client.api.inspect_service(handle.ref)
        except docker.errors.NotFound:
            return Observation("gone")
        tasks = self.tasks(handle)
        if not tasks:
            return Observation("starting", detail="no task scheduled yet")
        wanted = [t for t in tasks if t.get("DesiredState") == "running"]
        current = (wanted or tasks)[-1]
        status_part = current.get("Status", {})
        task_state = status_part.get("State", "")
        node, _ = self._node(current.get("NodeID", "")) if current.get("NodeID") else ("-", "")
        detail = _moved(tasks, current, self._node)
        if task_state == "running":
            status = self.task_state(handle, current["ID"])
            return Observation("running", status=status, node=node, detail=detail,
                               started=parse_docker_time(status_part.get("Timestamp", "")))
        if task_state in _STARTING_TASK_STATES and current.get("DesiredState") == "running":
            why = status_part.get("Err") or status_part.get("Message") or task_state
            return Observation("starting", status=None, node=node, detail=detail or f"task {task_state}: {why}")
        why = status_part.get("Err") or status_part.get("Message") or task_state
        code = (status_part.get("ContainerStatus") or {}).get("ExitCode")
        return Observation("exited", node=node, detail=f"task {task_state}: {why}", exit_code=code)

    def task_state(self, handle: Handle, task_id: str):  # -> GatewayStatus | None
        """The latest state line of task `task_id`'s log."""
        lines = [line for task, line in service_log_lines(self.client, handle.ref, STATE_LOG_TAIL) if task == task_id]
        return last_state_in_log(lines)

    def stats(self, handle: Handle) -> dict[str, Any] | None:
        return None  # a manager has no stats of tasks on other nodes

    def remove(self, handle: Handle, timeout: int) -> None:
        """Remove the service (Swarm sends SIGTERM, then SIGKILL after the stop grace period) and wait until its
        tasks are gone, so the secret it used can be removed next."""
        try:
            self.client.api.remove_service(handle.ref)
        except docker.errors.NotFound:
            return
        deadline = time.monotonic() + timeout + 15
        while time.monotonic() < deadline:
            live = [t for t in self.tasks(handle) if t.get("Status", {}).get("State") not in _ENDED_TASK_STATES]
            if not live:
                return
            time.sleep(0.5)  # Swarm has no event to wait on for a removed service's tasks: poll the condition

    def logs(self, handle: Handle, tail: int, follow: bool, error_log: bool) -> Iterator[str]:
        if error_log:
            raise ValidationError("--err: a swarm gateway's err.log stays in its task; its log (stdout) has every "
                                  "warning and error too: run without --err")
        for _task, line in service_log_lines(self.client, handle.ref, tail if tail > 0 else 0, follow=follow):
            yield line

    def diagnostics(self, handle: Handle, lines: int) -> list[str]:
        parts = []
        for task in self.tasks(handle)[-4:]:
            status = task.get("Status", {})
            node, node_state = self._node(task.get("NodeID", "")) if task.get("NodeID") else ("-", "")
            parts.append(f"task {task['ID'][:12]} on {node} ({node_state}): {status.get('State')}"
                         + (f" - {status.get('Err') or status.get('Message')}" if status.get("Err") or
                            status.get("Message") else ""))
        tail = [line for _task, line in service_log_lines(self.client, handle.ref, lines)]
        if tail:
            parts.append("last lines of its log:")
            parts.extend("  " + line for line in tail[-lines:])
        return parts


def _moved(tasks: list[dict[str, Any]], current: dict[str, Any], node_of) -> str | None:
    """'moved from worker-1 (node down; task ...)' when the previous task ran on another node."""
    earlier = [t for t in tasks if t is not current and t.get("CreatedAt", "") <= current.get("CreatedAt", "")]
    if not earlier or not current.get("NodeID"):
        return None
    previous = earlier[-1]
    if not previous.get("NodeID") or previous["NodeID"] == current["NodeID"]:
        return None
    host, state = node_of(previous["NodeID"])
    status = previous.get("Status", {})
    why = status.get("Err") or status.get("Message") or status.get("State", "")
    return f"moved from {host} (node {state}; previous task {status.get('State', '?')}: {why}; its call, if any, " \
           "was lost)"


def _size_bytes(text: str) -> int:
    """Docker's size notation (256m, 1g, 1048576) in bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
