"""End to end: dial-out into a Janus room, and an audio-only gateway (issue 8, items 6 and 7).

Real parts: docs/kamailio.cfg, gateways launched by the CLI, a Janus room with a Chromium participant, baresip
endpoints. Audio is judged both ways over >= 10 s (testbed/tones.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmediagw.demo import ROOM_LISTEN_S, ROOM_TONE, make_caller, wait_audible
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import SIP_DOMAIN, LocalStack
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, check_tone

from .conftest import Cli

pytestmark = pytest.mark.e2e

CALLEE_TONE = 700
CALLER_TONE = 1000


def test_dial_calls_a_room_system_that_auto_answers_and_bridges_it_into_the_room(
        stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    cli.launch_pool("dial", 1)
    callee_uri = f"sip:{stack.caller_users[1].user}@{SIP_DOMAIN}"
    with Participant(base_url=stack.base_url, room=1240, tone_hz=ROOM_TONE, name="p1240",
                     workdir=tmp_path / "p") as room, \
            make_caller(stack, tmp_path / "callee", tone=CALLEE_TONE, index=1) as callee:
        callee.wait_registered(30)
        dialled = cli.run("dial", "dial-1", callee_uri, "-r", "1240", timeout=240)
        assert "in room 1240" in dialled.stdout, dialled.stdout + dialled.stderr
        callee.wait_established(30)
        assert wait_audible(room, CALLEE_TONE, 60), cli.log_tails("dial-1")
        entry = cli.wait_state("dial-1", "in-call")
        assert (entry["room"], entry["direction"]) == ("1240", "outgoing"), entry
        recording = room.record_remote_audio(tmp_path / "room.wav", ROOM_LISTEN_S)
        assert room.remote_video_changing(60), "the callee's video did not reach the room"
        callee.hangup()
        callee.wait_closed(30)
        assert recording is not None, "the room received no audio"
        heard_in_room = check_tone(recording, CALLEE_TONE, callee.sent_level(), min_window=ROOM_LISTEN_S - 2)
        assert heard_in_room.ok, f"room: {heard_in_room.summary()}"
        heard_by_callee = callee.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB)
        assert heard_by_callee.ok, f"callee: {heard_by_callee.summary()}\n{cli.log_tails('dial-1')}"
    assert cli.wait_state("dial-1", "ready")["last_end_reason"] == "callee hung up"


def test_an_audio_only_gateway_offers_no_video_and_carries_audio_both_ways(
        stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    cli.launched.append("e2e-audio")
    cli.run("launch", "-r", "1239", "-g", "e2e-audio", "--audio-only", "--timeout", "180")
    entry = cli.wait_state("e2e-audio", "ready")
    assert entry["audio_only"] is True
    with Participant(base_url=stack.base_url, room=1239, tone_hz=ROOM_TONE, name="p1239",
                     workdir=tmp_path / "p") as room, \
            make_caller(stack, tmp_path / "caller", tone=CALLER_TONE) as caller:
        caller.wait_registered(30)
        caller.dial(entry["sip_uri"] if entry["sip_uri"].startswith("sip:") else f"sip:{entry['sip_uri']}")
        caller.wait_established(60)
        assert wait_audible(room, CALLER_TONE, 60), cli.log_tails("e2e-audio")
        # The caller offered video: the gateway declined it (its own offers carry no m=video at all:
        # tests/docker/test_dialout.py), so the caller decodes no video, and the room gets none from the gateway.
        recording = room.record_remote_audio(tmp_path / "room.wav", ROOM_LISTEN_S)
        assert not caller.received_video(timeout=5), "the audio-only gateway sent video to the caller"
        assert room.frames_decoded() == 0, "an audio-only gateway published video"
        caller.hangup()
        caller.wait_closed(30)
        assert recording is not None, "the room received no audio"
        heard_in_room = check_tone(recording, CALLER_TONE, caller.sent_level(), min_window=ROOM_LISTEN_S - 2)
        assert heard_in_room.ok, f"room: {heard_in_room.summary()}"
        heard_by_caller = caller.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB)
        assert heard_by_caller.ok, f"caller: {heard_by_caller.summary()}\n{cli.log_tails('e2e-audio')}"
