"""baresip side of the gateway: config rendering from the ``baresip/`` templates, and the ctrl_tcp client.

baresip 1.0.0 is driven through its ctrl_tcp module: netstring-framed JSON, commands answered by token, events pushed
at any time (see docs/baresip.md). Stdlib only: this module runs inside the gateway container.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import re
import socket
import string
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError, FileLineError
from ..redaction import redact
from .logs import get_logger
from .netstring import NetstringDecoder, encode

TEMPLATE_NAME = "config_default"
CONFIG_NAME = "config"
ACCOUNTS_NAME = "accounts"
#: synthetic event put on the queue when the ctrl_tcp connection ends (baresip quit or died)
DISCONNECTED = "CTRL_DISCONNECTED"
#: ctrl_tcp messages are small JSON documents; a bogus length prefix must not stall the stream for long
CTRL_MAX_MESSAGE = 1 << 16
#: the ports Chromium refuses to open for a page (net::ERR_UNSAFE_PORT: fetch, XHR, WebSocket, <img>, and WebRTC's
#: TURN/TCP and ICE-TCP too), measured with Chromium 156. ctrl_tcp keeps ONE client, so a page that could connect to
#: it would evict the supervisor: the gateway's ctrl_tcp port must be one of these (gateway/config.py checks).
BROWSER_REFUSED_PORTS = frozenset({
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109,
    110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530,
    531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 5060,
    5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6697, 10080,
})
#: the gateway's ctrl_tcp port: refused to pages (above), and above 1024, so it binds without privileges anywhere
CTRL_PORT = 6666

# Driver name (before the comma of a device setting) -> the module that provides it, by setting.
_AUDIO_PLAYERS = {"pulse", "alsa", "aubridge"}
_AUDIO_SOURCES = {"pulse", "alsa", "aubridge", "ausine", "aufile"}
_VIDEO_SOURCES = {"x11grab", "v4l2", "cairo", "avformat", "fakevideo", "vidbridge"}
_VIDEO_DISPLAYS = {"x11", "sdl", "fakevideo", "vidbridge"}
# baresip 1.0.0 puts an m=video line in its SDP when a video codec AND a video source or display are loaded: an
# audio-only config loads none of these modules (codecs, sources, displays, video filters) and sets no video_*.
VIDEO_MODULES = frozenset({
    "avcodec", "vp8", "vp9", "av1", "h265", "gst_video", "gst_video1", "x11grab", "x11", "sdl", "sdl2", "v4l",
    "v4l2", "v4l2_codec", "cairo", "avformat", "fakevideo", "vidloop", "vidbridge", "vidinfo", "selfview",
    "snapshot", "avfilter", "swscale", "directfb", "dshow", "avcapture", "vidmix",
})
_MODULE_LINE = re.compile(r"^module(?:_tmp|_app)?\s+(?P<name>[A-Za-z0-9_]+)\.so\b")
_VIDEO_SETTING = re.compile(r"^(?:video_|videnc_)[a-z_]*\s")
# Settings that may appear several times in a baresip config: extra values are appended, not substituted.
_MULTI_KEYS = {"module", "module_tmp", "module_app"}
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DEVICE = re.compile(r"^(?P<driver>[a-z][a-z0-9_]*)(?:,(?P<device>[^\s#,][^\s#]*))?$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,39}$")
# "Display Name" <sip:user@domain;uri-params>;account-params  (the display name part is optional)
_ACCOUNT = re.compile(r'^(?:"[^"\r\n]*"\s*)?<(?P<aor>sips?:[^<>\s]+)>(?P<params>(?:;[^\r\n]*)?)$')
_ANSWERMODE = re.compile(r";\s*answermode\s*=", re.IGNORECASE)
_ANSWERMODE_PARAM = re.compile(r";\s*answermode\s*=[^;]*", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------
# account line


def prepare_account_line(line: str, *, source: str = "account", answermode: str | None = None) -> str:
    """Validate a baresip account line and force ``answermode=auto`` unless it sets an answermode itself; with
    `answermode`, that mode replaces whatever the line says (the gateway answers by itself: ``manual``).

    Errors name `source` but never echo the line: it holds the SIP password.
    """
    line = line.strip()
    if not line:
        raise ConfigError(f"{source}: the account line is empty")
    if any(ch in line for ch in "\r\n\x00"):
        raise ConfigError(f"{source}: the account must be a single line")
    match = _ACCOUNT.match(line)
    if match is None:
        raise ConfigError(f'{source}: not a baresip account line (expected \'<sip:user@domain>;param=value...\')')
    if answermode is not None:
        if answermode not in ("auto", "manual", "early"):
            raise ConfigError(f"{source}: answermode must be auto, manual or early, not {answermode!r}")
        head, params = line[: match.start("params")], match["params"]
        params = _ANSWERMODE_PARAM.sub("", params)
        return f"{head}{params};answermode={answermode}"
    if not _ANSWERMODE.search(match["params"]):
        line += ";answermode=auto"
    return line


def account_aor(line: str) -> str:
    """The SIP address of a (validated) account line, e.g. ``sip:gw@example.org`` - safe to log and show."""
    match = _ACCOUNT.match(line.strip())
    if match is None:
        raise ConfigError("not a baresip account line")
    return match["aor"]


def read_account_file(path: str | os.PathLike[str]) -> str:
    """The single account line of `path` (blank lines and ``#`` comments ignored), validated and answermode forced."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the account file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the account file is not UTF-8 text") from None
    found: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if found is not None:
            raise FileLineError(str(path), number, "more than one account line (one gateway = one account)")
        try:
            found = (number, prepare_account_line(stripped, source=f"{path}:{number}"))
        except ConfigError as exc:
            raise FileLineError(str(path), number, str(exc).split(": ", 2)[-1]) from None
    if found is None:
        raise ConfigError(f"{path}: no account line")
    return found[1]


# ---------------------------------------------------------------------------------------------------------------
# config rendering


def _check_port(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"baresip {name}: expected a port number 1-65535, got {value!r}")
    return value


def _check_device(name: str, value: object, drivers: set[str]) -> str:
    if not isinstance(value, str) or (match := _DEVICE.match(value)) is None:
        raise ConfigError(f"baresip {name}: expected 'driver,device' without spaces, got {value!r}")
    if match["driver"] not in drivers:
        raise ConfigError(f"baresip {name}: unknown driver {match['driver']!r} (known: {', '.join(sorted(drivers))})")
    return value


def _driver(device: str) -> str:
    return device.split(",", 1)[0]


def _check_size(value: object) -> tuple[int, int]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"baresip video_size: expected (width, height) integers, got {value!r}")
    width, height = value
    if not (16 <= width <= 7680 and 16 <= height <= 4320) or width % 2 or height % 2:
        raise ConfigError(f"baresip video_size: {width}x{height} is not an even size between 16x16 and 7680x4320")
    return width, height


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``, validated; ConfigError naming the value otherwise."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text)
    if match is None:
        raise ConfigError(f"video size: expected WIDTHxHEIGHT (e.g. 1280x720), got {text!r}")
    return _check_size((int(match[1]), int(match[2])))


def _check_extra(extra: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in extra.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ConfigError(f"baresip extra setting: invalid key {key!r} (lowercase letters, digits, underscore)")
        if not isinstance(value, str) or any(ch in value for ch in "\r\n\x00"):
            raise ConfigError(f"baresip extra setting {key}: the value must be a single line of text")
        checked[key] = value.strip()
    return checked


def _video_bitrate(size: tuple[int, int], fps: int) -> int:
    # About 0.07 bit per pixel per frame: 1.5 Mbit/s for 720p25, clamped to what room systems expect.
    return max(300_000, min(4_000_000, size[0] * size[1] * fps // 15))


def _apply_extra(text: str, extra: Mapping[str, str]) -> str:
    """Replace the active line of each extra key (or append it); multi-valued keys are always appended."""
    lines = text.splitlines()
    appended: list[str] = []
    for key, value in extra.items():
        pattern = re.compile(rf"^{re.escape(key)}[ \t]")
        index = None if key in _MULTI_KEYS else next((i for i, ln in enumerate(lines) if pattern.match(ln)), None)
        entry = f"{key}\t\t{value}"
        if index is None:
            appended.append(entry)
        else:
            lines[index] = entry
    if appended:
        lines += ["", "# extra settings (sipmediagw)"] + appended
    return "\n".join(lines) + "\n"


def _without_video(text: str) -> str:
    """Comment out every video setting and every video module line (template or not): an audio-only config."""
    lines = []
    for line in text.splitlines():
        module = _MODULE_LINE.match(line)
        if (module and module["name"] in VIDEO_MODULES) or _VIDEO_SETTING.match(line):
            line = f"#{line}\t\t# audio-only gateway"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, also when the file already existed with wider rights."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def render_baresip_config(
    template_dir: Path,
    out_dir: Path,
    *,
    account_line: str,
    audio_player: str,
    audio_source: str,
    video_source: str | None,
    video_display: str | None,
    video_size: tuple[int, int],
    fps: int,
    sip_port: int = 5060,
    ctrl_port: int = CTRL_PORT,
    net_interface: str | None = None,
    extra: Mapping[str, str] = {},
    template: str = TEMPLATE_NAME,
    answermode: str | None = None,
) -> Path:
    """Write ``out_dir/config`` from ``template_dir/template`` and ``out_dir/accounts`` (mode 0600); return out_dir.

    Run the result as ``baresip -f out_dir``. `extra` replaces or adds plain settings; setting ``snd_path`` also
    loads the sndfile filter, which dumps each call's audio there (test callers use it to check what they heard).
    `answermode` overrides the account line's (the gateway renders ``manual``: it answers after reading the dialled
    address, see controller.py); the account file itself is never changed. `video_source` and `video_display` both
    None render an audio-only config: no video module (codec, source, display) is loaded and no ``video_*`` setting
    is active, so baresip offers and accepts no ``m=video``.
    """
    sip_port = _check_port("sip_port", sip_port)
    ctrl_port = _check_port("ctrl_port", ctrl_port)
    if ctrl_port in (sip_port, sip_port + 1):
        raise ConfigError(f"baresip ctrl_port {ctrl_port} collides with SIP ports {sip_port} and {sip_port + 1} (TLS)")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ConfigError(f"baresip fps: expected an integer 1-60, got {fps!r}")
    size = _check_size(video_size)
    if (video_source is None) != (video_display is None):
        raise ConfigError("baresip video_source and video_display: give both (video) or neither (audio only)")
    video = video_source is not None
    devices = {
        "audio_player": _check_device("audio_player", audio_player, _AUDIO_PLAYERS),
        "audio_source": _check_device("audio_source", audio_source, _AUDIO_SOURCES),
    }
    if video:
        devices["video_source"] = _check_device("video_source", video_source, _VIDEO_SOURCES)
        devices["video_display"] = _check_device("video_display", video_display, _VIDEO_DISPLAYS)
    if net_interface is not None and not _INTERFACE.match(net_interface):
        raise ConfigError(f"baresip net_interface: invalid interface name or address {net_interface!r}")
    extras = _check_extra(extra)
    account = prepare_account_line(account_line, answermode=answermode)

    modules = list(dict.fromkeys(_driver(d) for d in devices.values()))
    if "snd_path" in extras:
        modules.append("sndfile")
    template_path = Path(template_dir) / template
    try:
        raw = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{template_path}: cannot read the baresip template ({exc.strerror})") from None
    values = {
        "video_source": "none",  # an audio-only template line, commented out below
        "video_display": "none",
        **devices,
        "sip_listen": f"0.0.0.0:{sip_port}",
        "ctrl_tcp_listen": f"127.0.0.1:{ctrl_port}",
        "video_size": f"{size[0]}x{size[1]}",
        "video_fps": f"{fps}.00",
        "video_bitrate": str(_video_bitrate(size, fps)),
        "net_interface_line": f"net_interface\t\t{net_interface}" if net_interface else "#net_interface\t\t(any)",
        "driver_modules": "\n".join(f"module\t\t\t{name}.so" for name in modules),
    }
    try:
        text = string.Template(raw).substitute(values)
    except KeyError as exc:
        line = raw[: raw.find("${" + exc.args[0])].count("\n") + 1 if "${" + exc.args[0] in raw else 0
        raise FileLineError(str(template_path), line, f"unknown template variable {exc.args[0]!r}") from None
    except ValueError as exc:  # a lone '$' the template should have written '$$'
        raise ConfigError(f"{template_path}: {exc}") from None
    text = _apply_extra(text, extras)
    if not video:
        text = _without_video(text)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(text, encoding="utf-8")
    _write_private(out / ACCOUNTS_NAME, account + "\n")
    return out


def baresip_argv(config_dir: Path) -> list[str]:
    """The command line running baresip on a rendered config folder (no -d: the supervisor owns the process)."""
    return ["baresip", "-f", str(config_dir)]


# ---------------------------------------------------------------------------------------------------------------
# ctrl_tcp client


class BaresipControlError(Exception):
    """The ctrl_tcp connection is down, a command timed out, or baresip could not be reached."""


class BaresipControl:
    """Client of baresip's ctrl_tcp socket: thread-safe commands matched by token, events on a queue.

    A reader thread decodes the netstring stream; events (dicts with ``"event": true``) go to :attr:`events`, and
    when the connection ends a ``{"event": True, "type": "CTRL_DISCONNECTED"}`` marker follows them.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = CTRL_PORT, *, log: logging.Logger | None = None) -> None:
        self.host = host
        self.port = port
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._log = log or get_logger("baresip-ctrl")
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._pending: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._tokens = itertools.count(1)
        self._closing = False

    # connection ---------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the socket is open and the reader thread runs."""
        return self._sock is not None and self._reader is not None and self._reader.is_alive()

    def connect(self, timeout: float) -> None:
        """Connect, retrying until baresip's ctrl_tcp listens or `timeout` seconds pass; may be called again later."""
        self.close()
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=min(2.0, max(0.1, timeout)))
                break
            except OSError as exc:
                last_error = exc.strerror or str(exc)
            if time.monotonic() >= deadline:
                raise BaresipControlError(
                    f"baresip ctrl_tcp {self.host}:{self.port} not answering after {timeout:g}s ({last_error})"
                )
            time.sleep(0.1)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._state_lock:
            self._closing = False
            self._sock = sock
            self._reader = threading.Thread(target=self._read_loop, args=(sock,), name="baresip-ctrl", daemon=True)
            self._reader.start()
        self._log.info("connected to ctrl_tcp %s:%d", self.host, self.port)

    def close(self) -> None:
        """Close the connection and stop the reader thread; waiting commands fail at once. Idempotent."""
        with self._state_lock:
            sock, reader = self._sock, self._reader
            self._closing = True
            self._sock = None
            self._reader = None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=5)

    def __enter__(self) -> "BaresipControl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # commands -----------------------------------------------------------------------------------------------

    def command(self, cmd: str, params: str = "", timeout: float = 5) -> dict[str, Any]:
        """Send one command and return baresip's response (``ok``, ``data``); BaresipControlError on timeout/loss."""
        token = str(next(self._tokens))
        done = threading.Event()
        slot: list[dict[str, Any]] = []
        with self._state_lock:  # registered under the lock so a closing reader cannot miss this waiter
            sock = self._sock
            if sock is None:
                raise BaresipControlError(f"baresip ctrl_tcp: not connected (command {cmd!r})")
            self._pending[token] = (done, slot)
        message = json.dumps({"command": cmd, "params": params, "token": token}).encode("utf-8")
        self._log.debug("-> %s", redact(f"{cmd} {params}".strip()))
        try:
            with self._send_lock:
                sock.sendall(encode(message))
            if not done.wait(timeout):
                raise BaresipControlError(f"baresip ctrl_tcp: no response to {cmd!r} within {timeout:g}s")
        except OSError as exc:
            raise BaresipControlError(f"baresip ctrl_tcp: sending {cmd!r} failed ({exc.strerror or exc})") from None
        finally:
            self._pending.pop(token, None)
        if not slot:
            raise BaresipControlError(f"baresip ctrl_tcp: connection lost while waiting for {cmd!r}")
        response = slot[0]
        if not response.get("ok", False):
            self._log.warning("%s failed: %s", cmd, redact(str(response.get("data", ""))).strip())
        return response

    def reginfo(self) -> dict[str, Any]:
        """``reginfo``: registration status of the account(s), as text in ``data``."""
        return self.command("reginfo")

    def accept(self) -> dict[str, Any]:
        """``accept``: answer the incoming call (only needed when answermode is not auto)."""
        return self.command("accept")

    def hangup(self, call_id: str | None = None) -> dict[str, Any]:
        """``hangup``: end the current call. baresip 1.0.0 ignores `call_id` (measured: any parameter, even a wrong
        id, hangs up the current call) and rejects a call not answered yet with ``486 Rejected``."""
        return self.command("hangup", call_id or "")

    def callstat(self) -> dict[str, Any]:
        """``callstat``: the current call's debug text in ``data``; its `` local_uri:`` line is the To URI, i.e. the
        address the caller dialled, which the CALL_* events do not carry."""
        return self.command("callstat")

    def dial(self, uri: str) -> dict[str, Any]:
        """``dial``: place an outgoing call to `uri`."""
        return self.command("dial", uri)

    def quit(self) -> dict[str, Any] | None:
        """``quit``: baresip hangs up, unregisters and exits (it may close the socket before answering)."""
        self._closing = True  # baresip closes the socket as it exits: expected, not worth a warning
        try:
            return self.command("quit", timeout=2)
        except BaresipControlError:
            return None

    # reader -------------------------------------------------------------------------------------------------

    def _read_loop(self, sock: socket.socket) -> None:
        decoder = NetstringDecoder(max_length=CTRL_MAX_MESSAGE, on_garbage=self._log.warning)
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                for payload in decoder.feed(data):
                    self._dispatch(payload)
        finally:
            with self._state_lock:
                if self._sock is sock:  # lost (not closed by us): later commands fail at once
                    self._sock = None
                    sock.close()
                for done, _slot in list(self._pending.values()):
                    done.set()  # an empty slot tells the waiter the connection is gone
            if not self._closing:
                self._log.warning("ctrl_tcp connection closed by baresip")
            self.events.put({"event": True, "type": DISCONNECTED, "class": "sipmediagw"})

    def _dispatch(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._log.warning("ctrl_tcp: undecodable message skipped (%s)", exc)
            return
        if not isinstance(message, dict):
            self._log.warning("ctrl_tcp: non-object message skipped")
            return
        if message.get("response"):
            waiter = self._pending.get(str(message.get("token")))
            if waiter is None:
                self._log.debug("ctrl_tcp: response for unknown token %r", message.get("token"))
                return
            waiter[1].append(message)
            waiter[0].set()
        elif message.get("event"):
            self.events.put(message)
        else:
            self._log.warning("ctrl_tcp: message that is neither a response nor an event skipped")


# baresip's own line about each REGISTER answer: "reg: sip:gw@host: 401 Unauthorized (server)". The REGISTER_FAIL
# event carries the same words, but baresip registers at start-up, before the supervisor connects to ctrl_tcp, so that
# first event is never seen and reginfo only says ERR; this line is the registrar's answer.
_REG_LINE = re.compile(r"^reg: (?P<aor>sips?:\S+): (?P<answer>.+?)\s*$")


class RegistrationLog:
    """Wraps baresip's log sink and keeps the registrar's last answer to a failed REGISTER (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failure: str | None = None

    def sink(self, inner: Any) -> Any:
        """A log sink (with ``err``) that forwards every line to `inner` and watches for ``reg:`` lines."""
        watcher = self

        class _Sink:
            def __call__(self, line: str) -> None:
                watcher.observe(line)
                inner(line)

            def err(self, line: str) -> None:
                watcher.observe(line)
                getattr(inner, "err", inner)(line)

        return _Sink()

    def observe(self, line: str) -> None:
        """Record a failed registration's answer; a 2xx answer clears it."""
        match = _REG_LINE.match(line.strip())
        if not match:
            return
        answer = match["answer"]
        with self._lock:
            self._failure = None if re.match(r"^2\d\d\b", answer) else answer

    def last_failure(self) -> str | None:
        """The registrar's answer to the last failed REGISTER ("401 Unauthorized (kamailio)"), None if none."""
        with self._lock:
            return self._failure
