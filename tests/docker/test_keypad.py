"""The keypad menu, the in-call keys and the call timeouts against the REAL image: a pool gateway launched by the real
CLI, a real Kamailio, a real baresip caller sending RFC 4733 DTMF (baresip's ``sndcode``) and a test-bed caller
sending SIP INFO digits (baresip 1.0.0 cannot: sipmediagw/testbed/infocaller.py).

What the caller sees is read from its decoded video (baresip's snapshot of a received frame, decoded with ffmpeg):
the menu's marker band (menu_screen.decode_marker), the red badge and the red "call ends" panel of the overlay. What
it hears is its own recording (the spoken prompt's speech energy). The room is a small driver (written below) whose
page, served from this test on the Docker bridge, publishes the gateway's microphone and camera and measures the
microphone's level as the page publishes it; the driver notes each join and that level in the gateway's log folder,
and takes the participant count from a file there, so the test decides when the gateway is alone.

Helpers and fixtures (client, bridge_ip, caller, _wait) come from test_gateway.py; the registrar is this module's own.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import discard_gateway
from sipmediagw.gateway import ivr
from sipmediagw.gateway.menu_screen import Marker, decode_marker
from sipmediagw.testbed._proc import TestbedError as CallerError
from sipmediagw.testbed.caller import BaresipCaller, png_rgb
from sipmediagw.testbed.infocaller import InfoCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port
from sipmediagw.testbed.tones import level_db, read_mono

from test_gateway import DOMAIN, _require_programs, _wait, bridge_ip, caller, client  # noqa: F401 (fixtures)
from test_pool import KAMAILIO_CFG

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).resolve().parents[2]
SECRET = "Keys-Secret-2718"
USER = "gwkeys"
GATEWAY = f"keys-{os.getpid()}"
READY_TIMEOUT = 150
ALONE_TIMEOUT = 6  # s: short, so the test sees it end a call
NO_MEDIA_TIMEOUT = 8  # s: short, yet longer than the RTCP interval (about 5 s) that tells the gateway media arrives
#: dialled user -> gateway user (the test's stand-in for the pool routing; To stays as dialled)
ROUTES = {"meet": USER, "1234": USER, "1235": USER}

ROOM_DRIVER = '''
import os
import time
import urllib.parse

from selenium.webdriver.support.ui import WebDriverWait

from sipmediagw.errors import ValidationError
from sipmediagw.room import Room, url_path_segment


class KeyRoom(Room):
    """The test's room page (keyroom.html, served by the test): publishes the gateway's microphone and camera and
    measures the microphone as sent. Joins and the measured level are noted in the log folder; the participant count
    comes from the file `participants` there (2 when absent)."""

    platform = "keyroom"

    def __init__(self, driver, base_url, room, options=None):
        super().__init__(driver, base_url, room, options)
        url_path_segment(room)
        if room.startswith("9"):
            raise ValidationError(f"keyroom: no room {room!r} here")

    def url(self):
        return f"{self.base_url}/keyroom.html?" + urllib.parse.urlencode({"room": self.room})

    def _path(self, name):
        return os.path.join(os.environ["SIPMEDIAGW_LOG_DIR"], name)

    def _note(self, name, line):
        with open(self._path(name), "a", encoding="utf-8") as out:
            out.write(line + "\\n")

    def join(self, display_name):
        self.driver.get(self.url())
        WebDriverWait(self.driver, 30).until(
            lambda d: d.execute_script("return !!(window.room && (window.room.ready || window.room.error))"))
        error = self.driver.execute_script("return window.room.error")
        if error:
            raise RuntimeError(f"keyroom: {error}")
        self._note("joins.log", f"join {self.room} as {display_name}")

    def leave(self):
        self.driver.get("about:blank")
        self._note("joins.log", f"leave {self.room}")

    def participant_count(self):
        level = self.driver.execute_script("return window.room ? window.room.db : null")
        self._note("levels.log", f"{time.time():.3f} {level}")
        try:
            with open(self._path("participants"), encoding="utf-8") as handle:
                return int(handle.read().strip())
        except FileNotFoundError:
            return 2

    def set_microphone(self, on):
        self._set_sent_tracks("audio", on)

    def set_camera(self, on):
        self._set_sent_tracks("video", on)
'''

ROOM_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>keyroom</title>
<style>html, body { margin: 0; height: 100%; background: #00ff00; overflow: hidden; }</style></head>
<body>
<script>
"use strict";
// The level (dBFS, RMS over the last second) of the microphone track this page publishes: a disabled track is silent.
window.room = { ready: false, error: null, db: -200 };
(async function () {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    const ctx = new AudioContext();
    await ctx.resume();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    ctx.createMediaStreamSource(new MediaStream(stream.getAudioTracks())).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const recent = [];
    setInterval(function () {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
      recent.push(sum / buf.length);
      if (recent.length > 10) recent.shift();
      const mean = recent.reduce(function (a, b) { return a + b; }, 0) / recent.length;
      window.room.db = mean > 0 ? 10 * Math.log10(mean) : -200;
    }, 100);
    window.room.stream = stream;
    window.room.ready = true;
  } catch (e) {
    window.room.error = String(e);
  }
})();
</script>
</body></html>
"""


# -- what the caller sees -----------------------------------------------------------------------------------------
def share(frame: tuple[bytes, int, int], box: tuple[float, float, float, float],
          test: Callable[[int, int, int], bool]) -> float:
    """Share of the pixels in `box` (fractions of width/height: x0, y0, x1, y1) that pass `test`."""
    raw, width, height = frame
    x0, y0, x1, y1 = int(box[0] * width), int(box[1] * height), int(box[2] * width), int(box[3] * height)
    hits = total = 0
    for y in range(y0, y1, 2):
        for x in range(x0, x1, 2):
            i = (y * width + x) * 3
            hits += test(raw[i], raw[i + 1], raw[i + 2])
            total += 1
    return hits / max(total, 1)


BADGE = (0.015, 0.02, 0.2, 0.08)  # top left: "Microphone off"
CENTRE = (0.35, 0.47, 0.65, 0.53)  # inside the overlay's panel


def red_badge(r: int, g: int, b: int) -> bool:
    return r > 150 and g < 90 and b < 90


def ending_panel(r: int, g: int, b: int) -> bool:
    return 60 < r < 170 and g < 50 and b < 50  # the dark red of a call about to end


class Seen:
    """The caller's last decoded frames, for failure messages."""

    def __init__(self, caller: BaresipCaller) -> None:  # noqa: F811
        self.caller = caller
        self.count = 0
        self.last: Any = None

    def frame(self) -> tuple[bytes, int, int] | None:
        self.count += 1
        path = self.caller.snapshot(f"seen-{self.count % 4}", timeout=10)
        if path is None:
            self.last = "no frame decoded"
            return None
        return png_rgb(path)

    def marker(self) -> Marker | None:
        frame = self.frame()
        marker = decode_marker(*frame) if frame else None
        self.last = marker
        return marker


# -- the setup ----------------------------------------------------------------------------------------------------
class _Pages(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = ROOM_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def room_site(bridge_ip: str) -> Iterator[str]:  # noqa: F811
    """The room page on the Docker bridge, where the gateway's browser can reach it."""
    server = http.server.ThreadingHTTPServer((bridge_ip, 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{bridge_ip}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, bridge_ip: str) -> Iterator[Kamailio]:  # noqa: F811
    """Kamailio routing ROUTES to the gateway (overrides test_gateway's: the caller fixture uses this one)."""
    _require_programs("kamailio", "kamcmd")
    workdir = tmp_path_factory.mktemp("kamailio-keys")
    routes = "\n".join(f'\tif ($rU == "{dialled}") {{ $rU = "{user}"; }}' for dialled, user in ROUTES.items())
    config = workdir / "keys.cfg"
    config.write_text(KAMAILIO_CFG.replace("@ROUTES@", routes))
    with Kamailio(domain=DOMAIN, listen=[bridge_ip], port=free_port(bridge_ip), workdir=workdir,
                  config=config) as kamailio:
        yield kamailio


class Host:
    """The real CLI with a config of its own, driving the real image; the gateway's log folder on the host."""

    def __init__(self, root: Path, image: str, bridge_ip: str, registrar: Kamailio, site: str) -> None:  # noqa: F811
        self.root = root
        self.logs_dir = root / "logs"
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / "keyroom.py").write_text(ROOM_DRIVER)
        self.accounts = root / "accounts"
        self.accounts.write_text(f'<sip:{USER}@{DOMAIN};transport=udp>;auth_pass={SECRET};'
                                 f'outbound="sip:{bridge_ip}:{registrar.port};transport=udp";regint=300\n')
        self.config = root / "sipmediagw.yaml"
        self.config.write_text(
            f"image: {image}\nlogs_dir: {self.logs_dir}\nbrowsing_dir: {browsing}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\nbackend: engine\n"
            f"platform: keyroom\nbase_url: {site}\nmedia: userspace\n"
            f"cpu_per_gateway: 0.5\nmemory_per_gateway: 1G\nready_timeout: {READY_TIMEOUT}\n"
            f"alone_timeout: {ALONE_TIMEOUT}\nno_media_timeout: {NO_MEDIA_TIMEOUT}\nmax_call_duration: 600\n")

    @property
    def folder(self) -> Path:
        return self.logs_dir / GATEWAY

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", "--no-stats", timeout=60)
        assert result.returncode == 0, result.stderr
        return next((g for g in json.loads(result.stdout)["gateways"] if g["name"] == GATEWAY), {})

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
                    ) -> dict[str, Any]:
        seen: list[dict[str, Any]] = [{}]

        def check() -> dict[str, Any] | None:
            seen[0] = self.status()
            return seen[0] if predicate(seen[0]) else None

        return _wait(check, timeout, what, lambda: f"last status: {seen[0]}\n{self.report()}")

    def lines(self, name: str) -> list[str]:
        path = self.folder / name
        return path.read_text().splitlines() if path.exists() else []

    def level(self) -> float | None:
        """The room page's last measured level of the microphone it publishes (dBFS), None before any."""
        lines = self.lines("levels.log")
        if not lines or lines[-1].split()[1] in ("None", "null"):
            return None
        return float(lines[-1].split()[1])

    def wait_level(self, predicate: Callable[[float], bool], what: str, timeout: float = 30) -> float:
        start = len(self.lines("levels.log"))

        def check() -> float | None:
            fresh = self.lines("levels.log")[start:]  # measured after this wait began
            values = [float(v) for _t, v in (line.split() for line in fresh) if v not in ("None", "null")]
            return values[-1] if values and predicate(values[-1]) else None

        return _wait(check, timeout, what, lambda: f"levels: {self.lines('levels.log')[-8:]}\n{self.report()}")

    def participants(self, count: int) -> None:
        (self.folder / "participants").write_text(f"{count}\n")

    def report(self) -> str:
        app = self.folder / "app.log"
        tail = "\n".join(app.read_text(errors="replace").splitlines()[-50:]) if app.exists() else "(no app.log)"
        return f"app.log of {GATEWAY}:\n{tail}"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, real_gateway_image: str, client: Any,  # noqa: F811
         bridge_ip: str, registrar: Kamailio, room_site: str) -> Iterator[Host]:  # noqa: F811
    setup = Host(tmp_path_factory.mktemp("keys-host"), real_gateway_image, bridge_ip, registrar, room_site)
    result = setup.run("launch", "-g", GATEWAY, "--accounts", str(setup.accounts))  # no -r: a pool gateway
    try:
        assert result.returncode == 0, f"launch failed:\n{result.stderr}"
        registrar.wait_registered(USER, 30)
        yield setup
    finally:
        for container in dockerops.list_gateways(client):
            if container.labels.get(labels.LOGS, "").startswith(str(setup.logs_dir)):
                discard_gateway(client, container.labels[labels.GATEWAY], EngineBackend(client))


@pytest.fixture
def gateway(host: Host) -> Iterator[Host]:
    """The gateway ready, not alone in its rooms; after the test, ready again (a test that fails mid-call hangs up
    through its caller fixture)."""
    host.participants(2)
    host.wait_status(lambda g: g.get("state") == "ready", "gateway ready", timeout=60)
    yield host
    host.participants(2)


# -- 1. the keypad menu -------------------------------------------------------------------------------------------
def test_menu_on_the_callers_screen_with_its_prompt_then_rfc4733_digits_pick_the_room(
        gateway: Host, caller: BaresipCaller) -> None:  # noqa: F811
    _require_programs("ffmpeg")
    caller.dial(f"sip:meet@{DOMAIN}")
    caller.wait_established(30)
    entry = gateway.wait_status(lambda g: g.get("state") == "in-call", "in the keypad menu")
    assert entry["room"] is None and entry["meeting"] == "meet"
    seen = Seen(caller)
    first = _wait(lambda: (m := seen.marker()) and m.stage == ivr.MEETING and m, 40, "the menu on the caller's screen",
                  lambda: f"last decoded: {seen.last}\n{gateway.report()}")
    assert first.digit_count == 0 and not first.error

    caller.send_keys("125")
    _wait(lambda: (m := seen.marker()) and m.shows("125"), 20, "125 on the caller's screen",
          lambda: f"last decoded: {seen.last}")
    caller.send_keys("*34")  # * erases the 5
    typed = _wait(lambda: (m := seen.marker()) and m.shows("1234") and m, 20, "1234 on the caller's screen",
                  lambda: f"last decoded: {seen.last}")
    assert typed.stage == ivr.MEETING and not typed.error
    caller.send_keys("#")
    _wait(lambda: "join 1234 as alice" in gateway.lines("joins.log"), 30, "the gateway to join room 1234",
          gateway.report)
    entry = gateway.wait_status(lambda g: g.get("room") == "1234", "in room 1234")
    assert (entry["state"], entry["caller"]) == ("in-call", "alice")

    caller.hangup()
    caller.wait_closed(30)
    gateway.wait_status(lambda g: g.get("state") == "ready" and g.get("last_end_reason") == "caller hung up",
                        "ready again")
    # The spoken prompt came first: speech in the first seconds of what the caller heard.
    samples, rate = read_mono(caller.closed_recording("dec"))
    frame = rate // 50
    levels = [level_db(samples[i:i + frame]) for i in range(0, min(len(samples), 6 * rate) - frame, frame)]
    speech = [lv for lv in levels if lv > -45]
    assert len(speech) >= 50, f"only {len(speech)} speech frames (20 ms above -45 dBFS) in the first 6 s"  # ~1 s+
    assert max(levels) > -30


def test_sip_info_digits_pick_the_room_too(gateway: Host, bridge_ip: str, registrar: Kamailio) -> None:  # noqa: F811
    with InfoCaller(user="bob", domain=DOMAIN, ip=bridge_ip, proxy=f"{bridge_ip}:{registrar.port}") as bob:
        bob.dial(f"sip:meet@{DOMAIN}")
        gateway.wait_status(lambda g: g.get("state") == "in-call" and g.get("caller") == "bob", "bob in the menu")
        for key in "9#":  # no room 9 (the driver refuses rooms starting with 9): said and shown, asked again
            bob.info(key)
        _wait(lambda: "unknown meeting 9" in (gateway.folder / "app.log").read_text(), 20, "meeting 9 refused",
              gateway.report)
        for key in "1235#":
            assert bob.info(key).status == 200
        _wait(lambda: "join 1235 as bob" in gateway.lines("joins.log"), 30, "the gateway to join room 1235",
              gateway.report)
        assert gateway.wait_status(lambda g: g.get("room") == "1235", "in room 1235")["caller"] == "bob"
        bob.bye()
    gateway.wait_status(lambda g: g.get("state") == "ready", "ready again")


# -- 2. keys in the call ------------------------------------------------------------------------------------------
def test_key_1_mutes_the_gateways_microphone_in_the_room_and_unmutes_it(
        gateway: Host, caller: BaresipCaller) -> None:  # noqa: F811
    _require_programs("ffmpeg")
    caller.dial(f"sip:1234@{DOMAIN}")
    caller.wait_established(30)
    gateway.wait_status(lambda g: g.get("room") == "1234", "in room 1234")
    seen = Seen(caller)
    loud = gateway.wait_level(lambda db: db > -40, "the caller's tone in the room page", 40)
    caller.send_keys("1")
    quiet = gateway.wait_level(lambda db: db < -90, "silence in the room page after key 1")
    _wait(lambda: (f := seen.frame()) and share(f, BADGE, red_badge) > 0.25, 20,
          "the red 'Microphone off' badge on the caller's screen")
    caller.send_keys("1")
    again = gateway.wait_level(lambda db: db > -40, "the tone back in the room page after key 1 again")
    _wait(lambda: (f := seen.frame()) and share(f, BADGE, red_badge) < 0.02, 20, "the badge gone")
    assert gateway.status()["state"] == "in-call"  # media flowed the whole time: no timeout ended the call
    caller.hangup()
    caller.wait_closed(30)
    print(f"room page level: {loud:.1f} dBFS, muted {quiet:.1f}, unmuted {again:.1f}")


# -- 3. timeouts --------------------------------------------------------------------------------------------------
def test_alone_in_the_room_the_caller_sees_why_then_gets_a_bye(gateway: Host, caller: BaresipCaller) -> None:  # noqa: F811
    _require_programs("ffmpeg")
    gateway.participants(1)
    caller.dial(f"sip:1234@{DOMAIN}")
    caller.wait_established(30)
    joined = time.monotonic()
    seen = Seen(caller)
    noticed = None
    while caller.in_call():
        try:
            frame = seen.frame()
        except CallerError:  # the call closed between in_call() and the snapshot
            break
        if frame is not None and share(frame, CENTRE, ending_panel) > 0.4:
            noticed = time.monotonic() - joined
            break
        assert time.monotonic() - joined < 60, f"no 'call ends' panel within 60 s\n{gateway.report()}"
    assert noticed is not None, "the call ended before the caller saw why"
    closed = caller.wait_closed(30)
    assert closed["param"] == "Connection reset by peer"  # the gateway's BYE
    entry = gateway.wait_status(lambda g: g.get("state") == "ready", "ready again")
    assert entry["last_end_reason"] == f"alone in the room for {ALONE_TIMEOUT} s"
    assert noticed >= ALONE_TIMEOUT - 1


RTCP_SEEN = "the caller sends RTCP"  # incall.py's log line


def test_no_rtp_from_the_caller_ends_the_call(gateway: Host, caller: BaresipCaller) -> None:  # noqa: F811
    rtcp_before = (gateway.folder / "app.log").read_text().count(RTCP_SEEN)
    caller.dial(f"sip:1234@{DOMAIN}")
    caller.wait_established(30)
    gateway.wait_status(lambda g: g.get("room") == "1234", "in room 1234")
    gateway.wait_level(lambda db: db > -40, "the caller's media in the room")
    # The gateway judges media by the caller's RTCP sender reports (about every 5 s): wait for the first one.
    _wait(lambda: (gateway.folder / "app.log").read_text().count(RTCP_SEEN) > rtcp_before, 30,
          "the gateway to see the caller's RTCP", gateway.report)
    pid = caller._daemon.pid if caller._daemon else None
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the caller vanishes: no RTP, no RTCP
    stopped = time.monotonic()
    try:
        entry = gateway.wait_status(lambda g: g.get("state") == "ready", "the call ended", timeout=60)
        elapsed = time.monotonic() - stopped
    finally:
        os.kill(pid, signal.SIGCONT)
    assert entry["last_end_reason"] == f"no media from the caller for {NO_MEDIA_TIMEOUT} s"
    assert NO_MEDIA_TIMEOUT - 6 <= elapsed <= NO_MEDIA_TIMEOUT + 20, elapsed  # (last RTCP <= 5 s before the stop)
    closed = caller.wait_closed(40)  # the BYE, retransmitted until the caller woke up
    assert closed["param"] == "Connection reset by peer"
