"""Enforced limits on a real engine: a gateway that the real CLI launches from the real image runs inside its budget
(memory, CPU, pids: in `docker inspect` and in its own cgroup), with Docker's log rotated and a restart policy; a
gateway whose supervisor dies is started again by Docker, keeps its account meanwhile, and `status` says so; `stop`
still removes it and its claims.

A real Kamailio and a real baresip caller on the Docker bridge (fixtures of test_gateway.py); the room is that
module's data: page driver. tests/unit/test_limits.py covers the same without an engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import cpu_limit, discard_gateway
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio

from test_gateway import DOMAIN, ROOM_DRIVER, _wait, bridge_ip, caller, client, registrar  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).resolve().parents[2]
SECRET = "Limits-Secret-7"
USER = "gwlimits"
GATEWAY = f"limits-{os.getpid()}"  # unique on a shared daemon
# A budget that Chromium can start in on a loaded 2-core host and that still admits this gateway next to a few of
# other people's on the same engine: the limits are what is checked here, not a call's quality.
CPU, MEMORY_MIB = 0.5, 1024
PIDS = 512  # the default: its headroom over a real call is measured below
READY_TIMEOUT = 180


class Host:
    """The real CLI with its own config, accounts, logs and the test room driver."""

    def __init__(self, root: Path, image: str, bridge_ip: str, registrar: Kamailio) -> None:  # noqa: F811
        self.root = root
        self.logs_dir = root / "logs"
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / "testroom.py").write_text(ROOM_DRIVER)
        (root / "accounts").write_text(f'<sip:{USER}@{DOMAIN};transport=udp>;auth_pass={SECRET};answermode=auto;'
                                       f'outbound="sip:{bridge_ip}:{registrar.port};transport=udp";regint=300\n')
        self.config = root / "sipmediagw.yaml"
        self.config.write_text(
            f"image: {image}\nlogs_dir: {self.logs_dir}\nbrowsing_dir: {browsing}\naccounts_file: {root / 'accounts'}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\nbackend: engine\nplatform: testroom\n"
            f"base_url: http://{bridge_ip}:8000\nmedia: userspace\nready_timeout: {READY_TIMEOUT}\n"
            f"cpu_per_gateway: {CPU}\nmemory_per_gateway: {MEMORY_MIB}M\npids_per_gateway: {PIDS}\n")

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", "--no-stats", timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def gateway(self) -> dict[str, Any]:
        return next((g for g in self.status()["gateways"] if g["name"] == GATEWAY), {})

    def containers(self, client: Any) -> list[Any]:  # noqa: F811
        return [c for c in dockerops.list_gateways(client)
                if c.labels.get(labels.LOGS, "").startswith(str(self.logs_dir))]

    def report(self) -> str:
        app = self.logs_dir / GATEWAY / "app.log"
        return "app.log:\n" + ("\n".join(app.read_text(errors="replace").splitlines()[-40:]) if app.exists() else "-")


@pytest.fixture
def host(tmp_path: Path, real_gateway_image: str, client: Any, bridge_ip: str,  # noqa: F811
         registrar: Kamailio) -> Iterator[Host]:  # noqa: F811
    setup = Host(tmp_path, real_gateway_image, bridge_ip, registrar)
    yield setup
    for container in setup.containers(client):
        discard_gateway(client, container.labels[labels.GATEWAY], EngineBackend(client))


def cgroup_value(container: Any, controller: str, v1_file: str, v2_file: str) -> str:
    """A file of the container's own cgroup, read from inside it (cgroup v1: per-controller folders; v2: one)."""
    code, out = container.exec_run(["sh", "-c", f"cat /sys/fs/cgroup/{controller}/{v1_file} 2>/dev/null || "
                                                f"cat /sys/fs/cgroup/{v2_file}"])
    assert code == 0, out
    return out.decode().strip()


def pids_now(container: Any) -> int:
    return int(cgroup_value(container, "pids", "pids.current", "pids.current"))


def supervisor_pid(container: Any) -> int:
    """The supervisor's pid in the container (no ps in the image): the entrypoint, python3 -m sipmediagw.gateway."""
    script = ("import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n  try: a = open(f'/proc/{p}/cmdline', "
              "'rb').read().split(b'\\0')\n  except OSError: continue\n  if a[1:3] == [b'-m', b'sipmediagw.gateway']: "
              "print(p)")
    code, out = container.exec_run(["python3", "-c", script])
    assert code == 0, out
    pids = [int(p) for p in out.decode().split()]
    assert len(pids) == 1, pids
    return pids[0]


def test_a_gateway_runs_inside_its_budget_and_a_call_stays_far_below_its_pids_limit(
        host: Host, client: Any, caller: BaresipCaller) -> None:  # noqa: F811
    launched = host.run("launch", "-r", "1234", "-g", GATEWAY)
    assert launched.returncode == 0, launched.stderr + host.report()
    [container] = host.containers(client)
    inspect = client.api.inspect_container(container.id)["HostConfig"]
    assert inspect["Memory"] == MEMORY_MIB * 1024**2
    assert inspect["MemorySwap"] == MEMORY_MIB * 1024**2  # no swap on top
    assert inspect["NanoCpus"] == int(cpu_limit(CPU, os.cpu_count()) * 1e9)  # twice the budget, within the engine
    assert inspect["PidsLimit"] == PIDS
    assert inspect["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert inspect["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    assert inspect["Tmpfs"] == {"/tmp": "mode=1777,size=256m"}  # a restarted gateway starts with an empty /tmp
    # what the kernel enforces, seen from inside the container
    assert cgroup_value(container, "pids", "pids.max", "pids.max") == str(PIDS)
    assert cgroup_value(container, "memory", "memory.limit_in_bytes", "memory.max") == str(MEMORY_MIB * 1024**2)
    quota = cgroup_value(container, "cpu", "cpu.cfs_quota_us", "cpu.max").split()
    assert quota[:1] == [str(int(cpu_limit(CPU, os.cpu_count()) * 100_000))]  # v1: quota per 100 ms period; v2: "quota period"

    # a call: Chromium in a room, baresip with audio and video, the camera relay
    peak = pids_now(container)
    caller.dial(f"sip:{USER}@{DOMAIN}")
    caller.wait_established(30)
    _wait(lambda: host.gateway().get("state") == "in-call", 60, "in-call", host.report)
    for _ in range(20):
        peak = max(peak, pids_now(container))
    caller.hangup()
    caller.wait_closed(30)
    sys.stderr.write(f"\npids of a gateway in a call: peak {peak} of {PIDS}\n")
    assert peak <= PIDS // 2, f"a call used {peak} pids: the default pids_per_gateway has too little headroom"
    assert host.run("stop", GATEWAY).returncode == 0


def test_docker_restarts_a_gateway_whose_supervisor_died_it_keeps_its_account_and_stop_still_removes_it(
        host: Host, client: Any, registrar: Kamailio) -> None:  # noqa: F811
    launched = host.run("launch", "-r", "1234", "-g", GATEWAY)
    assert launched.returncode == 0, launched.stderr + host.report()
    [container] = host.containers(client)
    assert host.status()["free_accounts"] == 0
    code, out = container.exec_run(["kill", "-9", str(supervisor_pid(container))])  # a crash, not a `docker stop`
    assert code == 0, out

    def restarted_and_ready() -> dict[str, Any] | None:
        # the second run's own word (state.json is the first run's until the second one writes it)
        readies = (host.logs_dir / GATEWAY / "app.log").read_text().count("supervisor: gateway ready")
        entry = host.gateway()
        return entry if readies == 2 and entry.get("state") == "ready" else None

    entry = _wait(restarted_and_ready, READY_TIMEOUT, "ready again after Docker restarted it", host.report)
    assert entry["note"] == "restarted 1x by Docker"
    assert client.api.inspect_container(container.id)["RestartCount"] == 1
    table = host.run("status", "--no-stats")
    assert f"{GATEWAY}: restarted 1x by Docker" in table.stdout.splitlines(), table.stdout
    assert host.status()["free_accounts"] == 0  # it held its account all along
    registrar.wait_registered(USER, 30)

    stopped = host.run("stop", GATEWAY)
    assert stopped.returncode == 0, stopped.stderr
    assert host.containers(client) == []
    left = client.containers.list(all=True, filters={"label": f"{labels.GATEWAY}={GATEWAY}"})
    assert left == [], [c.name for c in left]  # no gateway, no claim
    assert host.status()["free_accounts"] == 1


def test_a_once_gateway_is_restarted_only_after_a_failure(host: Host, client: Any) -> None:  # noqa: F811
    launched = host.run("launch", "-r", "1234", "-g", GATEWAY, "--once", "--no-wait")
    assert launched.returncode == 0, launched.stderr
    [container] = host.containers(client)
    policy = client.api.inspect_container(container.id)["HostConfig"]["RestartPolicy"]
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host.run("stop", GATEWAY).returncode == 0
    assert host.containers(client) == []
