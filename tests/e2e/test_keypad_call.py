"""End to end, the caller's keypad (issue 8, items 3 and 4): a call to the service address gets the menu on its
screen and in its ear, types the meeting, lands in that Janus room with media both ways; in the room, key 1 mutes
the gateway's microphone (the room hears silence, then sound again) and key 2 stops its camera (frames stop
changing, then change again).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmediagw.demo import ROOM_LISTEN_S, ROOM_TONE, make_caller, wait_audible
from sipmediagw.gateway import ivr
from sipmediagw.testbed._proc import wait_until
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import SIP_DOMAIN, LocalStack
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, check_tone, level_db, read_mono

from .conftest import Cli

pytestmark = pytest.mark.e2e

CALLER_TONE = 1000


def room_level(room: Participant, path: Path) -> float:
    """The level (dBFS) of one second of what the room hears from the gateway."""
    recorded = room.record_remote_audio(path, 1.0)
    return level_db(read_mono(recorded)[0]) if recorded else -120.0


def test_keypad_menu_picks_the_room_then_keys_mute_and_stop_the_camera(
        stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    cli.launch_pool("ivr", 1)
    with Participant(base_url=stack.base_url, room=1234, tone_hz=ROOM_TONE, name="p1234",
                     workdir=tmp_path / "p") as room, \
            make_caller(stack, tmp_path / "caller", tone=CALLER_TONE) as caller:
        caller.wait_registered(30)
        caller.dial(f"sip:meet@{SIP_DOMAIN}")  # the service address: the keypad menu
        caller.wait_established(60)

        # The menu is on the caller's screen (its marker, decoded from the caller's own received video).
        shown = wait_until(lambda: (m := caller.menu_marker()) is not None and m.stage == ivr.MEETING, 60, 0.5)
        assert shown, f"no keypad menu on the caller's screen\n{cli.log_tails('ivr-1')}"
        caller.send_keys("125*34")  # * erases the 5
        assert wait_until(lambda: (m := caller.menu_marker()) is not None and m.shows("1234"), 30, 0.5), \
            "the caller's screen does not show 1234"
        caller.send_keys("#")
        assert wait_audible(room, CALLER_TONE, 60), f"room 1234 never heard the caller\n{cli.log_tails('ivr-1')}"
        joined_at = caller.recorded_seconds()
        entry = cli.wait_state("ivr-1", "in-call")
        assert (entry["room"], entry["meeting"]) == ("1234", "meet"), entry
        recording = room.record_remote_audio(tmp_path / "room.wav", ROOM_LISTEN_S)

        # Key 1: the room hears silence from the gateway; again: sound.
        caller.send_keys("1")
        assert wait_until(lambda: room_level(room, tmp_path / "muted.wav") < -60, 20, 0), \
            "the room still hears the caller after key 1"
        caller.send_keys("1")
        assert wait_audible(room, CALLER_TONE, 20), "the room does not hear the caller again after key 1 again"

        # Key 2: the gateway's camera in the room stops changing; again: it moves again.
        caller.send_keys("2")
        assert wait_until(lambda: not room.remote_video_changing(timeout=3), 30, 0), \
            "the caller's video still changes in the room after key 2"
        caller.send_keys("2")
        assert room.remote_video_changing(timeout=30), "the caller's video does not come back after key 2 again"

        caller.hangup()
        caller.wait_closed(30)
        assert recording is not None, "room 1234 received no audio"
        heard_in_room = check_tone(recording, CALLER_TONE, caller.sent_level(), min_window=ROOM_LISTEN_S - 2)
        assert heard_in_room.ok, f"room: {heard_in_room.summary()}"
        heard_by_caller = caller.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB, after=joined_at)
        assert heard_by_caller.ok, f"caller: {heard_by_caller.summary()}\n{cli.log_tails('ivr-1')}"

    # The spoken prompt reached the caller before the room did: speech in its first seconds.
    samples, rate = read_mono(caller.closed_recording("dec"))
    frame = rate // 50
    speech = [i for i in range(0, min(len(samples), 8 * rate) - frame, frame) if level_db(samples[i:i + frame]) > -45]
    assert len(speech) >= 50, f"only {len(speech)} 20 ms frames of prompt speech in the caller's first 8 s"
    assert cli.wait_state("ivr-1", "ready")["last_end_reason"] == "caller hung up"
