"""The room side with real parts: Chromium (headful on Xvfb), ffmpeg, PulseAudio, the MJPEG relay, the drivers.

Every test starts its own Xvfb displays and PulseAudio daemon, so it can run beside other engineers' processes.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from sipmediagw.gateway.browser import Browser, BrowserRoomSession
from sipmediagw.gateway.mjpeg import IDLE_FPS, MjpegRelay
from sipmediagw.room import load_room_driver

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "tests" / "fixtures" / "pages"
BROWSING = REPO / "browsing"
ROOM_SIZE = (1280, 720)
CAMERA = (640, 360)


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


class Xvfb:
    """One Xvfb server for a test."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.number = _free_display()
        self.display = f":{self.number}"
        self.proc = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp", "-noreset"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: Path(f"/tmp/.X11-unix/X{self.number}").exists(), 20, f"Xvfb {self.display}")
        self.windows: list[subprocess.Popen] = []

    def show_image(self, path: Path) -> subprocess.Popen:
        """Open a window showing `path` at the top-left (like baresip's video window), without a window manager."""
        win = subprocess.Popen(["display", "-geometry", "+0+0", "-title", "caller-video", str(path)],
                               env={**os.environ, "DISPLAY": self.display},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.windows.append(win)
        return win

    def animate(self, frames: list[Path]) -> subprocess.Popen:
        """A top-left window cycling through `frames` (a moving caller video)."""
        win = subprocess.Popen(["animate", "-geometry", "+0+0", "-delay", "25", *map(str, frames)],
                               env={**os.environ, "DISPLAY": self.display},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.windows.append(win)
        return win

    def grab_rgb(self, size: tuple[int, int]) -> bytes:
        """The display's pixels as x11grab sees them (what baresip sends to the caller), raw RGB."""
        out = subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "x11grab", "-draw_mouse", "0", "-video_size", f"{size[0]}x{size[1]}",
             "-i", self.display, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True, check=True, timeout=30)
        return out.stdout

    def close(self) -> None:
        for proc in [*self.windows, self.proc]:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def room_display() -> Iterator[Xvfb]:
    xvfb = Xvfb(ROOM_SIZE)
    yield xvfb
    xvfb.close()


@pytest.fixture
def caller_display() -> Iterator[Xvfb]:
    xvfb = Xvfb(ROOM_SIZE)
    yield xvfb
    xvfb.close()


def make_image(path: Path, size: tuple[int, int], left: str, right: str) -> Path:
    """A picture whose left half is `left` and right half `right` (ImageMagick)."""
    w, h = size
    subprocess.run(["convert", "-size", f"{w // 2}x{h}", f"xc:{left}", "-size", f"{w - w // 2}x{h}", f"xc:{right}",
                    "+append", str(path)], check=True, timeout=30)
    return path


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
    """A private PulseAudio daemon: null sink `callerin` (what baresip would play) + its remapped monitor `callermic`."""

    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "pulse.sock"
        script = workdir / "pulse.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            "load-module module-null-sink sink_name=callerin sink_properties=device.description=callerin\n"
            "load-module module-remap-source source_name=callermic master=callerin.monitor "
            "source_properties=device.description=callermic\n"
            "set-default-source callermic\n")
        env = {**os.environ, "HOME": str(workdir), "XDG_RUNTIME_DIR": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
        self.env = {"PULSE_SERVER": f"unix:{self.socket}", "PULSE_SOURCE": "callermic", "PULSE_SINK": "callerin"}
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--use-pid-file=no", "--realtime=no",
             "--high-priority=no", "--exit-idle-time=-1", "--disallow-exit", "--log-target=stderr"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: subprocess.run(["pactl", "info"], env={**os.environ, **self.env},
                                        capture_output=True).returncode == 0, 30, "pulseaudio")
        self.players: list[subprocess.Popen] = []

    def play_tone(self, workdir: Path, hz: int, seconds: int = 60) -> None:
        tone = workdir / f"tone{hz}.wav"
        subprocess.run(["sox", "-n", "-r", "48000", "-c", "2", str(tone), "synth", str(seconds), "sine", str(hz),
                        "vol", "0.5"], check=True, timeout=60)
        self.players.append(subprocess.Popen(["paplay", "--device=callerin", str(tone)],
                                             env={**os.environ, **self.env}, start_new_session=True))

    def close(self) -> None:
        for proc in [*self.players, self.proc]:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[Pulse]:
    p = Pulse(tmp_path)
    yield p
    p.close()


def chromium_children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


# -- tests -----------------------------------------------------------------------------------------------------------
def test_room_display_shows_only_the_page(room_display: Xvfb, pages_url: str) -> None:
    """Kiosk, no infobar: every pixel x11grab sends to the caller is the page (solid green)."""
    browser = Browser(display=room_display.display, env={}, camera_url=None)
    browser.start()
    try:
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
    finally:
        browser.quit()


def test_injected_camera_shows_caller_window_scaled_not_cropped(
    room_display: Xvfb, caller_display: Xvfb, pages_url: str, tmp_path: Path
) -> None:
    """baresip-like 320x240 window (red|blue) -> relay scales it to 640x360 with side bars -> page camera pixels."""
    caller_display.show_image(make_image(tmp_path / "rb.png", (320, 240), "red", "blue"))
    wait_for(lambda: close_to(rgb_at(caller_display.grab_rgb(ROOM_SIZE), ROOM_SIZE[0], 10, 10), (255, 0, 0)), 30,
             "the caller window")
    relay = MjpegRelay(display=caller_display.display, size=CAMERA, log=lambda line: None)
    relay.start()
    browser = Browser(display=room_display.display, env={}, camera_url=relay.url, camera_size=CAMERA)
    try:
        wait_for(lambda: relay.region is not None and relay.region.width == 320, 30, "relay to grab the window")
        browser.start()
        browser.driver.get(f"{pages_url}/media.html")
        browser.driver.set_script_timeout(60)
        tracks = browser.driver.execute_async_script(
            "window.probe.open({video: true}).then(arguments[0], e => arguments[0]('ERR ' + e))")
        assert [t["kind"] for t in tracks] == ["video"], tracks
        # 320x240 (4:3) into 640x360: 480x360 picture centred, black bars 80 px wide on both sides.
        points = [[20, 180], [620, 180], [200, 180], [440, 180], [320, 5], [320, 355], [90, 180], [550, 180]]

        def page_pixels():  # type: ignore[no-untyped-def]
            result = browser.driver.execute_script("return window.probe.pixels(arguments[0])", points)
            rgb = result["rgb"]
            ok = (result["size"] == list(CAMERA) and close_to(rgb[0], (0, 0, 0)) and close_to(rgb[1], (0, 0, 0))
                  and close_to(rgb[2], (255, 0, 0)) and close_to(rgb[3], (0, 0, 255)))
            return rgb if ok else None

        rgb = wait_for(page_pixels, 30, "red|blue with black side bars on the page camera")
        # Not cropped: the picture reaches the top and bottom rows and starts right after the bars.
        assert close_to(rgb[4], (255, 0, 0)) or close_to(rgb[4], (0, 0, 255)), rgb
        assert close_to(rgb[5], (255, 0, 0)) or close_to(rgb[5], (0, 0, 255)), rgb
        assert close_to(rgb[6], (255, 0, 0)) and close_to(rgb[7], (0, 0, 255)), rgb
        # The page sees what ffmpeg grabbed (the relay's own frame).
        frame = decode_jpeg_rgb(relay.wait_frame(10))
        for (x, y), seen in zip(points[:4], rgb[:4]):
            assert close_to(rgb_at(frame, CAMERA[0], x, y), seen), (x, y)

        # The caller's video changes size (a new window 640x480 green|yellow): the relay follows it.
        for win in caller_display.windows:
            win.terminate()
        caller_display.show_image(make_image(tmp_path / "gy.png", (640, 480), "lime", "yellow"))
        wait_for(lambda: relay.region is not None and relay.region.width == 640, 30, "relay to follow the resize")

        def follows() -> bool:
            px = browser.driver.execute_script("return window.probe.pixels(arguments[0])", [[200, 180], [440, 180]])
            return close_to(px["rgb"][0], (0, 255, 0)) and close_to(px["rgb"][1], (255, 255, 0))

        wait_for(follows, 30, "the page camera to show the resized caller video")
        assert relay.alive()
    finally:
        browser.quit()
        relay.stop()
    assert not relay.alive()


def test_relay_idles_at_low_frame_rate_until_the_caller_video_window_appears(
    caller_display: Xvfb, tmp_path: Path
) -> None:
    """No caller video yet: grab the empty display at IDLE_FPS; baresip's window appears: full frame rate on it."""
    relay = MjpegRelay(display=caller_display.display, size=CAMERA, fps=15)
    relay.start()
    try:
        relay.wait_frame(20)
        assert relay.grab_fps == IDLE_FPS and relay.region is not None and relay.region.width > 320
        caller_display.show_image(make_image(tmp_path / "r.png", (320, 240), "red", "red"))
        wait_for(lambda: relay.region is not None and relay.region.width == 320, 30, "relay to grab the window")
        assert relay.grab_fps == 15
    finally:
        relay.stop()


def test_camera_keeps_working_when_the_relay_restarts(
    room_display: Xvfb, caller_display: Xvfb, pages_url: str, tmp_path: Path
) -> None:
    """Stop the relay, change the picture, start a relay on the same port: the page's track shows the new picture."""
    caller_display.show_image(make_image(tmp_path / "r.png", (320, 240), "red", "red"))
    wait_for(lambda: close_to(rgb_at(caller_display.grab_rgb(ROOM_SIZE), ROOM_SIZE[0], 10, 10), (255, 0, 0)), 30,
             "the caller window")
    relay = MjpegRelay(display=caller_display.display, size=CAMERA)
    relay.start()
    port = int(relay.url.rsplit(":", 1)[1].split("/")[0])
    browser = Browser(display=room_display.display, env={}, camera_url=relay.url)
    browser.start()
    second = MjpegRelay(display=caller_display.display, size=CAMERA, port=port)
    try:
        browser.driver.get(f"{pages_url}/media.html")
        browser.driver.set_script_timeout(60)
        browser.driver.execute_async_script("window.probe.open({video: true}).then(arguments[0], arguments[0])")

        def centre():  # type: ignore[no-untyped-def]
            return browser.driver.execute_script("return window.probe.pixels([[320, 180]])")["rgb"][0]

        wait_for(lambda: close_to(centre(), (255, 0, 0)), 30, "red on the page camera")
        relay.stop()
        for win in caller_display.windows:
            win.terminate()
        caller_display.show_image(make_image(tmp_path / "b.png", (320, 240), "blue", "blue"))
        second.start()
        wait_for(lambda: close_to(centre(), (0, 0, 255)), 60, "blue on the page camera after the relay restart")
        stats = browser.driver.execute_script("return window.__sipmediagw.stats()")
        assert stats["connects"] >= 2, stats
    finally:
        browser.quit()
        second.stop()
        relay.stop()


def test_microphone_is_the_pulseaudio_source(
    room_display: Xvfb, pulse: Pulse, pages_url: str, tmp_path: Path
) -> None:
    """A 1 kHz tone played into the null sink arrives on the page's getUserMedia audio track; DSP is off."""
    pulse.play_tone(tmp_path, 1000)
    browser = Browser(display=room_display.display, env=pulse.env, camera_url=None)
    browser.start()
    try:
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
    finally:
        browser.quit()


def test_chromium_crash_is_detected_and_cleaned_up(room_display: Xvfb) -> None:
    """kill -9 of Chromium: alive() turns False, quit() still succeeds and leaves no Chromium process behind."""
    browser = Browser(display=room_display.display, env={}, camera_url=None)
    browser.start()
    driver_pid = browser.driver.service.process.pid
    try:
        assert browser.alive()
        pid = browser.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not browser.alive(), 30, "alive() to notice the crash")
    finally:
        browser.quit()
    assert not browser.alive()
    wait_for(lambda: not psutil.pid_exists(driver_pid) or psutil.Process(driver_pid).status() == psutil.STATUS_ZOMBIE,
             30, "chromedriver to exit")
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if room_display.display in " ".join(p.info["cmdline"] or [])
                 and "chromium" in " ".join(p.info["cmdline"] or [])]
    assert not [p for p in leftovers if p.status() != psutil.STATUS_ZOMBIE], leftovers


# -- drivers against fixture pages (Jitsi / BigBlueButton servers are not reachable here) ------------------------------
@pytest.fixture(scope="module")
def shared_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One browser for the fixture-page flows (pages ask for a microphone: it needs PulseAudio)."""
    xvfb = Xvfb(ROOM_SIZE)
    pulse = Pulse(tmp_path_factory.mktemp("pulse"))
    browser = Browser(display=xvfb.display, env=pulse.env, camera_url=None)
    browser.start()
    yield browser
    browser.quit()
    pulse.close()
    xvfb.close()


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
def test_janus_driver_joins_a_real_videoroom_with_camera_and_mic(
    room_display: Xvfb, caller_display: Xvfb, pulse: Pulse, tmp_path: Path
) -> None:
    """Real Janus (test bed) on the Docker bridge: the gateway browser joins room 1234 with the injected camera and the
    PulseAudio mic; a second (test-bed) participant hears our 1 kHz tone and sees our video."""
    from sipmediagw.testbed.janus import JanusServer
    from sipmediagw.testbed.network import BridgeKeeper, docker_bridge_ip, free_port
    from sipmediagw.testbed.participant import Participant

    bridge_ip = docker_bridge_ip()
    keeper = BridgeKeeper()
    keeper.start()
    janus = JanusServer(listen_ip=bridge_ip, workdir=tmp_path / "janus",
                                http_port=free_port(bridge_ip), web_port=free_port(bridge_ip))
    (tmp_path / "janus").mkdir()
    janus.start()
    pulse.play_tone(tmp_path, 1000)
    # A moving caller picture (ImageMagick's animate cycles two frames), so "video changes" is meaningful.
    caller_display.animate([make_image(tmp_path / "a.png", (640, 360), "red", "blue"),
                            make_image(tmp_path / "b.png", (640, 360), "yellow", "green")])
    relay = MjpegRelay(display=caller_display.display, size=CAMERA)
    relay.start()
    browser = Browser(display=room_display.display, env=pulse.env, camera_url=relay.url,
                      insecure_origins=[janus.base_url])
    participant = Participant(base_url=janus.base_url, room=1234, name="observer")
    try:
        browser.start()
        session = BrowserRoomSession(browser, load_room_driver("janus", BROWSING), janus.base_url, "1234")
        session.join("SIP Gateway")
        participant.join()
        participant.wait_remote(1, timeout=60)
        hz = participant.remote_audio_frequency(timeout=60)
        assert hz is not None and abs(hz - 1000) <= 30, hz
        assert participant.remote_video_changing(timeout=60)
        assert session.room is not None
        wait_for(lambda: session.room.participant_count() == 2, 60, "the gateway page to see the participant")
        session.leave()
        assert browser.driver.current_url == "about:blank"
        wait_for(lambda: participant.remote_count() == 0, 30, "the gateway to leave the room")
    finally:
        participant.quit()
        browser.quit()
        relay.stop()
        janus.stop()
        keeper.stop()
