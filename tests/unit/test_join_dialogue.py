"""A join that waits (a lobby, the moderator) or asks the caller (a meeting password): the dialogue between the room
worker and the controller's loop, what the state file and `status` say meanwhile, and the caller's words when the
platform refuses the gateway. Tests wait on events and conditions, never on sleeps."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sipmediagw.dispatch import RoomTarget
from sipmediagw.gateway.join_dialogue import MAX_DIGITS, JoinDialogue
from sipmediagw.gateway.notice import REASONS, join_failed
from sipmediagw.room import LOBBY, NOT_FOUND, REFUSALS, WRONG_PASSWORD, RoomRefused
from sipmediagw.state import GatewayStatus
from sipmediagw.status import GatewayInfo, room_cell

from test_controller import FIXED, call, ring
from test_room_joins import WAIT, make, pump_until, wait_event


def test_keys_answer_the_question_asked_and_only_then() -> None:
    dialogue = JoinDialogue()
    assert not dialogue.take_key("1")  # nobody asks: the key is someone else's
    answers: list[str | None] = []
    typed: list[int] = []
    asker = threading.Thread(target=lambda: answers.append(dialogue.ask("Enter the meeting password", WAIT,
                                                                        typed=typed.append)))
    asker.start()
    while not dialogue.asking:  # the question is up once ask() holds it
        threading.Event().wait(0.005)
    assert dialogue.status == "asking the caller: Enter the meeting password"
    for key in "12*4567#":
        assert dialogue.take_key(key)
    asker.join(WAIT)
    assert answers == ["4567"] and not dialogue.asking  # '*' started again
    assert typed and typed[-1] in (3, 4)  # the screen followed the digits (the last redraw may race the '#')
    assert not dialogue.take_key("9")


def test_a_question_ends_empty_on_timeout_or_cancellation_and_digits_are_bounded() -> None:
    dialogue = JoinDialogue()
    assert dialogue.ask("PIN?", 0.05) is None
    cancelled = threading.Event()
    result: list[str | None] = []
    asker = threading.Thread(target=lambda: result.append(dialogue.ask("PIN?", WAIT, cancelled)))
    asker.start()
    while not dialogue.asking:
        threading.Event().wait(0.005)
    for _ in range(MAX_DIGITS + 10):
        dialogue.take_key("7")
    cancelled.set()
    asker.join(WAIT)
    assert result == [None] and not asker.is_alive()
    asker = threading.Thread(target=lambda: result.append(dialogue.ask("PIN?", WAIT)))
    asker.start()
    while not dialogue.asking:
        threading.Event().wait(0.005)
    for _ in range(MAX_DIGITS + 10):
        dialogue.take_key("7")
    dialogue.take_key("#")
    asker.join(WAIT)
    assert result[-1] == "7" * MAX_DIGITS


class LobbyRoom:
    """A RoomSession whose join reports it waits in a lobby, then asks for a password, then ends as told."""

    def __init__(self, outcome: Exception | None = None) -> None:
        self.outcome = outcome
        self.waiting = threading.Event()
        self.admit = threading.Event()
        self.answer: list[str | None] = []

    def check(self, target: RoomTarget) -> None:
        pass

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: JoinDialogue | None = None) -> None:
        assert dialogue is not None
        dialogue.report("waiting to be let in")
        self.waiting.set()
        assert self.admit.wait(WAIT)
        self.answer.append(dialogue.ask("Enter the meeting password, then #", WAIT, cancelled))
        if self.outcome is not None:
            raise self.outcome

    def leave(self) -> None:
        pass


def test_the_state_says_what_the_join_waits_for_and_keys_go_to_its_question() -> None:
    room = LobbyRoom()
    controller, control, _changes = make(room)  # type: ignore[arg-type]
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    wait_event(room.waiting, "the lobby")
    pump_until(controller, lambda: controller.call_fields()["join_progress"] == "waiting to be let in", "progress")
    assert controller.call_fields()["joining"] == FIXED.room and controller.call_fields()["room"] is None
    room.admit.set()
    pump_until(controller, lambda: (controller.call_fields()["join_progress"] or "").startswith("asking"), "the ask")
    for key in "2468#":
        controller.handle({"type": "CALL_DTMF_START", "param": key, "id": "c1"})
    pump_until(controller, lambda: controller.in_call, "the join's end")
    assert room.answer == ["2468"]
    assert controller.call_fields()["joining"] is None and controller.call_fields()["join_progress"] is None


def test_a_join_that_reports_progress_outlives_the_join_timeout_one_that_is_silent_does_not() -> None:
    now = [1000.0]
    room = LobbyRoom()
    controller, control, _ = make(room, clock=lambda: now[0], join_timeout=90)  # type: ignore[arg-type]
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    wait_event(room.waiting, "the lobby")
    now[0] += 80
    controller.pump(0.01)  # sees the progress: the timeout restarts from here
    now[0] += 80
    controller.pump(0.01)
    assert controller.joining  # 160 s in, but it said what it waits for 80 s ago
    now[0] += 11
    controller.pump(0.01)
    assert not controller.joining and controller.error == "room join timed out after 90 s"
    room.admit.set()


@pytest.mark.parametrize("reason", REFUSALS)
def test_a_refusal_is_told_in_the_callers_words_with_its_detail(reason: str) -> None:
    notice = join_failed(RoomRefused(reason, "server said no"), RoomTarget("jitsi", "https://m", "team", "4411"))
    assert notice.category == reason and notice.reason == REASONS[reason]
    assert notice.detail.endswith("server said no") and notice.meeting == "4411"
    with pytest.raises(ValueError):
        RoomRefused("maybe")


def test_status_shows_the_room_being_joined_and_what_it_waits_for() -> None:
    base: dict[str, Any] = dict(name="gw", state="in-call", room=None, platform="jitsi", sip_uri="sip:gw@h", slot=0,
                                media="userspace", container="c", uptime=1.0, cpu_percent=None, memory=None,
                                mode="pool")
    assert room_cell(GatewayInfo(**base)) == "(keypad menu)"
    assert room_cell(GatewayInfo(**base, joining="team")) == "(joining team)"
    assert room_cell(GatewayInfo(**base, joining="team", join_progress="waiting to be let in")) == \
        "(joining team: waiting to be let in)"
    # the state file carries both fields
    status = GatewayStatus.from_dict({"gateway": "gw", "joining": "team", "join_progress": "waiting to be let in"})
    assert (status.joining, status.join_progress) == ("team", "waiting to be let in")


def test_every_refusal_has_words_for_the_caller() -> None:
    assert {NOT_FOUND, LOBBY, WRONG_PASSWORD} <= set(REASONS) and set(REFUSALS) <= set(REASONS)
