"""Fault drills on a real gateway launched by the real CLI (so with the restart policy and limits operators get), a
real Kamailio and a real SIP caller: `kill -9` of each component while idle and during a call, the registrar
restarted while idle, the log folder full. Each drill asserts what the caller experiences, what `status` shows,
and that the gateway takes calls again; the measured times are written to the table that docs/reliability.md
reports (SIPMEDIAGW_DRILLS_TABLE names the file; default: the pytest temp folder, path printed at the end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from drills_table import merge_rows
from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import discard_gateway
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import docker_bridge_ip, free_port
from sipmediagw.testbed.tones import level_db, read_mono

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).resolve().parents[2]
DOMAIN = "sipmediagw.test"
SECRET = "Drill-Secret-3141"
READY_TIMEOUT = 120
ROOM_DRIVER = '''
from sipmediagw.room import Room


class DrillRoom(Room):
    """A local page: the drills are about the gateway's own parts, not a conference server."""

    platform = "drillroom"

    def url(self):
        return "data:text/html,<title>room</title><body style='background:%23246'><h1>drill room</h1>"

    def join(self, display_name):
        self.driver.get(self.url())

    def leave(self):
        self.driver.get("about:blank")
'''

ROWS: list[dict[str, Any]] = []


def _wait(predicate: Callable[[], Any], timeout: float, what: str, on_fail: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f} s\n{on_fail()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def bridge_ip() -> str:
    return docker_bridge_ip()


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, bridge_ip: str) -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN, listen=[bridge_ip], port=free_port(bridge_ip),
                  workdir=tmp_path_factory.mktemp("kamailio-drills")) as kamailio:
        yield kamailio


@pytest.fixture(scope="module", autouse=True)
def drills_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    merge_rows(ROWS, tmp_path_factory.getbasetemp(), "fault drills")


class Host:
    """The real CLI with one config and accounts file, driving the real image."""

    def __init__(self, root: Path, image: str, bridge_ip: str, registrar_port: int, logs_dir: Path) -> None:
        self.root, self.logs_dir = root, logs_dir
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / "drillroom.py").write_text(ROOM_DRIVER)
        self.accounts = root / "accounts"
        self.accounts.write_text("".join(
            f'<sip:drill{i}@{DOMAIN};transport=udp>;auth_pass={SECRET};answermode=auto;'
            f'outbound="sip:{bridge_ip}:{registrar_port};transport=udp";regint=60\n' for i in range(1, 4)))
        self.config = root / "sipmediagw.yaml"
        self.config.write_text(
            f"image: {image}\naccounts_file: {self.accounts}\nlogs_dir: {logs_dir}\nbrowsing_dir: {browsing}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\nbackend: engine\nplatform: drillroom\n"
            f"base_url: http://{bridge_ip}:8000\nmedia: userspace\ncpu_per_gateway: 0.5\nmemory_per_gateway: 1G\n"
            f"ready_timeout: {READY_TIMEOUT}\n")

    def run(self, *args: str, timeout: float = READY_TIMEOUT + 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def launch(self, name: str) -> None:
        result = self.run("launch", "-r", "drill", "-g", name)
        assert result.returncode == 0, result.stderr

    def entry(self, name: str) -> dict[str, Any]:
        result = self.run("status", "--json", "--no-stats", timeout=60)
        assert result.returncode == 0, result.stderr
        return next((g for g in json.loads(result.stdout)["gateways"] if g["name"] == name), {})

    def app_log(self, name: str) -> str:
        path = self.logs_dir / name / "app.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, real_gateway_image: str, docker_client: Any, bridge_ip: str,
         registrar: Kamailio) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("drills")
    setup = Host(root, real_gateway_image, bridge_ip, registrar.port, root / "logs")
    yield setup
    for container in dockerops.list_gateways(docker_client):
        if container.labels.get(labels.LOGS, "").startswith(str(setup.logs_dir)):
            discard_gateway(docker_client, container.labels[labels.GATEWAY], EngineBackend(docker_client))


@pytest.fixture
def caller(tmp_path: Path, registrar: Kamailio, bridge_ip: str) -> Iterator[BaresipCaller]:
    with BaresipCaller(user="alice", domain=DOMAIN, registrar=f"{bridge_ip}:{registrar.port}",
                       workdir=tmp_path / "caller") as c:
        c.wait_registered(30)
        yield c


_NUMBERS = iter(range(1, 1000))


@pytest.fixture
def gateway(host: Host, docker_client: Any) -> Iterator[str]:
    name = f"drill-{next(_NUMBERS)}"
    host.launch(name)
    yield name
    discard_gateway(docker_client, name, EngineBackend(docker_client))


def _container(docker_client: Any, name: str) -> Any:
    [found] = [c for c in dockerops.list_gateways(docker_client) if c.labels[labels.GATEWAY] == name]
    return found


def _pids(container: Any, command: str, argument: str | None = None) -> list[int]:
    """Live (not zombie) processes whose command name is `command` (and whose command line has `argument`)."""
    script = ("import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n  try:\n"
              "   s=open(f'/proc/{p}/stat').read(); a=open(f'/proc/{p}/cmdline').read().replace(chr(0),' ')\n"
              "   print(p, s.rsplit(')',1)[1].split()[0], s[s.index('(')+1:s.rindex(')')].replace(' ','_'), a)\n"
              "  except OSError: pass")
    code, out = container.exec_run(["python3", "-c", script])
    assert code == 0, out
    rows = [line.split(" ", 3) + [""] for line in out.decode().splitlines()]
    return [int(row[0]) for row in rows
            if row[2] == command and row[1] != "Z" and (argument is None or argument in row[3].split())]


def _call(caller: BaresipCaller, host: Host, name: str) -> None:
    caller.dial(f"sip:{_account_user(host, name)}@{DOMAIN}")
    caller.wait_established(30)
    _wait(lambda: (e := host.entry(name)).get("state") == "in-call" and e.get("room"), 60, f"{name} in its room",
          lambda: host.app_log(name)[-12000:])


def _account_user(host: Host, name: str) -> str:
    return host.entry(name)["sip_uri"].split(":", 1)[1].split("@", 1)[0]


# component: (its process name, an argument that picks one of several, recovered in place (True) or by the
# container's restart (False), what a call in progress gets: "bye" (the gateway hangs up), "silent" (no BYE: baresip
# died with it), "either" (a race: baresip's X connection breaks before or after the supervisor's BYE) or
# "continues" (the part comes back under the call))
COMPONENTS = {
    "baresip": ("baresip", None, False, "silent"),  # the SIP stack itself: nobody left to send the BYE
    "xvfb-web (the room's display)": ("Xvfb", ":0", False, "either"),  # baresip grabs it (x11grab): it dies with it
    "xvfb-sip (the caller's display)": ("Xvfb", ":1", False, "either"),  # baresip draws there: it dies with it
    "pulseaudio": ("pulseaudio", None, False, "bye"),
    "camera relay (ffmpeg)": ("ffmpeg", None, True, "continues"),  # the relay restarts its grabber
    "chromedriver": ("chromedriver", None, True, "bye"),
    "chromium": ("chromium", None, True, "bye"),
}
CALL_ONLY = {"camera relay (ffmpeg)"}  # runs only while the caller's video shows (mjpeg.py): nothing to kill idle


@pytest.mark.parametrize("component, moment", [(component, moment) for component in COMPONENTS
                                               for moment in ("idle", "in-call")
                                               if not (moment == "idle" and component in CALL_ONLY)])
def test_kill_9_of_a_component(component: str, moment: str, host: Host, gateway: str, caller: BaresipCaller,
                               docker_client: Any) -> None:
    process, argument, in_place, in_call = COMPONENTS[component]
    container = _container(docker_client, gateway)
    if moment == "in-call":
        _call(caller, host, gateway)
    # (a part that starts with the call, e.g. the camera's grab once the caller's video window shows, is waited for)
    pids = _wait(lambda: _pids(container, process, argument), 30, f"a {process} process in {gateway}",
                 lambda: host.app_log(gateway)[-4000:])
    killed = time.monotonic()
    code, out = container.exec_run(["kill", "-9", *map(str, pids)])
    assert code == 0, out
    experience = "nothing (no call)"
    if moment == "in-call" and in_call == "bye":
        closed = caller.wait_closed(30)  # the gateway hangs up: never a caller left in a call without a room
        experience = f"call ended by the gateway after {time.monotonic() - killed:.1f} s ({closed.get('param')})"
    if not in_place:  # the supervisor must first notice and end the gateway: "ready" before that is the old state
        def restarted() -> bool:
            container.reload()
            return container.attrs.get("RestartCount", 0) >= 1
        _wait(restarted, 60, f"{gateway} restarted by Docker", lambda: host.app_log(gateway)[-4000:])
    if in_place:  # recovered when a new process of the part runs (a call must not race the supervisor's check)
        _wait(lambda: set(_pids(container, process, argument)) - set(pids), 60, f"a new {process}",
              lambda: host.app_log(gateway)[-4000:])
    if moment == "in-call" and in_call == "continues":
        assert caller.in_call() and host.entry(gateway).get("state") == "in-call"
        experience = (f"the call goes on; the room sees the caller's video again {time.monotonic() - killed:.1f} s "
                      "after the fault")
        caller.hangup()
        caller.wait_closed(30)
    seen: list[dict[str, Any]] = []

    def ready_again() -> bool:
        seen.append(host.entry(gateway))
        return seen[-1].get("state") == "ready"

    _wait(ready_again, 120, f"{gateway} ready again", lambda: f"{seen[-1:]}\n{host.app_log(gateway)[-4000:]}")
    recovered = time.monotonic() - killed
    if moment == "in-call" and in_call in ("silent", "either"):
        if caller.in_call():
            # no BYE all along (the SIP stack is gone): the caller is still "in" the dead call; a phone's own RTP
            # timeout ends such a call, here the caller hangs up
            experience = "no BYE (baresip is gone with it): silence until the phone's RTP timeout"
            caller.hangup()
            caller.wait_closed(30)
        else:
            assert in_call == "either", "a BYE from a gateway whose SIP stack was killed"
            experience = "call ended by the gateway (BYE), or silence when baresip's X connection broke first"
    entry = seen[-1]
    container.reload()
    restarts = container.attrs.get("RestartCount", 0)
    if in_place:
        assert restarts == 0, f"{component}: the container was restarted, not the component"
    else:
        assert restarts >= 1 and "restart" in (entry.get("note") or ""), entry  # status says Docker restarted it
    # and it takes a call again
    _call(caller, host, gateway)
    caller.hangup()
    caller.wait_closed(30)
    ROWS.append({"drill": f"kill -9 {component}, {moment}", "caller": experience,
                 "recovery": "in place" if in_place else "container restarted by Docker",
                 "status": entry.get("note") or entry.get("last_error") or "ready", "seconds": round(recovered, 1)})
    assert SECRET not in host.app_log(gateway)


def test_registrar_restarted_while_idle_the_gateway_registers_again(host: Host, gateway: str, registrar: Kamailio,
                                                                    caller: BaresipCaller) -> None:
    user = _account_user(host, gateway)
    assert registrar.registered(user)
    restarted = time.monotonic()
    registrar.stop()  # Kamailio keeps registrations in memory: a restart forgets them
    registrar.start()
    _wait(lambda: registrar.registered(user), 120, f"{user} registered again", lambda: host.app_log(gateway)[-3000:])
    again = time.monotonic() - restarted
    _call(caller, host, gateway)
    caller.hangup()
    caller.wait_closed(30)
    ROWS.append({"drill": "registrar restarted, idle", "caller": "calls fail until the gateway registers again",
                 "recovery": "baresip re-registers (regint)", "status": "ready", "seconds": round(again, 1)})


@pytest.fixture
def full_disk_host(tmp_path: Path, real_gateway_image: str, docker_client: Any, bridge_ip: str,
                   registrar: Kamailio) -> Iterator[Host]:
    """A host whose logs folder is a small tmpfs (root only: the CI and test machines run as root)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(logs)], capture_output=True,
                             text=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs for the drill: {mounted.stderr}"
    setup = Host(tmp_path / "cfg", real_gateway_image, bridge_ip, registrar.port, logs)
    try:
        yield setup
    finally:
        for container in dockerops.list_gateways(docker_client):
            if container.labels.get(labels.LOGS, "").startswith(str(logs)):
                discard_gateway(docker_client, container.labels[labels.GATEWAY], EngineBackend(docker_client))
        subprocess.run(["umount", "-l", str(logs)], check=False)


def test_log_folder_full_the_gateway_keeps_taking_calls_and_status_says_it_is_unresponsive(
        full_disk_host: Host, caller: BaresipCaller) -> None:
    host = full_disk_host
    host.launch("drill-disk")
    user = _account_user(host, "drill-disk")
    filler = host.logs_dir / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)  # until ENOSPC
    assert os.statvfs(host.logs_dir).f_bavail == 0
    full = time.monotonic()
    caller.dial(f"sip:{user}@{DOMAIN}")
    caller.wait_established(30)
    assert caller.received_video_changing(30)  # the call works: the room's video reaches the caller
    seen: list[dict[str, Any]] = []

    def flagged() -> bool:
        seen.append(host.entry("drill-disk"))
        return "unresponsive" in json.dumps(seen[-1])

    _wait(flagged, 90, "status flags the gateway whose state cannot be written", lambda: str(seen[-1:]))
    flagged_after = time.monotonic() - full
    caller.hangup()
    caller.wait_closed(30)
    filler.unlink()
    freed = time.monotonic()
    _wait(lambda: host.entry("drill-disk").get("state") == "ready" and "unresponsive" not in
          json.dumps(host.entry("drill-disk")), 60, "ready again once there is space")
    ROWS.append({"drill": "log folder full", "caller": "nothing: calls go on",
                 "recovery": "state and logs resume when space is freed",
                 "status": f"unresponsive after {flagged_after:.0f} s", "seconds": round(time.monotonic() - freed, 1)})


DEAD_ROOM_DRIVER = '''
from sipmediagw.room import Room


class DeadRoom(Room):
    """A room on a conference server that is down: nothing listens at its address."""

    platform = "deadroom"

    def url(self):
        return self.base_url + "/" + self.room

    def join(self, display_name):
        self.driver.get(self.url())

    def leave(self):
        self.driver.get("about:blank")
'''


def test_conference_server_down_the_caller_sees_and_hears_why_then_the_gateway_is_ready(
        host: Host, caller: BaresipCaller, bridge_ip: str, docker_client: Any) -> None:
    (host.root / "browsing" / "deadroom.py").write_text(DEAD_ROOM_DRIVER)
    closed = free_port(bridge_ip)  # the conference server's address, with nothing listening
    result = host.run("launch", "-r", "team", "-g", "drill-dead", "--platform", "deadroom",
                      "--domain", f"http://{bridge_ip}:{closed}")
    assert result.returncode == 0, result.stderr
    try:
        user = _account_user(host, "drill-dead")
        caller.dial(f"sip:{user}@{DOMAIN}")
        caller.wait_established(30)
        answered = time.monotonic()
        marker = _wait(lambda: (m := caller.menu_marker(5)) is not None and m.stage == "notice" and m, 40,
                       "the notice on the caller's screen")
        assert marker.error  # its reason line is shown
        closed_event = caller.wait_closed(30)  # the gateway hangs up after the notice was said
        ended = time.monotonic() - answered
        assert "peer" in closed_event.get("param", "")
        heard = read_mono(caller.closed_recording())
        samples, rate = heard
        assert level_db(samples[int(rate * 0.5):]) > -45, "the caller heard nothing during the notice"
        entry = _wait(lambda: (e := host.entry("drill-dead")).get("state") == "ready" and e, 60, "ready again")
        assert "room join failed" in (entry.get("last_end_reason") or ""), entry
        ROWS.append({"drill": "conference server down when a call comes",
                     "caller": f"notice on screen and spoken ('meeting cannot be joined'), BYE after {ended:.1f} s",
                     "recovery": "in place", "status": entry.get("last_end_reason"),
                     "seconds": round(time.monotonic() - answered, 1)})
    finally:
        discard_gateway(docker_client, "drill-dead", EngineBackend(docker_client))
