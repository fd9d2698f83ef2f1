"""A real rtpengine (Debian `rtpengine-daemon`) as the RTP relay beside Kamailio, userspace forwarding only.

Kamailio (docs/kamailio.cfg with WITH_NAT) drives it over the ng control protocol: bencoded dictionaries over UDP,
each datagram prefixed with a cookie that the reply repeats. The same protocol answers `ping`, `list`, `query` and
`statistics` here, so a test can prove that a call's media really crossed the relay, and in which direction.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any, Mapping

from ._proc import Daemon, DaemonService, TestbedError
from .network import free_port

#: Where RTP is relayed by default: clear of Janus's test range (20000-20999) and of Debian's service (30000-40000).
DEFAULT_PORTS = (41000, 41999)


class RtpEngineError(TestbedError):
    """rtpengine did not answer a control command, or answered it with an error."""


# --- bencode: the ng protocol's encoding (only what ng uses: dicts, lists, strings, integers) ---

def bencode(value: Any) -> bytes:
    """Encode `value` (dict with str keys, list, str, bytes, int); dict keys sorted as bencode requires."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    if isinstance(value, Mapping):
        items = sorted((key.encode() if isinstance(key, str) else key, item) for key, item in value.items())
        return b"d" + b"".join(bencode(key) + bencode(item) for key, item in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value; strings come back as str when they are UTF-8, else as bytes."""
    value, end = _bdecode_at(data, 0)
    if end != len(data):
        raise ValueError(f"trailing data after bencoded value at byte {end}")
    return value


def _bdecode_at(data: bytes, pos: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise ValueError("truncated bencode")
    lead = data[pos:pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1:end]), end + 1
    if lead in (b"l", b"d"):
        pos += 1
        items: list[Any] = []
        while data[pos:pos + 1] != b"e":
            if pos >= len(data):
                raise ValueError("truncated bencode")
            item, pos = _bdecode_at(data, pos)
            items.append(item)
        if lead == b"l":
            return items, pos + 1
        if len(items) % 2:
            raise ValueError("bencoded dictionary with a key and no value")
        return dict(zip(items[::2], items[1::2])), pos + 1
    colon = data.index(b":", pos)
    length = int(data[pos:colon])
    raw = data[colon + 1:colon + 1 + length]
    if len(raw) != length:
        raise ValueError("truncated bencoded string")
    try:
        return raw.decode(), colon + 1 + length
    except UnicodeDecodeError:
        return raw, colon + 1 + length


@dataclasses.dataclass(frozen=True)
class RelayedStream:
    """One RTP stream of a relayed call, as rtpengine's `query` reports it.

    `packets` counts what the relay RECEIVED from this party (`endpoint`, the address it latched on to) on
    `local_port`; `advertised` is the address the party's SDP named (a NATed party's private one).
    """

    tag: str  # the party's SIP tag (From tag of the caller, To tag of the callee)
    media: str  # "audio", "video"
    local_port: int
    endpoint: str  # "ip:port" the relay sends to and expects from (learned from the RTP that arrived)
    advertised: str  # "ip:port" from the party's SDP
    packets: int
    bytes: int


class RtpEngine(DaemonService):
    """rtpengine relaying RTP on `interface` (ports `ports`), ng control on UDP `ng_ip:ng_port`.

    Userspace forwarding only (`--table=-1`: no kernel module is loaded or needed); no config file is read
    (`--config-file=none`: Debian's /etc/rtpengine/rtpengine.conf must not leak in); deleted calls vanish at once
    (`--delete-delay=0`) so `calls()` tells whether Kamailio ended a session. `endpoint_learning` is passed as
    `--endpoint-learning` when given (rtpengine's default: delayed).
    """

    def __init__(self, *, interface: str, workdir: Path, ng_ip: str = "127.0.0.1", ng_port: int | None = None,
                 ports: tuple[int, int] = DEFAULT_PORTS, endpoint_learning: str | None = None,
                 log_level: int = 6) -> None:
        if ports[0] >= ports[1]:
            raise ValueError(f"rtpengine port range {ports} is empty")
        self.interface = interface
        self.workdir = Path(workdir)
        self.ng_ip = ng_ip
        self.ng_port = ng_port or free_port(ng_ip, socket.SOCK_DGRAM)
        self.ports = ports
        self.endpoint_learning = endpoint_learning
        self.log_level = log_level
        self.log_path = self.workdir / "rtpengine.log"
        self._daemon: Daemon | None = None

    @property
    def control_socket(self) -> str:
        """The ng socket as Kamailio's rtpengine module names it (docs/kamailio.cfg's RTPENGINE_SOCK)."""
        return f"udp:{self.ng_ip}:{self.ng_port}"

    def argv(self) -> list[str]:
        """The rtpengine command line: foreground, logs on stderr, userspace only, this instance's sockets."""
        argv = ["rtpengine", "--config-file=none", "--foreground", "--log-stderr", f"--log-level={self.log_level}",
                "--table=-1", f"--interface={self.interface}", f"--listen-ng={self.ng_ip}:{self.ng_port}",
                f"--port-min={self.ports[0]}", f"--port-max={self.ports[1]}", "--delete-delay=0",
                f"--pidfile={self.workdir / 'rtpengine.pid'}"]
        if self.endpoint_learning:
            argv.append(f"--endpoint-learning={self.endpoint_learning}")
        return argv

    def start(self) -> None:
        """Start rtpengine and wait until its ng socket answers `ping`."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._daemon = Daemon("rtpengine", self.argv(), log_path=self.log_path, cwd=self.workdir)
        self._daemon.start()
        try:
            self._daemon.wait_ready(self.ping, timeout=20)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        """The daemon's process id (None before start)."""
        return self._daemon.pid if self._daemon else None

    def pids(self) -> list[int]:
        """Process ids of what start() launched (for a stack left running by the demo)."""
        return [pid for pid in [self.pid] if pid]

    # --- the ng control protocol ---

    def command(self, name: str, timeout: float = 2.0, **params: Any) -> dict[str, Any]:
        """Send one ng command (`name` plus `params`, e.g. ``call_id="..."`` -> "call-id") and return the reply.

        Raises RtpEngineError on no reply within `timeout` or a `result` other than ok/pong.
        """
        request = {"command": name, **{key.replace("_", "-"): value for key, value in params.items()}}
        # A fresh cookie per command: rtpengine answers a repeated cookie with its cached reply (retransmissions).
        cookie = secrets.token_hex(8).encode()
        datagram = cookie + b" " + bencode(request)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout / 3)
            for _ in range(3):  # UDP: resend the same datagram (same cookie) if nothing came back
                sock.sendto(datagram, (self.ng_ip, self.ng_port))
                try:
                    while True:
                        data = sock.recv(65535)
                        head, _, body = data.partition(b" ")
                        if head == cookie:
                            break
                except socket.timeout:
                    continue
                except OSError as exc:  # e.g. ICMP port unreachable: nothing listens (yet)
                    raise RtpEngineError(f"rtpengine ng {self.ng_ip}:{self.ng_port}: {name}: {exc}") from None
                try:
                    reply = bdecode(body)
                except ValueError as exc:
                    raise RtpEngineError(f"rtpengine: undecodable reply to {name}: {exc}") from None
                if not isinstance(reply, dict):
                    raise RtpEngineError(f"rtpengine: reply to {name} is not a dictionary: {reply!r}")
                if reply.get("result") not in ("ok", "pong"):
                    raise RtpEngineError(f"rtpengine: {name} -> {reply.get('result')}: "
                                         f"{reply.get('error-reason', reply)}")
                return reply
        raise RtpEngineError(f"rtpengine ng {self.ng_ip}:{self.ng_port}: no reply to {name} within {timeout:.1f} s")

    def ping(self) -> bool:
        """True when the ng socket answers `ping` with `pong`."""
        try:
            return self.command("ping", timeout=0.6).get("result") == "pong"
        except RtpEngineError:
            return False

    def calls(self) -> list[str]:
        """Call-IDs of the sessions the relay holds now."""
        return [str(call) for call in self.command("list").get("calls", [])]

    def statistics(self) -> dict[str, Any]:
        """rtpengine's `statistics` reply (currentstatistics: sessionsown...; totalstatistics: relayedpackets...)."""
        return dict(self.command("statistics").get("statistics", {}))

    def query(self, call_id: str) -> dict[str, Any]:
        """rtpengine's `query` reply for one call (tags, medias, streams, totals)."""
        return self.command("query", call_id=call_id)

    def streams(self, call_id: str) -> list[RelayedStream]:
        """The RTP streams of `call_id` (RTCP left out), one per party and medium."""
        out = []
        for tag, monologue in self.query(call_id).get("tags", {}).items():
            for media in monologue.get("medias", []):
                for stream in media.get("streams", []):
                    if "RTCP" in stream.get("flags", []):
                        continue
                    endpoint, advertised = stream.get("endpoint", {}), stream.get("advertised endpoint", {})
                    stats = stream.get("stats", {})
                    out.append(RelayedStream(
                        tag=str(tag), media=str(media.get("type", "")), local_port=int(stream.get("local port", 0)),
                        endpoint=f"{endpoint.get('address')}:{endpoint.get('port')}",
                        advertised=f"{advertised.get('address')}:{advertised.get('port')}",
                        packets=int(stats.get("packets", 0)), bytes=int(stats.get("bytes", 0))))
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon used so far (from /proc/<pid>/stat), in seconds."""
        if self.pid is None:
            raise TestbedError("rtpengine is not running")
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError as exc:
            raise TestbedError(f"rtpengine: cannot read its CPU time: {exc}") from None
        # Field 2 (comm) may hold spaces: count from the closing parenthesis; utime, stime are fields 14, 15.
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rtpengine_available() -> bool:
    """True when the rtpengine binary (Debian package rtpengine-daemon) is installed."""
    return shutil.which("rtpengine") is not None
