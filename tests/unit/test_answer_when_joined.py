"""A call whose room the dialled address names rings while its room is joined and is answered once in it
(controller.py, ``join_on_invite``): earlier when the join needs the caller or fails, at the latest ANSWER_WAIT s
after the INVITE. The real Controller and room worker thread, a fake baresip control, a join the test releases.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

from sipmediagw.dispatch import RoomTarget
from sipmediagw.gateway.controller import ANSWER_WAIT, Controller, Routing
from sipmediagw.gateway.room_worker import RoomWorker

from test_controller import FIXED, FakeControl, call, ring
from test_incall import RecordingWatch
from test_join_notice import Setup
from test_menu_session import Clock
from test_room_joins import SlowRoom, pump_until, wait_event


class AskingRoom(SlowRoom):
    """A join that reports a lobby wait first (the JoinDialogue moves), then blocks until released."""

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: Any = None) -> None:
        dialogue.report("waiting to be let in")
        super().join(target, display_name, cancelled, dialogue)


@contextlib.contextmanager
def ringing(room: SlowRoom, clock: Clock | None = None) -> Iterator[tuple[Controller, FakeControl, RecordingWatch]]:
    """A fixed gateway (join_on_invite) whose call c1 rings and whose join has started on the worker thread; the join
    is released and the worker drained afterwards, whatever the test did."""
    control, watch = FakeControl(), RecordingWatch()
    controller = Controller(control, room, lambda: None, routing=Routing("gw", fixed=FIXED), watch=watch,
                            room_worker=RoomWorker(), join_on_invite=True,
                            **({"clock": clock} if clock is not None else {}))
    try:
        ring(controller, control, "c1", "gw")
        wait_event(room.entered, "the join to start at the INVITE")
        yield controller, control, watch
    finally:
        room.release.set()
        assert controller.room_worker.wait_idle(10)


def accepts(control: FakeControl) -> int:
    return [cmd for cmd, _ in control.commands].count("accept")


def test_the_call_rings_while_its_room_is_joined_and_is_answered_once_in_it() -> None:
    room = SlowRoom()
    with ringing(room) as (controller, control, watch):
        for _ in range(20):
            controller.pump(0.01)
        assert accepts(control) == 0, "answered before the room was joined"
        assert watch.seen == [] and not controller.in_call and not controller.joining  # ringing: no caller yet
        room.release.set()
        pump_until(controller, lambda: accepts(control) == 1, "the answer once in the room")
        assert room.events == ["join:alice", "join returned"]
        assert watch.seen == []  # the call's timers start when it is established, not when it rings
        controller.handle(call("CALL_ESTABLISHED", "c1"))
        assert controller.in_call and watch.seen[:2] == ["start:c1", "joined"]
        controller.pump(0.0)
        assert accepts(control) == 1  # once


def test_a_join_that_needs_the_caller_answers_at_once() -> None:
    room = AskingRoom()
    with ringing(room) as (controller, control, _):
        pump_until(controller, lambda: accepts(control) == 1, "the answer when the join reports a lobby")
        assert "join returned" not in room.events  # still waiting to be let in: the caller sees and hears it


def test_a_slow_room_is_answered_after_answer_wait_seconds() -> None:
    room, clock = SlowRoom(), Clock()
    with ringing(room, clock) as (controller, control, _):
        clock.now += ANSWER_WAIT - 0.1
        controller.pump(0.0)
        assert accepts(control) == 0
        clock.now += 0.2
        controller.pump(0.0)
        assert accepts(control) == 1 and "join returned" not in room.events


def test_a_caller_who_gives_up_ringing_is_never_answered_and_the_join_is_abandoned() -> None:
    room = SlowRoom()
    with ringing(room) as (controller, control, _):
        controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
        pump_until(controller, lambda: "join cancelled" in room.events, "the join to be cancelled")
        controller.pump(0.0)
        assert accepts(control) == 0 and controller.call is None


def test_a_failed_join_answers_so_the_caller_hears_why_then_hangs_up() -> None:
    setup = Setup(join_on_invite=True)
    ring(setup.controller, setup.control, "c1", "gw")
    setup.controller.pump(0.0)
    commands = [cmd for cmd, _ in setup.control.commands]
    assert commands == ["callstat", "accept"]  # answered for the notice, not rejected
    setup.controller.handle(call("CALL_ESTABLISHED", "c1"))
    setup.wait(30)
    assert setup.byes == 1


def test_without_a_notifier_a_failed_join_rejects_the_ringing_call() -> None:
    setup = Setup(join_on_invite=True, notified=False)
    ring(setup.controller, setup.control, "c1", "gw")
    setup.controller.pump(0.0)
    assert [cmd for cmd, _ in setup.control.commands] == ["callstat", "hangup"]  # 486 before any answer
