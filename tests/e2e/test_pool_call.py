"""End to end, pool gateways: callers choose the meeting by the address they dial (issue 8).

Real parts: docs/kamailio.cfg hunting the pool, two pool gateways launched by the CLI, Janus rooms with Chromium
participants, baresip callers. Audio is judged both ways over >= 10 s (testbed/tones.py). The callers are phones
(audio only): two audio+video calls at once are more than a 2-core host carries (docs/benchmarks.md), and video
through a gateway is proven by the single-call tests.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from sipmediagw.demo import ROOM_LISTEN_S, ROOM_TONE, make_caller, wait_audible
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import SIP_DOMAIN, LocalStack
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, check_tone

from .conftest import Cli

pytestmark = pytest.mark.e2e

TONES = {"1234": 1000, "1235": 700, "1236": 500}  # each caller its own tone: a call in the wrong room shows


def in_call_rooms(cli: Cli) -> dict[str, str]:
    """room -> gateway name, for the pool gateways in a call."""
    return {g["room"]: g["name"] for g in cli.status()["gateways"]
            if g["name"].startswith("pool-") and g["state"] == "in-call" and g["room"]}


def test_two_meetings_dialled_at_once_a_third_caller_busy_then_the_freed_gateway_takes_a_new_meeting(
        stack: LocalStack, cli: Cli, tmp_path: Path) -> None:
    cli.launch_pool("pool", 2)
    entries = {g["name"]: g for g in cli.status()["gateways"]}
    assert entries["pool-1"]["mode"] == entries["pool-2"]["mode"] == "pool"
    assert entries["pool-1"]["room"] is None and entries["pool-2"]["room"] is None

    def participant(room: str) -> Participant:
        return Participant(base_url=stack.base_url, room=room, tone_hz=ROOM_TONE, name=f"p{room}",
                           workdir=tmp_path / f"p{room}")

    def caller(index: int, room: str) -> Any:
        return make_caller(stack, tmp_path / f"caller{index}", tone=TONES[room], index=index, video=False)

    with participant("1234") as room_a, participant("1235") as room_b, \
            caller(0, "1234") as alice, caller(1, "1235") as bob, caller(2, "1236") as carol:
        for sip in (alice, bob, carol):
            sip.wait_registered(30)
        alice.dial(f"sip:1234@{SIP_DOMAIN}")
        alice.wait_established(60)
        assert wait_audible(room_a, TONES["1234"], 60), cli.log_tails("pool-1") + cli.log_tails("pool-2")
        bob.dial(f"sip:1235@{SIP_DOMAIN}")
        bob.wait_established(60)
        assert wait_audible(room_b, TONES["1235"], 60), cli.log_tails("pool-1") + cli.log_tails("pool-2")
        rooms = in_call_rooms(cli)
        assert set(rooms) == {"1234", "1235"} and set(rooms.values()) == {"pool-1", "pool-2"}, rooms
        by_name = {g["name"]: g for g in cli.status()["gateways"]}
        assert by_name[rooms["1234"]]["meeting"] == "1234" and by_name[rooms["1234"]]["caller"]

        # Every pool gateway is busy: the third caller is told so by the registrar.
        carol.dial(f"sip:1236@{SIP_DOMAIN}")
        refused = carol.wait_event({"CALL_CLOSED"}, 60)
        assert "486" in str(refused.get("param")), refused

        # Both rooms listen at once for 12 s: each hears its own caller, steadily.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            recordings = list(pool.map(lambda job: job[0].record_remote_audio(tmp_path / f"{job[1]}.wav",
                                                                             ROOM_LISTEN_S),
                                       [(room_a, "room-1234"), (room_b, "room-1235")]))

        freed = rooms["1234"]
        alice.hangup()
        alice.wait_closed(30)
        assert cli.wait_state(freed, "ready")["room"] is None
        heard_by_alice = alice.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB)
        assert heard_by_alice.ok, f"alice: {heard_by_alice.summary()}\n{cli.log_tails(freed)}"
        for recording, room, sip in ((recordings[0], "1234", alice), (recordings[1], "1235", bob)):
            assert recording is not None, f"room {room} received no audio"
            if sip is bob:
                continue  # bob's sent level is known once his call is over (below)
            heard = check_tone(recording, TONES[room], sip.sent_level(), min_window=ROOM_LISTEN_S - 2)
            assert heard.ok, f"room {room}: {heard.summary()}"

        # The freed gateway takes the next meeting.
        with participant("1236") as room_c:
            carol.dial(f"sip:1236@{SIP_DOMAIN}")
            carol.wait_established(60)
            assert wait_audible(room_c, TONES["1236"], 60), cli.log_tails(freed)
            assert in_call_rooms(cli).get("1236") == freed
            carol.hangup()
            carol.wait_closed(30)

        bob.hangup()
        bob.wait_closed(30)
        heard_in_b = check_tone(recordings[1], TONES["1235"], bob.sent_level(), min_window=ROOM_LISTEN_S - 2)
        assert heard_in_b.ok, f"room 1235: {heard_in_b.summary()}"
        heard_by_bob = bob.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB)
        assert heard_by_bob.ok, f"bob: {heard_by_bob.summary()}"
    for name in ("pool-1", "pool-2"):
        assert cli.wait_state(name, "ready")["room"] is None
