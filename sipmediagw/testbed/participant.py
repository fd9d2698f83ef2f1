"""A headless Chromium participant in a Janus room, publishing a known tone + fake video, measuring what it gets."""

from __future__ import annotations

import array
import base64
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from ._proc import TestbedError
from .tones import make_tone, write_pcm16

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Participant:
    """Selenium + headless Chromium joining `room` on our videoroom.html at `base_url`.

    Chromium's fake devices publish a `tone_hz` sine (a WAV made with sox) and its built-in moving test pattern.
    Measurements run in the page on the REMOTE participants' media (WebAudio analyser, getStats, canvas hash).
    """

    def __init__(self, *, base_url: str, room: int | str, tone_hz: int = 440, name: str = "participant",
                 workdir: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.room = room
        self.tone_hz = tone_hz
        self.name = name
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sipmediagw-participant-"))
        self.driver: webdriver.Chrome | None = None

    @property
    def url(self) -> str:
        """The room page this participant opens."""
        return f"{self.base_url}/videoroom.html?room={self.room}&name={self.name}"

    def chromium_args(self, tone: Path) -> list[str]:
        """Chromium flags: headless, fake devices from files, autoplay, and no background traffic to the internet."""
        return [
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            f"--user-data-dir={self.workdir / 'profile'}",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={tone}",
            "--autoplay-policy=no-user-gesture-required",
            # getUserMedia needs a secure context; the test site is plain HTTP on the bridge address.
            f"--unsafely-treat-insecure-origin-as-secure={self.base_url}",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--disable-domain-reliability", "--metrics-recording-only", "--no-pings",
            "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,Translate",
            "--window-size=1280,720",
        ]

    def join(self, timeout: float = 30) -> None:
        """Start Chromium, open the room page and wait until we are joined and publishing."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        tone = make_tone(self.workdir / f"tone-{self.tone_hz}.wav", self.tone_hz, seconds=120)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in self.chromium_args(tone):
            options.add_argument(arg)
        service = Service(executable_path=CHROMEDRIVER, log_output=str(self.workdir / "chromedriver.log"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_script_timeout(60)
        self.driver.get(self.url)
        if not self._wait(lambda: self._state().get("publishing") is True, timeout):
            raise self._fail(f"not publishing in room {self.room} after {timeout:.0f} s")

    def _state(self) -> dict:
        assert self.driver is not None
        state = self.driver.execute_script("return window.sipmediagw ? window.sipmediagw.state : {};")
        if state.get("error"):
            raise self._fail(f"room page error: {state['error']}")
        return dict(state)

    def _fail(self, reason: str) -> TestbedError:
        logs = ""
        try:
            if self.driver:
                logs = "\n".join(str(e.get("message")) for e in self.driver.get_log("browser")[-20:])
        except WebDriverException:
            pass
        return TestbedError(f"participant {self.name}: {reason}\n--- browser console ---\n{logs}")

    def _wait(self, check, timeout: float, interval: float = 0.25) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(interval)
        return False

    def remote_count(self) -> int:
        """How many remote participants' streams this page receives."""
        assert self.driver is not None
        return int(self.driver.execute_script("return window.sipmediagw.remoteCount();"))

    def wait_remote(self, count: int = 1, timeout: float = 30) -> None:
        """Wait until at least `count` remote participants are received."""
        if not self._wait(lambda: self.remote_count() >= count, timeout):
            raise self._fail(f"{self.remote_count()} remote participant(s) after {timeout:.0f} s, wanted {count}")

    def remote_audio_frequency(self, timeout: float = 30, window_ms: int = 2000) -> float | None:
        """Dominant frequency (Hz) heard from the remote participants over `window_ms`, or None if nothing audible
        in `timeout`."""
        assert self.driver is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hz = self.driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.sipmediagw.remoteAudioFrequency(arguments[0]).then(done, function () { done(null); });",
                int(window_ms))
            if hz:
                return float(hz)
            time.sleep(0.5)
        return None

    def wait_tone(self, hz: float, tolerance: float, timeout: float) -> float | None:
        """Return as soon as remote audio within `tolerance` Hz of `hz` is heard (the frequency heard), None if not
        within `timeout` s. The page listens the whole time (no gaps between polls), so the return is the onset."""
        assert self.driver is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            heard = self.driver.execute_async_script(  # in turns well inside the 60 s script timeout
                "const done = arguments[arguments.length - 1];"
                "window.sipmediagw.toneHeard(arguments[0], arguments[1], arguments[2])"
                ".then(done, function () { done(null); });",
                float(hz), float(tolerance), int(min(left, 20.0) * 1000))
            if heard:
                return float(heard)
        return None

    def record_remote_audio(self, path: Path, seconds: float) -> Path | None:
        """Record `seconds` of what this page hears from the remote participants into a mono WAV at `path`;
        None when no remote audio track exists."""
        assert self.driver is not None
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.sipmediagw.recordRemoteAudio(arguments[0]).then(done, function (e) { done(String(e)); });",
            int(seconds * 1000))
        if result is None:
            return None
        if not isinstance(result, dict):
            raise self._fail(f"recording the room's audio failed: {result}")
        pcm = array.array("h", base64.b64decode(result["pcm"]))
        if sys.byteorder == "big":
            pcm.byteswap()  # the page wrote little-endian samples
        return write_pcm16(path, pcm, int(result["rate"]))

    def frames_decoded(self) -> int:
        """Total remote video frames decoded so far (getStats inbound-rtp framesDecoded)."""
        assert self.driver is not None
        return int(self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.sipmediagw.framesDecoded().then(done, function () { done(0); });"))

    def frame_hashes(self) -> dict:
        """Pixel hash of each remote video, keyed by feed id."""
        assert self.driver is not None
        return dict(self.driver.execute_script("return window.sipmediagw.remoteFrameHashes();"))

    def remote_video_changing(self, timeout: float = 30) -> bool:
        """True when remote frames are being decoded (framesDecoded grows) AND the picture changes (hash)."""
        deadline = time.monotonic() + timeout
        first_frames, first_hashes = self.frames_decoded(), self.frame_hashes()
        while time.monotonic() < deadline:
            time.sleep(1)
            frames, hashes = self.frames_decoded(), self.frame_hashes()
            changed = any(hashes.get(feed) not in (None, h) for feed, h in first_hashes.items())
            if frames > first_frames and changed:
                return True
            if not first_hashes:
                first_hashes = hashes
        return False

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the room page as this participant sees it."""
        assert self.driver is not None
        self.driver.save_screenshot(str(path))
        return path

    def leave(self) -> None:
        """Leave the room and destroy the Janus session (no ghost publisher)."""
        if self.driver is None:
            return
        try:
            self.driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "if (window.sipmediagw) { window.sipmediagw.leave(function () { done(true); }); } else { done(false); }")
        except WebDriverException:
            pass

    def quit(self) -> None:
        """Leave, then quit Chromium. Idempotent."""
        if self.driver is None:
            return
        self.leave()
        try:
            self.driver.quit()
        except WebDriverException:
            pass
        self.driver = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Participant":
        self.join()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.quit()
