"""Host checks for `sipmediagw doctor`: each problem comes with the exact commands that fix it."""

from __future__ import annotations

import dataclasses
from typing import Callable

import docker

from . import dockerops
from .accounts import load_accounts
from .allocator import choose_media
from .devices import discover, provisioning_commands
from .errors import SipMediaGwError
from .resources import Budget, HostResources, capacity, human_bytes, sample_host
from .settings import Settings

OK, WARN, FAIL = "ok", "warn", "fail"


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
    if client is not None:
        if dockerops.image_present(client, settings.image):
            checks.append(Check("image", OK, f"image {settings.image} present"))
        else:
            checks.append(Check("image", FAIL, f"image {settings.image} not found", [
                "docker/make-base-image.sh   # only if debian:bookworm-slim cannot be pulled",
                f"sipmediagw build --image {settings.image}",
            ]))

    try:
        accounts = load_accounts(settings.accounts_file)
        if accounts:
            checks.append(Check("accounts", OK, f"{len(accounts)} SIP account(s) in {settings.accounts_file}"))
        else:
            checks.append(Check("accounts", FAIL, f"{settings.accounts_file} has no account line",
                                ["add one line per gateway, see baresip/accounts.example"]))
    except SipMediaGwError as exc:
        accounts = []
        checks.append(Check("accounts", FAIL, str(exc), [
            f"cp baresip/accounts.example {settings.accounts_file}   # then edit: one account line per gateway",
        ]))

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
    lines.append(f"=> {report.gateways_possible} gateway(s) can run on this host ({report.media} media)")
    return "\n".join(lines)
