"""A minimal SIP caller that sends DTMF as SIP INFO (``application/dtmf-relay``), which baresip 1.0.0 cannot send.

baresip 1.0.0's only DTMF sender is RFC 4733 (``sndcode`` -> telephone-events in RTP; measured, see
docs/dialplan.md "DTMF"), but many room systems and PBXs send keys as SIP INFO, and the gateway must take both. This
test-bed UA places one call through a proxy (UDP, no authentication: the test registrars ask for none), sends
G.711 silence so the gateway sees media, sends INFO digits in the dialog, answers the far end's BYE and can hang up
itself. Standard library only; the SIP it speaks is the small RFC 3261 subset one call needs (INVITE with retransmission,
ACK, in-dialog requests along the Record-Route set, 200 to BYE/OPTIONS/INFO).
"""

from __future__ import annotations

import dataclasses
import queue
import random
import re
import socket
import threading
import time
from types import TracebackType
from typing import Self

from ._proc import TestbedError

_T1 = 0.5  # RFC 3261 timer T1
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
            "c": "content-type"}


@dataclasses.dataclass
class SipMessage:
    """A parsed SIP message: `first` line, headers (lower-case names, in order, values kept), body."""

    first: str
    headers: list[tuple[str, str]]
    body: str

    @property
    def is_response(self) -> bool:
        return self.first.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.first.split()[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        return self.first.split()[0] if not self.is_response else self.header("cseq").split()[-1]

    def header(self, name: str) -> str:
        """The first value of header `name` ('' when absent)."""
        return next((v for k, v in self.headers if k == name), "")

    def all(self, name: str) -> list[str]:
        """Every value of header `name`, comma-separated lists split (Record-Route may hold several)."""
        values: list[str] = []
        for key, value in self.headers:
            if key == name:
                values += [v.strip() for v in re.split(r",(?=\s*<)", value)]
        return values

    @classmethod
    def parse(cls, data: bytes) -> "SipMessage":
        text = data.decode("utf-8", errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                name = name.strip().lower()
                headers.append((_COMPACT.get(name, name), value.strip()))
        return cls(lines[0], headers, body)


def _tag() -> str:
    return f"{random.getrandbits(48):012x}"


class InfoCaller:
    """One SIP call from `user`@`domain` on `ip` through the proxy at `proxy` ("IP:PORT"), with INFO digits.

    Use as a context manager (the socket, the RTP sender and the call end with it). Thread-safe enough for a test: a
    receiver thread answers the far end's requests and queues responses for the caller's own transactions.
    """

    def __init__(self, *, user: str, domain: str, ip: str, proxy: str, port: int = 0) -> None:
        self.user, self.domain, self.ip = user, domain, ip
        host, proxy_port = proxy.rsplit(":", 1)
        self.proxy = (host, int(proxy_port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((ip, 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.call_id = f"{_tag()}@{ip}"
        self.local_tag = _tag()
        self.cseq = 0
        self.remote_to = ""  # To header of the 2xx, with the far end's tag
        self.remote_target = ""
        self.route: list[str] = []
        self.remote_media: tuple[str, int] | None = None
        self.established = False
        self.closed = threading.Event()  # set when the far end hung up (BYE) or we did
        self.received: list[SipMessage] = []  # every message seen, for failure reports
        self._responses: queue.Queue[SipMessage] = queue.Queue()
        self._stop = threading.Event()
        self._receiver = threading.Thread(target=self._receive, name=f"infocaller-{user}", daemon=True)
        self._receiver.start()
        self._rtp_sender: threading.Thread | None = None

    # -- API ----------------------------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def dial(self, uri: str, timeout: float = 30) -> SipMessage:
        """INVITE `uri`; return the final response (2xx: the call is up, media starts; else raise)."""
        self.cseq += 1
        sdp = (f"v=0\r\no=- 1 1 IN IP4 {self.ip}\r\ns=infocaller\r\nc=IN IP4 {self.ip}\r\nt=0 0\r\n"
               f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
               "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")
        branch = self._branch()
        invite = self._request("INVITE", uri, f"<{uri}>", branch, self.cseq, [], sdp, "application/sdp")
        final = self._transaction(invite, "INVITE", self.cseq, timeout, invite=True)
        if final.status >= 300:
            self._send(self._request("ACK", uri, final.header("to"), branch, self.cseq, []))
            raise TestbedError(f"{self.user}: INVITE {uri} answered {final.first}")
        self.remote_to = final.header("to")
        self.remote_target = final.header("contact").strip("<>").split(">")[0].split(";")[0] \
            if final.header("contact") else uri
        self.route = list(reversed(final.all("record-route")))
        self._send(self._request("ACK", self.remote_target, self.remote_to, self._branch(), self.cseq, self.route))
        self.remote_media = _sdp_media(final.body)
        self.established = True
        if self.remote_media is not None:
            self._rtp_sender = threading.Thread(target=self._send_rtp, name="infocaller-rtp", daemon=True)
            self._rtp_sender.start()
        return final

    def info(self, digit: str, duration_ms: int = 250, timeout: float = 10) -> SipMessage:
        """Send one key as SIP INFO (``Signal=<digit>``, ``Duration=``); return the far end's final response."""
        return self._in_dialog("INFO", f"Signal={digit}\r\nDuration={duration_ms}\r\n", "application/dtmf-relay",
                               timeout)

    def bye(self, timeout: float = 10) -> SipMessage | None:
        """Hang up (None when the call is already over)."""
        if not self.established or self.closed.is_set():
            return None
        response = self._in_dialog("BYE", "", None, timeout)
        self.closed.set()
        return response

    def wait_closed(self, timeout: float) -> bool:
        """Wait for the far end's BYE."""
        return self.closed.wait(timeout)

    def close(self) -> None:
        """Hang up if needed, stop the threads, close the sockets. Idempotent."""
        try:
            if self.established and not self.closed.is_set():
                self.bye(timeout=5)
        except TestbedError:
            pass
        self._stop.set()
        self.closed.set()
        self.sock.close()
        self.rtp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- SIP ----------------------------------------------------------------------------------------------------
    def _branch(self) -> str:
        return f"z9hG4bK{_tag()}"

    def _request(self, method: str, ruri: str, to: str, branch: str, cseq: int, route: list[str],
                 body: str = "", content_type: str | None = None) -> str:
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport",
                 "Max-Forwards: 70",
                 f"From: <{self.uri}>;tag={self.local_tag}",
                 f"To: {to}",
                 f"Call-ID: {self.call_id}",
                 f"CSeq: {cseq} {method}",
                 f"Contact: <sip:{self.user}@{self.ip}:{self.port}>",
                 "User-Agent: sipmediagw-testbed-infocaller"]
        lines += [f"Route: {r}" for r in route]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def _in_dialog(self, method: str, body: str, content_type: str | None, timeout: float) -> SipMessage:
        if not self.established:
            raise TestbedError(f"{self.user}: no call for {method}")
        self.cseq += 1
        request = self._request(method, self.remote_target, self.remote_to, self._branch(),
                                self.cseq, self.route, body, content_type)
        final = self._transaction(request, method, self.cseq, timeout)
        if final.status >= 300:
            raise TestbedError(f"{self.user}: {method} answered {final.first}")
        return final

    def _transaction(self, request: str, method: str, cseq: int, timeout: float, invite: bool = False) -> SipMessage:
        """Send `request`, retransmitting (timer A/E) until a response; return the final one."""
        deadline = time.monotonic() + timeout
        interval, provisional = _T1, False
        self._send(request)
        next_send = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TestbedError(f"{self.user}: no final response to {method} within {timeout:.0f} s; seen: "
                                   f"{[m.first for m in self.received][-10:]}")
            try:
                response = self._responses.get(timeout=max(0.01, min(next_send, deadline) - now))
            except queue.Empty:
                if not (invite and provisional):
                    self._send(request)
                    interval = min(interval * 2, 4.0)
                next_send = time.monotonic() + interval
                continue
            if response.header("cseq") != f"{cseq} {method}":
                continue
            if response.status < 200:
                provisional = True
                continue
            return response

    def _send(self, text: str) -> None:
        self.sock.sendto(text.encode(), self.proxy)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except OSError:
                return
            message = SipMessage.parse(data)
            self.received.append(message)
            if message.is_response:
                self._responses.put(message)
                continue
            method = message.first.split()[0]
            if method == "ACK":
                continue
            self._reply(message, source, 200 if method in ("BYE", "OPTIONS", "INFO", "NOTIFY") else 405)
            if method == "BYE":
                self.closed.set()

    def _reply(self, request: SipMessage, source: tuple[str, int], status: int) -> None:
        reason = {200: "OK", 405: "Method Not Allowed"}[status]
        to = request.header("to")
        if ";tag=" not in to:
            to += f";tag={self.local_tag}"
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for k, v in request.headers if k == "via"]
        lines += [f"Record-Route: {v}" for k, v in request.headers if k == "record-route"]
        lines += [f"From: {request.header('from')}", f"To: {to}", f"Call-ID: {request.header('call-id')}",
                  f"CSeq: {request.header('cseq')}", "Content-Length: 0"]
        try:
            self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), source)
        except OSError:
            pass

    # -- media --------------------------------------------------------------------------------------------------
    def _send_rtp(self) -> None:
        """G.711 mu-law silence every 20 ms: the gateway sees the call's media arrive (CALL_RTPESTAB)."""
        assert self.remote_media is not None
        ssrc, seq, stamp = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        payload = b"\xff" * 160
        next_at = time.monotonic()
        while not self._stop.is_set() and not self.closed.is_set():
            header = bytes([0x80, 0x00]) + seq.to_bytes(2, "big") + stamp.to_bytes(4, "big") + ssrc.to_bytes(4, "big")
            try:
                self.rtp.sendto(header + payload, self.remote_media)
            except OSError:
                return
            seq, stamp = (seq + 1) & 0xFFFF, (stamp + 160) & 0xFFFFFFFF
            next_at += 0.02
            self._stop.wait(max(0.0, next_at - time.monotonic()))


def _sdp_media(sdp: str) -> tuple[str, int] | None:
    """(address, port) of the first m=audio of an SDP body."""
    address = re.search(r"^c=IN IP4 (\S+)", sdp, re.MULTILINE)
    port = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    if not address or not port or port[1] == "0":
        return None
    return address[1], int(port[1])
