"""The keypad menu with real parts: menu.html in the gateway's headful Chromium on an Xvfb display, read back from
the display the way baresip sends it (x11grab, then scaled and VP8-coded like a caller's video), and the spoken
prompts played by paplay into the gateway's own PulseAudio setup (media.py's userspace script), recorded from the
monitor baresip records and measured as a level over time.

Every process a test starts is stopped by a fixture, pass or fail.
"""

from __future__ import annotations

import array
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import psutil
import pytest
from selenium.common.exceptions import WebDriverException

from sipmediagw.dispatch import RoomTarget
from sipmediagw.gateway import ivr, notice
from sipmediagw.gateway.browser import Browser
from sipmediagw.gateway.ivr import JOIN, KeypadMenu, MenuView, Outcome
from sipmediagw.gateway.media import ROOM_SINK, USERSPACE, MediaPlan
from sipmediagw.gateway.menu import NoticeScreen
from sipmediagw.gateway.menu_screen import Marker, MenuScreen, decode_marker, read_cells
from sipmediagw.gateway.process import ManagedProcess
from sipmediagw.gateway.prompts import PromptPlayer, prompt_path
from sipmediagw.testbed.tones import level_db, read_mono

from test_browser_real import ROOM_SIZE, Xvfb, room_display, start_browser, wait_for  # noqa: F401 (fixtures)

CALLER_SIZE = (640, 360)  # what a room system may receive: the display scaled down, lossy-coded
RATE = 16000  # recording rate (the prompts' own)
FRAME_S = 0.02
SPEECH_DB = -50.0  # a 20 ms frame louder than this is speech (the prompts' speech frames are around -25 dBFS)
SILENCE_DB = -70.0  # PulseAudio's null sink gives digital silence when nothing plays


# -- the screen ---------------------------------------------------------------------------------------------------
def caller_frame(display: Xvfb) -> bytes:
    """The display as a caller decodes it: one second of x11grab, scaled to 640x360 and coded with VP8 at a modest
    bit rate (baresip's codec), decoded again; the last frame, RGB24."""
    w, h = ROOM_SIZE
    cw, ch = CALLER_SIZE
    with tempfile.TemporaryDirectory(prefix="menu-video-") as tmp:
        video = Path(tmp) / "caller.webm"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "x11grab", "-draw_mouse", "0", "-framerate", "15",
             "-video_size", f"{w}x{h}", "-i", display.display, "-frames:v", "15", "-vf", f"scale={cw}:{ch}",
             "-c:v", "libvpx", "-b:v", "400k", "-deadline", "realtime", "-cpu-used", "8", str(video)],
            check=True, capture_output=True, timeout=60)
        raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(video), "-f", "rawvideo",
                              "-pix_fmt", "rgb24", "-"], check=True, capture_output=True, timeout=60).stdout
    size = cw * ch * 3
    assert raw and len(raw) % size == 0, f"decoded {len(raw)} bytes, not whole {cw}x{ch} frames"
    return raw[-size:]


def wait_marker(display: Xvfb, view: MenuView, what: str) -> Marker:
    """Wait until x11grab of the display shows the marker of `view`; the failure message says what was read."""
    expected = Marker.of(view)
    seen: list[object] = []

    def shown() -> bool:
        frame = display.grab_rgb(ROOM_SIZE)
        marker = decode_marker(frame, *ROOM_SIZE)
        seen[:] = [marker if marker else read_cells(frame, *ROOM_SIZE)]
        return marker == expected

    try:
        wait_for(shown, 30, f"{what}: marker {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last read: {seen}") from None
    return expected


def screen_text(browser: Browser, element: str) -> str:
    return str(browser.driver.execute_script(f"return document.getElementById('{element}').textContent"))


@pytest.fixture
def menu_browser(room_display: Xvfb, start_browser: Callable[..., Browser]) -> Browser:  # noqa: F811
    """The gateway's browser (kiosk, 1280x720) on its own room display."""
    return start_browser(display=room_display.display, env={}, camera_url=None)


def test_typed_digits_are_on_the_callers_screen(room_display: Xvfb, menu_browser: Browser) -> None:  # noqa: F811
    """1 2 * 3 4 #: after every key the display shows the state's marker and the digits as typed; the caller's
    scaled, VP8-coded picture still carries the marker; # joins meeting 134."""
    screen = MenuScreen(menu_browser.driver, lock=menu_browser.lock)
    menu = KeypadMenu(lambda meeting, platform: meeting == "134", timeout=600)  # no timeout on a slow machine
    step = menu.start()
    screen.show(step.view)
    wait_marker(room_display, step.view, "the first screen")

    # The page fills the display and its text is big enough to read at 640x360 (half these sizes).
    geometry = menu_browser.driver.execute_script(
        "const px = (id) => parseFloat(getComputedStyle(document.getElementById(id)).fontSize);"
        "return [innerWidth, innerHeight, px('prompt'), px('digits'), px('hint'), px('error'), px('title')]")
    assert geometry[:2] == list(ROOM_SIZE), geometry
    prompt_px, digits_px, hint_px, error_px, title_px = geometry[2:]
    assert prompt_px >= 56 and digits_px >= 110 and min(hint_px, error_px, title_px) >= 36, geometry

    typed = ""
    for key in "12*34":
        step = menu.key(key)
        typed = typed[:-1] if key == "*" else typed + key
        screen.show(step.view)
        marker = wait_marker(room_display, step.view, f"after key {key}")
        assert marker.shows(typed) and marker.stage == ivr.MEETING and not marker.error
        assert screen_text(menu_browser, "digits").rstrip("_") == typed

    decoded = decode_marker(caller_frame(room_display), *CALLER_SIZE)
    assert decoded == Marker.of(step.view) and decoded.shows("134"), decoded

    step = menu.key("#")
    assert step.outcome == Outcome(JOIN, "134", None) and step.prompt == (ivr.JOINING_PROMPT,)
    screen.show(step.view)
    assert wait_marker(room_display, step.view, "joining").stage == ivr.JOINING
    assert "134" in screen_text(menu_browser, "prompt")

    screen.hide()
    assert menu_browser.driver.current_url == "about:blank"
    wait_for(lambda: decode_marker(room_display.grab_rgb(ROOM_SIZE), *ROOM_SIZE) is None, 30, "the menu to go away")


def test_platform_choice_and_unknown_meeting_on_screen(room_display: Xvfb, menu_browser: Browser) -> None:  # noqa: F811
    """Two platforms: the choices are listed; 2 picks BigBlueButton; an unknown number shows the error line (the
    marker's error flag) with the digits cleared; the longest number fits on the screen."""
    screen = MenuScreen(menu_browser.driver, lock=menu_browser.lock)
    menu = KeypadMenu(lambda meeting, platform: False, ["jitsi", "bigbluebutton"], timeout=600, max_digits=12)
    step = menu.start()
    screen.show(step.view)
    assert wait_marker(room_display, step.view, "platform choice").stage == ivr.PLATFORM
    listed = menu_browser.driver.execute_script(
        "return [...document.querySelectorAll('#choices li')].map(li => li.textContent)")
    assert listed == ["1Jitsi Meet", "2BigBlueButton"]

    step = menu.key("2")
    screen.show(step.view)
    assert wait_marker(room_display, step.view, "platform 2 chosen").platform_index == 2
    assert screen_text(menu_browser, "platform") == "BigBlueButton"

    for key in "987654321098":
        step = menu.key(key)
    screen.show(step.view)
    wait_marker(room_display, step.view, "twelve digits")
    box = menu_browser.driver.execute_script(
        "const r = document.getElementById('digits').getBoundingClientRect(); return [r.left, r.right, r.bottom]")
    assert box[0] >= 0 and box[1] <= ROOM_SIZE[0] and box[2] <= ROOM_SIZE[1] * (1 - 48 / 720), box

    step = menu.key("#")
    screen.show(step.view)
    marker = wait_marker(room_display, step.view, "unknown meeting")
    assert marker.error and marker.digit_count == 0 and marker.platform_index == 2
    assert "987654321098" in screen_text(menu_browser, "error")
    decoded = decode_marker(caller_frame(room_display), *CALLER_SIZE)
    assert decoded == marker, decoded


class SilentPlayer:
    """A PromptPlayer stand-in: this test is about the screen (the prompts' path is tested below)."""

    playing = False

    def play(self, prompt: str | Sequence[str]) -> bool:
        return True

    def stop(self) -> None:
        pass


def test_the_join_failure_notice_on_the_screen(room_display: Xvfb, menu_browser: Browser) -> None:  # noqa: F811
    """A room server that refuses connections: real chromedriver's error is mapped to "did not answer", and the notice
    (NoticeScreen over MenuScreen, as the gateway wires it) replaces Chromium's error page on the display: marker stage
    notice with the error flag, the headline, the reason and the code, all inside the picture above the band."""
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = RoomTarget("janus", f"http://127.0.0.1:{port}", "1234")
    with pytest.raises(WebDriverException) as failed:
        menu_browser.driver.get(f"{target.base_url}/?room={target.room}")  # what a driver's join does first
    told = notice.join_failed(failed.value, target)
    assert told.category == notice.SERVER and told.detail == "net::ERR_CONNECTION_REFUSED", str(failed.value)

    NoticeScreen(lambda: MenuScreen(menu_browser.driver, lock=menu_browser.lock), SilentPlayer()).show(told)
    marker = wait_marker(room_display, told.view(), "the notice")
    assert marker.stage == ivr.NOTICE and marker.error
    assert screen_text(menu_browser, "prompt") == notice.HEADLINE
    assert screen_text(menu_browser, "error") == "The meeting's server did not answer."
    assert "Code: net::ERR_CONNECTION_REFUSED" in screen_text(menu_browser, "hint")
    assert screen_text(menu_browser, "title") == "Meeting 1234"
    boxes = menu_browser.driver.execute_script(
        "return ['title', 'prompt', 'error', 'hint'].map(id => {"
        "  const r = document.getElementById(id).getBoundingClientRect(); return [id, r.left, r.right, r.bottom]; })")
    for name, left, right, bottom in boxes:
        assert left >= 0 and right <= ROOM_SIZE[0] and bottom <= ROOM_SIZE[1] * (1 - 48 / 720), (name, boxes)

    # the longest code line, in the widest capital, wraps inside the display, above the band
    widest = notice.join_failed(RuntimeError("W" * 200), target)
    MenuScreen(menu_browser.driver, lock=menu_browser.lock).show(widest.view())
    width, bottom = menu_browser.driver.execute_script(
        "const hint = document.getElementById('hint'); return [hint.scrollWidth, hint.getBoundingClientRect().bottom]")
    assert len(widest.detail) == notice.MAX_DETAIL and width <= ROOM_SIZE[0], width
    assert bottom <= ROOM_SIZE[1] * (1 - 48 / 720), bottom


# -- the prompts ----------------------------------------------------------------------------------------------------
class GatewayPulse:
    """PulseAudio configured as a gateway's (media.py, userspace mode), on a short private socket path."""

    def __init__(self, workdir: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pa-"))  # a unix socket path must stay under 108 bytes
        self.plan = MediaPlan(USERSPACE, self.dir / "native")
        script = workdir / "gateway.pa"
        script.write_text(self.plan.pulse_script())
        self.env = {"PULSE_SERVER": self.plan.pulse_server}
        home = {"HOME": str(self.dir), "XDG_RUNTIME_DIR": str(self.dir), "XDG_CONFIG_HOME": str(self.dir)}
        self.process = ManagedProcess("pulseaudio", self.plan.pulse_argv(script), env=home, ready=self._answers)
        self.process.start()

    def _answers(self) -> bool:
        return subprocess.run(["pactl", "info"], env={**os.environ, **self.env}, capture_output=True,
                              timeout=10).returncode == 0

    def close(self) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Recorder:
    """parec of the caller's side (the to_caller monitor, what baresip sends): 16 kHz mono s16le into a file."""

    def __init__(self, pulse: GatewayPulse, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb")
        self.proc = subprocess.Popen(
            ["parec", f"--device={ROOM_SINK}.monitor", "--format=s16le", f"--rate={RATE}", "--channels=1",
             "--latency-msec=20", "--client-name=menu-test-recorder"],
            env={**os.environ, **pulse.env}, stdout=self._file, stderr=subprocess.PIPE, start_new_session=True)

    def seconds(self) -> float:
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None
            raise AssertionError(f"parec exited with {self.proc.returncode}: {self.proc.stderr.read()!r}")
        return self.path.stat().st_size / (2 * RATE)

    def wait_until(self, seconds: float, what: str) -> None:
        wait_for(lambda: self.seconds() >= seconds, 30, f"{seconds:.2f} s recorded ({what})", interval=0.02)

    def samples(self) -> list[float]:
        pcm = array.array("h")
        data = self.path.read_bytes()
        pcm.frombytes(data[: len(data) // 2 * 2])
        if sys.byteorder == "big":
            pcm.byteswap()
        return [s / 32768.0 for s in pcm]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self._file.close()


@pytest.fixture(scope="module")
def gateway_pulse(tmp_path_factory: pytest.TempPathFactory,
                  require_programs: Callable[..., None]) -> Iterator[GatewayPulse]:
    """One gateway PulseAudio for the module's audio tests (each records and plays on its own)."""
    require_programs("pulseaudio", "pactl", "paplay", "parec")
    pulse = GatewayPulse(tmp_path_factory.mktemp("gateway-pulse"))
    try:
        pulse.process.wait_ready(30)
        yield pulse
    finally:
        pulse.close()


@pytest.fixture
def recorder(gateway_pulse: GatewayPulse, tmp_path: Path) -> Iterator[Recorder]:
    rec = Recorder(gateway_pulse, tmp_path / "caller-side.raw")
    try:
        rec.wait_until(0.2, "parec connected")
        yield rec
    finally:
        rec.close()


@pytest.fixture
def player(gateway_pulse: GatewayPulse) -> Iterator[PromptPlayer]:
    p = PromptPlayer(sink=ROOM_SINK, server=gateway_pulse.plan.pulse_server)
    yield p
    p.close()


def envelope(samples: Sequence[float], rate: int = RATE) -> list[float]:
    """Level (dBFS) of every 20 ms frame, floored at -80."""
    n = int(rate * FRAME_S)
    return [max(-80.0, level_db(samples[i:i + n])) for i in range(0, len(samples) - n + 1, n)]


def prompt_envelope(prompt_id: str) -> list[float]:
    samples, rate = read_mono(prompt_path(prompt_id))
    assert rate == RATE
    return envelope(samples)


def correlation(a: Sequence[float], b: Sequence[float]) -> float:
    n = min(len(a), len(b))
    if n < 5:
        return 0.0
    a, b = a[:n], b[:n]
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va, vb = sum((x - ma) ** 2 for x in a), sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else 0.0


def locate(recorded: Sequence[float], source: Sequence[float], start: int = 0) -> tuple[int, float]:
    """The frame offset (from `start`) where `source`'s envelope best matches the recording, and that correlation."""
    best = (start, -1.0)
    for lag in range(start, max(start + 1, len(recorded) - len(source) + 1)):
        score = correlation(recorded[lag:lag + len(source)], source)
        if score > best[1]:
            best = (lag, score)
    return best


def speech_level(envelope_db: Sequence[float]) -> float:
    """Mean level of the speech frames (dB), -80 when there are none."""
    loud = [x for x in envelope_db if x > SPEECH_DB]
    return sum(loud) / len(loud) if loud else -80.0


def first_speech(env: Sequence[float]) -> int | None:
    return next((i for i, x in enumerate(env) if x > SPEECH_DB), None)


def test_prompt_is_heard_on_the_callers_side(recorder: Recorder, player: PromptPlayer) -> None:
    """The whole prompt arrives where baresip records, at its own level, word for word (its level over time matches
    the WAV's), and then silence."""
    assert player.play(ivr.ENTER_MEETING)
    assert player.wait(30), "the prompt did not finish"
    end = recorder.seconds()
    recorder.wait_until(end + 0.5, "silence after the prompt")
    recorded = envelope(recorder.samples())
    source = prompt_envelope(ivr.ENTER_MEETING)
    onset = first_speech(recorded)
    assert onset is not None, f"no speech recorded (loudest frame {max(recorded):.1f} dBFS)"
    lag, score = locate(recorded, source, max(0, onset - 25))
    assert score >= 0.9, f"the recording does not follow the prompt's level over time (r={score:.2f})"
    heard = recorded[lag:lag + len(source)]
    assert abs(speech_level(heard) - speech_level(source)) <= 3, (speech_level(heard), speech_level(source))
    speech_share = sum(x > SPEECH_DB for x in heard) / len(heard)
    assert speech_share >= 0.5, f"only {speech_share:.0%} of the prompt's frames were heard as speech"
    tail = recorded[lag + len(source) + 5:]
    assert len(tail) >= 10 and max(tail) < SILENCE_DB, "sound after the prompt ended"


def test_a_new_prompt_interrupts_the_previous_one(recorder: Recorder, player: PromptPlayer) -> None:
    """enter_meeting (3.4 s) is cut after about 0.8 s by unknown_meeting: the caller hears the start of the first,
    then the whole second, then silence; never both at once, never the rest of the first."""
    assert player.play(ivr.ENTER_MEETING)
    wait_for(lambda: first_speech(envelope(recorder.samples())) is not None, 30, "the first prompt to be heard")
    onset_s = first_speech(envelope(recorder.samples())) * FRAME_S  # type: ignore[operator]
    recorder.wait_until(onset_s + 0.8, "0.8 s of the first prompt")
    first_pid = player.pid
    assert first_pid is not None
    assert player.play(ivr.UNKNOWN_MEETING)
    assert player.pid != first_pid and not psutil.pid_exists(first_pid), "the first paplay still runs"
    assert player.wait(30)
    recorder.wait_until(recorder.seconds() + 0.6, "silence after the second prompt")

    recorded = envelope(recorder.samples())
    first, second = prompt_envelope(ivr.ENTER_MEETING), prompt_envelope(ivr.UNKNOWN_MEETING)
    onset = first_speech(recorded)
    assert onset is not None
    start_second, score = locate(recorded, second, onset + 10)
    assert score >= 0.9, f"the second prompt is not heard as itself (r={score:.2f})"
    cut = start_second - onset  # frames of the first prompt heard
    assert 10 <= cut <= len(first) - 50, f"{cut * FRAME_S:.2f} s of the first prompt ({len(first) * FRAME_S:.2f} s)"
    head_lag, head_score = locate(recorded[:start_second], first[:cut], max(0, onset - 25))
    assert head_score >= 0.8, f"what came before the second prompt is not the first one (r={head_score:.2f})"
    tail = recorded[start_second + len(second) + 5:]
    assert len(tail) >= 10 and max(tail) < SILENCE_DB, "the first prompt came back"


def test_a_key_stops_the_prompt(recorder: Recorder, player: PromptPlayer) -> None:
    """The menu says interrupt on a key: stop() silences the caller's side at once."""
    menu = KeypadMenu(lambda meeting, platform: False)
    step = menu.start()
    assert player.play(step.prompt)
    wait_for(lambda: first_speech(envelope(recorder.samples())) is not None, 30, "the prompt to be heard")
    onset_s = first_speech(envelope(recorder.samples())) * FRAME_S  # type: ignore[operator]
    recorder.wait_until(onset_s + 0.5, "0.5 s of the prompt")
    step = menu.key("5")
    assert step.interrupt
    player.stop()
    stopped_at = recorder.seconds()
    assert not player.playing
    recorder.wait_until(stopped_at + 1.5, "what follows the key")
    recorded = envelope(recorder.samples())
    after = recorded[int((stopped_at + 0.3) / FRAME_S):]
    assert after and max(after) < SILENCE_DB, f"still sound {max(after):.1f} dBFS after the key"
    heard = sum(x > SPEECH_DB for x in recorded) * FRAME_S
    assert heard < 2.0, f"{heard:.2f} s of speech: the prompt was not cut"


def test_prompt_sequence_reaches_the_caller(recorder: Recorder, player: PromptPlayer) -> None:
    """The platform choice is joined from pieces ("Choose the platform. Press 1 for Jitsi Meet. Press 2 for ...");
    the caller hears all of it in order."""
    step = KeypadMenu(lambda meeting, platform: False, ["jitsi", "bigbluebutton"]).start()
    assert player.play(step.prompt)
    assert player.wait(30)
    recorder.wait_until(recorder.seconds() + 0.5, "silence after the sequence")
    recorded = envelope(recorder.samples())
    samples: list[float] = []
    for prompt_id in step.prompt:
        samples += read_mono(prompt_path(prompt_id))[0]
    joined = envelope(samples)
    onset = first_speech(recorded)
    assert onset is not None
    lag, score = locate(recorded, joined, max(0, onset - 25))
    assert score >= 0.9, f"the sequence is not heard as its parts in order (r={score:.2f})"
    assert abs(speech_level(recorded[lag:lag + len(joined)]) - speech_level(joined)) <= 3
