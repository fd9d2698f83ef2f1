"""The caller's video as an MJPEG camera: ffmpeg x11grab of the caller display -> JPEG frames -> HTTP on 127.0.0.1.

baresip's x11 display module draws the caller's video unscaled, at the remote frame size, in a window at the top-left
of the caller display. The relay finds that window (xdotool), grabs exactly its region and scales it to the camera
size with letterboxing (never cropping, never distorting). A watcher re-evaluates the window every second (one
xdotool run) and restarts ffmpeg when it appears, disappears or changes size. Without a caller window (an idle
gateway, a call without video yet) ffmpeg grabs one still frame of the display and exits: an idle gateway runs no
ffmpeg at all (a 2 fps grab of the 1920x1080 caller display cost ~1 % of a core and 23 MiB, docs/benchmarks.md).

ffmpeg's stdout and stderr belong to ManagedProcess (they become log lines), so ffmpeg sends its MJPEG stream to a
private unix socket the relay listens on (in a folder of its own, mode 0700); each ffmpeg run is one connection. Not
a TCP port: a page could connect to one on 127.0.0.1, then feed the camera its own pictures or hold the relay's single
ingest connection so that ffmpeg's next run never gets in.

Browsers read ``/<token>/stream`` (multipart/x-mixed-replace) and ``/<token>/snapshot.jpg``; both carry
``Access-Control-Allow-Origin: *`` so the injected getUserMedia wrapper can draw the frames on a canvas without
tainting it.

The relay runs inside the supervisor's process and any page Chromium shows can send requests to 127.0.0.1, so it
keeps what such a page can do to it small: the paths carry a random token drawn at each start (only inject.js knows
it, docs/rooms.md), anything else is a bare 404; at most MAX_STREAMS streams and MAX_CONNECTIONS connections at once
(each connection is a thread, and threads count against the container's pids limit); a request must arrive within
REQUEST_TIMEOUT seconds.
"""

from __future__ import annotations

import dataclasses
import hmac
import http.server
import os
import secrets
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from typing import Sequence

from .logs import LogSink
from .process import ComponentFailed, ManagedProcess

SOI = b"\xff\xd8"  # JPEG start of image
EOI = b"\xff\xd9"  # JPEG end of image
_MAX_FRAME = 8 * 1024 * 1024  # a frame bigger than this means we lost sync: drop the buffer
BOUNDARY = "sipmediagwframe"
WATCH_INTERVAL = 1.0  # seconds between window checks; baresip resizes its window at most on a new remote size
#: concurrent /stream clients: the page's camera, plus one for its reconnection while the old one is noticed gone
MAX_STREAMS = 2
#: concurrent connections of any kind; more are closed at once, unanswered
MAX_CONNECTIONS = 8
#: seconds a client has to send its request (and a stream client to take a frame) before it is dropped
REQUEST_TIMEOUT = 5.0
#: a stream without a new frame for this long gets the last one again (a still frame): inject.js takes a stream
#: silent for STALL_MS (10 s) for a broken one and reconnects
RESEND_AFTER = 5.0


@dataclasses.dataclass(frozen=True)
class Region:
    """A rectangle of an X display, in pixels."""

    x: int
    y: int
    width: int
    height: int


class JpegStreamParser:
    """Splits a byte stream of concatenated JPEGs (ffmpeg ``-f mjpeg``) into frames; survives arbitrary chunking.

    ffmpeg's MJPEG encoder writes no embedded thumbnails and byte-stuffs 0xFF in entropy-coded data, so the first
    EOI after an SOI ends the frame. Bytes before an SOI (garbage, a cut frame) are skipped.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data`; return the complete frames it finished, in order."""
        self._buffer += data
        frames: list[bytes] = []
        while True:
            start = self._buffer.find(SOI)
            if start < 0:
                # Keep a trailing 0xFF: it may be the first half of an SOI split across reads.
                del self._buffer[: max(0, len(self._buffer) - 1)]
                return frames
            if start:
                del self._buffer[:start]
            end = self._buffer.find(EOI, len(SOI))
            if end < 0:
                if len(self._buffer) > _MAX_FRAME:
                    self._buffer.clear()
                return frames
            restart = self._buffer.rfind(SOI, len(SOI), end)
            if restart > 0:  # a frame cut short (ffmpeg restarted mid-frame): keep only the newer one
                del self._buffer[:restart]
                continue
            frames.append(bytes(self._buffer[: end + len(EOI)]))
            del self._buffer[: end + len(EOI)]


def fit_filter(source: tuple[int, int], target: tuple[int, int]) -> str:
    """ffmpeg filter scaling `source` into `target` keeping the aspect ratio, padding with black (never cropping)."""
    sw, sh = source
    tw, th = target
    if sw <= 0 or sh <= 0 or tw <= 0 or th <= 0:
        raise ValueError(f"invalid sizes {source} -> {target}")
    # Integer maths so the padded picture is exactly centred and never one pixel larger than the target.
    if sw * th >= sh * tw:  # source is wider: full width, bars above and below
        w, h = tw, max(2, (sh * tw // sw) // 2 * 2)
    else:  # source is taller: full height, bars left and right
        w, h = max(2, (sw * th // sh) // 2 * 2), th
    w, h = min(w, tw), min(h, th)
    return f"scale={w}:{h}:flags=bilinear,pad={tw}:{th}:{(tw - w) // 2}:{(th - h) // 2}:black,format=yuvj420p"


def ffmpeg_argv(display: str, region: Region, size: tuple[int, int], fps: int, output_url: str,
                frames: int | None = None) -> list[str]:
    """The ffmpeg command grabbing `region` of `display`, scaled to `size`, as MJPEG to `output_url`; with `frames`,
    it exits after that many."""
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-f", "x11grab", "-draw_mouse", "0", "-framerate", str(fps),
        "-video_size", f"{region.width}x{region.height}",
        "-i", f"{display}+{region.x},{region.y}",
        "-vf", fit_filter((region.width, region.height), size),
        # one encoder thread: frame threading holds back 1-2 frames (130 ms at 15 fps)
        "-an", "-c:v", "mjpeg", "-q:v", "5", "-threads", "1",
        *(["-frames:v", str(frames)] if frames else []),
        "-f", "mjpeg", output_url,
    ]


def _xdotool(display: str, *args: str, any_status: bool = False) -> str:
    try:
        result = subprocess.run(
            ["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        # an overloaded host (seen: load 40 on 2 cores) can take more than 5 s: "no answer" is what the callers
        # handle (the watcher tries again), an exception would end the watcher thread and with it the relay
        return ""
    return result.stdout if result.returncode == 0 or any_status else ""


def display_size(display: str) -> tuple[int, int] | None:
    """Width and height of an X display, or None when it cannot be reached."""
    parts = _xdotool(display, "getdisplaygeometry").split()
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else None


def parse_geometry_shell(text: str) -> Region | None:
    """Parse ``xdotool getwindowgeometry --shell`` output."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        return Region(int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"]))
    except (KeyError, ValueError):
        return None


def choose_region(windows: Sequence[Region], screen: tuple[int, int]) -> Region:
    """The region to grab: the largest visible window smaller than the screen (baresip's video), clipped to the
    screen; the whole screen when there is none."""
    sw, sh = screen
    best: Region | None = None
    for win in windows:
        x, y = max(0, win.x), max(0, win.y)
        w, h = min(win.width, sw - x), min(win.height, sh - y)
        if w < 16 or h < 16 or (w, h) == (sw, sh):  # tiny helper windows and the root window are not the video
            continue
        if best is None or w * h > best.width * best.height:
            best = Region(x, y, w, h)
    return best or Region(0, 0, sw, sh)


def covers_screen(region: Region, screen: tuple[int, int]) -> bool:
    """True when `region` is the whole screen, i.e. no caller video window was found."""
    return (region.x, region.y, region.width, region.height) == (0, 0, *screen)


def parse_display_windows(text: str) -> tuple[tuple[int, int], list[Region]] | None:
    """Parse ``xdotool getdisplaygeometry search ... getwindowgeometry --shell %@``: the display's size (first
    line), then one WINDOW=... block per window. None without the size line (display unreachable)."""
    head, _, rest = text.partition("\n")
    parts = head.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    blocks = ["WINDOW=" + block for block in rest.split("WINDOW=")[1:]]
    windows = [region for region in map(parse_geometry_shell, blocks) if region is not None]
    return (int(parts[0]), int(parts[1])), windows


def find_video_region(display: str) -> Region | None:
    """Region of baresip's video window on `display` (whole screen if no window), None if the display is gone. One
    xdotool run (chained commands): the watcher asks every second, and each run costs ~2 ms of CPU."""
    # search exits 1 when it finds no window: the size line printed before still counts
    found = parse_display_windows(_xdotool(display, "getdisplaygeometry", "search", "--onlyvisible", "--name", "",
                                           "getwindowgeometry", "--shell", "%@", any_status=True))
    if found is None:
        return None
    screen, windows = found
    return choose_region(windows, screen)


class _FrameHub:
    """Latest frame plus a condition so every HTTP client wakes up on each new frame."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frame: bytes | None = None
        self.seq = 0
        self.closed = False

    def publish(self, frame: bytes) -> None:
        with self.cond:
            self.frame = frame
            self.seq += 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_HttpServer"
    protocol_version = "HTTP/1.0"  # the multipart stream ends when the connection closes
    timeout = REQUEST_TIMEOUT  # socket timeout: a client that sends nothing (or reads nothing) is dropped

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        token, _, name = self.path.split("?", 1)[0].lstrip("/").partition("/")
        if not hmac.compare_digest(token.encode(), self.server.token.encode()):
            self._refuse(404)  # no hint: the same answer for every path without the token
        elif name == "stream":
            if not self.server.streams.acquire(blocking=False):
                self._refuse(503)
                return
            try:
                self._stream()
            finally:
                self.server.streams.release()
        elif name == "snapshot.jpg":
            self._snapshot()
        else:
            self._refuse(404)

    def _refuse(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _common_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-cache, no-store")

    def _snapshot(self) -> None:
        frame = self.server.hub.frame
        if frame is None:
            self.send_error(503, "no frame yet")
            return
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(frame)))
        self.end_headers()
        self.wfile.write(frame)

    def _stream(self) -> None:
        hub = self.server.hub
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.end_headers()
        seen = -1
        try:
            while True:
                with hub.cond:
                    hub.cond.wait_for(lambda: hub.closed or (hub.frame is not None and hub.seq != seen),
                                      timeout=RESEND_AFTER)
                    if hub.closed:
                        return
                    frame, seq = hub.frame, hub.seq
                if frame is None:
                    continue  # no frame yet: keep the connection, wait again
                # else a new frame, or the same one again after RESEND_AFTER (a still frame, ffmpeg restarting)
                seen = seq
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n".encode()
                    + frame + b"\r\n"
                )
                self.wfile.flush()
        except OSError:
            return  # the browser went away, or took no data for REQUEST_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        pass  # one line per request would flood the gateway log


class _HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: _FrameHub, token: str) -> None:
        self.hub = hub
        self.token = token
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open = 0  # connections accepted and not finished (each on its own thread)
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def open_connections(self) -> int:
        """Connections accepted and being served now (at most MAX_CONNECTIONS)."""
        with self._open_lock:
            return self._open

    def _count(self, step: int) -> None:
        with self._open_lock:
            self._open += step

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        # on the serving thread: a connection over the limit is closed before a thread is made for it
        if not self._connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        self._count(+1)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._count(-1)
            self._connections.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._count(-1)
            self._connections.release()


class MjpegRelay:
    """Serves the caller display as an MJPEG camera on ``http://127.0.0.1:PORT/TOKEN/stream`` (CORS open). `token`
    defaults to a new random one; a caller passes one to keep a restarted relay's URL."""

    def __init__(
        self, *, display: str, size: tuple[int, int], fps: int = 15, port: int = 0, log: LogSink | None = None,
        token: str | None = None,
    ) -> None:
        self.display = display
        self.size = size
        self.fps = fps
        self._port = port
        self.token = token or secrets.token_urlsafe(18)
        if not self.token.replace("-", "").replace("_", "").isalnum():
            raise ValueError("the relay token must be URL-safe base64 text")
        self._log = log
        self._hub = _FrameHub()
        self._http: _HttpServer | None = None
        self._ingest: socket.socket | None = None
        self._ingest_dir: str | None = None
        self._ffmpeg: ManagedProcess | None = None
        self._region: Region | None = None
        self._screen: tuple[int, int] | None = None
        self._grab_fps = fps
        self._still = False  # no caller window: ffmpeg grabbed one frame and exited (not a failure)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # guards ffmpeg restarts (watcher vs stop)

    # -- public API ----------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The MJPEG stream URL (valid after start)."""
        if self._http is None:
            raise RuntimeError("MjpegRelay not started")
        return f"http://127.0.0.1:{self._http.server_address[1]}/{self.token}/stream"

    @property
    def region(self) -> Region | None:
        """The display region currently grabbed."""
        return self._region

    @property
    def grab_fps(self) -> int:
        """The frame rate ffmpeg grabs at now: `fps` with a caller video window, 0 without (one still frame)."""
        return self._grab_fps

    def start(self) -> None:
        """Open the HTTP server and the ingest socket, start ffmpeg and the window watcher."""
        region = find_video_region(self.display)
        self._screen = display_size(self.display)
        if region is None or self._screen is None:
            raise ComponentFailed("mjpeg", f"cannot read display {self.display} (is Xvfb running, xdotool installed?)")
        self._http = _HttpServer(("127.0.0.1", self._port), self._hub, self.token)
        self._ingest_dir = tempfile.mkdtemp(prefix="sipmediagw-camera-")  # 0700: only this user reaches the socket
        self._ingest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._ingest.bind(os.path.join(self._ingest_dir, "ingest.sock"))
        self._ingest.listen(1)
        self._ingest.settimeout(0.5)
        self._spawn(self._http.serve_forever, "mjpeg-http")
        self._spawn(self._ingest_loop, "mjpeg-ingest")
        self._restart_ffmpeg(region)
        self._spawn(self._watch_loop, "mjpeg-watch")
        self._emit(f"serving {self.url} from {self.display} at {self.size[0]}x{self.size[1]}")

    def alive(self) -> bool:
        """True while the HTTP server runs and ffmpeg is grabbing (or has grabbed its still frame)."""
        return (
            not self._stop.is_set()
            and all(t.is_alive() for t in self._threads)
            and self._ffmpeg is not None
            and self._ffmpeg_ok(self._ffmpeg)
        )

    def _ffmpeg_ok(self, ffmpeg: ManagedProcess) -> bool:
        return ffmpeg.alive() or (self._still and ffmpeg.returncode == 0)

    def wait_frame(self, timeout: float) -> bytes:
        """Block until a frame has been received (used as the ready check); raise ComponentFailed on timeout."""
        with self._hub.cond:
            if not self._hub.cond.wait_for(lambda: self._hub.frame is not None, timeout=timeout):
                raise ComponentFailed("mjpeg", f"no frame from ffmpeg within {timeout:g} s")
            assert self._hub.frame is not None
            return self._hub.frame

    def stop(self) -> None:
        """Stop ffmpeg, close the sockets, end every client stream."""
        self._stop.set()
        with self._lock:
            if self._ffmpeg is not None:
                self._ffmpeg.stop()
        self._hub.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._ingest is not None:
            self._ingest.close()
        if self._ingest_dir is not None:
            shutil.rmtree(self._ingest_dir, ignore_errors=True)
        for thread in self._threads:
            thread.join(timeout=5)

    # -- internals -----------------------------------------------------------------------------------------------
    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _restart_ffmpeg(self, region: Region) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if self._ffmpeg is not None:
                self._ffmpeg.stop()
            assert self._ingest is not None
            ingest = self._ingest.getsockname()
            self._region = region
            # No caller video: one still frame of the (empty) display, then no ffmpeg until a window appears; the
            # page repaints the last frame by itself (inject.js).
            self._still = bool(self._screen and covers_screen(region, self._screen))
            self._grab_fps = 0 if self._still else self.fps
            what = "one still frame" if self._still else f"{self.fps} fps"
            self._emit(f"grabbing {region.width}x{region.height}+{region.x}+{region.y} of {self.display}: {what}")
            self._ffmpeg = ManagedProcess(
                "ffmpeg-camera",
                ffmpeg_argv(self.display, region, self.size, self.fps, f"unix:{ingest}",
                            frames=1 if self._still else None),
                log=self._log,
                stop_timeout=3.0,
            )
            self._ffmpeg.start()

    def _ingest_loop(self) -> None:
        assert self._ingest is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._ingest.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # socket closed by stop()
            parser = JpegStreamParser()  # a new ffmpeg run starts a new stream: drop any half frame
            with conn:
                conn.settimeout(1.0)
                while not self._stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    for frame in parser.feed(data):
                        self._hub.publish(frame)

    def _watch_loop(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            region = find_video_region(self.display)
            if region is None:
                continue  # display unreachable for a moment; ffmpeg's own failure will show in alive()
            ffmpeg = self._ffmpeg
            if region != self._region:
                self._emit("caller video window changed")
                self._restart_ffmpeg(region)
            elif ffmpeg is not None and not self._ffmpeg_ok(ffmpeg):
                self._emit(f"ffmpeg exited ({ffmpeg.returncode}); restarting")
                time.sleep(WATCH_INTERVAL)
                self._restart_ffmpeg(region)

    def _emit(self, message: str) -> None:
        if self._log is not None:
            self._log(message)
