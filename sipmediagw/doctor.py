"""Host checks for `sipmediagw doctor`: each problem comes with the exact commands that fix it."""

from __future__ import annotations

import dataclasses
from typing import Callable

import docker

from . import dockerops
from .accounts import Account, load_accounts
from .backends import is_swarm_manager
from .allocator import choose_media
from .devices import discover, provisioning_commands
from .errors import SipMediaGwError
from .resources import Budget, HostResources, capacity, human_bytes, sample_host
from .settings import Settings

OK, WARN, FAIL = "ok", "warn", "fail"
#: a swarm service cannot carry the seccomp profile (engine API 1.41; services take one from API 1.44): its gateways
#: find no user namespaces and run Chromium with --no-sandbox (gateway/sandbox.py; docs/container.md, "Security")
SWARM_SANDBOX_NOTE = ("swarm services cannot carry the gateway's seccomp profile: Chromium runs there with "
                      "--no-sandbox (a renderer exploit runs as the gateway user); the single engine sandboxes it")


@dataclasses.dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Report:
    """All checks plus how many gateways this host can run."""

    checks: list[Check]
    media: str
    gateways_possible: int
    backend: str = "engine"

    @property
    def healthy(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(c.status != FAIL for c in self.checks)


def run_checks(
    settings: Settings,
    connect: Callable[[], docker.DockerClient] = dockerops.connect,
    host_sampler: Callable[[], HostResources] = sample_host,
) -> Report:
    """Check Docker, the image, the virtual devices, the accounts file and the CPU/memory budget."""
    checks: list[Check] = []
    client = None
    try:
        client = connect()
        version = client.version().get("Version", "?")
        checks.append(Check("docker", OK, f"Docker daemon reachable (engine {version})"))
    except SipMediaGwError as exc:
        checks.append(Check("docker", FAIL, str(exc), [
            "apt-get install docker.io", "systemctl start docker   # or: dockerd &",
        ]))
    swarm = False
    if client is not None and settings.backend != "engine":
        try:
            swarm = is_swarm_manager(client)
        except SipMediaGwError as exc:
            checks.append(Check("swarm", FAIL, str(exc)))
        if settings.backend == "swarm" and not swarm:
            checks.append(Check("swarm", FAIL, "backend swarm, but this engine is not a swarm manager", [
                "docker swarm init --advertise-addr <this host's address>   # or point DOCKER_HOST at a manager"]))
    if client is not None and swarm:
        swarm_checks, fits = swarm_report(client, settings)
        checks.extend(swarm_checks)
        checks.append(Check("sandbox", WARN, SWARM_SANDBOX_NOTE))
        account_checks, accounts = _accounts_checks(settings)
        checks.extend(account_checks)
        return Report(checks, "userspace", max(0, min(fits, len(accounts))), backend="swarm")
    if client is not None:
        if dockerops.image_present(client, settings.image):
            checks.append(Check("image", OK, f"image {settings.image} present"))
        else:
            checks.append(Check("image", FAIL, f"image {settings.image} not found", [
                "docker/make-base-image.sh   # only if debian:bookworm-slim cannot be pulled",
                f"sipmediagw build --image {settings.image}",
            ]))

    account_checks, accounts = _accounts_checks(settings)
    checks.extend(account_checks)

    discovery = discover(settings.sysroot)
    wanted = max(1, len(accounts))
    detail = (
        f"{len(discovery.cards)} snd-aloop card(s), {len(discovery.videos)} v4l2loopback device(s) under "
        f"{settings.sysroot} -> {len(discovery.slots)} kernel slot(s)"
    )
    if discovery.problems:
        detail += "; " + "; ".join(discovery.problems)
    if len(discovery.slots) >= wanted:
        checks.append(Check("devices", OK, detail))
    else:
        # userspace media needs no devices, so a missing device is only fatal when kernel mode is forced
        status = FAIL if settings.media == "kernel" else WARN
        if settings.media != "kernel":
            detail += " (userspace media mode works without them)"
        checks.append(Check("devices", status, detail, provisioning_commands(wanted)))

    host = host_sampler()
    budget = Budget(settings.cpu_per_gateway, settings.memory_per_gateway)
    fits = capacity(budget, host)
    budget_detail = (
        f"{host.cpu_count} cores / {budget.cpu:g} per gateway, {human_bytes(host.memory_total)} / "
        f"{human_bytes(budget.memory)} per gateway -> {fits} gateway(s) fit; "
        f"{human_bytes(host.memory_available)} free now"
    )
    if fits == 0:
        checks.append(Check("budget", FAIL, budget_detail,
                            ["lower cpu_per_gateway / memory_per_gateway in sipmediagw.yaml, or use a bigger host"]))
    else:
        checks.append(Check("budget", OK, budget_detail))

    for key in ("browsing_dir", "baresip_dir"):
        folder = getattr(settings, key)
        if folder.is_dir():
            checks.append(Check(key, OK, f"{folder} present"))
        else:
            checks.append(Check(key, FAIL, f"{folder} is not a folder", [f"set {key} in sipmediagw.yaml"]))

    media = choose_media(settings.media, discovery)
    slots = len(discovery.slots) if media == "kernel" else len(accounts)
    return Report(checks, media, max(0, min(slots, len(accounts), fits)))


def render_report(report: Report) -> str:
    """Human-readable report: one line per check, the fix commands indented under failures and warnings."""
    marks = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]"}
    lines = []
    for check in report.checks:
        lines.append(f"{marks[check.status]} {check.name}: {check.detail}")
        if check.status != OK and check.fix:
            lines.append("       fix:")
            lines.extend(f"         {command}" for command in check.fix)
    where = "on this swarm's nodes" if report.backend == "swarm" else "on this host"
    lines.append(f"=> {report.gateways_possible} gateway(s) can run {where} ({report.media} media)")
    return "\n".join(lines)


def _accounts_checks(settings: Settings) -> tuple[list[Check], list[Account]]:
    """The accounts file's check, and its accounts ([] when it cannot be read)."""
    try:
        accounts = load_accounts(settings.accounts_file)
    except SipMediaGwError as exc:
        return [Check("accounts", FAIL, str(exc), [
            f"cp baresip/accounts.example {settings.accounts_file}   # then edit: one account line per gateway"])], []
    if not accounts:
        return [Check("accounts", FAIL, f"{settings.accounts_file} has no account line",
                      ["add one line per gateway, see baresip/accounts.example"])], []
    return [Check("accounts", OK, f"{len(accounts)} SIP account(s) in {settings.accounts_file}")], accounts


def _has_registry(image: str) -> bool:
    """Whether an image reference names a registry host (``reg.example.org/x``, ``10.0.0.1:5000/x``)."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def swarm_report(client: docker.DockerClient, settings: Settings) -> tuple[list[Check], int]:
    """Managers and workers, each node's free CPU/memory and how many gateways fit, the image in the registry."""
    from .backends.swarm import node_capacity

    checks: list[Check] = []
    nodes = node_capacity(client, settings.cpu_per_gateway, settings.memory_per_gateway)
    managers = [n for n in nodes if n.role == "manager"]
    down = [n for n in nodes if n.state != "ready"]
    summary = f"{len(managers)} manager(s), {len(nodes) - len(managers)} worker(s)"
    if down:
        checks.append(Check("swarm", WARN, summary + f"; not ready: {', '.join(n.hostname for n in down)}", [
            f"on {n.hostname} ({n.address}): systemctl start docker   # then: docker node ls" for n in down]))
    else:
        checks.append(Check("swarm", OK, summary + ", all ready"))
    if len(managers) % 2 == 0:
        checks.append(Check("managers", WARN, f"{len(managers)} managers: an even number tolerates no more manager "
                            "failures than one fewer", ["docker node promote <worker>   # 1, 3 or 5 managers"]))
    for node in nodes:
        detail = (f"{node.role}, {node.state}, {node.availability}, {node.address}: {node.cpus:g} cores "
                  f"({node.reserved_cpus:g} reserved), {human_bytes(node.memory)} ({human_bytes(node.reserved_memory)}"
                  f" reserved) -> {node.fits} more gateway(s) of {settings.cpu_per_gateway:g} cores / "
                  f"{human_bytes(settings.memory_per_gateway)}")
        status = OK if node.fits > 0 and node.state == "ready" else WARN
        fix = [] if status == OK else [f"on {node.hostname}: systemctl start docker" if node.state != "ready" else
                                       "lower cpu_per_gateway / memory_per_gateway, or add a node"]
        checks.append(Check(f"node {node.hostname}", status, detail, fix))
    fits = sum(n.fits for n in nodes)
    if fits == 0:
        checks.append(Check("capacity", FAIL, "no node has room for one more gateway", [
            "docker node update --availability active <node>", "lower cpu_per_gateway / memory_per_gateway"]))
    registry_fix = [f"docker tag {settings.image} REGISTRY/sipmediagw:latest && docker push REGISTRY/sipmediagw:latest",
                    "then set image: REGISTRY/sipmediagw:latest (docs/multihost.md: a local registry)"]
    if not _has_registry(settings.image):
        checks.append(Check("image", WARN, f"image {settings.image} names no registry: only nodes that have it "
                            "locally can run gateways", registry_fix))
    else:
        try:
            digest = client.images.get_registry_data(settings.image).id
            checks.append(Check("image", OK, f"image {settings.image} in its registry ({digest[:19]}); nodes pull it"))
        except docker.errors.APIError as exc:
            checks.append(Check("image", FAIL, f"image {settings.image} not found in its registry: "
                                f"{exc.explanation or exc}", registry_fix + [
                                    "nodes need the registry in insecure-registries when it has no TLS"]))
    return checks, fits
