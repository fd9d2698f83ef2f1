"""End to end: Kamailio + Janus room + `sipmediagw launch` + a baresip caller dialling through Kamailio.

Media is measured both ways: the caller's tone and test video reach a Chromium participant in the Janus room through
the gateway; the participant's tone reaches the caller's recording, and the caller decodes the room's video.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sipmediagw.demo import CALLER_TONE, ROOM_LISTEN_S, ROOM_TONE, make_caller, run_test_call, wait_audible
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import LocalStack
from sipmediagw.testbed.tones import check_tone

from .conftest import Cli, assert_media_both_ways, close_to

pytestmark = pytest.mark.e2e


def test_call_through_kamailio_into_a_janus_room_media_both_ways(stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    out = cli.launch("1234", "e2e-one")
    gateway_uri = stack.gateway_uri(0)
    assert gateway_uri in out.stdout, out.stdout
    assert stack.kamailio.registered("gw1")
    entry = cli.wait_state("e2e-one", "ready")
    assert entry["room"] == "1234" and entry["platform"] == "janus" and entry["media"] == "userspace"
    free_before = cli.status()["free_slots"]

    def while_in_call() -> None:
        entry = cli.wait_state("e2e-one", "in-call")
        assert entry["room"] == "1234"

    # The caller dials through Kamailio (it only knows the registrar); a participant sits in the Janus room.
    report = run_test_call(stack, gateway_uri, "1234", tmp_path / "call", during_call=while_in_call)
    tails = cli.log_tails("e2e-one")
    # Level and frequency over >= 10 s of the call, both ways (a tone that fades or breaks up fails); after the
    # hang-up (done by run_test_call) the browser left the room
    assert_media_both_ways(report, tails)
    cli.wait_state("e2e-one", "ready")

    # The real image launched by the CLI: the SIP password is nowhere an operator or another user can look.
    password = stack.gateway_users[0].password
    inspect = subprocess.run(["docker", "inspect", "sipmediagw-e2e-one"], capture_output=True, text=True, check=True)
    shown = [inspect.stdout, cli.run("status").stdout, cli.run("logs", "e2e-one", "--tail", "1000").stdout]
    shown += [p.read_text(errors="replace") for p in (cli.logs_dir / "e2e-one").glob("*") if p.is_file()
              and p.suffix != ".png"]
    assert all(password not in text for text in shown)

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
        assert wait_audible(bob, 700, 60), f"room 1236 never heard 700 Hz\n{cli.log_tails('e2e-right')}"
        recording = bob.record_remote_audio(tmp_path / "bob-heard.wav", ROOM_LISTEN_S)
        assert cli.wait_state("e2e-right", "in-call")["room"] == "1236"
        assert cli.gateway("e2e-left")["state"] == "ready"  # the other gateway was not involved
        caller.hangup()
        caller.wait_closed(30)
        assert recording is not None, f"room 1236 received no audio\n{cli.log_tails('e2e-right')}"
        heard = check_tone(recording, 700, caller.sent_level(), min_window=ROOM_LISTEN_S - 2)
        assert heard.ok and close_to(heard.hz, 700), f"room 1236: {heard.summary()}\n{cli.log_tails('e2e-right')}"
    cli.wait_state("e2e-right", "ready")


def test_a_caller_offering_only_h264_like_a_room_system(stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    """Polycom/Cisco room systems commonly offer H.264 only: the gateway must negotiate it both ways."""
    cli.launch("1237", "e2e-h264")
    report = run_test_call(stack, stack.gateway_uri(0), "1237", tmp_path / "call",
                           caller_options={"video_codecs": "H264"})
    caller_log = (tmp_path / "call" / "caller" / "baresip.log").read_text(errors="replace")
    assert "Set video encoder: H264" in caller_log and "Set video decoder: H264" in caller_log, caller_log[-3000:]
    assert report.room_video_changing and report.caller_video_changing, cli.log_tails("e2e-h264")
    assert report.room_hears_caller and report.caller_hears_room, report.problems()
    assert close_to(report.room_audio_hz, CALLER_TONE) and close_to(report.caller_audio_hz, ROOM_TONE)
