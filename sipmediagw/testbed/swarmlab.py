"""A 3-node Docker Swarm on one machine, plus a local registry: the lab the swarm tests and the docs use.

Why this shape (``scripts/swarm-lab up|down|status`` drives it):

- **Manager: this host's engine.** Gateways launched on the manager need nothing new; ``docker swarm init`` uses the
  Docker bridge address (docker0), which every container can reach. The lab remembers that *it* made the swarm in a
  label on the manager node, so ``down`` only leaves a swarm it created.
- **Workers: engines inside containers** (``docker/lab/node.Dockerfile``: the offline base image + Debian's
  ``docker.io``). An engine needs elevated rights: only these node containers get them, never a gateway. ``--privileged``
  fails on these machines (their capability bounding set lacks CAP_SYS_RESOURCE), so the node gets every capability
  but that one, no seccomp/AppArmor confinement, every device, a writable cgroup tree, ``/var/lib/docker`` on a named
  volume (overlay2 cannot stack on the container's own overlay) and ``/run`` on tmpfs (FIELD-NOTES).
  Each worker's dockerd has its own bridge subnet (10.201.N.0/24, address pool 10.(210+N).0.0/16) so nothing it makes
  overlaps the host's 172.17.0.0/16.
- **Worker engines on plain TCP (2375), no TLS.** Acceptable only because they listen on this host's private Docker
  bridge for a lab; a real deployment uses ``--tlsverify`` with client certificates (or SSH) — an open Docker API is
  root on that machine for whoever reaches it.
- **Registry: Debian's docker-registry** in a container (``docker/lab/registry.Dockerfile``), published on
  ``<docker0>:5000`` (the name every node uses) and ``127.0.0.1:5000``, over HTTPS with a certificate it makes at first
  start. That certificate goes to every engine as ``/etc/docker/certs.d/<docker0>:5000/ca.crt`` (on this host too;
  ``down`` removes it), which Docker reads on each connection: no engine needs ``insecure-registries`` or a restart,
  and the manager can resolve the image's digest, so every node runs the very same image (with a plain-HTTP registry
  the manager cannot, and Swarm lets each node resolve the tag on its own). The host pushes the image under that
  name, so the manager has it locally and never pulls it.
- **Node loss** is simulated by killing every process of a worker "machine" (its dockerd, containerd and the
  containers it ran) *inside* the node container, which keeps running: the node keeps its address, and
  ``start_worker_engine`` brings the same node back (same swarm identity, from its volume).

Everything the lab makes carries the label ``org.sipmediagw.lab=true`` (containers, volumes) or a node label in the
``org.sipmediagw.lab.`` namespace; ``down`` finds what to remove by those labels, so it works from any state.
The images built here (node, registry) are kept by ``down``: they are a cache (a cold build took 14–20 s here),
not lab state, and carry a recipe hash that triggers a rebuild when their Dockerfile or the base image changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import docker
import docker.errors
import requests
from docker.models.containers import Container

from .. import dockerops, labels
from ..errors import DockerUnavailable
from ._proc import TestbedError
from .network import docker_bridge_ip

LAB_LABEL = labels.PREFIX + "lab"  # "true" on every container and volume of the lab
ROLE_LABEL = labels.PREFIX + "lab.role"  # "worker" | "registry"
RECIPE_LABEL = labels.PREFIX + "lab.recipe"  # on the lab's images: hash of Dockerfile + base image id
WORKER_NODE_LABEL = labels.PREFIX + "lab.worker"  # node label (and container label): the worker's name
CREATED_SWARM_LABEL = labels.PREFIX + "lab.created-swarm"  # manager node label: the lab ran `swarm init`
CREATED_GWBRIDGE_LABEL = labels.PREFIX + "lab.created-gwbridge"  # manager node label: docker_gwbridge is the lab's
#: the placement label of the nodes gateways may run on (`--constraint node.labels.sipmediagw==yes`)
GATEWAY_NODE_LABEL = ("sipmediagw", "yes")
#: what the swarm backend and the CLI put on gateway services/containers, and on claim secrets
MANAGED_LABEL = labels.MANAGED
CLAIM_LABEL = labels.PREFIX + "claim"
SWARM_TASK_LABEL = "com.docker.swarm.task.id"

NODE_IMAGE = "sipmediagw-lab-node:latest"
REGISTRY_IMAGE = "sipmediagw-lab-registry:latest"
REGISTRY_CONTAINER = "sipmediagw-lab-registry"
REGISTRY_VOLUME = "sipmediagw-lab-registry-data"
WORKER_CONTAINER_PREFIX = "sipmediagw-lab-worker-"
REPOSITORY = "sipmediagw"
REGISTRY_PORT = 5000
ENGINE_PORT = 2375
SWARM_PORT = 2377
GWBRIDGE = "docker_gwbridge"
MAX_WORKERS = 9  # the bridge subnets below are numbered 1..9

#: the folder holding node.Dockerfile and registry.Dockerfile (a source checkout: the lab is a developer tool)
LAB_DIR = Path(__file__).resolve().parents[2] / "docker" / "lab"
BASE_SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "make-base-image.sh"
LOCK_PATH = Path(tempfile.gettempdir()) / "sipmediagw-swarm-lab.lock"
KEEPER_PID_FILE = "/run/sipmediagw-lab-keeper.pid"  # written by the node image's CMD
REGISTRY_CERT = "/var/lib/docker-registry/tls/cert.pem"  # made by the registry image at first start
#: where an engine looks for a registry's CA, per registry address, on each connection (no restart, no daemon.json)
CERTS_DIR = Path("/etc/docker/certs.d")
ENGINE_LOG = "/var/log/dockerd.log"  # inside a node

BUILD_TIMEOUT = 1800.0  # a cold apt-get of docker.io on a slow mirror
ENGINE_TIMEOUT = 90.0  # an inner dockerd answers in seconds; a loaded 2-core host is slower
NODE_TIMEOUT = 90.0  # a node Ready after join or an engine restart
REGISTRY_TIMEOUT = 30.0
TRANSFER_TIMEOUT = 1800.0  # docker-py read timeout while pushing/pulling ~1 GB

Progress = Callable[[str], None]
#: what a docker-py call to a live or dead engine raises
DOCKER_ERRORS: tuple[type[Exception], ...] = (docker.errors.DockerException, requests.RequestException, OSError)


class LabError(TestbedError):
    """The lab could not be brought up, inspected or changed; the message says what and shows the evidence."""


#: what a clean-up step may meet and must report, not raise: the rest of the clean-up goes on
CLEANUP_ERRORS: tuple[type[Exception], ...] = (LabError, *DOCKER_ERRORS)


def say(message: str) -> None:
    """Default progress reporter: one line on stderr (stdout is for the usage text and --json)."""
    print(f"[swarm-lab] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class LabWorker:
    """One worker node: an engine inside the container `container`, reachable at `docker_host`."""

    name: str  # worker-N, also its hostname and swarm node name
    container: str  # sipmediagw-lab-worker-N
    address: str  # the node container's address on the Docker bridge
    docker_host: str  # tcp://ADDR:2375 (plain TCP: a lab only)
    node_id: str
    hostname: str


@dataclasses.dataclass(frozen=True)
class Lab:
    """The running lab: the manager's address, the registry, the gateway image's name for every node, the workers."""

    manager_address: str
    registry: str  # ADDR:5000
    image: str  # ADDR:5000/sipmediagw:latest
    workers: tuple[LabWorker, ...]
    created_swarm: bool

    def worker(self, name: str) -> LabWorker:
        """The worker called `name` (worker-1...)."""
        for worker in self.workers:
            if name in (worker.name, worker.container):
                return worker
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for --json."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """The fixed, per-index facts of worker N: names and the addresses its engine uses for its own networks."""

    index: int

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    @property
    def container(self) -> str:
        return f"{WORKER_CONTAINER_PREFIX}{self.index}"

    @property
    def volume(self) -> str:
        return f"{self.container}-docker"

    @property
    def bip(self) -> str:
        """The inner engine's docker0: apart from the host's 172.17.0.0/16, which the node itself sits on."""
        return f"10.201.{self.index}.1/24"

    @property
    def address_pool(self) -> str:
        """Where the inner engine takes subnets for networks it creates (docker_gwbridge...): not 172.x either."""
        return f"base=10.{210 + self.index}.0.0/16,size=24"


def worker_plans(count: int) -> list[WorkerPlan]:
    """Plans of workers 1..count."""
    if not 1 <= count <= MAX_WORKERS:
        raise LabError(f"the lab has 1 to {MAX_WORKERS} workers, not {count}")
    return [WorkerPlan(i) for i in range(1, count + 1)]


def registry_address(bridge_ip: str) -> str:
    """The registry as every node names it."""
    return f"{bridge_ip}:{REGISTRY_PORT}"


def lab_image(bridge_ip: str) -> str:
    """The gateway image's reference for every node of the lab."""
    return f"{registry_address(bridge_ip)}/{REPOSITORY}:latest"


def dockerd_args(plan: WorkerPlan) -> list[str]:
    """The inner engine's flags. `--tls=false` says plain TCP is deliberate (a lab on a private bridge)."""
    return ["-H", "unix:///var/run/docker.sock", "-H", f"tcp://0.0.0.0:{ENGINE_PORT}", "--tls=false",
            "--bip", plan.bip, "--default-address-pool", plan.address_pool]


# Started with `docker exec -d`: does nothing if an engine already runs; clears pid files a killed engine left (a
# reused pid would make dockerd/containerd refuse to start or kill the wrong process).
_START_ENGINE = f"""
pgrep -x dockerd >/dev/null && exit 0
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
exec dockerd "$@" >>{ENGINE_LOG} 2>&1
"""

# The loss of the machine: SIGKILL every process of the node but PID 1 (the init) and the keeper, in rounds until none
# is left (a process may fork between two rounds). Zombies are skipped: the init reaps them.
_KILL_MACHINE = f"""
keeper=$(cat {KEEPER_PID_FILE} 2>/dev/null || echo 0)
round=0
while [ $round -lt 100 ]; do
  victims=""
  for d in /proc/[0-9]*; do
    p=${{d#/proc/}}
    case "$p" in 1|"$keeper"|"$$") continue ;; esac
    state=""
    while read -r key value _; do [ "$key" = State: ] && state=$value && break; done 2>/dev/null <"$d/status"
    [ -z "$state" ] || [ "$state" = Z ] || victims="$victims $p"
  done
  [ -z "$victims" ] && exit 0
  kill -KILL $victims 2>/dev/null
  round=$((round + 1))
  sleep 0.1
done
echo "still alive after 100 rounds:$victims" >&2
exit 1
"""


# --------------------------------------------------------------------------------------------------------- helpers


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, explain: Callable[[], str] = lambda: "",
             interval: float = 0.2) -> float:
    """Poll `condition` until true; return the seconds it took. On timeout raise LabError with `explain()`.

    `condition` may raise LabError itself to fail at once (e.g. the process it waits for exited)."""
    started = time.monotonic()
    deadline = started + timeout
    while not condition():
        if time.monotonic() >= deadline:
            detail = explain()
            raise LabError(f"{what}: not after {timeout:.0f} s" + (f"\n{detail}" if detail else ""))
        time.sleep(interval)
    return time.monotonic() - started


def _bridge_ip() -> str:
    """This host's address on the Docker bridge: the manager's, the registry's (LabError when there is none)."""
    try:
        return docker_bridge_ip()
    except RuntimeError as exc:
        raise LabError(f"{exc}: the lab needs the default bridge network (docker0) of this host's engine") from exc


def connect(timeout: float = 120) -> docker.DockerClient:
    """A client of this host's engine (the manager); LabError when it does not answer."""
    try:
        return dockerops.connect(docker.from_env(timeout=int(timeout)))
    except DockerUnavailable as exc:
        raise LabError(str(exc)) from exc


def engine_client(docker_host: str, timeout: float = 10) -> docker.DockerClient:
    """A client of a worker's engine over its TCP address."""
    return docker.DockerClient(base_url=docker_host, timeout=int(timeout))


def engine_answers(docker_host: str) -> bool:
    """True when the engine at `docker_host` answers a ping."""
    try:
        with contextlib.closing(engine_client(docker_host, timeout=3)) as client:
            return bool(client.ping())
    except (requests.RequestException, docker.errors.DockerException):
        return False


def _get_container(client: docker.DockerClient, name: str) -> Container | None:
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _container_address(container: Container) -> str:
    container.reload()
    networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
    address = (networks.get("bridge") or {}).get("IPAddress", "")
    if not address:
        raise LabError(f"{container.name} has no address on the Docker bridge (state {container.status})")
    return str(address)


def _container_logs(container: Container, lines: int = 30) -> str:
    try:
        return str(container.logs(tail=lines).decode(errors="replace")).rstrip()
    except DOCKER_ERRORS:
        return "(no logs)"


def _remove_container(client: docker.DockerClient, name: str) -> bool:
    """Force-remove container `name` and its anonymous volumes; True if it existed. Gone already is success."""
    container = _get_container(client, name)
    if container is None:
        return False
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        return False
    return True


def _remove_volume(client: docker.DockerClient, name: str) -> bool:
    """Remove volume `name`; True if it existed. Gone already is success."""
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        return False
    return True


def _update_node_labels(client: docker.DockerClient, node_id: str, add: dict[str, str]) -> None:
    """Add labels to a swarm node (the spec is replaced whole: re-read it on a version conflict)."""
    for attempt in range(3):
        node = client.nodes.get(node_id)
        spec = dict(node.attrs["Spec"])
        current = dict(spec.get("Labels") or {})
        if all(current.get(k) == v for k, v in add.items()):
            return
        spec["Labels"] = {**current, **add}
        try:
            node.update(spec)
            return
        except docker.errors.APIError as exc:
            if attempt == 2 or "update out of sequence" not in str(exc):
                raise


def _node_state(client: docker.DockerClient, node_id: str) -> str:
    """A node's state as the manager sees it: ready, down, unknown, disconnected; "gone" when it is not a node."""
    try:
        return str(client.nodes.get(node_id).attrs["Status"]["State"])
    except docker.errors.NotFound:
        return "gone"


class _Undo:
    """What this `up` created, to remove in reverse order if it fails half-way (pieces it reused are not listed)."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self._lock = threading.Lock()

    def add(self, what: str, step: Callable[[], object]) -> None:
        with self._lock:
            self._steps.append((what, step))

    def run(self, progress: Progress) -> None:
        with self._lock:
            steps, self._steps = self._steps[::-1], []
        for what, step in steps:
            try:
                step()
                progress(f"  undone: {what}")
            except CLEANUP_ERRORS as exc:  # clean-up goes on: report and continue
                progress(f"  could not undo {what}: {exc}")


def _fresh(step: Callable[[docker.DockerClient], object]) -> Callable[[], object]:
    """An undo step on its own connection: the client that made the thing may be closed by the time it runs."""

    def run() -> object:
        client = connect()
        try:
            return step(client)
        finally:
            client.close()

    return run


@contextlib.contextmanager
def _lab_lock() -> Iterator[None]:
    """One up/down at a time on this host (two pytest sessions, a person and a test)."""
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


# ---------------------------------------------------------------------------------------------------------- images


def _recipe(client: docker.DockerClient, dockerfile: Path, base: str) -> str:
    """Hash of a lab Dockerfile and the base image it starts from: a change of either means a rebuild."""
    base_id = client.images.get(base).id
    return hashlib.sha256(dockerfile.read_bytes() + b"\0" + base_id.encode()).hexdigest()


def _base_image(dockerfile: Path) -> str:
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ARG BASE_IMAGE="):
            return line.split("=", 1)[1].strip()
    raise LabError(f"{dockerfile} has no `ARG BASE_IMAGE=...` default")


def _ensure_base_image(client: docker.DockerClient, base: str, progress: Progress) -> None:
    """Make the offline base image (debootstrap + docker import) when missing: the lab must not need a registry."""
    if dockerops.image_present(client, base):
        return
    progress(f"base image {base} missing: making it offline with {BASE_SCRIPT.name} (about a minute)")
    made = subprocess.run([str(BASE_SCRIPT), base], check=False, capture_output=True, text=True, timeout=900)
    if made.returncode != 0:
        raise LabError(f"{BASE_SCRIPT} failed ({made.returncode}):\n{made.stdout[-2000:]}\n{made.stderr[-2000:]}")


def ensure_image(tag: str, dockerfile: str, progress: Progress = say, lab_dir: Path = LAB_DIR) -> bool:
    """Build `tag` from `lab_dir/dockerfile` unless an image with the same recipe exists; True when it built."""
    path = lab_dir / dockerfile
    if not path.is_file():
        raise LabError(f"{path} not found: the swarm lab runs from a source checkout of sipmediagw")
    client = connect(timeout=BUILD_TIMEOUT)
    try:
        base = _base_image(path)
        _ensure_base_image(client, base, progress)
        recipe = _recipe(client, path, base)
        try:
            if (client.images.get(tag).labels or {}).get(RECIPE_LABEL) == recipe:
                return False
        except docker.errors.ImageNotFound:
            pass
        progress(f"building {tag} from {path}")
        started = time.monotonic()
        log: list[str] = []
        try:
            for chunk in client.api.build(path=str(lab_dir), dockerfile=dockerfile, tag=tag, rm=True, forcerm=True,
                                          labels={RECIPE_LABEL: recipe, LAB_LABEL: "true"}, decode=True,
                                          buildargs={"BASE_IMAGE": base}):
                if "error" in chunk:
                    raise LabError(f"building {tag} failed: {chunk['error'].strip()}\n--- last build output ---\n"
                                   + "\n".join(log[-30:]))
                text = chunk.get("stream") or chunk.get("status") or ""
                log += [line for line in text.splitlines() if line.strip()]
        except docker.errors.APIError as exc:
            raise LabError(f"building {tag} failed: {exc}\n--- last build output ---\n" + "\n".join(log[-30:])) from exc
        progress(f"built {tag} in {time.monotonic() - started:.1f} s")
        return True
    finally:
        client.close()


# -------------------------------------------------------------------------------------------------------- registry


def host_ca_path(bridge_ip: str) -> Path:
    """Where this host's engine finds the lab registry's certificate."""
    return CERTS_DIR / registry_address(bridge_ip) / "ca.crt"


def _registry_certificate(container: Container) -> str | None:
    """The registry's certificate (PEM), once its start script has made it."""
    result = container.exec_run(["cat", REGISTRY_CERT])
    text = bytes(result.output or b"").decode(errors="replace")
    return text if result.exit_code == 0 and "BEGIN CERTIFICATE" in text else None


def _install_host_ca(bridge_ip: str, pem: str) -> None:
    path = host_ca_path(bridge_ip)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(pem)
    partial.replace(path)  # an engine connecting meanwhile reads the old file or the new one, never half of one


def _remove_host_ca(bridge_ip: str) -> None:
    path = host_ca_path(bridge_ip)
    path.unlink(missing_ok=True)
    for folder in (path.parent, CERTS_DIR):  # the lab made them when missing; not empty: someone else's, kept
        with contextlib.suppress(OSError):
            folder.rmdir()


def _install_worker_ca(container: Container, bridge_ip: str, pem: str) -> None:
    """Give a worker's engine the registry's certificate (a file in the node container: it survives engine restarts)."""
    folder = f"etc/docker/certs.d/{registry_address(bridge_ip)}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("etc/docker", "etc/docker/certs.d", folder):
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(entry)
        data = pem.encode()
        entry = tarfile.TarInfo(f"{folder}/ca.crt")
        entry.size, entry.mode, entry.mtime = len(data), 0o644, int(time.time())
        tar.addfile(entry, io.BytesIO(data))
    if not container.put_archive("/", buffer.getvalue()):
        raise LabError(f"cannot copy the registry certificate into {container.name}")


def _registry_open(path: str, method: str = "GET", headers: dict[str, str] | None = None,
                   cafile: Path | None = None, timeout: float = 5) -> Any:
    """An HTTPS request to the lab registry through 127.0.0.1, verified with its certificate (in the cert's names)."""
    context = ssl.create_default_context(cafile=str(cafile or host_ca_path(_bridge_ip())))
    request = urllib.request.Request(f"https://127.0.0.1:{REGISTRY_PORT}{path}", method=method, headers=headers or {})
    return urllib.request.urlopen(request, timeout=timeout, context=context)


def _ensure_registry(client: docker.DockerClient, bridge_ip: str, undo: _Undo, progress: Progress) -> str:
    """The registry running, its certificate installed for this host's engine, answering over HTTPS (reused when it
    already runs); returns the certificate (PEM)."""
    container = _get_container(client, REGISTRY_CONTAINER)
    if container is not None and container.status != "running":
        container.remove(force=True, v=True)  # a stopped registry: its data is in the volume, start a new one
        container = None
    if container is None:
        if REGISTRY_VOLUME not in {v.name for v in client.volumes.list(filters={"label": LAB_LABEL})}:
            client.volumes.create(REGISTRY_VOLUME, labels={LAB_LABEL: "true", ROLE_LABEL: "registry"})
            undo.add(f"volume {REGISTRY_VOLUME}", _fresh(lambda c: _remove_volume(c, REGISTRY_VOLUME)))
        try:
            container = client.containers.run(
                REGISTRY_IMAGE, name=REGISTRY_CONTAINER, detach=True,
                labels={LAB_LABEL: "true", ROLE_LABEL: "registry"},
                environment={"REGISTRY_SAN": f"IP:{bridge_ip},IP:127.0.0.1"},
                ports={f"{REGISTRY_PORT}/tcp": [(bridge_ip, REGISTRY_PORT), ("127.0.0.1", REGISTRY_PORT)]},
                volumes={REGISTRY_VOLUME: {"bind": "/var/lib/docker-registry", "mode": "rw"}},
                cap_drop=["ALL"], security_opt=["no-new-privileges"])
        except docker.errors.APIError as exc:
            _remove_container(client, REGISTRY_CONTAINER)  # created but not started (e.g. port 5000 taken)
            raise LabError(f"cannot start the registry on {bridge_ip}:{REGISTRY_PORT} and 127.0.0.1:{REGISTRY_PORT}: "
                           f"{exc.explanation or exc}") from exc
        undo.add(f"container {REGISTRY_CONTAINER}", _fresh(lambda c: _remove_container(c, REGISTRY_CONTAINER)))
        progress(f"registry started on {registry_address(bridge_ip)} and 127.0.0.1:{REGISTRY_PORT}")
    registry = container
    pem: str | None = None

    def ready() -> bool:
        nonlocal pem
        registry.reload()
        if registry.status != "running":
            raise LabError(f"the registry exited ({registry.status}):\n{_container_logs(registry)}")
        pem = pem or _registry_certificate(registry)
        if pem is None:
            return False
        try:
            with tempfile.NamedTemporaryFile("w", suffix=".pem") as cafile:
                cafile.write(pem)
                cafile.flush()
                with _registry_open("/v2/", cafile=Path(cafile.name), timeout=2) as response:
                    return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    wait_for(ready, timeout=REGISTRY_TIMEOUT, what=f"registry at https://127.0.0.1:{REGISTRY_PORT}/v2/",
             explain=lambda: _container_logs(registry))
    assert pem is not None
    _install_host_ca(bridge_ip, pem)
    undo.add(f"certificate {host_ca_path(bridge_ip)}", lambda: _remove_host_ca(bridge_ip))
    return pem


def registry_repositories() -> list[str]:
    """Repositories in the lab registry ([] when it has none or does not answer)."""
    try:
        with _registry_open("/v2/_catalog") as response:
            return list(json.load(response).get("repositories") or [])
    except (urllib.error.URLError, OSError, ValueError):
        return []


def registry_tags(repository: str = REPOSITORY) -> list[str]:
    """Tags of `repository` in the lab registry ([] when it has none or does not answer)."""
    try:
        with _registry_open(f"/v2/{repository}/tags/list") as response:
            return list(json.load(response).get("tags") or [])
    except (urllib.error.URLError, OSError, ValueError):
        return []


def registry_digest(repository: str = REPOSITORY, tag: str = "latest") -> str | None:
    """The manifest digest the lab registry serves for repository:tag (what a node pulls), or None."""
    try:
        with _registry_open(f"/v2/{repository}/manifests/{tag}", method="HEAD",
                            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}) as response:
            digest = response.headers.get("Docker-Content-Digest")
            return str(digest) if digest else None
    except (urllib.error.URLError, OSError):
        return None


def _stream(chunks: Iterator[dict[str, Any]], what: str) -> dict[str, Any]:
    """Drain a push/pull progress stream; raise LabError on an error line; return the last `aux` (the digest)."""
    aux: dict[str, Any] = {}
    for chunk in chunks:
        if "error" in chunk:
            raise LabError(f"{what} failed: {str(chunk['error']).strip()}")
        aux = chunk.get("aux") or aux
    return aux


def push_image(source_image: str = "sipmediagw:latest", *, progress: Progress = say,
               client: docker.DockerClient | None = None) -> str:
    """Tag the gateway image <docker0>:5000/sipmediagw:latest and push it to the lab registry; return that reference.

    The name every node uses, also on the manager, which therefore has the image locally and never pulls it."""
    own = client is None
    client = client or connect(timeout=TRANSFER_TIMEOUT)
    try:
        try:
            image = client.images.get(source_image)
        except docker.errors.ImageNotFound:
            raise LabError(f"image {source_image} not found: build it first (sipmediagw build)") from None
        repository = f"{registry_address(_bridge_ip())}/{REPOSITORY}"
        image.tag(repository, "latest")
        started = time.monotonic()
        aux = _stream(client.api.push(repository, tag="latest", stream=True, decode=True), f"pushing {source_image}")
        progress(f"pushed {source_image} to the registry in {time.monotonic() - started:.1f} s "
                 f"({aux.get('Digest', 'digest unknown')})")
        return f"{repository}:latest"
    finally:
        if own:
            client.close()


def _pull_on(worker: LabWorker, reference: str) -> float:
    """Make a worker's engine pull `reference` from the lab registry; return the seconds it took."""
    repository, tag = reference.rsplit(":", 1)
    started = time.monotonic()
    with contextlib.closing(engine_client(worker.docker_host, timeout=TRANSFER_TIMEOUT)) as client:
        _stream(client.api.pull(repository, tag=tag, stream=True, decode=True), f"{worker.name}: pulling {reference}")
    return time.monotonic() - started


def pull_on_workers(lab: Lab, progress: Progress = say) -> None:
    """Every worker pulls the lab image at once, so the first gateway launch on it does not wait for ~1 GB."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, len(lab.workers))) as pool:
        futures = {w.name: pool.submit(_pull_on, w, lab.image) for w in lab.workers}
        took = {name: future.result() for name, future in futures.items()}
    detail = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took.items())
    progress(f"workers pulled {lab.image} in {time.monotonic() - started:.1f} s ({detail})")


# --------------------------------------------------------------------------------------------------------- workers


def _engine_log(container: Container, lines: int = 30) -> str:
    try:
        result = container.exec_run(["tail", "-n", str(lines), ENGINE_LOG])
        return f"--- {container.name}:{ENGINE_LOG} (tail) ---\n" + str(result.output.decode(errors="replace")).rstrip()
    except DOCKER_ERRORS:
        return f"--- {container.name} (docker logs) ---\n" + _container_logs(container, lines)


def _dockerd_running(container: Container) -> bool:
    return bool(container.exec_run(["pgrep", "-x", "dockerd"]).exit_code == 0)


def _start_engine(container: Container, docker_host: str, plan: WorkerPlan) -> float:
    """Start the node's dockerd (no-op if it runs) and wait until it answers on TCP; return the seconds it took."""
    container.exec_run(["sh", "-c", _START_ENGINE, "start-engine", *dockerd_args(plan)], detach=True)
    checks = 0

    def answers() -> bool:
        nonlocal checks
        if engine_answers(docker_host):
            return True
        checks += 1
        if checks % 10 == 0:  # now and then (an exec is not free): fail at once if the engine already died
            container.reload()
            if container.status != "running":
                raise LabError(f"{container.name} stopped ({container.status})\n{_container_logs(container)}")
            if not _dockerd_running(container):
                raise LabError(f"{plan.name}: dockerd exited\n{_engine_log(container)}")
        return False

    return wait_for(answers, timeout=ENGINE_TIMEOUT, what=f"{plan.name}: engine at {docker_host}",
                    explain=lambda: _engine_log(container))


def _run_worker_container(client: docker.DockerClient, plan: WorkerPlan, undo: _Undo) -> Container:
    """Create and start worker N's node container with the rights an engine needs (FIELD-NOTES; not --privileged)."""
    tags = {LAB_LABEL: "true", ROLE_LABEL: "worker", WORKER_NODE_LABEL: plan.name}
    # A volume without its container is a leftover (a failed down): its engine state names a swarm that may be gone.
    _remove_volume(client, plan.volume)
    client.volumes.create(plan.volume, labels=tags)
    undo.add(f"volume {plan.volume}", _fresh(lambda c: _remove_volume(c, plan.volume)))
    try:
        container = client.containers.run(
            NODE_IMAGE, name=plan.container, hostname=plan.name, detach=True, init=True, labels=tags,
            network="bridge",
            cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],  # every capability but the one this host lacks
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=["a *:* rwm"],
            volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                     plan.volume: {"bind": "/var/lib/docker", "mode": "rw"}},
            tmpfs={"/run": "rw,exec,mode=0755"})
    except docker.errors.APIError as exc:
        _remove_container(client, plan.container)
        raise LabError(f"cannot start {plan.container}: {exc.explanation or exc}") from exc
    undo.add(f"container {plan.container}", _fresh(lambda c: _remove_container(c, plan.container)))
    return container


def _join(client: docker.DockerClient, worker_client: docker.DockerClient, plan: WorkerPlan, address: str,
          manager_addr: str, undo: _Undo) -> str:
    """Make the worker's engine a node of this swarm (reusing its membership when the manager knows it); its id."""
    swarm = worker_client.info().get("Swarm", {})
    node_id = str(swarm.get("NodeID") or "")
    if swarm.get("LocalNodeState") == "active" and node_id and _node_state(client, node_id) != "gone":
        return node_id
    if swarm.get("LocalNodeState") != "inactive":  # pending, error, or a member of a swarm that is gone
        worker_client.swarm.leave(force=True)
    token = client.swarm.attrs["JoinTokens"]["Worker"]
    worker_client.swarm.join(remote_addrs=[manager_addr], join_token=token, listen_addr=f"0.0.0.0:{SWARM_PORT}",
                             advertise_addr=address)
    node_id = str(worker_client.info()["Swarm"]["NodeID"])
    undo.add(f"node {plan.name}", _fresh(lambda c: c.nodes.get(node_id).remove(force=True)))
    return node_id


def _ensure_worker(plan: WorkerPlan, bridge_ip: str, manager_addr: str, undo: _Undo, progress: Progress) -> LabWorker:
    """Worker N running, its engine answering, joined, Ready and labelled; reuses whatever part already exists."""
    client = connect()
    try:
        started = time.monotonic()
        container = _get_container(client, plan.container)
        if container is not None and container.status != "running":
            container.start()  # its engine state is in the volume: the node comes back as itself
        if container is None:
            container = _run_worker_container(client, plan, undo)
        address = _container_address(container)
        docker_host = f"tcp://{address}:{ENGINE_PORT}"
        engine_took = _start_engine(container, docker_host, plan)
        with contextlib.closing(engine_client(docker_host, timeout=60)) as worker_client:
            node_id = _join(client, worker_client, plan, address, manager_addr, undo)
        wait_for(lambda: _node_state(client, node_id) == "ready", timeout=NODE_TIMEOUT,
                 what=f"{plan.name}: node {node_id} Ready", explain=lambda: _engine_log(container))
        _update_node_labels(client, node_id, {GATEWAY_NODE_LABEL[0]: GATEWAY_NODE_LABEL[1],
                                              WORKER_NODE_LABEL: plan.name})
        progress(f"{plan.name} ready at {docker_host} in {time.monotonic() - started:.1f} s "
                 f"(engine answered in {engine_took:.1f} s), node {node_id[:12]}")
        return LabWorker(plan.name, plan.container, address, docker_host, node_id, plan.name)
    finally:
        client.close()


def _ensure_swarm(client: docker.DockerClient, bridge_ip: str, undo: _Undo, progress: Progress) -> str:
    """This engine a swarm manager (init on the bridge address when in no swarm); the address workers join."""
    swarm = client.info().get("Swarm", {})
    state = swarm.get("LocalNodeState")
    if state == "active" and not swarm.get("ControlAvailable"):
        raise LabError("this engine is a worker of another swarm: the lab needs it as a manager "
                       "(docker swarm leave, then scripts/swarm-lab up)")
    if state not in ("active", "inactive"):
        raise LabError(f"this engine's swarm state is {state!r}: fix it first (docker swarm leave --force?)")
    if state == "inactive":
        had_gwbridge = bool(client.networks.list(names=[GWBRIDGE]))
        client.swarm.init(advertise_addr=bridge_ip, listen_addr=f"{bridge_ip}:{SWARM_PORT}")
        undo.add("swarm init", _fresh(lambda c: _leave_swarm(c, remove_gwbridge=not had_gwbridge)))
        node_id = str(client.info()["Swarm"]["NodeID"])
        created = {CREATED_SWARM_LABEL: "true"}
        if not had_gwbridge:
            created[CREATED_GWBRIDGE_LABEL] = "true"
        _update_node_labels(client, node_id, created)
        progress(f"swarm created: this engine is its manager, advertised on {bridge_ip}:{SWARM_PORT}")
    client.swarm.reload()
    managers = client.info()["Swarm"].get("RemoteManagers") or []
    return str(managers[0]["Addr"]) if managers else f"{bridge_ip}:{SWARM_PORT}"


def _leave_swarm(client: docker.DockerClient, remove_gwbridge: bool) -> None:
    client.swarm.leave(force=True)
    if remove_gwbridge:  # swarm init made it; leave does not remove it
        for network in client.networks.list(names=[GWBRIDGE]):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                network.remove()


def _remove_stale_nodes(client: docker.DockerClient, keep: set[str], names: set[str], progress: Progress) -> None:
    """Remove Down nodes a former lab left (same worker name, other id): they would clutter `docker node ls`."""
    for node in client.nodes.list():
        spec_labels = node.attrs.get("Spec", {}).get("Labels") or {}
        hostname = node.attrs.get("Description", {}).get("Hostname", "")
        ours = WORKER_NODE_LABEL in spec_labels or hostname in names
        if node.id in keep or not ours or node.attrs.get("Spec", {}).get("Role") != "worker":
            continue
        if node.attrs.get("Status", {}).get("State") != "ready":
            node.remove(force=True)
            progress(f"removed stale node {hostname} ({node.id[:12]})")


# ------------------------------------------------------------------------------------------------------ public API


def up(source_image: str = "sipmediagw:latest", workers: int = 2, progress: Progress = say) -> Lab:
    """Bring the lab up (or complete/reuse the one that is up) and return it.

    Idempotent: each piece found running is reused. On failure, what this call started is removed again."""
    plans = worker_plans(workers)
    with _lab_lock():
        client = connect(timeout=TRANSFER_TIMEOUT)
        undo = _Undo()
        started = time.monotonic()
        try:
            lab = _up(client, source_image, plans, undo, progress)
        except BaseException as exc:
            progress(f"up failed ({exc.__class__.__name__}); removing what this run started")
            undo.run(progress)
            raise
        finally:
            client.close()
        progress(f"lab up in {time.monotonic() - started:.1f} s")
        return lab


def _up(client: docker.DockerClient, source_image: str, plans: list[WorkerPlan], undo: _Undo,
        progress: Progress) -> Lab:
    if not dockerops.image_present(client, source_image):  # before anything is made
        raise LabError(f"image {source_image} not found: build it first (sipmediagw build)")
    bridge_ip = _bridge_ip()
    manager_addr = _ensure_swarm(client, bridge_ip, undo, progress)
    # Two chains in parallel: registry image -> registry -> push (CPU: compression) and node image -> workers (the
    # engines start and join meanwhile); the pulls need both.
    with ThreadPoolExecutor(max_workers=2 + len(plans)) as pool:
        node_image = pool.submit(ensure_image, NODE_IMAGE, "node.Dockerfile", progress)
        registry_image = pool.submit(ensure_image, REGISTRY_IMAGE, "registry.Dockerfile", progress)

        def registry_then_push() -> tuple[str, str]:
            registry_image.result()
            pem = _ensure_registry(client, bridge_ip, undo, progress)
            return pem, push_image(source_image, progress=progress, client=client)

        def worker(plan: WorkerPlan) -> LabWorker:
            node_image.result()
            return _ensure_worker(plan, bridge_ip, manager_addr, undo, progress)

        pushed = pool.submit(registry_then_push)
        joined: list[Future[LabWorker]] = [pool.submit(worker, plan) for plan in plans]
        errors = [pushed.exception(), *(f.exception() for f in joined)]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        pem, image = pushed.result()
        lab_workers = tuple(f.result() for f in joined)
    for lab_worker in lab_workers:
        _install_worker_ca(client.containers.get(lab_worker.container), bridge_ip, pem)
    created = _manager_labels(client).get(CREATED_SWARM_LABEL) == "true"
    lab = Lab(bridge_ip, registry_address(bridge_ip), image, lab_workers, created)
    _remove_stale_nodes(client, {w.node_id for w in lab_workers}, {p.name for p in plans}, progress)
    pull_on_workers(lab, progress)
    return lab


def _manager_labels(client: docker.DockerClient) -> dict[str, str]:
    node_id = client.info().get("Swarm", {}).get("NodeID")
    if not node_id:
        return {}
    return dict(client.nodes.get(node_id).attrs.get("Spec", {}).get("Labels") or {})


def current() -> Lab | None:
    """The lab if it is up (this engine a swarm manager, the registry and at least one joined worker), else None.

    A worker whose engine was stopped (stop_worker_engine) still counts: its container and node exist."""
    client = connect()
    try:
        swarm = client.info().get("Swarm", {})
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            return None
        registry = _get_container(client, REGISTRY_CONTAINER)
        if registry is None or registry.status != "running":
            return None
        containers = client.containers.list(filters={"label": [f"{LAB_LABEL}=true", f"{ROLE_LABEL}=worker"]})
        if not containers:
            return None
        nodes = client.nodes.list()
        workers = []
        for container in sorted(containers, key=lambda c: int(c.name.rsplit("-", 1)[-1])):
            name = container.labels.get(WORKER_NODE_LABEL, "")
            candidates = [n for n in nodes if (n.attrs.get("Spec", {}).get("Labels") or {}).get(WORKER_NODE_LABEL)
                          == name]
            if not candidates:
                return None  # a worker that never joined: not up (up completes it)
            # after a failed down/up a Down twin may remain until up prunes it: prefer the Ready one, then the newest
            node = max(candidates, key=lambda n: (n.attrs.get("Status", {}).get("State") == "ready",
                                                  n.attrs.get("CreatedAt", "")))
            address = _container_address(container)
            hostname = node.attrs.get("Description", {}).get("Hostname", name)
            workers.append(LabWorker(name, container.name, address, f"tcp://{address}:{ENGINE_PORT}", node.id,
                                     hostname))
        bridge_ip = _bridge_ip()
        created = _manager_labels(client).get(CREATED_SWARM_LABEL) == "true"
        return Lab(bridge_ip, registry_address(bridge_ip), lab_image(bridge_ip), tuple(workers), created)
    finally:
        client.close()


def down(progress: Progress = say) -> None:
    """Remove everything up() made, and the gateway services, secrets and containers on the swarm. Idempotent.

    Leaves the swarm only if the lab created it; otherwise removes just the lab's nodes from it."""
    with _lab_lock():
        client = connect(timeout=300)
        try:
            _down(client, progress)
        finally:
            client.close()


def _down(client: docker.DockerClient, progress: Progress) -> None:
    started = time.monotonic()
    swarm = client.info().get("Swarm", {})
    manager = swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))
    manager_labels = _manager_labels(client) if manager else {}
    if manager:
        for service in client.services.list(filters={"label": f"{MANAGED_LABEL}=true"}):
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()
                progress(f"removed gateway service {service.name}")
        secrets = {s.id: s for s in client.secrets.list(filters={"label": f"{MANAGED_LABEL}=true"})}
        secrets.update({s.id: s for s in client.secrets.list(filters={"label": CLAIM_LABEL})})
        for secret in secrets.values():
            try:
                secret.remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:  # still referenced by a service that is not ours
                progress(f"kept secret {secret.name}: {exc.explanation or exc}")
    for container in client.containers.list(all=True, filters={"label": [f"{LAB_LABEL}=true", f"{ROLE_LABEL}=worker"]}):
        _retire_worker(client, container, progress)
    for volume in client.volumes.list(filters={"label": LAB_LABEL}):
        if volume.name != REGISTRY_VOLUME:
            _remove_volume(client, volume.name)
    # swarm task containers of gateways on this engine (the manager): they outlive a `swarm leave`
    for container in client.containers.list(all=True, filters={"label": [f"{MANAGED_LABEL}=true", SWARM_TASK_LABEL]}):
        try:
            container.remove(force=True, v=True)
            progress(f"removed gateway task container {container.name}")
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # the swarm agent removing it at the same moment (409)
            progress(f"gateway task container {container.name}: {exc.explanation or exc}")
    if manager:
        if manager_labels.get(CREATED_SWARM_LABEL) == "true":
            _leave_swarm(client, remove_gwbridge=manager_labels.get(CREATED_GWBRIDGE_LABEL) == "true")
            progress("left the swarm the lab had created")
        else:
            for node in client.nodes.list(filters={"role": "worker"}):
                if WORKER_NODE_LABEL in (node.attrs.get("Spec", {}).get("Labels") or {}):
                    with contextlib.suppress(docker.errors.NotFound):
                        node.remove(force=True)
            progress("removed the lab's nodes (the swarm was not the lab's: this engine stays its manager)")
    if _remove_container(client, REGISTRY_CONTAINER):
        progress("removed the registry")
    _remove_volume(client, REGISTRY_VOLUME)
    bridge_ip = _bridge_ip()
    # The names the lab gave images here: its tags and the digest references a push records. Removing a name removes
    # the image only when no other name (sipmediagw:latest) holds it.
    prefixes = (f"{registry_address(bridge_ip)}/", f"127.0.0.1:{REGISTRY_PORT}/")
    for image in client.images.list():
        for name in [*image.tags, *(image.attrs.get("RepoDigests") or [])]:
            if name.startswith(prefixes):
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(name, noprune=True)
    _remove_host_ca(bridge_ip)
    progress(f"lab down in {time.monotonic() - started:.1f} s")


def _retire_worker(client: docker.DockerClient, container: Container, progress: Progress) -> None:
    """Remove a worker node container. Its engine first removes the containers it runs when it still answers: their
    cgroups live in the host's hierarchy, and only a clean container stop removes them."""
    if container.status == "running":
        try:
            docker_host = f"tcp://{_container_address(container)}:{ENGINE_PORT}"
            if engine_answers(docker_host):
                with contextlib.closing(engine_client(docker_host, timeout=60)) as inner:
                    for task in inner.containers.list(all=True):
                        with contextlib.suppress(docker.errors.NotFound):
                            task.remove(force=True, v=True)
        except CLEANUP_ERRORS as exc:  # the node goes anyway; say why it was not clean
            progress(f"{container.name}: could not clean its engine first: {exc}")
    _remove_container(client, container.name)
    progress(f"removed {container.name}")


def _worker_container(client: docker.DockerClient, worker: LabWorker) -> Container:
    container = _get_container(client, worker.container)
    if container is None:
        raise LabError(f"{worker.container} does not exist: is the lab up? (scripts/swarm-lab up)")
    return container


def stop_worker_engine(worker: LabWorker) -> None:
    """Simulate losing the worker machine: SIGKILL its dockerd, containerd and every container on it, all at once.

    Done inside the node container, which keeps running (so the node keeps its address and identity); the manager
    marks the node Down once its heartbeats stop (see node_state / wait_node_state). Returns when the engine is gone."""
    client = connect()
    try:
        container = _worker_container(client, worker)
        result = container.exec_run(["sh", "-c", _KILL_MACHINE])
        if result.exit_code != 0:
            raise LabError(f"{worker.name}: could not kill its processes: {result.output.decode(errors='replace')}")
        wait_for(lambda: not engine_answers(worker.docker_host), timeout=10,
                 what=f"{worker.name}: engine at {worker.docker_host} gone")
    finally:
        client.close()


def start_worker_engine(worker: LabWorker) -> None:
    """Bring a stopped worker engine back and wait until its node is Ready again (the same node: its state survives
    in the node's volume). A no-op wait when it already runs."""
    client = connect()
    try:
        container = _worker_container(client, worker)
        if container.status != "running":
            container.start()
        docker_host = f"tcp://{_container_address(container)}:{ENGINE_PORT}"
        plan = WorkerPlan(int(worker.container.rsplit("-", 1)[-1]))
        _start_engine(container, docker_host, plan)

        def back() -> bool:
            # both sides: the manager may still show a stale "ready" if it has not noticed the loss yet
            if _node_state(client, worker.node_id) != "ready":
                return False
            with contextlib.closing(engine_client(docker_host)) as inner:
                return bool(inner.info().get("Swarm", {}).get("LocalNodeState") == "active")

        wait_for(back, timeout=NODE_TIMEOUT, what=f"{worker.name}: node {worker.node_id} Ready again",
                 explain=lambda: _engine_log(container))
    finally:
        client.close()


def node_state(node_id: str) -> str:
    """A node's state as the manager sees it: ready, down, unknown, disconnected, or "gone"."""
    client = connect()
    try:
        return _node_state(client, node_id)
    finally:
        client.close()


def wait_node_state(node_id: str, state: str, timeout: float = NODE_TIMEOUT) -> float:
    """Wait until the manager reports node `node_id` in `state` (e.g. "down" after stop_worker_engine); seconds taken."""
    client = connect()
    try:
        return wait_for(lambda: _node_state(client, node_id) == state, timeout=timeout, interval=0.25,
                        what=f"node {node_id} {state}", explain=lambda: f"state: {_node_state(client, node_id)}")
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------------------- CLI


def usage_text(lab: Lab) -> str:
    """How to use a lab that is up: what `swarm-lab up` prints."""
    commands: list[tuple[str, str]] = [
        (f"export SIPMEDIAGW_IMAGE={lab.image}", "the image every node pulls from the lab registry"),
        ("sipmediagw --backend swarm launch -g gw1 -r ROOM --platform jitsi --domain https://meet.example.org \\", ""),
        ("    --constraint node.labels.sipmediagw==yes", "a service; it lands on a worker"),
        ("sipmediagw status", "from the manager (this host): the whole swarm"),
    ]
    if lab.workers:
        commands.append((f"DOCKER_HOST={lab.workers[0].docker_host} sipmediagw status", "one worker engine on its own"))
    commands += [("docker node ls", "nodes, state, availability"),
                 ("scripts/swarm-lab status", "nodes and registry; `scripts/swarm-lab down` removes it all")]
    width = max(len(command) for command, comment in commands if comment)
    header = (f"swarm lab: manager {lab.manager_address} (this engine) + {len(lab.workers)} workers, "
              f"registry https://{lab.registry}")
    lines = [header, ""]
    lines += [f"  {command.ljust(width)}  # {comment}" if comment else f"  {command}" for command, comment in commands]
    warning = (f"Worker engines listen on plain TCP {ENGINE_PORT} without TLS: acceptable on this host's private "
               "Docker bridge for a lab only; a real deployment uses --tlsverify with client certificates (or ssh://).")
    lines += ["", warning]
    return "\n".join(lines)


def status_text(lab: Lab | None) -> str:
    """Nodes (name, role, state, address) and the registry, as `swarm-lab status` prints them."""
    if lab is None:
        return "swarm lab: not up (scripts/swarm-lab up)"
    client = connect()
    try:
        rows = [("NODE", "ROLE", "STATE", "AVAILABILITY", "ADDRESS", "ENGINE")]
        engines = {w.node_id: w.docker_host for w in lab.workers}
        for node in sorted(client.nodes.list(), key=lambda n: (n.attrs["Spec"].get("Role") != "manager",
                                                               n.attrs["Description"].get("Hostname", ""))):
            attrs = node.attrs
            rows.append((attrs["Description"].get("Hostname", node.id[:12]), attrs["Spec"].get("Role", "?"),
                         attrs["Status"].get("State", "?"), attrs["Spec"].get("Availability", "?"),
                         attrs["Status"].get("Addr", "?"),
                         engines.get(node.id, "this host" if attrs["Spec"].get("Role") == "manager" else "-")))
    finally:
        client.close()
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    tags = ", ".join(f"{REPOSITORY}:{t}" for t in registry_tags()) or "no gateway image yet"
    created = "created by the lab" if lab.created_swarm else "not the lab's (down keeps it)"
    return "\n".join([f"swarm lab: up (swarm {created})", *table,
                      (f"registry: https://{lab.registry} (and 127.0.0.1:{REGISTRY_PORT}): {tags}; its certificate: "
                       f"{host_ca_path(lab.manager_address)}"),
                      f"image for every node: {lab.image}"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """A 3-node Docker Swarm on this one machine (this engine as manager, two engines in containers as workers)
    plus a local registry holding the gateway image.

    \b
    Example:
      scripts/swarm-lab up && scripts/swarm-lab status && scripts/swarm-lab down
    """


@main.command("up")
@click.option("--image", "source_image", default="sipmediagw:latest", show_default=True,
              help="The gateway image to push to the lab registry.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, MAX_WORKERS),
              help="How many worker engines.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab as JSON instead of the usage text.")
def up_command(source_image: str, workers: int, as_json: bool) -> None:
    """Bring the lab up (reuses what is already up) and print how to use it.

    \b
    Example:
      scripts/swarm-lab up --image sipmediagw:latest
    """
    try:
        lab = up(source_image, workers)
    except (LabError, DockerUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(lab.as_dict(), indent=2) if as_json else usage_text(lab))


@main.command("down")
def down_command() -> None:
    """Remove the lab: workers, registry, the swarm if the lab made it, gateway services and secrets on it.

    \b
    Example:
      scripts/swarm-lab down
    """
    try:
        down()
    except (LabError, DockerUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the lab as JSON (null when it is not up).")
def status_command(as_json: bool) -> None:
    """Show the nodes (name, role, state, address) and the registry.

    \b
    Example:
      scripts/swarm-lab status --json
    """
    try:
        lab = current()
        click.echo(json.dumps(lab.as_dict() if lab else None, indent=2) if as_json else status_text(lab))
    except (LabError, DockerUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main(prog_name="scripts/swarm-lab")
