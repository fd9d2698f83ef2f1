"""The real gateway image in a real container, created the way `sipmediagw launch` does (docs/contracts.md), with a
real Kamailio registrar and a real baresip caller on the Docker bridge.

The room is a tiny driver written into a temporary browsing/ folder (a data: page): the full room media test with
Janus belongs to the e2e tier. The real image comes from the session fixture in tests/conftest.py (built when missing or stale).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

docker = pytest.importorskip("docker")

from sipmediagw.testbed.caller import BaresipCaller  # noqa: E402
from sipmediagw.testbed.kamailio import Kamailio  # noqa: E402
from sipmediagw.testbed.network import docker_bridge_ip, free_port  # noqa: E402

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("SIPMEDIAGW_TEST_IMAGE", "sipmediagw:latest")
TEST_LABEL = "org.sipmediagw.test"  # cleanup key of these tests' containers (not the CLI's managed label)
SECRET = "Gw-Secret-4711"
# A SIP domain that is not an IP: kamailio.cfg aliases SIP_DOMAIN, and aliasing the bridge IP would make every port on
# it "myself", so the gateway's BYE to a caller on the host (same IP) would be answered 404 by the proxy itself.
DOMAIN = "sipmediagw.test"
READY_TIMEOUT = 120  # Chromium's first start on a loaded 2-core machine can take tens of seconds

ROOM_DRIVER = '''
from sipmediagw.room import Room


class TestRoom(Room):
    """A room that is a local page: enough to see the join/leave cycle and what the caller receives."""

    platform = "testroom"

    def url(self):
        return "data:text/html,<title>room</title><h1>in room</h1>"

    def join(self, display_name):
        self.driver.get(self.url())

    def leave(self):
        self.driver.get("about:blank")
'''


def _require_programs(*programs: str) -> None:
    """Fail (never skip) when a program these tests run on the host is missing: a skip would hide a host that
    scripts/setup-host did not prepare."""
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (run scripts/setup-host)", pytrace=False)


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
def client(real_gateway_image: str) -> Iterator[Any]:
    assert real_gateway_image == IMAGE  # the fixture built or found the tag this module runs
    try:
        cli = docker.from_env()
        cli.ping()
        cli.images.get(IMAGE)
    except Exception as exc:  # the docker tier is opt-in: no daemon or image means the tier was not set up
        pytest.fail(f"docker tier needs a running daemon and {IMAGE}: {exc}")
    yield cli
    for container in cli.containers.list(all=True, filters={"label": f"{TEST_LABEL}=gateway-{os.getpid()}"}):
        container.remove(force=True)
    cli.close()


@pytest.fixture(scope="module")
def bridge_ip() -> str:
    return docker_bridge_ip()


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, bridge_ip: str) -> Iterator[Kamailio]:
    _require_programs("kamailio", "kamcmd")
    port = free_port(bridge_ip)
    with Kamailio(domain=DOMAIN, listen=[bridge_ip], port=port,
                  workdir=tmp_path_factory.mktemp("kamailio")) as kamailio:
        yield kamailio


class Gateway:
    """One gateway container plus its host log folder."""

    def __init__(self, client: Any, container: Any, log_dir: Path, user: str) -> None:
        self.client, self.container, self.log_dir, self.user = client, container, log_dir, user

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.log_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_state(self, state: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        return _wait(lambda: self.state() if self.state().get("state") == state else None, timeout,
                     f"gateway state {state!r}", self.report)

    def exec(self, cmd: str) -> tuple[int, str]:
        code, out = self.container.exec_run(["sh", "-c", cmd], user="gw")
        return code, out.decode(errors="replace")

    def processes(self) -> list[tuple[int, str, str]]:
        """(pid, state, command) of every process in the container, from /proc (no ps in the image)."""
        script = ("import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n  try:\n"
                  "   s=open(f'/proc/{p}/stat').read(); print(p, s.rsplit(')',1)[1].split()[0], s[s.index('(')+1:s.rindex(')')])\n"
                  "  except OSError: pass")
        code, out = self.container.exec_run(["python3", "-c", script])
        assert code == 0, out
        return [(int(a), b, c) for a, b, c in (line.split(" ", 2) for line in out.decode().splitlines())]

    def report(self) -> str:
        self.container.reload()
        logs = self.container.logs(tail=60).decode(errors="replace")
        return f"container {self.container.status}\nstate: {json.dumps(self.state(), indent=1)}\nlogs:\n{logs}"


@pytest.fixture
def start_gateway(client: Any, registrar: Kamailio, bridge_ip: str, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Any] = []

    def start(user: str = "gw1", env: dict[str, str] | None = None, account: str | None = None) -> Gateway:
        log_dir = tmp_path / f"logs-{user}"
        log_dir.mkdir()
        os.chown(log_dir, 10001, 10001)  # what the CLI does for the container user
        browsing = tmp_path / "browsing"
        browsing.mkdir(exist_ok=True)
        (browsing / "testroom.py").write_text(ROOM_DRIVER)
        line = account or (f'<sip:{user}@{DOMAIN}>;auth_pass={SECRET};answermode=auto;'
                           f'outbound="sip:{bridge_ip}:{registrar.port}"')
        container = client.containers.create(
            IMAGE,
            name=f"sipmediagw-test-{user}-{os.getpid()}",
            labels={TEST_LABEL: f"gateway-{os.getpid()}"},
            environment={
                "SIPMEDIAGW_GATEWAY": user, "SIPMEDIAGW_ROOM": "1234", "SIPMEDIAGW_PLATFORM": "testroom",
                "SIPMEDIAGW_BASE_URL": f"http://{bridge_ip}:8000", **(env or {}),
            },
            volumes={str(log_dir): {"bind": "/var/log/sipmediagw", "mode": "rw"},
                     str(browsing): {"bind": "/opt/sipmediagw/browsing", "mode": "ro"}},
            init=True, shm_size="256m", cap_drop=["ALL"], security_opt=["no-new-privileges"], stop_signal="SIGTERM",
        )
        started.append(container)
        _put_secret(container, line)
        container.start()
        return Gateway(client, container, log_dir, user)

    yield start
    for container in started:
        container.remove(force=True)


def _put_secret(container: Any, line: str) -> None:
    """The account line as /run/secrets/sipmediagw-account, owner 10001, mode 0400 (docs/contracts.md)."""
    data = (line + "\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("sipmediagw-account")
        info.size, info.mode, info.uid, info.gid = len(data), 0o400, 10001, 10001
        tar.addfile(info, io.BytesIO(data))
    assert container.put_archive("/run/secrets", buf.getvalue())


@pytest.fixture
def caller(tmp_path: Path, registrar: Kamailio, bridge_ip: str) -> Iterator[BaresipCaller]:
    _require_programs("baresip")
    # The `with` stops baresip also when registering fails or the test does.
    with BaresipCaller(user="alice", domain=DOMAIN, registrar=f"{bridge_ip}:{registrar.port}",
                       workdir=tmp_path / "caller") as c:
        c.wait_registered(30)
        yield c


def _health(gw: Gateway) -> str:
    gw.container.reload()
    return gw.container.attrs["State"].get("Health", {}).get("Status", "none")


def _chromium_pids(gw: Gateway) -> list[int]:
    return [pid for pid, state, comm in gw.processes() if comm == "chromium" and state != "Z"]


def _zombies(gw: Gateway) -> list[tuple[int, str, str]]:
    return [p for p in gw.processes() if p[1] == "Z"]


def _assert_no_lasting_zombies(gw: Gateway) -> None:
    """A process is a zombie for a moment between its exit and its parent's wait(): only a lasting one is a leak."""
    seen: list[list[tuple[int, str, str]]] = []

    def none_left() -> bool:
        seen.append(_zombies(gw))
        return not seen[-1]

    _wait(none_left, 15, "no zombie processes", lambda: f"zombies: {seen[-1]}\n{gw.report()}")


# ---------------------------------------------------------------------------------------------------------------


def test_gateway_becomes_ready_registered_and_healthy(start_gateway: Callable[..., Gateway],
                                                      registrar: Kamailio) -> None:
    gw = start_gateway("gw-ready")
    state = gw.wait_state("ready")
    assert {name: c["state"] for name, c in state["components"].items()} == {
        name: "running" for name in ("xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "camera", "browser")}
    assert state["sip_uri"].startswith("sip:gw-ready@")
    assert registrar.registered("gw-ready")
    _wait(lambda: _health(gw) == "healthy", 60, "HEALTHCHECK healthy", gw.report)
    # log lines are "[timestamp] component: message", and no secret anywhere the host can see
    app_log = (gw.log_dir / "app.log").read_text()
    assert "] baresip: " in app_log and "] supervisor: " in app_log
    inspect = json.dumps(gw.container.attrs)
    for text in (app_log, (gw.log_dir / "err.log").read_text(), json.dumps(state), inspect,
                 gw.container.logs().decode(errors="replace")):
        assert SECRET not in text
    # the secret file is only readable by the gateway user
    code, out = gw.exec("stat -c '%u %a' /run/secrets/sipmediagw-account")
    assert (code, out.strip()) == (0, "10001 400")


def test_call_joins_room_then_ready_again_and_second_call_works(start_gateway: Callable[..., Gateway],
                                                                caller: BaresipCaller) -> None:
    gw = start_gateway("gw-call")
    gw.wait_state("ready")
    for number in (1, 2):
        caller.dial(f"sip:gw-call@{caller.domain}")
        caller.wait_established(30)
        state = gw.wait_state("in-call", 60)
        assert state["caller"] == "alice"
        # the caller receives the room display (the page the browser joined) as video
        assert caller.snapshot(f"call{number}", timeout=30) is not None
        caller.hangup()
        caller.wait_closed(30)
        state = gw.wait_state("ready", 60)
        assert state["calls"] == number


def test_chromium_killed_mid_call_hangs_up_and_recovers(start_gateway: Callable[..., Gateway],
                                                        caller: BaresipCaller) -> None:
    gw = start_gateway("gw-crash")
    gw.wait_state("ready")
    caller.dial(f"sip:gw-crash@{caller.domain}")
    caller.wait_established(30)
    gw.wait_state("in-call", 60)
    before = _chromium_pids(gw)
    assert before
    code, out = gw.exec(f"kill -9 {' '.join(map(str, before))}")
    assert code == 0, out
    closed = caller.wait_closed(60)  # the gateway hangs up (BYE) instead of leaving a call without a room
    assert "peer" in closed.get("param", "")
    state = _wait(lambda: (s := gw.state()).get("state") == "ready" and s.get("last_error") and s, 120,
                  "ready again after chromium recovery", gw.report)
    assert state["last_error"].startswith("browser")
    after = _chromium_pids(gw)
    assert after and not set(after) & set(before)
    _assert_no_lasting_zombies(gw)
    # and it still takes calls
    caller.dial(f"sip:gw-crash@{caller.domain}")
    caller.wait_established(30)
    gw.wait_state("in-call", 60)
    caller.hangup()
    caller.wait_closed(30)


def test_docker_stop_mid_call_sends_bye_and_exits_zero(start_gateway: Callable[..., Gateway],
                                                       caller: BaresipCaller) -> None:
    gw = start_gateway("gw-stop")
    gw.wait_state("ready")
    caller.dial(f"sip:gw-stop@{caller.domain}")
    caller.wait_established(30)
    gw.wait_state("in-call", 60)
    _assert_no_lasting_zombies(gw)
    gw.container.stop(timeout=20)  # SIGTERM, then SIGKILL after 20 s (which would give exit code 137)
    gw.container.reload()
    assert gw.container.attrs["State"]["ExitCode"] == 0, gw.report()
    assert gw.container.attrs["State"]["OOMKilled"] is False
    closed = caller.wait_closed(10)  # the BYE arrived before the container went away
    assert "peer" in closed.get("param", "")
    final = gw.state()
    assert final["state"] == "exited"
    assert all(c["state"] == "finished" for c in final["components"].values()), final
    log = (gw.log_dir / "app.log").read_text()
    assert log.index("SIGTERM received") < log.index("hanging up the call") < log.index("browser stopped")


def test_bad_configuration_fails_fast_with_a_clear_error(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway("gw-bad", env={"SIPMEDIAGW_MEDIA": "kernel"})  # kernel mode without ALSA cards
    result = gw.container.wait(timeout=60)
    assert result["StatusCode"] == 2
    state = gw.state()
    assert state["state"] == "error"
    assert "SIPMEDIAGW_ALSA_CARDS" in state["last_error"]
    assert "SIPMEDIAGW_ALSA_CARDS" in gw.container.logs().decode()


def test_bad_account_line_names_the_file_and_line(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway("gw-badacct", account=f"not-an-account;auth_pass={SECRET}")
    assert gw.container.wait(timeout=60)["StatusCode"] == 2
    error = gw.state()["last_error"]
    assert error.startswith("/run/secrets/sipmediagw-account:1: ")
    assert SECRET not in error and SECRET not in gw.container.logs().decode()


def _relay_base(gw: Gateway) -> str:
    """The relay's base URL, its per-start token included (``http://127.0.0.1:PORT/TOKEN``)."""
    import re

    match = re.search(r"camera: serving (http://127\.0\.0\.1:\d+/[\w-]+)/stream", (gw.log_dir / "app.log").read_text())
    assert match, "the MJPEG relay did not report its URL"
    return match[1]


def _snapshot(gw: Gateway, base: str) -> bytes:
    code, out = gw.container.exec_run(
        ["python3", "-c", f"import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen("
                          f"'{base}/snapshot.jpg', timeout=10).read())"], demux=True)
    assert code == 0, out
    return out[0]


def test_media_wiring_inside_the_container(start_gateway: Callable[..., Gateway], caller: BaresipCaller,
                                           tmp_path: Path) -> None:
    """userspace media: caller tone -> the source Chromium uses as microphone; what Chromium plays -> the caller;
    caller video -> the MJPEG camera (changing frames). The page side (getUserMedia) is the e2e tier's."""
    import wave

    from sipmediagw.testbed.tones import dominant_frequency

    _require_programs("sox")  # dominant_frequency
    gw = start_gateway("gw-media")
    gw.wait_state("ready")
    caller.dial(f"sip:gw-media@{caller.domain}")
    caller.wait_established(30)
    gw.wait_state("in-call", 60)
    pulse = "PULSE_SERVER=unix:/tmp/sipmediagw/pulse.sock"

    # caller -> room microphone
    code, (raw, _err) = gw.container.exec_run(
        ["sh", "-c", f"{pulse} timeout 4 parec -d from_caller_mic --rate=48000 --channels=1 --format=s16le; true"],
        demux=True)
    mic = tmp_path / "mic.wav"
    with wave.open(str(mic), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(48000)
        out.writeframes(raw or b"")
    assert abs(dominant_frequency(mic, start=1, duration=2) - caller.tone_hz) < 50

    # caller video -> camera stream: frames keep changing (testsrc), so they are the caller's, not a still/black
    base = _relay_base(gw)
    first = _snapshot(gw, base)
    assert first[:2] == b"\xff\xd8"
    assert _wait(lambda: _snapshot(gw, base) != first, 20, "a changing camera frame")

    # room output sink -> caller: play 440 Hz where Chromium's audio goes, for 6 s, then hang up
    tone = ("import math, sys; sys.stdout.buffer.write(b''.join(int(12000*math.sin(2*math.pi*440*i/48000))"
            ".to_bytes(2, 'little', signed=True) for i in range(48000*6)))")
    code, out = gw.container.exec_run(
        ["sh", "-c", f"python3 -c \"{tone}\" | {pulse} pacat --playback -d to_caller --rate=48000 --channels=1 "
                     "--format=s16le"], demux=True)
    assert code == 0, out
    caller.hangup()
    caller.wait_closed(30)
    recording = caller.recording_path()
    with wave.open(str(recording)) as rec:
        length = rec.getnframes() / rec.getframerate()
    assert abs(dominant_frequency(recording, start=max(0.0, length - 5), duration=3) - 440) < 30


def test_once_mode_exits_zero_after_the_first_call(start_gateway: Callable[..., Gateway],
                                                   caller: BaresipCaller) -> None:
    gw = start_gateway("gw-once", env={"SIPMEDIAGW_ONCE": "1"})
    gw.wait_state("ready")
    caller.dial(f"sip:gw-once@{caller.domain}")
    caller.wait_established(30)
    gw.wait_state("in-call", 60)
    caller.hangup()
    caller.wait_closed(30)
    assert gw.container.wait(timeout=60)["StatusCode"] == 0
    state = gw.state()
    assert (state["state"], state["calls"], state["last_error"]) == ("exited", 1, None)
