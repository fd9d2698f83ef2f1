"""MJPEG relay logic: frame splitting, letterbox geometry, window choice, ffmpeg command; what a page can do to
the relay's HTTP side (token paths, client limits)."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmediagw.gateway import mjpeg
from sipmediagw.gateway.mjpeg import (
    JpegStreamParser, MjpegRelay, Region, _FrameHub, _HttpServer, choose_region, ffmpeg_argv, fit_filter,
    parse_display_windows, parse_geometry_shell,
)


def fake_jpeg(payload: bytes) -> bytes:
    # Entropy-coded data never holds 0xFF followed by 0xD9 (0xFF is byte-stuffed): mimic that.
    return b"\xff\xd8" + payload.replace(b"\xff", b"\xff\x00") + b"\xff\xd9"


@given(
    frames=st.lists(st.binary(min_size=0, max_size=200), min_size=1, max_size=8),
    garbage=st.binary(max_size=50).filter(lambda g: b"\xff" not in g),
    cuts=st.lists(st.integers(min_value=1, max_value=64), max_size=40),
)
def test_parser_returns_every_frame_whatever_the_chunking(frames, garbage, cuts) -> None:
    jpegs = [fake_jpeg(f) for f in frames]
    stream = garbage + b"".join(jpegs)
    parser = JpegStreamParser()
    out: list[bytes] = []
    pos = 0
    for cut in cuts:
        out += parser.feed(stream[pos:pos + cut])
        pos += cut
    out += parser.feed(stream[pos:])
    assert out == jpegs


def test_parser_drops_a_truncated_frame_and_resyncs() -> None:
    parser = JpegStreamParser()
    assert parser.feed(b"\xff\xd8half a frame") == []
    assert parser.feed(fake_jpeg(b"abc") + fake_jpeg(b"def")) == [fake_jpeg(b"abc"), fake_jpeg(b"def")]


def _filter_geometry(flt: str) -> tuple[int, int, int, int, int, int]:
    m = re.match(r"scale=(\d+):(\d+):flags=\w+,pad=(\d+):(\d+):(\d+):(\d+):black", flt)
    assert m, flt
    return tuple(int(g) for g in m.groups())  # type: ignore[return-value]


@given(sw=st.integers(16, 4096), sh=st.integers(16, 4096), tw=st.integers(16, 1920), th=st.integers(16, 1080))
def test_fit_filter_scales_into_the_target_without_cropping(sw, sh, tw, th) -> None:
    w, h, pw, ph, x, y = _filter_geometry(fit_filter((sw, sh), (tw, th)))
    assert (pw, ph) == (tw, th)
    assert w <= tw and h <= th  # the whole picture fits: nothing is cropped
    assert x + w <= tw and y + h <= th
    assert w == tw or h == th or abs(w - tw) <= 2 or abs(h - th) <= 2  # it fills one dimension
    # aspect ratio kept within rounding (2 px on the scaled side)
    assert abs(w * sh - h * sw) <= 3 * max(sw, sh)


def test_fit_filter_letterboxes_4_3_into_16_9() -> None:
    assert fit_filter((320, 240), (640, 360)).startswith("scale=480:360:flags=bilinear,pad=640:360:80:0:black")


def test_fit_filter_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError):
        fit_filter((0, 240), (640, 360))


def test_choose_region_picks_the_video_window_not_the_root() -> None:
    screen = (1280, 720)
    windows = [Region(0, 0, 1280, 720), Region(0, 0, 352, 288), Region(0, 0, 10, 10)]
    assert choose_region(windows, screen) == Region(0, 0, 352, 288)


def test_choose_region_clips_a_window_larger_than_the_screen() -> None:
    assert choose_region([Region(0, 0, 1920, 1080)], (1280, 720)) == Region(0, 0, 1280, 720)
    assert choose_region([Region(-5, 0, 640, 480)], (1280, 720)) == Region(0, 0, 640, 480)


def test_choose_region_without_window_is_the_whole_screen() -> None:
    assert choose_region([], (640, 360)) == Region(0, 0, 640, 360)


def test_parse_geometry_shell() -> None:
    text = "WINDOW=123\nX=0\nY=0\nWIDTH=352\nHEIGHT=288\nSCREEN=0\n"
    assert parse_geometry_shell(text) == Region(0, 0, 352, 288)
    assert parse_geometry_shell("garbage") is None


def test_ffmpeg_argv_grabs_the_region_and_writes_mjpeg() -> None:
    argv = ffmpeg_argv(":5", Region(0, 0, 352, 288), (640, 360), 15, "tcp://127.0.0.1:9")
    assert argv[argv.index("-video_size") + 1] == "352x288"
    assert argv[argv.index("-i") + 1] == ":5+0,0"
    assert argv[argv.index("-framerate") + 1] == "15"
    assert "pad=640:360" in argv[argv.index("-vf") + 1]
    assert argv[-3:] == ["-f", "mjpeg", "tcp://127.0.0.1:9"]
    assert argv[argv.index("-threads") + 1] == "1"  # no frame-threading delay
    assert "crop" not in " ".join(argv)
    assert "-frames:v" not in argv  # grabs until stopped


def test_ffmpeg_argv_for_a_still_frame_exits_after_it() -> None:
    argv = ffmpeg_argv(":5", Region(0, 0, 1920, 1080), (640, 360), 15, "unix:/x/ingest.sock", frames=1)
    assert argv[argv.index("-frames:v") + 1] == "1"
    assert argv[-3:] == ["-f", "mjpeg", "unix:/x/ingest.sock"]


def test_parse_display_windows_reads_one_chained_xdotool_run() -> None:
    text = ("1920 1080\nWINDOW=1293\nX=0\nY=0\nWIDTH=1920\nHEIGHT=1080\nSCREEN=0\n"
            "WINDOW=2097160\nX=0\nY=0\nWIDTH=640\nHEIGHT=360\nSCREEN=0\n")
    screen, windows = parse_display_windows(text)  # type: ignore[misc]
    assert screen == (1920, 1080)
    assert windows == [Region(0, 0, 1920, 1080), Region(0, 0, 640, 360)]
    assert choose_region(windows, screen) == Region(0, 0, 640, 360)
    assert parse_display_windows("1280 720\n") == ((1280, 720), [])  # search found nothing
    assert parse_display_windows("") is None  # display unreachable
    assert parse_display_windows("Error: Can't open display\n") is None


class FakeFfmpeg:
    """ManagedProcess stand-in: records its command; `exit_code` None = running."""

    runs: list["FakeFfmpeg"] = []

    def __init__(self, name: str, argv: list[str], **_: object) -> None:
        self.argv = argv
        self.still = "-frames:v" in argv
        self.exit_code: int | None = 0 if self.still else None  # a still grab is done at once
        FakeFfmpeg.runs.append(self)

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return self.exit_code is None

    @property
    def returncode(self) -> int | None:
        return self.exit_code

    def stop(self) -> None:
        if self.exit_code is None:
            self.exit_code = -15


def _wait(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_idle_relay_grabs_one_still_frame_and_runs_no_ffmpeg_until_a_window_appears(
        monkeypatch: pytest.MonkeyPatch) -> None:
    screen = (1920, 1080)
    regions = [Region(0, 0, *screen)]  # what the watcher sees: no caller window yet
    monkeypatch.setattr(mjpeg, "display_size", lambda display: screen)
    looks: list[str] = []  # one entry per watcher round

    def find(display: str) -> Region:
        looks.append(display)
        return regions[-1]

    monkeypatch.setattr(mjpeg, "find_video_region", find)
    monkeypatch.setattr(mjpeg, "ManagedProcess", FakeFfmpeg)
    monkeypatch.setattr(mjpeg, "WATCH_INTERVAL", 0.02)
    FakeFfmpeg.runs = []
    relay = MjpegRelay(display=":9", size=(640, 360), fps=15)
    relay.start()
    try:
        assert relay.grab_fps == 0 and FakeFfmpeg.runs[0].still
        seen = len(looks)
        assert _wait(lambda: len(looks) >= seen + 5)  # several watcher rounds
        assert len(FakeFfmpeg.runs) == 1, "a still grab that exited 0 is not restarted"
        assert relay.alive()
        regions.append(Region(0, 0, 640, 360))  # the caller's video window
        assert _wait(lambda: len(FakeFfmpeg.runs) == 2)
        assert relay.grab_fps == 15 and not FakeFfmpeg.runs[1].still and relay.alive()
        regions.append(Region(0, 0, *screen))  # the call ended: back to a still frame
        assert _wait(lambda: len(FakeFfmpeg.runs) == 3)
        assert FakeFfmpeg.runs[1].exit_code is not None and FakeFfmpeg.runs[2].still and relay.grab_fps == 0
    finally:
        relay.stop()


def test_a_failed_still_grab_is_not_alive_and_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = (1280, 720)
    monkeypatch.setattr(mjpeg, "display_size", lambda display: screen)
    monkeypatch.setattr(mjpeg, "find_video_region", lambda display: Region(0, 0, *screen))
    monkeypatch.setattr(mjpeg, "WATCH_INTERVAL", 0.02)

    class FailingFfmpeg(FakeFfmpeg):
        def __init__(self, name: str, argv: list[str], **kw: object) -> None:
            super().__init__(name, argv, **kw)
            self.exit_code = 1

    monkeypatch.setattr(mjpeg, "ManagedProcess", FailingFfmpeg)
    FakeFfmpeg.runs = []
    relay = MjpegRelay(display=":9", size=(640, 360), fps=15)
    relay.start()
    try:
        assert not relay.alive()
        assert _wait(lambda: len(FakeFfmpeg.runs) >= 2)
    finally:
        relay.stop()


# -- what a page in the browser can do to the relay's HTTP side (it shares the supervisor's process) -------------

TOKEN = "t0k3n-Of_the_relay"


@pytest.fixture
def http_relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, _HttpServer]]:
    """The relay's HTTP server with a hub fed a frame every 50 ms; yields (base URL, server)."""
    monkeypatch.setattr(mjpeg._Handler, "timeout", 0.5)  # REQUEST_TIMEOUT, shortened for the test
    hub = _FrameHub()
    hub.publish(fake_jpeg(b"first"))
    server = _HttpServer(("127.0.0.1", 0), hub, TOKEN)
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            hub.publish(fake_jpeg(b"frame"))

    threads = [threading.Thread(target=server.serve_forever, daemon=True), threading.Thread(target=feed, daemon=True)]
    for thread in threads:
        thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    stop.set()
    hub.close()
    server.shutdown()
    server.server_close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(4096)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_only_the_token_paths_answer(http_relay: tuple[str, _HttpServer]) -> None:
    base, _ = http_relay
    status, body = _get(f"{base}/{TOKEN}/snapshot.jpg")
    assert status == 200 and body.startswith(b"\xff\xd8")
    for path in ("/stream", "/snapshot.jpg", "/", "/json/version", f"/{TOKEN}", f"/{TOKEN}/other", f"/x{TOKEN}/stream",
                 f"/{TOKEN[:-1]}/stream", f"/../{TOKEN}/stream"):
        status, body = _get(base + path)
        assert (status, body) == (404, b""), path  # the same bare answer: nothing tells a wrong token from a path


def test_at_most_two_streams_at_once(http_relay: tuple[str, _HttpServer]) -> None:
    base, _ = http_relay
    streams = [urllib.request.urlopen(f"{base}/{TOKEN}/stream", timeout=5) for _ in range(mjpeg.MAX_STREAMS)]
    try:
        for stream in streams:
            assert stream.status == 200 and b"\xff\xd8" in stream.read(200)
        assert _get(f"{base}/{TOKEN}/stream")[0] == 503
    finally:
        for stream in streams:
            stream.close()
    # a slot is free again once its client has gone (noticed at the next frame written)
    deadline = time.monotonic() + 5
    while _get_status_of_stream(f"{base}/{TOKEN}/stream") != 200:
        assert time.monotonic() < deadline, "the stream slots were not given back"
        time.sleep(0.1)


def _get_status_of_stream(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_connections_are_capped_and_idle_ones_dropped(http_relay: tuple[str, _HttpServer],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    base, server = http_relay
    port = int(base.rsplit(":", 1)[1])
    monkeypatch.setattr(mjpeg._Handler, "timeout", 2.0)  # long enough for the extra connection to meet a full house
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(mjpeg.MAX_CONNECTIONS)]
    try:
        deadline = time.monotonic() + 10  # every one accepted, each on its own thread, none has sent a request
        while server.open_connections < mjpeg.MAX_CONNECTIONS:
            assert time.monotonic() < deadline, f"only {server.open_connections} connections accepted"
            time.sleep(0.01)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        extra.sendall(f"GET /{TOKEN}/snapshot.jpg HTTP/1.0\r\n\r\n".encode())
        assert extra.recv(100) == b""  # over the limit: closed unanswered, no thread made for it
        extra.close()
        for sock in idle:  # the request timeout drops clients that send nothing
            assert sock.recv(100) == b""
    finally:
        for sock in idle:
            sock.close()
    assert _get(f"{base}/{TOKEN}/snapshot.jpg")[0] == 200  # and the slots came back


def test_each_relay_draws_its_own_token_unless_given_one() -> None:
    first, second = MjpegRelay(display=":9", size=(640, 360)), MjpegRelay(display=":9", size=(640, 360))
    assert first.token != second.token and len(first.token) >= 24
    assert first.token.replace("-", "").replace("_", "").isalnum()
    assert MjpegRelay(display=":9", size=(640, 360), token=first.token).token == first.token  # a restart's URL
    with pytest.raises(ValueError):
        MjpegRelay(display=":9", size=(640, 360), token="../x")


def test_a_slow_xdotool_reads_as_no_answer_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher thread calls this every second: an exception there would end it, and the relay with it."""
    def slow(*args: object, **kwargs: object) -> None:
        raise mjpeg.subprocess.TimeoutExpired("xdotool", 5)

    monkeypatch.setattr(mjpeg.subprocess, "run", slow)
    assert mjpeg.find_video_region(":9") is None
    assert mjpeg.display_size(":9") is None


def test_a_stream_without_new_frames_gets_the_last_one_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle relay has one still frame: the page's camera must keep receiving it, or it would reconnect."""
    monkeypatch.setattr(mjpeg, "RESEND_AFTER", 0.1)
    hub = _FrameHub()
    hub.publish(fake_jpeg(b"still"))
    server = _HttpServer(("127.0.0.1", 0), hub, TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/{TOKEN}/stream",
                                    timeout=5) as response:
            received = b""
            while received.count(fake_jpeg(b"still")) < 3:
                received += response.read1(4096)
    finally:
        hub.close()
        server.shutdown()
        server.server_close()
