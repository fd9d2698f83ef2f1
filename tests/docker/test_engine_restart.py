"""Fault drill: the Docker engine restarted with a gateway running (as on a dockerd upgrade or a host reboot).

The suite's engine is shared, so the drill runs on a private dockerd of its own (private_engine.py): the real image
is loaded into it once per session, the real CLI launches a gateway there (DOCKER_HOST), a real Kamailio and a real
baresip caller run on the host at that engine's bridge. dockerd is stopped with SIGTERM (it stops its containers as
on a shutdown) and started again; the drill asserts that the gateway comes back by its restart policy, registers
again, shows as ready and "started again by Docker" in `status`, keeps its one account claim, and takes a call.
The seconds from the engine answering again to `status` ready go to the drills table (SIPMEDIAGW_DRILLS_TABLE,
as tests/docker/test_fault_drills.py writes it; rows are merged, not overwritten).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import docker
import pytest

from drills_table import merge_rows
from test_fault_drills import ROOM_DRIVER, _wait  # the drills' room page and their wait
from private_engine import PrivateEngine
from sipmediagw import claims, dockerops, labels
from sipmediagw.backends.engine import LATE_START_S, EngineBackend, EngineClaims, parse_docker_time
from sipmediagw.launcher import discard_gateway
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).resolve().parents[2]
DOMAIN = "sipmediagw.test"
SECRET = "Engine-Drill-2718"
READY_TIMEOUT = 120
GATEWAY = "engine-drill"
DRILL = "Docker engine restarted, idle"
@pytest.fixture(scope="session")
def drill_rows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    """Rows for the drills table (drills_table.py merges them with the other drill files' rows)."""
    rows: list[dict[str, Any]] = []
    yield rows
    if rows:
        merge_rows(rows, tmp_path_factory.getbasetemp(), "engine restart drill")


@pytest.fixture(scope="session")
def private_engine(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
                   real_gateway_image: str) -> Iterator[PrivateEngine]:
    """A dockerd of the test's own, with the real gateway image; stopped and erased at teardown, even on failure."""
    engine = PrivateEngine(tmp_path_factory.mktemp("private-engine"))
    try:
        engine.make_bridge()
        engine.start()
        seconds = engine.load_image(docker_client, real_gateway_image)
        sys.stderr.write(f"\nprivate engine {engine.tag}: {real_gateway_image} loaded in {seconds:.1f} s\n")
        yield engine
    finally:
        problems = engine.destroy()
    assert not problems, f"private engine teardown: {problems}"


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, private_engine: PrivateEngine) -> Iterator[Kamailio]:
    """Kamailio on the host, at the private engine's bridge (where its gateways reach the host)."""
    ip = private_engine.host_ip
    with Kamailio(domain=DOMAIN, listen=[ip], port=free_port(ip),
                  workdir=tmp_path_factory.mktemp("kamailio-engine")) as kamailio:
        yield kamailio


class Host:
    """The real CLI with one config and accounts file, driving the private engine through DOCKER_HOST."""

    def __init__(self, root: Path, image: str, engine: PrivateEngine, registrar_port: int) -> None:
        self.root, self.logs_dir, self.engine = root, root / "logs", engine
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / "drillroom.py").write_text(ROOM_DRIVER)
        self.accounts = root / "accounts"
        self.accounts.write_text("".join(
            f'<sip:engine{i}@{DOMAIN};transport=udp>;auth_pass={SECRET};answermode=auto;'
            f'outbound="sip:{engine.host_ip}:{registrar_port};transport=udp";regint=60\n' for i in range(1, 4)))
        self.config = root / "sipmediagw.yaml"
        self.config.write_text(
            f"image: {image}\naccounts_file: {self.accounts}\nlogs_dir: {self.logs_dir}\nbrowsing_dir: {browsing}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\nbackend: engine\nplatform: drillroom\n"
            f"base_url: http://{engine.host_ip}:8000\nmedia: userspace\ncpu_per_gateway: 0.5\nmemory_per_gateway: 1G\n"
            f"ready_timeout: {READY_TIMEOUT}\n")

    def run(self, *args: str, timeout: float = READY_TIMEOUT + 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPMEDIAGW_", "DOCKER_"))}
        env["DOCKER_HOST"] = self.engine.docker_host  # the CLI drives the private engine like any remote one
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", "--no-stats", timeout=60)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def entry(self, name: str) -> dict[str, Any]:
        return next((g for g in self.status()["gateways"] if g["name"] == name), {})

    def app_log(self, name: str) -> str:
        path = self.logs_dir / name / "app.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, real_gateway_image: str, private_engine: PrivateEngine,
         registrar: Kamailio) -> Host:
    return Host(tmp_path_factory.mktemp("engine-host"), real_gateway_image, private_engine, registrar.port)


@pytest.fixture
def caller(tmp_path: Path, registrar: Kamailio, private_engine: PrivateEngine) -> Iterator[BaresipCaller]:
    with BaresipCaller(user="alice", domain=DOMAIN, registrar=f"{private_engine.host_ip}:{registrar.port}",
                       workdir=tmp_path / "caller") as c:
        c.wait_registered(30)
        yield c


@pytest.fixture
def gateway(host: Host, private_engine: PrivateEngine, request: pytest.FixtureRequest) -> Iterator[str]:
    """The gateway, launched by the real CLI; on failure its state and logs and dockerd's log are printed."""
    result = host.run("launch", "-r", "drill", "-g", GATEWAY)
    assert result.returncode == 0, f"{result.stderr}\n--- dockerd ---\n{private_engine.tail()}"
    yield GATEWAY
    if not private_engine.answers():
        return  # the engine died with the test: destroy() takes everything with it
    with contextlib.closing(private_engine.client()) as client:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for container in dockerops.list_gateways(client):
                sys.stderr.write(f"\n--- {container.name} ({container.status}) ---\n"
                                 f"{json.dumps(container.attrs.get('State'), indent=1)}\n"
                                 f"{dockerops.container_logs(container, 50)}\n")
            sys.stderr.write(f"\n--- dockerd ---\n{private_engine.tail(60)}\n")
        discard_gateway(client, GATEWAY, EngineBackend(client))


def _gateway_container(engine: PrivateEngine, name: str) -> dict[str, Any]:
    """The one container of gateway `name` on the engine, as an inspect document (a fresh client each time: the
    engine restarts under the test)."""
    with contextlib.closing(engine.client()) as client:
        found = [c.attrs for c in dockerops.list_gateways(client) if c.labels.get(labels.GATEWAY) == name]
    assert len(found) == 1, f"{len(found)} containers for gateway {name}"
    return found[0]


def _account_claims(engine: PrivateEngine, image: str) -> list[claims.Claim]:
    """Every account claim on the engine."""
    with contextlib.closing(engine.client()) as client:
        return [c for c in EngineClaims(client, image).list() if c.kind == claims.ACCOUNT]


def _registration_call_id(registrar: Kamailio, user: str) -> str | None:
    """The Call-ID of `user`'s binding at the registrar (a new baresip registers with a new one), or None."""
    current = None
    for line in registrar.kamcmd("ul.dump").splitlines():
        aor = re.match(r"\s*AoR:\s*(\S+)", line)
        if aor:
            current = aor.group(1).split("@")[0].removeprefix("sip:")
            continue
        call_id = re.match(r"\s*Call-ID:\s*(\S+)", line)
        if call_id and current == user:
            return call_id.group(1)
    return None


def _call(caller: BaresipCaller, host: Host, name: str, user: str) -> None:
    """A call to the gateway that reaches its room, hung up by the caller; the gateway is ready again after it."""
    caller.dial(f"sip:{user}@{DOMAIN}")
    caller.wait_established(30)
    _wait(lambda: (e := host.entry(name)).get("state") == "in-call" and e.get("room"), 60, f"{name} in its room",
          lambda: host.app_log(name)[-6000:])
    caller.hangup()
    caller.wait_closed(30)
    _wait(lambda: host.entry(name).get("state") == "ready", 60, f"{name} ready after the call",
          lambda: host.app_log(name)[-6000:])


def test_engine_restarted_the_gateway_comes_back_with_its_account_and_takes_calls(
        host: Host, gateway: str, private_engine: PrivateEngine, registrar: Kamailio, caller: BaresipCaller,
        real_gateway_image: str, drill_rows: list[dict[str, Any]]) -> None:
    engine = private_engine
    before = host.status()
    entry = next(g for g in before["gateways"] if g["name"] == gateway)
    assert entry["state"] == "ready" and not entry.get("note"), entry
    uri = entry["sip_uri"]
    user = uri.split(":", 1)[1].split("@", 1)[0]
    first_call_id = _registration_call_id(registrar, user)
    assert first_call_id, f"{user} not registered at the registrar"
    mine_before = [c for c in _account_claims(engine, real_gateway_image) if c.gateway == gateway]
    assert [c.value for c in mine_before] == [uri], mine_before
    _call(caller, host, gateway, user)  # the whole path works on this engine before the fault

    # `status` tells an engine restart from launch's own start by the gap between creation and start
    # (LATE_START_S): a gateway restarted within its first minute is not recognised, so the drill lets it age
    launched = _gateway_container(engine, gateway)
    created = parse_docker_time(launched["Created"])
    assert created is not None
    _wait(lambda: time.time() - created.timestamp() > LATE_START_S + 2, LATE_START_S + 30,
          "the gateway older than LATE_START_S")

    stopped_in = engine.stop()  # SIGTERM: dockerd stops the gateway (the supervisor exits 0), then itself
    down = time.monotonic()
    # a call while the engine is down: refused at once by the registrar, since baresip unregistered as it stopped
    _wait(lambda: _registration_call_id(registrar, user) is None, 5, "the gateway unregistered as the engine stopped it")
    caller.dial(f"sip:{user}@{DOMAIN}")
    refused = caller.wait_closed(15).get("param", "")
    engine.start()
    back = time.monotonic()
    marks: dict[str, float] = {}  # what came back, in seconds after the engine answered again
    seen: list[dict[str, Any]] = []

    def recovered() -> bool:
        if "registered" not in marks and _registration_call_id(registrar, user) not in (None, first_call_id):
            marks["registered"] = time.monotonic() - back  # a new binding: a new baresip's Call-ID
        seen.append(host.entry(gateway))
        if "ready" not in marks and seen[-1].get("state") == "ready" \
                and "started again by Docker" in (seen[-1].get("note") or ""):
            marks["ready"] = time.monotonic() - back
        return len(marks) == 2

    _wait(recovered, READY_TIMEOUT, f"{gateway} ready and registered again after the engine restart",
          lambda: f"{marks}\n{seen[-1:]}\n{host.app_log(gateway)[-4000:]}\n--- dockerd ---\n{engine.tail()}")
    entry = seen[-1]
    assert "engine restart or host reboot?" in entry["note"], entry
    _wait(lambda: host.entry(gateway).get("registration") == "registered", 30, "status says registered")

    # the same container, started by its restart policy, still holding the one claim on its account
    container = _gateway_container(engine, gateway)
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["State"]["Running"] and container["RestartCount"] == 0  # the engine restart resets it
    assert container["Id"] == launched["Id"]
    all_account_claims = _account_claims(engine, real_gateway_image)
    assert [c.value for c in all_account_claims].count(uri) == 1, all_account_claims  # no duplicate
    mine_after = [c for c in all_account_claims if c.gateway == gateway]
    assert [(c.id, c.value) for c in mine_after] == [(c.id, c.value) for c in mine_before]  # not lost, not remade
    assert host.status()["free_accounts"] == before["free_accounts"]

    _call(caller, host, gateway, user)  # and it takes calls again
    assert SECRET not in host.app_log(gateway)

    note = re.sub(r"at \S+ \S+ UTC", "at <time> UTC", entry["note"])
    drill_rows.append({
        "drill": DRILL,
        "caller": (f"calls refused at once while the engine is down ({refused}: the gateway unregistered as it "
                   f"stopped; down {back - down + stopped_in:.1f} s here, {stopped_in:.1f} s of it stopping)"),
        "recovery": (f"container started again by Docker (unless-stopped), same account claim; registered again "
                     f"{marks['registered']:.1f} s after the engine was back"),
        "status": note,
        "seconds": round(marks["ready"], 1),
    })
