"""A real baresip SIP caller on the host: registers at Kamailio, sends a tone + test video, records what it gets."""

from __future__ import annotations

import hashlib
import queue
import re
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from sipmediagw.gateway.baresip import BaresipControl, BaresipControlError
from sipmediagw.gateway.menu_screen import Marker, decode_marker
from sipmediagw.gateway.logs import get_logger

from ._proc import Daemon, DaemonService, TestbedError, wait_until
from .network import free_port, free_port_range
from .tones import ToneCheck, check_tone, recorded_seconds, sent_level, wait_wav_complete

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Codec preference follows load order: Opus first, as a modern room system offers it (G.711 stays as a fallback).
MODULES = ["account", "menu", "ctrl_tcp", "opus", "g711", "vp8", "avcodec", "avformat", "fakevideo", "ausine",
           "aubridge", "sndfile", "snapshot"]
VIDEO_MODULES = {"vp8", "avcodec", "avformat", "fakevideo", "snapshot"}


class BaresipCaller(DaemonService):
    """baresip 1.0.0 as a SIP endpoint `user@domain` registered through `registrar` ("IP:PORT").

    Sends an `ausine` tone of `tone_hz` (stereo: ausine fails with one channel) and, with `video`, an ffmpeg
    `testsrc` pattern through avformat (video only: avformat as an audio source crashes 1.0.0). Received audio is
    recorded by the sndfile filter (recording_path()); received video is proven by snapshots of decoded frames.
    Auto-answers incoming calls (with `answermode="manual"` they wait for `accept`/`hangup`). Controlled over ctrl_tcp
    on 127.0.0.1.
    """

    def __init__(self, *, user: str, domain: str, registrar: str, workdir: Path, tone_hz: int = 1000,
                 video: bool = True, net_interface: str | None = None, sip_ip: str | None = None,
                 sip_port: int | None = None, password: str | None = None, transport: str = "udp",
                 video_codecs: str | None = None,
                 video_size: tuple[int, int] = (640, 360), fps: int = 15, max_calls: int | None = None,
                 answermode: str = "auto") -> None:
        self.user = user
        self.domain = domain
        self.registrar = registrar
        self.workdir = Path(workdir)
        self.tone_hz = tone_hz
        self.video = video
        self.sip_ip = sip_ip or registrar.rsplit(":", 1)[0]
        # baresip 1.0.0 cannot resolve "lo" by name, but accepts an IP address here.
        self.net_interface = net_interface or self.sip_ip
        # baresip also binds TLS on port + 1, so ports are taken in pairs.
        self.sip_port = sip_port or free_port_range(self.sip_ip)
        self.ctrl_port = free_port()
        self.password = password
        self.transport = transport
        self.video_codecs = video_codecs  # e.g. "H264": offer only that, as many room systems do
        self.video_size = video_size
        self.fps = fps
        # `call_max_calls`: with 1, baresip answers a second concurrent INVITE with 486, as a gateway does.
        self.max_calls = max_calls
        # "manual": incoming calls wait for `accept` / `hangup` (CALL_INCOMING event), as the gateway's controller does.
        self.answermode = answermode
        self.snd_dir = self.workdir / "recordings"
        # baresip 1.0.0's sndfile builds "<snd_path>/dump-<time>-dec.wav" in a small buffer and silently cuts it (the
        # ".wav" went first with a pytest tmp path): it writes through a short link to snd_dir instead.
        self._snd_link: Path | None = None
        self.history: list[dict] = []  # events taken off `control.events` so far
        self.control = BaresipControl(port=self.ctrl_port, log=get_logger(f"caller-{user}"))
        self._daemon: Daemon | None = None
        self.call_id: str | None = None

    @property
    def uri(self) -> str:
        """This caller's SIP address of record."""
        return f"sip:{self.user}@{self.domain}"

    def account_line(self) -> str:
        """The baresip account line (auth_pass only when a password is set)."""
        line = f"<{self.uri};transport={self.transport}>;outbound=\"sip:{self.registrar};transport={self.transport}\""
        line += f";regint=300;answermode={self.answermode};ptime=20"
        if self.video_codecs:
            line += f";video_codecs={self.video_codecs}"
        if self.password:
            line += f";auth_user={self.user};auth_pass={self.password}"
        return line

    def config_text(self) -> str:
        """The baresip `config` file for this caller."""
        w, h = self.video_size
        lines = {
            "poll_method": "epoll",
            "sip_listen": f"{self.sip_ip}:{self.sip_port}",
            "net_interface": self.net_interface,
            "call_local_timeout": "120",
            "audio_player": "aubridge,caller-" + self.user,
            "audio_source": f"ausine,{self.tone_hz}",
            "audio_alert": "aubridge,alert-" + self.user,
            "ausrc_srate": "48000",
            "auplay_srate": "48000",
            "ausrc_channels": "2",
            "auplay_channels": "2",
            "video_source": f"avformat,lavfi,testsrc=size={w}x{h}:rate={self.fps},format=yuv420p" if self.video else "",
            "video_display": "fakevideo,nil",
            "video_size": f"{w}x{h}",
            "video_bitrate": "800000",
            "video_fps": str(self.fps),
            "module_path": "/usr/lib/baresip/modules",
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            "snd_path": str(self._snd_link or self.snd_dir),
            "jitter_buffer_delay": "5-10",
            "call_max_calls": str(self.max_calls) if self.max_calls else "",
        }
        out = [f"{k}\t{v}" for k, v in lines.items() if v]
        for mod in MODULES:
            if mod in VIDEO_MODULES and not self.video:
                continue  # a phone: no video codec, so no m=video in its SDP
            keyword = "module_app" if mod in ("account", "menu", "ctrl_tcp") else "module"
            out.append(f"{keyword}\t{mod}.so")
        return "\n".join(out) + "\n"

    def start(self) -> None:
        """Write the config, start baresip and connect to ctrl_tcp (registration is awaited separately)."""
        conf = self.workdir / "baresip"
        conf.mkdir(parents=True, exist_ok=True)
        self.snd_dir.mkdir(parents=True, exist_ok=True)
        self._snd_link = Path(tempfile.mkdtemp(prefix="smg-snd-")) / "r"
        self._snd_link.symlink_to(self.snd_dir.resolve(), target_is_directory=True)
        (conf / "config").write_text(self.config_text())
        accounts = conf / "accounts"
        accounts.write_text(self.account_line() + "\n")
        accounts.chmod(0o600)
        (conf / "contacts").write_text("")
        self._daemon = Daemon(f"baresip[{self.user}]", ["baresip", "-f", str(conf)],
                              log_path=self.workdir / "baresip.log", stop_timeout=8)
        self._daemon.start()
        try:
            self._daemon.wait_ready(self._connect, timeout=20)
        except BaseException:
            self.stop()
            raise

    def _connect(self) -> bool:
        try:
            self.control.connect(timeout=0.5)
        except BaresipControlError:
            return False
        return True

    def command(self, cmd: str, params: str = "", timeout: float = 10) -> dict:
        """Send one ctrl_tcp command and return baresip's response (raises on timeout or `ok: false`)."""
        try:
            resp = self.control.command(cmd, params, timeout)
        except BaresipControlError as exc:
            raise self._fail(str(exc)) from None
        if not resp.get("ok", False):
            raise self._fail(f"{cmd!r} failed: {resp.get('data')}")
        return resp

    def _fail(self, reason: str) -> TestbedError:
        if self._daemon:
            return self._daemon.fail(reason)
        return TestbedError(f"baresip[{self.user}]: {reason}")

    def registered(self) -> bool:
        """True when `reginfo` reports this account registered (REGISTER_OK events are lost before connect)."""
        data = _ANSI.sub("", str(self.command("reginfo").get("data", "")))
        return any(self.uri in line and re.search(r"\bOK\b", line) for line in data.splitlines())

    def wait_registered(self, timeout: float = 30) -> None:
        """Wait until the account is registered at the registrar."""
        if not wait_until(self._alive_and_registered, timeout, 0.3):
            raise self._fail(f"not registered after {timeout:.0f} s")

    def _alive_and_registered(self) -> bool:
        if not self.alive():
            raise self._fail("baresip exited")
        return self.registered()

    def dial(self, uri: str) -> None:
        """Place a call to `uri` (through the outbound proxy, i.e. Kamailio)."""
        self.command("dial", uri)

    def wait_event(self, types: set[str], timeout: float) -> dict:
        """The next event whose type is in `types`; a CALL_CLOSED that was not asked for raises."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"no {sorted(types)} event within {timeout:.0f} s")
            try:
                event = self.control.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if not self.alive():
                    raise self._fail("baresip exited")
                continue
            self.history.append(event)
            if event.get("type") in types:
                return event
            if event.get("type") == "CALL_CLOSED" and "CALL_CLOSED" not in types:
                raise self._fail(f"call closed: {event.get('param')}")

    def wait_established(self, timeout: float = 30) -> dict:
        """Wait for CALL_ESTABLISHED (either direction) and return the event."""
        event = self.wait_event({"CALL_ESTABLISHED"}, timeout)
        self.call_id = event.get("id")
        return event

    def wait_closed(self, timeout: float = 30) -> dict:
        """Wait for CALL_CLOSED and return the event."""
        return self.wait_event({"CALL_CLOSED"}, timeout)

    def in_call(self) -> bool:
        """True while the last call event seen is CALL_ESTABLISHED."""
        while True:  # take in what arrived since the last wait
            try:
                self.history.append(self.control.events.get_nowait())
            except queue.Empty:
                break
        for event in reversed(self.history):
            if event.get("type") in ("CALL_ESTABLISHED", "CALL_CLOSED"):
                return event["type"] == "CALL_ESTABLISHED"
        return False

    def send_keys(self, keys: str) -> None:
        """Press `keys` on the keypad: RFC 4733 telephone-events, one ``sndcode`` per key (press and release)."""
        for key in keys:
            self.command("sndcode", key)

    def menu_marker(self, timeout: float = 10) -> Marker | None:
        """The gateway's keypad-menu marker in the video this caller decodes now (None: no frame, or no menu)."""
        frame = self.received_frame("menu", timeout)
        return decode_marker(*frame) if frame else None

    def hangup(self) -> None:
        """Hang up the current call (sends BYE)."""
        self.command("hangup")

    def recordings(self, side: str = "dec") -> list[Path]:
        """sndfile's audio dumps, oldest first: `dec` what was received (decoded), `enc` what was sent."""
        return sorted(self.snd_dir.glob(f"dump-*-{side}.wav"), key=lambda p: p.stat().st_mtime)

    def recording_path(self, side: str = "dec") -> Path:
        """The newest recording of `side` (raises if none exists)."""
        files = self.recordings(side)
        if not files:
            raise self._fail(f"no {'received' if side == 'dec' else 'sent'}-audio recording in {self.snd_dir}")
        return files[-1]

    def recorded_seconds(self, side: str = "dec") -> float:
        """How much audio the newest recording of `side` holds so far (0 before the call's first packet).

        sndfile writes the WAV's sizes only when it closes it, so the length is taken from the file's size."""
        files = self.recordings(side)
        if not files:
            return 0.0
        return recorded_seconds(files[-1])

    def wait_recorded(self, seconds: float, timeout: float = 60) -> None:
        """Wait until this caller has recorded `seconds` of received audio in the current call."""
        if not wait_until(lambda: self.recorded_seconds() >= seconds, timeout, 0.1):
            raise self._fail(f"only {self.recorded_seconds():.1f} s of audio recorded after {timeout:.0f} s, "
                             f"wanted {seconds:.0f} s")

    def closed_recording(self, side: str = "dec", timeout: float = 10) -> Path:
        """The newest recording of `side` once sndfile has closed it (it finalises the WAV when the call ends)."""
        path = self.recording_path(side)
        if not wait_wav_complete(path, timeout):
            raise self._fail(f"{path} was not closed within {timeout:.0f} s of the call's end")
        return path

    def check_heard(self, expected_hz: float, sent_level_db: float, after: float = 0.0) -> ToneCheck:
        """After the call: judge the tone in what this caller received (level and frequency over the call, from
        `after` seconds into its recording)."""
        return check_tone(self.closed_recording("dec"), expected_hz, sent_level_db, after=after)

    def sent_level(self) -> float:
        """After the call: the level (dBFS) of the tone this caller sent, from its encoder-side dump."""
        return sent_level(self.closed_recording("enc"))

    def snapshot(self, name: str, timeout: float = 10) -> Path | None:
        """Save the next decoded received video frame as PNG; None if no frame was decoded within `timeout`."""
        path = self.workdir / f"{name}.png"
        path.unlink(missing_ok=True)
        self.command("snapshot_recv", str(path))
        return path if wait_until(lambda: path.exists() and path.stat().st_size > 0, timeout, 0.2) else None

    def received_frame(self, name: str = "frame", timeout: float = 10) -> tuple[bytes, int, int] | None:
        """The next decoded received video frame as (RGB24 pixels, width, height), decoded by ffmpeg; None if no
        frame was decoded within `timeout`."""
        path = self.snapshot(name, timeout)
        return png_rgb(path) if path is not None else None

    def received_video(self, timeout: float = 10) -> bool:
        """True when a received video frame was decoded (a snapshot of it could be written)."""
        return self.snapshot("received", timeout) is not None

    def received_video_changing(self, timeout: float = 20) -> bool:
        """True when two decoded received frames taken a second or more apart differ."""
        deadline = time.monotonic() + timeout
        first = self.snapshot("frame-a", timeout)
        if first is None:
            return False
        digest = hashlib.sha256(first.read_bytes()).hexdigest()
        while time.monotonic() < deadline:
            time.sleep(1)
            second = self.snapshot("frame-b", max(1.0, deadline - time.monotonic()))
            if second and hashlib.sha256(second.read_bytes()).hexdigest() != digest:
                return True
        return False

    def stop(self) -> None:
        """Quit baresip (it unregisters first; SIGTERM takes 1-3 s). Idempotent. The recordings stay in snd_dir."""
        self.control.close()
        super().stop()
        if self._snd_link is not None:
            shutil.rmtree(self._snd_link.parent, ignore_errors=True)  # the link only, not what it points to
            self._snd_link = None


def png_rgb(path: Path) -> tuple[bytes, int, int]:
    """(RGB24 pixels, width, height) of a PNG, decoded by ffmpeg."""
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True, timeout=30).stdout
    if len(raw) != width * height * 3:
        raise TestbedError(f"{path}: ffmpeg gave {len(raw)} bytes for {width}x{height} RGB")
    return raw, width, height


def baresip_available() -> bool:
    """True when the baresip binary is installed."""
    return shutil.which("baresip") is not None
