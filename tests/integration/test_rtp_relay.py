"""The RTP relay beside Kamailio: a real rtpengine, and docs/kamailio.cfg's WITH_NAT routes driving it.

The NAT cases need no NAT: a bare SIP endpoint stands in for a gateway behind one. It writes a private address it
does not have (10.201.1.2:5060) into Via, Contact and SDP, as a gateway behind a worker node's NAT does, while its
packets really come from other ports of 127.0.0.1 (the "NAT's public address"): Kamailio must answer and route to
where the packets came from, and rtpengine must send media to where RTP came from. The SDP address is unreachable,
so nothing in these tests can pass by using it.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import selectors
import socket
import struct
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port_range
from sipmediagw.testbed.rtpengine import DEFAULT_PORTS, RtpEngine, RtpEngineError, bdecode, bencode

LOOPBACK = "127.0.0.1"
DOMAIN = "sipmediagw.test"
#: what a gateway behind NAT writes in Via, Contact and SDP: its own address in the worker's bridge, unreachable here
PRIVATE = "10.201.1.2"
PRIVATE_MEDIA_PORT = 4000


def test_bencode_round_trip_and_rejects() -> None:
    value = {"command": "offer", "flags": ["trust-address", "symmetric"], "n": -3, "sdp": "v=0\r\n", "d": {"b": 1}}
    encoded = bencode(value)
    assert encoded.startswith(b"d7:command5:offer1:dd1:bi1ee")  # keys sorted, as bencode requires
    assert bdecode(encoded) == value
    assert bdecode(b"3:\xff\xfe\x00") == b"\xff\xfe\x00"  # not UTF-8: bytes, not an exception
    for broken in (b"d3:key", b"i12", b"5:abc", b"le1:x"):
        with pytest.raises(ValueError):
            bdecode(broken)


def test_kamailio_runs_with_nat_only_when_given_a_media_relay(tmp_path: Path) -> None:
    plain = Kamailio(domain=DOMAIN, listen=[LOOPBACK], workdir=tmp_path).argv()
    assert not any("WITH_NAT" in arg or "RTPENGINE_SOCK" in arg for arg in plain)
    relayed = Kamailio(domain=DOMAIN, listen=[LOOPBACK], workdir=tmp_path, media_relay="udp:127.0.0.1:22999",
                       defines={"NAT_PING_INTERVAL": 5, "NAT_PING_FROM": "sip:ping@elsewhere.test"}).argv()
    defines = [relayed[i + 1] for i, arg in enumerate(relayed) if arg == "-A"]
    assert "WITH_NAT" in defines and 'RTPENGINE_SOCK="udp:127.0.0.1:22999"' in defines
    assert "NAT_PING_INTERVAL=5" in defines
    # Given twice, a define stops Kamailio ("already defined"): the caller's value replaces the default one.
    assert [d for d in defines if d.startswith("NAT_PING_FROM")] == ['NAT_PING_FROM="sip:ping@elsewhere.test"']


def test_rtpengine_starts_answers_ping_and_stops_leaving_no_process(
        tmp_path: Path, require_programs: Callable[..., None]) -> None:
    require_programs("rtpengine")
    relay = RtpEngine(interface=LOOPBACK, workdir=tmp_path / "rtpengine")
    with relay:
        pid = relay.pid
        assert pid is not None and psutil.pid_exists(pid)
        assert relay.ping()
        assert relay.calls() == []
        current = relay.statistics()["currentstatistics"]
        assert current["sessionsown"] == 0
        assert relay.cpu_seconds() >= 0
        with pytest.raises(RtpEngineError, match="Unknown call-id|unknown call"):
            relay.query("no-such-call")
    assert not relay.alive()
    assert not psutil.pid_exists(pid)
    assert not relay.ping()  # nothing answers on the ng port any more
    relay.stop()  # idempotent


# --- a bare SIP endpoint: just enough SIP over UDP to play a NATed gateway and a caller ---


@dataclasses.dataclass
class Message:
    """One parsed SIP message."""

    start: str
    headers: list[tuple[str, str]]
    body: str
    source: tuple[str, int]

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0] if self.is_request else self.header("CSeq").split()[1]

    @property
    def status(self) -> int:
        return int(self.start.split()[1]) if not self.is_request else 0

    @property
    def uri(self) -> str:
        return self.start.split()[1]

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> str:
        values = self.all(name)
        assert values, f"no {name} header in:\n{self.start}"
        return values[0]

    def to_tag(self) -> str:
        return re.search(r";tag=([^;>\s]+)", self.header("To")).group(1)  # type: ignore[union-attr]

    def contact_uri(self) -> str:
        return re.search(r"<([^>]+)>", self.header("Contact")).group(1)  # type: ignore[union-attr]


def parse(data: bytes, source: tuple[str, int]) -> Message:
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    return Message(lines[0], headers, body, source)


def sdp(ip: str, port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def media_address(body: str) -> tuple[str, int]:
    """The connection address and audio port an SDP body names."""
    ip = re.search(r"^c=IN IP4 (\S+)", body, re.MULTILINE)
    port = re.search(r"^m=audio (\d+)", body, re.MULTILINE)
    assert ip and port, f"no c=/m=audio in SDP:\n{body}"
    return ip.group(1), int(port.group(1))


class Endpoint:
    """A SIP user agent on one UDP socket of 127.0.0.1 that sends through `proxy`.

    `claims` is the "host:port" it writes into Via and Contact: its real one, or a private one behind a NAT. SIP
    bodies and headers are written by the tests: what goes on the wire is what the test says.
    """

    def __init__(self, user: str, proxy: tuple[str, int], claims: str | None = None) -> None:
        self.user = user
        self.proxy = proxy
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.claims = claims or f"{LOOPBACK}:{self.port}"
        self.tag = secrets.token_hex(4)
        self.seen: list[Message] = []

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{DOMAIN}"

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@{self.claims}"

    def via(self) -> str:
        return f"SIP/2.0/UDP {self.claims};rport;branch=z9hG4bK{secrets.token_hex(6)}"

    def send(self, text: str) -> None:
        self.sock.sendto(text.encode(), self.proxy)

    def request(self, method: str, uri: str, *, to: str, call_id: str, cseq: int, to_tag: str = "",
                body: str = "", routes: list[str] | None = None, via: str | None = None,
                extra: list[str] | None = None) -> str:
        """Send a request; returns the Via it used (an ACK for a non-2xx must repeat the INVITE's)."""
        via = via or self.via()
        lines = [f"{method} {uri} SIP/2.0", f"Via: {via}", "Max-Forwards: 70",
                 *[f"Route: {route}" for route in routes or []],
                 f"From: <{self.aor}>;tag={self.tag}", f"To: <{to}>" + (f";tag={to_tag}" if to_tag else ""),
                 f"Call-ID: {call_id}", f"CSeq: {cseq} {method}", f"Contact: <{self.contact}>", *(extra or [])]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)
        return via

    def reply(self, request: Message, code: int, reason: str, *, body: str = "") -> None:
        """Answer `request` as a UAS: Vias and Record-Routes copied, our tag on To."""
        to = request.header("To")
        if ";tag=" not in to:
            to += f";tag={self.tag}"
        lines = [f"SIP/2.0 {code} {reason}", *[f"Via: {via}" for via in request.all("Via")],
                 *[f"Record-Route: {rr}" for rr in request.all("Record-Route")],
                 f"From: {request.header('From')}", f"To: {to}", f"Call-ID: {request.header('Call-ID')}",
                 f"CSeq: {request.header('CSeq')}"]
        if 200 <= code < 300 or 100 < code < 200:
            lines.append(f"Contact: <{self.contact}>")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)

    def receive(self, match: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The next message that `match`es (others are kept in `seen`: keepalives, provisional replies...)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                data, source = self.sock.recvfrom(65535)
            except socket.timeout:
                break
            message = parse(data, source)
            if match(message):
                return message
            self.seen.append(message)
        raise AssertionError(f"{self.user}: nothing matching within {timeout} s; got: {[m.start for m in self.seen]}")

    def receive_request(self, method: str, timeout: float = 5.0) -> Message:
        return self.receive(lambda m: m.is_request and m.method == method, timeout)

    def receive_final(self, method: str, timeout: float = 5.0) -> Message:
        return self.receive(lambda m: not m.is_request and m.method == method and m.status >= 200, timeout)

    def close(self) -> None:
        self.sock.close()


@dataclasses.dataclass
class Dialog:
    """What the caller keeps of an established call: where in-dialog requests go, and through which route set."""

    call_id: str
    remote_uri: str  # the callee's Contact as the caller got it (the remote target)
    remote_tag: str
    routes: list[str]
    cseq: int = 1


class RelayBed:
    """rtpengine + Kamailio (docs/kamailio.cfg, WITH_NAT, no auth) on 127.0.0.1; endpoints made by the test."""

    def __init__(self, tmp_path: Path, defines: dict[str, str | int | None]) -> None:
        self._stack = ExitStack()
        self.relay = RtpEngine(interface=LOOPBACK, workdir=tmp_path / "rtpengine")
        self.kamailio = Kamailio(domain=DOMAIN, listen=[LOOPBACK], port=free_port_range(LOOPBACK),
                                 workdir=tmp_path / "kamailio", media_relay=self.relay.control_socket,
                                 defines=defines)
        try:
            # Each stop is registered before its start: a start that fails half-way is cleaned up too.
            self._stack.callback(self.relay.stop)
            self.relay.start()
            self._stack.callback(self.kamailio.stop)
            self.kamailio.start()
        except BaseException:
            self._stack.close()
            raise

    def endpoint(self, user: str, claims: str | None = None) -> Endpoint:
        endpoint = Endpoint(user, (LOOPBACK, self.kamailio.port), claims)
        self._stack.callback(endpoint.close)
        return endpoint

    def media_socket(self) -> socket.socket:
        """A UDP socket on 127.0.0.1 for one party's RTP, closed with the bed."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stack.callback(sock.close)
        sock.bind((LOOPBACK, 0))
        return sock

    def register(self, endpoint: Endpoint) -> None:
        endpoint.request("REGISTER", f"sip:{DOMAIN}", to=endpoint.aor, call_id=secrets.token_hex(8), cseq=1,
                         extra=["Expires: 300"])
        assert endpoint.receive_final("REGISTER").status == 200

    def relayed(self, body: str) -> int:
        """The port of an SDP body that names the relay; fails if it names anything else."""
        ip, port = media_address(body)
        assert ip == LOOPBACK and DEFAULT_PORTS[0] <= port <= DEFAULT_PORTS[1], f"SDP does not name the relay:\n{body}"
        return port

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def bed(request: pytest.FixtureRequest, tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[RelayBed]:
    """The relay and Kamailio; parametrized indirectly with a dict, it passes those config defines to Kamailio."""
    require_programs("kamailio", "kamcmd", "rtpengine")
    bed = RelayBed(tmp_path, getattr(request, "param", None) or {})
    try:
        yield bed
    finally:
        # Shown by pytest only when the test failed.
        print(f"--- kamailio (tail) ---\n{bed.kamailio.tail(80)}\n--- rtpengine (tail) ---\n{bed.relay.tail(40)}")
        bed.close()


def rtp(seq: int) -> bytes:
    """One 20 ms PCMU packet."""
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5E11) + b"\xff" * 160


def exchange_media(a: socket.socket, a_to: tuple[str, int], b: socket.socket, b_to: tuple[str, int],
                   packets: int = 50, timeout: float = 10.0) -> tuple[int, int]:
    """Both sockets send RTP every 20 ms to the relay until each received `packets` (or `timeout`): (a_got, b_got)."""
    got = {a: 0, b: 0}
    deadline = time.monotonic() + timeout
    seq = 0
    while min(got.values()) < packets and time.monotonic() < deadline:
        seq += 1
        a.sendto(rtp(seq), a_to)
        b.sendto(rtp(seq), b_to)
        for sock in (a, b):
            sock.settimeout(0.01)  # also paces the loop: about 20 ms per round
            try:
                while True:
                    sock.recvfrom(2048)
                    got[sock] += 1
            except socket.timeout:
                pass
    return got[a], got[b]


def call(caller: Endpoint, uri: str, offer: str | None) -> tuple[str, str]:
    """Caller sends INVITE (with `offer` as SDP, or none); returns (call_id, the Via it used)."""
    call_id = secrets.token_hex(8)
    via = caller.request("INVITE", uri, to=uri, call_id=call_id, cseq=1, body=offer or "")
    return call_id, via


def established(answer: Message) -> Dialog:
    return Dialog(call_id=answer.header("Call-ID"), remote_uri=answer.contact_uri(), remote_tag=answer.to_tag(),
                  routes=list(reversed(answer.all("Record-Route"))))


def in_dialog(caller: Endpoint, dialog: Dialog, method: str, to: str, body: str = "", cseq: int | None = None) -> None:
    caller.request(method, dialog.remote_uri, to=to, to_tag=dialog.remote_tag, call_id=dialog.call_id,
                   cseq=cseq if cseq is not None else dialog.cseq, routes=dialog.routes, body=body)


def test_a_gateway_behind_nat_is_registered_called_and_hung_up_with_media_both_ways_through_the_relay(
        bed: RelayBed) -> None:
    gateway = bed.endpoint("gw1", claims=f"{PRIVATE}:5060")
    bed.register(gateway)
    # Registrar: the contact stays the private one, but it is reached where the REGISTER came from.
    dump = bed.kamailio.kamcmd("ul.dump")
    assert f"sip:gw1@{PRIVATE}:5060" in dump and f"Received: sip:{LOOPBACK}:{gateway.port}" in dump, dump

    caller = bed.endpoint("alice")
    caller_media = bed.media_socket()
    call_id, _ = call(caller, gateway.aor, sdp(LOOPBACK, caller_media.getsockname()[1]))

    # The INVITE reaches the gateway through its NAT, its SDP naming the relay instead of the caller.
    invite = gateway.receive_request("INVITE")
    assert invite.uri == f"sip:gw1@{PRIVATE}:5060"
    to_gateway = bed.relayed(invite.body)
    gateway.reply(invite, 200, "OK", body=sdp(PRIVATE, PRIVATE_MEDIA_PORT))

    # The caller never learns the gateway's address: SDP names the relay, the Contact carries the NAT's address.
    answer = caller.receive_final("INVITE")
    assert answer.status == 200
    to_caller = bed.relayed(answer.body)
    assert f";alias={LOOPBACK}~{gateway.port}~1" in answer.header("Contact")
    dialog = established(answer)
    in_dialog(caller, dialog, "ACK", gateway.aor)
    ack = gateway.receive_request("ACK")
    assert "alias=" not in ack.uri and ack.uri == f"sip:gw1@{PRIVATE}:5060", ack.uri

    # Media: the gateway's RTP leaves from a port its SDP never named (a NAT's mapping); the relay latches on to it.
    gateway_media = bed.media_socket()
    got_caller, got_gateway = exchange_media(caller_media, (LOOPBACK, to_caller), gateway_media, (LOOPBACK, to_gateway))
    assert got_caller >= 50 and got_gateway >= 50, (got_caller, got_gateway)
    streams = {s.local_port: s for s in bed.relay.streams(call_id)}
    from_gateway = streams[to_gateway]
    assert from_gateway.advertised == f"{PRIVATE}:{PRIVATE_MEDIA_PORT}"
    assert from_gateway.endpoint == f"{LOOPBACK}:{gateway_media.getsockname()[1]}"
    assert from_gateway.packets >= 50 and streams[to_caller].packets >= 50, streams

    # Hang-up: the BYE goes through the NAT too, and ends the relay session.
    dialog.cseq = 2
    in_dialog(caller, dialog, "BYE", gateway.aor)
    bye = gateway.receive_request("BYE")
    gateway.reply(bye, 200, "OK")
    assert caller.receive_final("BYE").status == 200
    assert call_id not in bed.relay.calls()


def test_a_failed_call_and_a_cancelled_call_leave_no_relay_session(bed: RelayBed) -> None:
    gateway = bed.endpoint("gw1", claims=f"{PRIVATE}:5060")
    bed.register(gateway)
    caller = bed.endpoint("alice")

    call_id, via = call(caller, gateway.aor, sdp(LOOPBACK, 40000))
    invite = gateway.receive_request("INVITE")
    assert call_id in bed.relay.calls()
    gateway.reply(invite, 486, "Busy Here")
    busy = caller.receive_final("INVITE")
    assert busy.status == 486
    caller.request("ACK", gateway.aor, to=gateway.aor, to_tag=busy.to_tag(), call_id=call_id, cseq=1,
                   via=via)
    assert call_id not in bed.relay.calls()

    call_id, via = call(caller, gateway.aor, sdp(LOOPBACK, 40000))
    invite = gateway.receive_request("INVITE")
    gateway.reply(invite, 180, "Ringing")
    caller.receive(lambda m: m.status == 180)
    caller.request("CANCEL", gateway.aor, to=gateway.aor, call_id=call_id, cseq=1, via=via)
    assert caller.receive_final("CANCEL").status == 200
    gateway.reply(gateway.receive_request("CANCEL"), 200, "OK")
    gateway.reply(invite, 487, "Request Terminated")
    assert caller.receive_final("INVITE").status == 487
    assert call_id not in bed.relay.calls()


def test_the_pool_hunt_keeps_the_relayed_offer_for_the_next_gateway(bed: RelayBed) -> None:
    first, second = bed.endpoint("gw2", claims=f"{PRIVATE}:5060"), bed.endpoint("gw3", claims="10.201.2.2:5060")
    bed.register(first)
    bed.register(second)
    assert len(bed.kamailio.contacts_of("pool")) == 2
    caller = bed.endpoint("alice")
    caller_media = bed.media_socket()
    call_id, _ = call(caller, f"sip:1234@{DOMAIN}", sdp(LOOPBACK, caller_media.getsockname()[1]))

    # Whichever gateway the hunt tries first is busy; the next one gets the very same relayed offer.
    busy, busy_invite = first_request("INVITE", [first, second])
    busy.reply(busy_invite, 486, "Max Calls")
    other = second if busy is first else first
    invite = other.receive_request("INVITE", timeout=8)
    to_gateway = bed.relayed(invite.body)
    assert to_gateway == bed.relayed(busy_invite.body)
    other.reply(invite, 200, "OK", body=sdp(other.claims.split(":")[0], PRIVATE_MEDIA_PORT))
    answer = caller.receive_final("INVITE")
    assert answer.status == 200, answer.start
    to_caller = bed.relayed(answer.body)
    dialog = established(answer)
    in_dialog(caller, dialog, "ACK", f"sip:1234@{DOMAIN}")
    other.receive_request("ACK")

    got = exchange_media(caller_media, (LOOPBACK, to_caller), bed.media_socket(), (LOOPBACK, to_gateway), packets=20)
    assert min(got) >= 20, got
    dialog.cseq = 2
    in_dialog(caller, dialog, "BYE", f"sip:1234@{DOMAIN}")
    other.reply(other.receive_request("BYE"), 200, "OK")
    assert caller.receive_final("BYE").status == 200
    assert call_id not in bed.relay.calls()


def first_request(method: str, endpoints: list[Endpoint], timeout: float = 5.0) -> tuple[Endpoint, Message]:
    """The first of `endpoints` to receive a `method` request, and that request (keepalives etc. are set aside)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for endpoint in endpoints:
            selector.register(endpoint.sock, selectors.EVENT_READ, endpoint)
        while (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(remaining):
                endpoint = key.data
                data, source = endpoint.sock.recvfrom(65535)
                message = parse(data, source)
                if message.is_request and message.method == method:
                    return endpoint, message
                endpoint.seen.append(message)
    raise AssertionError(f"no {method} at any of {[e.user for e in endpoints]} within {timeout} s")


def test_a_late_offer_is_relayed_from_the_gateways_answer_and_the_callers_ack(bed: RelayBed) -> None:
    gateway = bed.endpoint("gw1", claims=f"{PRIVATE}:5060")
    bed.register(gateway)
    caller = bed.endpoint("alice")
    call_id, _ = call(caller, gateway.aor, offer=None)
    invite = gateway.receive_request("INVITE")
    assert invite.body == ""
    gateway.reply(invite, 200, "OK", body=sdp(PRIVATE, PRIVATE_MEDIA_PORT))  # the offer, in the 2xx
    answer = caller.receive_final("INVITE")
    to_caller = bed.relayed(answer.body)
    caller_media = bed.media_socket()
    dialog = established(answer)
    in_dialog(caller, dialog, "ACK", gateway.aor, body=sdp(LOOPBACK, caller_media.getsockname()[1]))  # the answer
    ack = gateway.receive_request("ACK")
    to_gateway = bed.relayed(ack.body)
    got = exchange_media(caller_media, (LOOPBACK, to_caller), bed.media_socket(), (LOOPBACK, to_gateway), packets=20)
    assert min(got) >= 20, got
    dialog.cseq = 2
    in_dialog(caller, dialog, "BYE", gateway.aor)
    gateway.reply(gateway.receive_request("BYE"), 200, "OK")
    assert caller.receive_final("BYE").status == 200
    assert call_id not in bed.relay.calls()


@pytest.mark.parametrize("bed", [{"NAT_PING_INTERVAL": 1}], indirect=True)
def test_kamailio_keeps_a_nated_registration_open_with_options_sent_to_the_nats_address(bed: RelayBed) -> None:
    gateway = bed.endpoint("gw1", claims=f"{PRIVATE}:5060")
    bed.register(gateway)
    ping = gateway.receive_request("OPTIONS", timeout=5)
    assert ping.uri == f"sip:gw1@{PRIVATE}:5060"  # sent to the NAT's address (it reached this socket), not the URI's
    assert f"sip:keepalive@{DOMAIN}" in ping.header("From")
    # A caller that is not NATed is not pinged.
    caller = bed.endpoint("alice")
    bed.register(caller)
    with pytest.raises(AssertionError):
        caller.receive_request("OPTIONS", timeout=2.5)


def test_a_call_fails_with_503_when_the_relay_is_down_rather_than_connecting_without_media(bed: RelayBed) -> None:
    gateway = bed.endpoint("gw1", claims=f"{PRIVATE}:5060")
    bed.register(gateway)
    bed.relay.stop()
    caller = bed.endpoint("alice")
    call(caller, gateway.aor, sdp(LOOPBACK, 40000))
    # Kamailio gives up on the relay at once when nothing listens (else after rtpengine_tout_ms x rtpengine_retr).
    refused = caller.receive_final("INVITE", timeout=20)
    assert (refused.status, refused.start.split(" ", 2)[2]) == (503, "Media Relay Unavailable")
    with pytest.raises(AssertionError):
        gateway.receive_request("INVITE", timeout=0.5)
