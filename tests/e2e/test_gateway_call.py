"""End to end: Kamailio + Janus room + `sipmediagw launch` + a baresip caller dialling through Kamailio.

Media is measured both ways: the caller's tone and test video reach a Chromium participant in the Janus room through
the gateway; the participant's tone reaches the caller's recording, and the caller decodes the room's video.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import SIP_DOMAIN, LocalStack
from sipmediagw.testbed.tones import dominant_frequency

from .conftest import Cli, close_to

pytestmark = pytest.mark.e2e

CALLER_TONE = 1000
ROOM_TONE = 440


def wait_for(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    """Poll `check` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def make_caller(stack: LocalStack, workdir: Path, tone: int = CALLER_TONE) -> BaresipCaller:
    """The host baresip caller, registered at the stack's Kamailio on the bridge address."""
    user = stack.caller_user
    return BaresipCaller(user=user.user, domain=SIP_DOMAIN, registrar=stack.registrar, workdir=workdir,
                         tone_hz=tone, password=user.password, sip_ip=stack.ip)


def test_call_through_kamailio_into_a_janus_room_media_both_ways(stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    out = cli.launch("1234", "e2e-one")
    gateway_uri = stack.gateway_uri(0)
    assert gateway_uri in out.stdout, out.stdout
    assert stack.kamailio.registered("gw1")
    entry = cli.wait_state("e2e-one", "ready")
    assert entry["room"] == "1234" and entry["platform"] == "janus" and entry["media"] == "userspace"
    free_before = cli.status()["free_slots"]

    with Participant(base_url=stack.base_url, room=1234, tone_hz=ROOM_TONE, name="alice",
                     workdir=tmp_path / "alice") as alice, make_caller(stack, tmp_path / "caller") as caller:
        caller.wait_registered(30)
        caller.dial(gateway_uri)  # through Kamailio: the caller only knows the registrar
        established = caller.wait_established(60)
        assert established["direction"] == "outgoing"

        # The gateway's browser joins the room as a second publisher carrying the caller's media.
        alice.wait_remote(1, timeout=60)
        entry = cli.wait_state("e2e-one", "in-call")
        assert entry["room"] == "1234"
        heard_in_room = alice.remote_audio_frequency(timeout=60)
        assert close_to(heard_in_room, CALLER_TONE), f"room heard {heard_in_room} Hz\n{cli.log_tails('e2e-one')}"
        assert alice.remote_video_changing(timeout=60), cli.log_tails("e2e-one")

        assert caller.received_video_changing(60), caller.tail()
        time.sleep(4)  # a few more seconds of room audio in the caller's recording (not a timing assertion)
        caller.hangup()
        caller.wait_closed(30)
        time.sleep(1)  # sndfile closes its WAV when the call is torn down
        heard_by_caller = dominant_frequency(caller.recording_path())
        assert close_to(heard_by_caller, ROOM_TONE), f"caller heard {heard_by_caller} Hz"

        # Hang-up: the browser leaves the room and the gateway is ready for the next call.
        cli.wait_state("e2e-one", "ready")
        assert wait_for(lambda: alice.remote_count() == 0, 30), "the gateway's browser did not leave the room"

    cli.run("stop", "e2e-one")
    status = cli.status()
    assert all(g["name"] != "e2e-one" for g in status["gateways"])
    assert status["free_slots"] == free_before + 1


def test_two_gateways_in_two_rooms_each_reachable_by_its_own_uri(stack: LocalStack, cli: Cli,
                                                                 tmp_path: Path) -> None:
    cli.launch("1235", "e2e-left")
    cli.launch("1236", "e2e-right")
    by_name = {g["name"]: g for g in cli.status()["gateways"]}
    uris = {by_name["e2e-left"]["sip_uri"], by_name["e2e-right"]["sip_uri"]}
    assert len(uris) == 2 and by_name["e2e-left"]["slot"] != by_name["e2e-right"]["slot"]

    right_uri = by_name["e2e-right"]["sip_uri"]
    with Participant(base_url=stack.base_url, room=1236, tone_hz=ROOM_TONE, name="bob",
                     workdir=tmp_path / "bob") as bob, make_caller(stack, tmp_path / "caller", tone=700) as caller:
        caller.wait_registered(30)
        caller.dial(right_uri if right_uri.startswith("sip:") else f"sip:{right_uri}")
        caller.wait_established(60)
        bob.wait_remote(1, timeout=60)
        heard = bob.remote_audio_frequency(timeout=60)
        assert close_to(heard, 700), f"room 1236 heard {heard} Hz\n{cli.log_tails('e2e-right')}"
        assert cli.wait_state("e2e-right", "in-call")["room"] == "1236"
        assert cli.gateway("e2e-left")["state"] == "ready"  # the other gateway was not involved
        caller.hangup()
        caller.wait_closed(30)
    cli.wait_state("e2e-right", "ready")
