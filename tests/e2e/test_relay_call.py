"""End to end through the RTP relay: Kamailio with WITH_NAT + rtpengine beside it, a real gateway, a baresip caller.

The same call as test_gateway_call.py (tone and video both ways, judged the same way), with docs/kamailio.cfg's NAT
handling on: the media must cross rtpengine in both directions. Proven from both ends: the caller receives its RTP
from the relay's address and ports (never from the gateway container's), and rtpengine's own counters show each
party's audio and video arriving at the relay while the call is up. The session is gone once the caller hangs up.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from sipmediagw.demo import run_test_call
from sipmediagw.testbed.network import docker_bridge_ip, free_port, free_port_range
from sipmediagw.testbed.rtpengine import RelayedStream
from sipmediagw.testbed.stack import LocalStack

from .conftest import Cli, _require_tools, assert_media_both_ways

pytestmark = pytest.mark.e2e

GATEWAY = "e2e-relay"
#: at least this many RTP packets from each party and medium once the room has listened for 12 s (audio sends 50/s)
MIN_PACKETS = 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """tests/e2e/conftest.py's stack with the relay: rtpengine on the bridge address, Kamailio run WITH_NAT.

    Overrides the conftest's `stack` for this module, so the `cli` fixture launches gateways against this one.
    """
    _require_tools()
    if shutil.which("rtpengine") is None:
        pytest.fail("e2e tools missing: rtpengine (run scripts/setup-host)")
    ip = docker_bridge_ip()
    local = LocalStack(tmp_path_factory.mktemp("relay-stack"), gateways=1, callers=1, sip_port=free_port_range(ip),
                       janus_http_port=free_port(ip), janus_web_port=free_port(ip), nat_relay=True)
    with local:
        yield local


@dataclasses.dataclass(frozen=True)
class MidCall:
    """What the relay showed while the call was up."""

    streams: list[RelayedStream]
    cpu_seconds: float  # rtpengine's CPU time so far
    at: float  # time.monotonic() of the sample
    call_age: float  # seconds since the relay session was created (the caller's INVITE)
    packets: int  # RTP packets relayed so far, both ways


def container_ip(name: str) -> str:
    """The gateway container's address on its Docker network."""
    out = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                          name], capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", out), out
    return out


def test_a_call_through_the_rtp_relay_carries_media_both_ways(stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    relay = stack.rtpengine
    assert relay is not None
    cli.launch("1234", GATEWAY)
    cli.wait_state(GATEWAY, "ready")
    gateway_ip = container_ip(f"sipmediagw-{GATEWAY}")
    assert relay.calls() == []
    idle_cpu, idle_at = relay.cpu_seconds(), time.monotonic()
    samples: list[MidCall] = []

    def while_in_call() -> None:
        assert cli.wait_state(GATEWAY, "in-call")["room"] == "1234"
        calls = relay.calls()
        assert len(calls) == 1, calls
        query = relay.query(calls[0])
        created = float(query["created"]) + float(query.get("created_us", 0)) / 1e6
        samples.append(MidCall(streams=relay.streams(calls[0]), cpu_seconds=relay.cpu_seconds(), at=time.monotonic(),
                               call_age=time.time() - created, packets=int(query["totals"]["RTP"]["packets"])))

    report = run_test_call(stack, stack.gateway_uri(0), "1234", tmp_path / "call", during_call=while_in_call)
    tails = cli.log_tails(GATEWAY) + "\n" + stack.tails()

    assert_media_both_ways(report, tails)  # judged exactly as in test_gateway_call.py

    # The caller's RTP came from the relay (a port of its range, on this host), never from the gateway container.
    # The address is this host's, not always the relay's own: when the relay sends to the caller before the caller
    # sent it anything (the gateway's media arrives as its 200 OK travels), the host's MASQUERADE rule for the bridge
    # subnet (`-s <bridge net> ! -o <bridge>`, what Docker installs) rewrites the relay's source to the address of
    # the route to the caller (measured: 192.0.2.2:<relay port> here, the stand-in machine's eth0 in
    # scripts/fresh-machine). rtpengine's own counters below prove what went through it.
    caller_log = (tmp_path / "call" / "caller" / "baresip.log").read_text(errors="replace")
    found = re.findall(r"incoming rtp for '(audio|video)' established, receiving from (\S+):(\d+)", caller_log)
    sources = {medium: (ip, int(port)) for medium, ip, port in found}
    assert set(sources) == {"audio", "video"}, caller_log[-3000:]
    low, high = relay.ports
    host_addresses = {addr.address for addrs in psutil.net_if_addrs().values() for addr in addrs
                      if addr.family == socket.AF_INET}
    assert stack.ip in host_addresses
    for medium, (ip, port) in sources.items():
        assert ip in host_addresses and low <= port <= high, f"caller's {medium} came from {ip}:{port}, not the relay"
        assert ip != gateway_ip

    # The relay's own counters: each party's audio and video arrived there, from where each party really is.
    assert len(samples) == 1, "the relay was not sampled during the call"
    mid = samples[0]
    streams = mid.streams
    # The relay knows the parties by their SIP tags: the gateway's streams come from its container; the caller's SDP
    # named the bridge address (its RTP may leave the host from another of its addresses: the relay latches on).
    by_tag: dict[str, list[RelayedStream]] = {}
    for stream in streams:
        by_tag.setdefault(stream.tag, []).append(stream)
    assert len(by_tag) == 2, streams
    gateway_tag = next(tag for tag, own in by_tag.items() if own[0].endpoint.startswith(f"{gateway_ip}:"))
    caller_tag = next(tag for tag in by_tag if tag != gateway_tag)
    assert all(s.endpoint.startswith(f"{gateway_ip}:") for s in by_tag[gateway_tag]), streams
    assert all(s.advertised.startswith(f"{stack.ip}:") for s in by_tag[caller_tag]), streams
    for tag in (gateway_tag, caller_tag):
        packets = {s.media: s.packets for s in by_tag[tag]}
        assert set(packets) == {"audio", "video"}, (tag, streams)
        assert min(packets.values()) >= MIN_PACKETS, (tag, packets)

    # Hang-up: Kamailio's BYE handling ended the relay session.
    assert relay.calls() == []
    cli.wait_state(GATEWAY, "ready")

    cpu, elapsed = mid.cpu_seconds - idle_cpu, mid.at - idle_at
    # Shown with -s (or -rP): what relaying one audio+video call costs.
    print(f"\nrelay figures: rtpengine CPU {cpu:.2f} s over {elapsed:.1f} s from before the dial to mid-call "
          f"({100 * cpu / elapsed:.1f} % of one core), the call {mid.call_age:.1f} s old then with {mid.packets} RTP "
          f"packets relayed ({mid.packets / mid.call_age:.0f}/s); streams "
          f"{[(s.media, s.advertised, s.endpoint, s.packets) for s in streams]}; "
          f"room heard {report.room_heard.summary() if report.room_heard else None}; "
          f"caller heard {report.caller_heard.summary() if report.caller_heard else None}")
