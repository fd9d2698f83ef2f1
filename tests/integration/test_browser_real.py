"""The room side with real parts: Chromium (headful on Xvfb), ffmpeg, PulseAudio, the MJPEG relay, the drivers.

Every test starts its own Xvfb displays and PulseAudio daemon, so it can run beside other engineers' processes.
Whatever a test starts is stopped by a fixture, so a failing assertion leaves nothing running (nor a container).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest

from sipmediagw.gateway.browser import CHROMEDRIVER, CHROMIUM, Browser, BrowserRoomSession
from sipmediagw.gateway.mjpeg import MjpegRelay
from sipmediagw.room import load_room_driver
from sipmediagw.testbed import participant as participant_module
from sipmediagw.testbed.janus import JanusServer
from sipmediagw.testbed.network import BridgeKeeper, docker_bridge_ip, free_port
from sipmediagw.testbed.participant import Participant

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "tests" / "fixtures" / "pages"
BROWSING = REPO / "browsing"
ROOM_SIZE = (1280, 720)
CAMERA = (640, 360)

# What the helpers below run; all of it comes from scripts/setup-host (ffplay is part of Debian's ffmpeg package).
DISPLAY_PROGRAMS = ("Xvfb", "ffmpeg", "ffplay", "xdotool")  # the server, x11grab, the caller video window + finding it
RELAY_PROGRAMS = ("ffmpeg", "xdotool")
BROWSER_PROGRAMS = (CHROMIUM, CHROMEDRIVER, "xdotool")
PULSE_PROGRAMS = ("pulseaudio", "pactl", "paplay", "sox")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll until `predicate()` is truthy (generous timeouts: a slow CI machine only waits longer)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- X displays --------------------------------------------------------------------------------------------------
def _free_display() -> int:
    for number in range(140, 400):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number")


def picture(size: tuple[int, int], left: str, right: str, tag: str = "", rate: int = 4) -> str:
    """An ffmpeg lavfi graph of a picture whose left half is `left` and right half `right` (colour names as ffmpeg
    spells them), in RGB so the colours stay exact. `tag` keeps the pad labels unique when graphs are combined."""
    w, h = size
    return (f"color=c={left}:s={w // 2}x{h}:r={rate}[{tag}l];color=c={right}:s={w - w // 2}x{h}:r={rate}[{tag}r];"
            f"[{tag}l][{tag}r]hstack,format=rgb24")


def animation(size: tuple[int, int], frames: list[tuple[str, str]], rate: int = 4) -> str:
    """A lavfi graph cycling through `frames` ((left, right) colour pairs) at `rate` frames per second: frame i is
    overlaid (gbrp: lossless) on the first one whenever the frame number modulo len(frames) is i."""
    graph = ";".join(f"{picture(size, left, right, f'f{i}', rate)}[f{i}]" for i, (left, right) in enumerate(frames))
    current = "f0"
    for i in range(1, len(frames)):
        graph += f";[{current}][f{i}]overlay=format=gbrp:enable='eq(mod(n,{len(frames)}),{i})'[o{i}]"
        current = f"o{i}"
    return f"{graph};[{current}]format=rgb24"


class Xvfb:
    """One Xvfb server for a test, and the caller-video windows shown on it."""

    def __init__(self, size: tuple[int, int], workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.number = _free_display()
        self.display = f":{self.number}"
        self.windows: list[subprocess.Popen] = []
        self._played = 0
        self.proc = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp", "-noreset"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: Path(f"/tmp/.X11-unix/X{self.number}").exists(), 20, f"Xvfb {self.display}")
        except BaseException:
            self.close()
            raise

    def show_picture(self, size: tuple[int, int], left: str, right: str) -> subprocess.Popen:
        """A `size` window at the top-left (like baresip's video window, no window manager) showing `left`|`right`."""
        return self._play(picture(size, left, right))

    def animate(self, size: tuple[int, int], frames: list[tuple[str, str]]) -> subprocess.Popen:
        """A top-left window cycling through `frames` ((left, right) colours) 4 times a second (moving video)."""
        return self._play(animation(size, frames))

    def _play(self, graph: str) -> subprocess.Popen:
        """ffplay draws the graph unscaled in a window at +0+0; returns once the window is on the display."""
        self._played += 1
        log_path = self.workdir / f"ffplay-{self._played}.log"
        # SDL's software renderer: the same pixels with or without an OpenGL driver on the host.
        env = {**os.environ, "DISPLAY": self.display, "SDL_VIDEODRIVER": "x11", "SDL_RENDER_DRIVER": "software"}
        with open(log_path, "wb") as log:
            win = subprocess.Popen(
                ["ffplay", "-hide_banner", "-nostats", "-loglevel", "error", "-an", "-noborder", "-left", "0", "-top",
                 "0", "-window_title", "caller-video", "-f", "lavfi", graph],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.windows.append(win)

        def shown() -> bool:
            if win.poll() is not None:
                raise AssertionError(f"ffplay exited with {win.returncode}: {log_path.read_text(errors='replace')}")
            found = subprocess.run(["xdotool", "search", "--onlyvisible", "--pid", str(win.pid)],
                                   env={**os.environ, "DISPLAY": self.display}, capture_output=True, timeout=10)
            return found.returncode == 0 and bool(found.stdout.split())

        wait_for(shown, 30, f"the caller video window on {self.display}")
        return win

    def close_windows(self) -> None:
        """Close every caller-video window (the caller's video stops)."""
        for win in self.windows:
            _stop_process(win)
        self.windows = []

    def grab_rgb(self, size: tuple[int, int]) -> bytes:
        """The display's pixels as x11grab sees them (what baresip sends to the caller), raw RGB."""
        out = subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "x11grab", "-draw_mouse", "0", "-video_size", f"{size[0]}x{size[1]}",
             "-i", self.display, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True, check=True, timeout=30)
        return out.stdout

    def close(self) -> None:
        self.close_windows()
        _stop_process(self.proc)


def _stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def room_display(tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[Xvfb]:
    require_programs(*DISPLAY_PROGRAMS)
    xvfb = Xvfb(ROOM_SIZE, tmp_path / "room-display")
    yield xvfb
    xvfb.close()


@pytest.fixture
def caller_display(tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[Xvfb]:
    require_programs(*DISPLAY_PROGRAMS)
    xvfb = Xvfb(ROOM_SIZE, tmp_path / "caller-display")
    yield xvfb
    xvfb.close()


def decode_jpeg_rgb(jpeg: bytes) -> bytes:
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "mjpeg", "-i", "-", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], input=jpeg, capture_output=True, check=True, timeout=30)
    return out.stdout


def rgb_at(raw: bytes, width: int, x: int, y: int) -> tuple[int, int, int]:
    i = (y * width + x) * 3
    return raw[i], raw[i + 1], raw[i + 2]


def close_to(a, b, tolerance: int = 40) -> bool:  # type: ignore[no-untyped-def]
    return all(abs(int(p) - int(q)) <= tolerance for p, q in zip(a, b))


# -- a local web server for the fixture pages ----------------------------------------------------------------------
class _PagesHandler(http.server.SimpleHTTPRequestHandler):
    """Serves tests/fixtures/pages; /rooms/... (Greenlight) -> bbb.html, any other unknown path -> jitsi.html."""

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, directory=str(PAGES), **kwargs)

    def translate_path(self, path: str) -> str:
        local = super().translate_path(path)
        if os.path.isfile(local):
            return local
        clean = path.split("?", 1)[0]
        return str(PAGES / ("bbb.html" if clean.startswith(("/rooms/", "/b/")) else "jitsi.html"))

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]  # noqa: A002
        pass


@pytest.fixture(scope="module")
def pages_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PagesHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- PulseAudio ----------------------------------------------------------------------------------------------------
class Pulse:
    """A private PulseAudio daemon: null sink `callerin` (what baresip would play) + its remapped monitor `callermic`,
    and null sink `roomout` for what the browser plays (the room), as the gateway wires them (media.py): a browser
    playing into `callerin` would send the room's audio back to it through its own microphone."""

    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "pulse.sock"
        script = workdir / "pulse.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            "load-module module-null-sink sink_name=callerin sink_properties=device.description=callerin\n"
            "load-module module-remap-source source_name=callermic master=callerin.monitor "
            "source_properties=device.description=callermic\n"
            "load-module module-null-sink sink_name=roomout sink_properties=device.description=roomout\n"
            "set-default-source callermic\n")
        env = {**os.environ, "HOME": str(workdir), "XDG_RUNTIME_DIR": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
        self.env = {"PULSE_SERVER": f"unix:{self.socket}", "PULSE_SOURCE": "callermic", "PULSE_SINK": "roomout"}
        self.players: list[subprocess.Popen] = []
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--use-pid-file=no", "--realtime=no",
             "--high-priority=no", "--exit-idle-time=-1", "--disallow-exit", "--log-target=stderr"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: subprocess.run(["pactl", "info"], env={**os.environ, **self.env},
                                            capture_output=True).returncode == 0, 30, "pulseaudio")
        except BaseException:
            self.close()
            raise

    def play_tone(self, workdir: Path, hz: int, seconds: int = 60) -> None:
        tone = workdir / f"tone{hz}.wav"
        subprocess.run(["sox", "-n", "-r", "48000", "-c", "2", str(tone), "synth", str(seconds), "sine", str(hz),
                        "vol", "0.5"], check=True, timeout=60)
        self.players.append(subprocess.Popen(["paplay", "--device=callerin", str(tone)],
                                             env={**os.environ, **self.env}, start_new_session=True))

    def close(self) -> None:
        for proc in [*self.players, self.proc]:
            _stop_process(proc)
        self.players = []


@pytest.fixture
def pulse(tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[Pulse]:
    require_programs(*PULSE_PROGRAMS)
    p = Pulse(tmp_path)
    yield p
    p.close()


# -- the parts a test starts: each factory stops what it started at teardown, pass or fail -----------------------
@pytest.fixture
def start_relay(require_programs: Callable[..., None]) -> Iterator[Callable[..., MjpegRelay]]:
    """start_relay(display=..., size=..., ...) -> a started MjpegRelay."""
    require_programs(*RELAY_PROGRAMS)
    with contextlib.ExitStack() as started:  # each one is stopped, even when stopping another fails

        def start(**kwargs: Any) -> MjpegRelay:
            relay = MjpegRelay(**kwargs)
            started.callback(relay.stop)  # before start(): a half-started relay is stopped too
            relay.start()
            return relay

        yield start


@pytest.fixture
def start_browser(require_programs: Callable[..., None]) -> Iterator[Callable[..., Browser]]:
    """start_browser(display=..., env=..., camera_url=..., ...) -> a started Browser (Chromium + chromedriver)."""
    require_programs(*BROWSER_PROGRAMS)
    with contextlib.ExitStack() as started:  # each one is quit, even when quitting another fails

        def start(**kwargs: Any) -> Browser:
            browser = Browser(**kwargs)
            started.callback(browser.quit)
            browser.start()
            return browser

        yield start


def chromium_children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


# -- tests -----------------------------------------------------------------------------------------------------------
def test_room_display_shows_only_the_page(
    room_display: Xvfb, pages_url: str, start_browser: Callable[..., Browser]
) -> None:
    """Kiosk, no infobar: every pixel x11grab sends to the caller is the page (solid green)."""
    browser = start_browser(display=room_display.display, env={}, camera_url=None)
    assert browser.driver.current_url == "about:blank"  # pre-warmed
    browser.driver.get(f"{pages_url}/solid.html")
    wait_for(lambda: browser.driver.execute_script("return document.readyState") == "complete", 30, "page")

    def all_green() -> bool:
        raw = room_display.grab_rgb(ROOM_SIZE)
        w, h = ROOM_SIZE
        # Rows where an infobar / tab strip would be, plus a grid over the whole screen (edges included).
        points = [(x, y) for y in (0, 5, 20, 40, 60, 90, h // 2, h - 1) for x in range(0, w, 64)] + \
                 [(w - 1, 0), (w - 1, h - 1), (0, h - 1)]
        return all(close_to(rgb_at(raw, w, x, y), (0, 255, 0), 10) for x, y in points)

    wait_for(all_green, 30, "the display to show only the green page (kiosk, no infobar)")


def test_injected_camera_shows_caller_window_scaled_not_cropped(
    room_display: Xvfb, caller_display: Xvfb, pages_url: str, start_relay: Callable[..., MjpegRelay],
    start_browser: Callable[..., Browser]
) -> None:
    """baresip-like 320x240 window (red|blue) -> relay scales it to 640x360 with side bars -> page camera pixels."""
    caller_display.show_picture((320, 240), "red", "blue")
    wait_for(lambda: close_to(rgb_at(caller_display.grab_rgb(ROOM_SIZE), ROOM_SIZE[0], 10, 10), (255, 0, 0)), 30,
             "the caller window")
    relay = start_relay(display=caller_display.display, size=CAMERA, log=lambda line: None)
    wait_for(lambda: relay.region is not None and relay.region.width == 320, 30, "relay to grab the window")
    browser = start_browser(display=room_display.display, env={}, camera_url=relay.url, camera_size=CAMERA)
    browser.driver.get(f"{pages_url}/media.html")
    browser.driver.set_script_timeout(60)
    tracks = browser.driver.execute_async_script(
        "window.probe.open({video: true}).then(arguments[0], e => arguments[0]('ERR ' + e))")
    assert [t["kind"] for t in tracks] == ["video"], tracks
    # 320x240 (4:3) into 640x360: 480x360 picture centred, black bars 80 px wide on both sides. The top and bottom
    # rows are sampled inside a half, not on the red|blue edge at x=320: JPEG's and I420's half-resolution colour
    # blends the two there (the page reads ~(69, 0, 171)), whichever program draws the window.
    points = [[20, 180], [620, 180], [200, 180], [440, 180], [200, 5], [440, 355], [90, 180], [550, 180]]

    def page_pixels():  # type: ignore[no-untyped-def]
        result = browser.driver.execute_script("return window.probe.pixels(arguments[0])", points)
        rgb = result["rgb"]
        ok = (result["size"] == list(CAMERA) and close_to(rgb[0], (0, 0, 0)) and close_to(rgb[1], (0, 0, 0))
              and close_to(rgb[2], (255, 0, 0)) and close_to(rgb[3], (0, 0, 255)))
        return rgb if ok else None

    rgb = wait_for(page_pixels, 30, "red|blue with black side bars on the page camera")
    # Not cropped: the picture reaches the top and bottom rows and starts right after the bars.
    assert close_to(rgb[4], (255, 0, 0)), rgb
    assert close_to(rgb[5], (0, 0, 255)), rgb
    assert close_to(rgb[6], (255, 0, 0)) and close_to(rgb[7], (0, 0, 255)), rgb
    # The page sees what ffmpeg grabbed (the relay's own frame).
    frame = decode_jpeg_rgb(relay.wait_frame(10))
    for (x, y), seen in zip(points[:4], rgb[:4]):
        assert close_to(rgb_at(frame, CAMERA[0], x, y), seen), (x, y)

    # The caller's video changes size (a new window 640x480 green|yellow): the relay follows it.
    caller_display.close_windows()
    caller_display.show_picture((640, 480), "lime", "yellow")
    wait_for(lambda: relay.region is not None and relay.region.width == 640, 30, "relay to follow the resize")

    def follows() -> bool:
        px = browser.driver.execute_script("return window.probe.pixels(arguments[0])", [[200, 180], [440, 180]])
        return close_to(px["rgb"][0], (0, 255, 0)) and close_to(px["rgb"][1], (255, 255, 0))

    wait_for(follows, 30, "the page camera to show the resized caller video")
    assert relay.alive()
    browser.quit()
    relay.stop()
    assert not relay.alive()


def test_relay_idles_at_low_frame_rate_until_the_caller_video_window_appears(
    caller_display: Xvfb, start_relay: Callable[..., MjpegRelay]
) -> None:
    """No caller video yet: one still frame of the empty display, then no ffmpeg runs; baresip's window appears:
    full frame rate on it."""
    relay = start_relay(display=caller_display.display, size=CAMERA, fps=15)
    relay.wait_frame(20)
    assert relay.grab_fps == 0 and relay.region is not None and relay.region.width > 320

    def grabbing() -> list[int]:
        running = []
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):  # gone, or exited and not yet reaped (a zombie)
                if proc.name() == "ffmpeg" and f"{caller_display.display}+0,0" in proc.cmdline():
                    running.append(proc.pid)
        return running

    wait_for(lambda: not grabbing(), 20, "the still grab's ffmpeg to exit")
    assert relay.alive()
    caller_display.show_picture((320, 240), "red", "red")
    wait_for(lambda: relay.region is not None and relay.region.width == 320, 30, "relay to grab the window")
    assert relay.grab_fps == 15


def test_camera_keeps_working_when_the_relay_restarts(
    room_display: Xvfb, caller_display: Xvfb, pages_url: str, start_relay: Callable[..., MjpegRelay],
    start_browser: Callable[..., Browser]
) -> None:
    """Stop the relay, change the picture, start a relay on the same port: the page's track shows the new picture."""
    caller_display.show_picture((320, 240), "red", "red")
    wait_for(lambda: close_to(rgb_at(caller_display.grab_rgb(ROOM_SIZE), ROOM_SIZE[0], 10, 10), (255, 0, 0)), 30,
             "the caller window")
    relay = start_relay(display=caller_display.display, size=CAMERA)
    port = int(relay.url.rsplit(":", 1)[1].split("/")[0])
    browser = start_browser(display=room_display.display, env={}, camera_url=relay.url)
    browser.driver.get(f"{pages_url}/media.html")
    browser.driver.set_script_timeout(60)
    browser.driver.execute_async_script("window.probe.open({video: true}).then(arguments[0], arguments[0])")

    def centre():  # type: ignore[no-untyped-def]
        return browser.driver.execute_script("return window.probe.pixels([[320, 180]])")["rgb"][0]

    wait_for(lambda: close_to(centre(), (255, 0, 0)), 30, "red on the page camera")
    relay.stop()
    caller_display.close_windows()
    caller_display.show_picture((320, 240), "blue", "blue")
    start_relay(display=caller_display.display, size=CAMERA, port=port, token=relay.token)  # the page's URL again
    wait_for(lambda: close_to(centre(), (0, 0, 255)), 60, "blue on the page camera after the relay restart")
    stats = browser.driver.execute_script("return window.__sipmediagw.stats()")
    assert stats["connects"] >= 2, stats


def test_microphone_is_the_pulseaudio_source(
    room_display: Xvfb, pulse: Pulse, pages_url: str, tmp_path: Path, start_browser: Callable[..., Browser]
) -> None:
    """A 1 kHz tone played into the null sink arrives on the page's getUserMedia audio track; DSP is off."""
    pulse.play_tone(tmp_path, 1000)
    browser = start_browser(display=room_display.display, env=pulse.env, camera_url=None)
    browser.driver.get(f"{pages_url}/media.html")
    browser.driver.set_script_timeout(60)
    tracks = browser.driver.execute_async_script(
        "window.probe.open({audio: {echoCancellation: true}, video: true}).then(arguments[0], "
        "e => arguments[0]('ERR ' + e))")
    assert isinstance(tracks, list), tracks
    audio = [t for t in tracks if t["kind"] == "audio"]
    assert len(audio) == 1 and len(tracks) == 2, tracks
    settings = audio[0]["settings"]
    # The page asked for echo cancellation; the gateway's microphone overrides it.
    assert settings.get("echoCancellation") is False, settings
    assert settings.get("noiseSuppression") is False, settings
    assert settings.get("autoGainControl") is False, settings
    hz = browser.driver.execute_async_script("window.probe.pitch(4000).then(arguments[0])")
    assert hz is not None and abs(hz - 1000) <= 25, hz
    devices = browser.driver.execute_async_script("window.probe.devices().then(arguments[0])")
    assert ["videoinput", "sipmediagw-camera"] in devices, devices


def test_chromium_crash_is_detected_and_cleaned_up(
    room_display: Xvfb, start_browser: Callable[..., Browser]
) -> None:
    """kill -9 of Chromium: alive() turns False, quit() still succeeds and leaves no Chromium process behind."""
    browser = start_browser(display=room_display.display, env={}, camera_url=None)
    driver_pid = browser.driver.service.process.pid
    assert browser.alive()
    pid = browser.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not browser.alive(), 30, "alive() to notice the crash")
    browser.quit()
    assert not browser.alive()
    wait_for(lambda: not psutil.pid_exists(driver_pid) or psutil.Process(driver_pid).status() == psutil.STATUS_ZOMBIE,
             30, "chromedriver to exit")
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if room_display.display in " ".join(p.info["cmdline"] or [])
                 and "chromium" in " ".join(p.info["cmdline"] or [])]
    assert not [p for p in leftovers if p.status() != psutil.STATUS_ZOMBIE], leftovers


# -- drivers against fixture pages (Jitsi / BigBlueButton servers are not reachable here) ------------------------------
@pytest.fixture(scope="module")
def shared_browser(
    tmp_path_factory: pytest.TempPathFactory, require_programs: Callable[..., None]
) -> Iterator[Browser]:
    """One browser for the fixture-page flows (pages ask for a microphone: it needs PulseAudio)."""
    require_programs(*DISPLAY_PROGRAMS, *PULSE_PROGRAMS, *BROWSER_PROGRAMS)
    with contextlib.ExitStack() as cleanup:  # a part that fails to start still stops the ones before it
        xvfb = Xvfb(ROOM_SIZE, tmp_path_factory.mktemp("display"))
        cleanup.callback(xvfb.close)
        pulse = Pulse(tmp_path_factory.mktemp("pulse"))
        cleanup.callback(pulse.close)
        browser = Browser(display=xvfb.display, env=pulse.env, camera_url=None)
        cleanup.callback(browser.quit)
        browser.start()
        yield browser


def test_jitsi_driver_skips_prejoin_and_sets_the_name(shared_browser: Browser, pages_url: str) -> None:
    room_cls = load_room_driver("jitsi", BROWSING)
    hostile_room = "Café & co/../x?y#z"
    name = 'Ålice "O\'Brien" & <b>co</b>#x=1'
    session = BrowserRoomSession(shared_browser, room_cls, pages_url, hostile_room)
    session.join(name)
    fixture = shared_browser.driver.execute_script("return window.fixture")
    assert fixture["joined"] is True
    assert fixture["room"] == hostile_room  # one path segment, decoded back intact
    assert fixture["name"] == name
    assert fixture["badParams"] == []
    assert fixture["params"]["config.prejoinConfig.enabled"] is False
    # The hostile name added no key of its own.
    assert set(fixture["params"]) == {
        "config.prejoinConfig.enabled", "config.prejoinPageEnabled", "config.startWithAudioMuted",
        "config.startWithVideoMuted", "config.disableDeepLinking", "userInfo.displayName"}
    assert sorted(fixture["tracks"]) == ["audio", "video"]
    assert session.room is not None and session.room.participant_count() == 1
    session.leave()
    assert shared_browser.driver.current_url == "about:blank"


def test_jitsi_driver_falls_back_to_the_prejoin_screen(shared_browser: Browser, pages_url: str) -> None:
    room_cls = load_room_driver("jitsi", BROWSING)
    # A deployment that ignores our override: the driver types the name in the pre-join screen.
    room = room_cls(shared_browser.driver, pages_url, "room1",
                    {"config": {"config.prejoinConfig.enabled": True}})
    room.join("Bob Caller")
    fixture = shared_browser.driver.execute_script("return window.fixture")
    assert fixture["joined"] is True and fixture["name"] == "Bob Caller"
    room.leave()


def test_bigbluebutton_driver_joins_with_microphone_and_camera(shared_browser: Browser, pages_url: str) -> None:
    room_cls = load_room_driver("bigbluebutton", BROWSING)
    session = BrowserRoomSession(shared_browser, room_cls, pages_url, "abc-def-ghi")
    session.join("Alice Caller")
    driver = shared_browser.driver
    fixture = wait_for(lambda: (f := driver.execute_script("return window.fixture")) and f["camera"] and f, 30,
                       "the camera to be shared")
    assert fixture["path"] == "/rooms/abc-def-ghi/join"
    assert fixture["name"] == "Alice Caller"
    assert fixture["audio"] == "microphone"  # not listen-only
    driver_ref = session.room
    assert driver_ref is not None
    driver_ref.leave()
    # leave() ended on about:blank; the fixture recorded the logout click before that.
    assert driver.current_url == "about:blank"


# -- the janus driver against a real Janus ----------------------------------------------------------------------------
@pytest.fixture
def janus_room(tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[JanusServer]:
    """A real Janus VideoRoom (test bed) on the Docker bridge, which a BridgeKeeper container keeps up; both are
    removed at teardown, also when the test fails."""
    require_programs("janus", "docker")
    bridge_ip = docker_bridge_ip()
    (tmp_path / "janus").mkdir()
    # Each start() undoes itself when it fails; leaving the `with` removes both, in reverse order.
    with BridgeKeeper(), JanusServer(listen_ip=bridge_ip, workdir=tmp_path / "janus", http_port=free_port(bridge_ip),
                                     web_port=free_port(bridge_ip)) as janus:
        yield janus


@pytest.fixture
def observer(janus_room: JanusServer, require_programs: Callable[..., None]) -> Iterator[Participant]:
    """The test bed's headless participant for room 1234 (not joined yet); it leaves and quits before Janus stops."""
    require_programs(participant_module.CHROMIUM, participant_module.CHROMEDRIVER, "sox")
    participant = Participant(base_url=janus_room.base_url, room=1234, name="observer")
    yield participant
    participant.quit()


def test_janus_driver_joins_a_real_videoroom_with_camera_and_mic(
    room_display: Xvfb, caller_display: Xvfb, pulse: Pulse, tmp_path: Path, janus_room: JanusServer,
    start_relay: Callable[..., MjpegRelay], start_browser: Callable[..., Browser], observer: Participant
) -> None:
    """Real Janus (test bed) on the Docker bridge: the gateway browser joins room 1234 with the injected camera and the
    PulseAudio mic; a second (test-bed) participant hears our 1 kHz tone and sees our video."""
    pulse.play_tone(tmp_path, 1000)
    # A moving caller picture (two frames cycling), so "video changes" is meaningful.
    caller_display.animate((640, 360), [("red", "blue"), ("yellow", "green")])
    relay = start_relay(display=caller_display.display, size=CAMERA)
    browser = start_browser(display=room_display.display, env=pulse.env, camera_url=relay.url,
                            insecure_origins=[janus_room.base_url])
    session = BrowserRoomSession(browser, load_room_driver("janus", BROWSING), janus_room.base_url, "1234")
    session.join("SIP Gateway")
    observer.join()
    observer.wait_remote(1, timeout=60)
    hz = observer.remote_audio_frequency(timeout=60)
    assert hz is not None and abs(hz - 1000) <= 30, hz
    assert observer.remote_video_changing(timeout=60)
    assert session.room is not None
    wait_for(lambda: session.room.participant_count() == 2, 60, "the gateway page to see the participant")
    session.leave()
    assert browser.driver.current_url == "about:blank"
    wait_for(lambda: observer.remote_count() == 0, 30, "the gateway to leave the room")
