"""The on-demand room side (gateway/ondemand.py): parts started together in order, parked in reverse, whoever asks;
how the supervisor sees a parked part; and the controller asking for it per call (prepare before the answer, release
after the leave)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sipmediagw.gateway.controller import Controller, Routing
from sipmediagw.gateway.ondemand import PARKED, PARKED_REASON, RUNNING, OnDemand, OnDemandComponent, Part
from sipmediagw.gateway.process import ComponentFailed
from sipmediagw.gateway.room_worker import RoomWorker
from sipmediagw.state import ComponentState

from test_controller import FIXED, POOL, FakeControl, FakeMenu, FakeRoom, call, ring
from test_room_joins import pump_until


class FakePart:
    """A part that records its starts and stops in a shared journal; `fail` makes its next start raise."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name, self.journal = name, journal
        self.running = False
        self.fail = False
        self.healthy = True

    def start(self) -> None:
        self.journal.append(f"start:{self.name}")
        if self.fail:
            raise RuntimeError("no display")
        self.running = True

    def stop(self) -> None:
        self.journal.append(f"stop:{self.name}")
        self.running = False

    def alive(self) -> bool:
        return self.running and self.healthy

    def part(self) -> Part:
        return Part(self.name, self.start, self.stop, self.alive)


def group() -> tuple[OnDemand, FakePart, FakePart, list[str]]:
    journal: list[str] = []
    camera, browser = FakePart("camera", journal), FakePart("browser", journal)
    return OnDemand([camera.part(), browser.part()]), camera, browser, journal


def test_parts_start_in_order_once_and_park_in_reverse() -> None:
    parts, camera, browser, journal = group()
    assert parts.state == PARKED and not camera.running
    assert parts.ensure() is True
    assert parts.ensure() is False  # the join after the prepare: nothing started twice
    assert parts.state == RUNNING and camera.running and browser.running
    assert parts.park() is True
    assert parts.park() is False  # idempotent: the supervisor's stop after the call's release
    assert journal == ["start:camera", "start:browser", "stop:browser", "stop:camera"]
    assert parts.state == PARKED and parts.starts == 1


def test_a_failed_start_parks_what_had_started_and_says_which_part() -> None:
    parts, camera, browser, journal = group()
    browser.fail = True
    with pytest.raises(ComponentFailed) as failed:
        parts.ensure()
    assert failed.value.component == "browser" and "no display" in failed.value.reason
    assert journal == ["start:camera", "start:browser", "stop:camera"]
    assert parts.state == PARKED and not camera.running
    browser.fail = False
    assert parts.ensure() is True  # the next call tries again


def test_a_park_asked_during_a_start_waits_for_it_and_leaves_nothing_running() -> None:
    parts, camera, browser, journal = group()
    entered, release = threading.Event(), threading.Event()
    slow_start = browser.start

    def blocking_start() -> None:
        entered.set()
        release.wait(5)
        slow_start()

    parts.parts[1] = Part("browser", blocking_start, browser.stop, browser.alive)
    starter = threading.Thread(target=parts.ensure)
    starter.start()
    assert entered.wait(5)
    parker = threading.Thread(target=parts.park)
    parker.start()
    parker.join(0.2)
    assert parker.is_alive()  # waiting for the start, not stopping half of it
    release.set()
    starter.join(5)
    parker.join(5)
    assert journal == ["start:camera", "start:browser", "stop:browser", "stop:camera"]
    assert not camera.running and not browser.running


def test_the_supervisor_sees_a_parked_part_running_and_a_started_one_by_its_probe() -> None:
    parts, camera, browser, _ = group()
    component = OnDemandComponent("browser", parts, recoverable=True)
    component.start()
    component.wait_ready(1.0)  # at once: nothing to start
    assert not browser.running
    assert component.alive()
    assert component.status.state is ComponentState.RUNNING and component.status.reason == PARKED_REASON
    parts.ensure()
    assert component.alive() and component.status.reason is None
    browser.healthy = False  # Chromium crashed mid-call
    assert not component.alive()
    assert component.status.state is ComponentState.ERROR
    component.stop()  # the supervisor's recovery: park, then start (parked again) for the next call
    component.start()
    component.wait_ready(1.0)
    assert parts.state == PARKED and component.alive() and component.status.state is ComponentState.RUNNING


def test_stopping_any_part_component_parks_the_whole_group() -> None:
    parts, camera, browser, journal = group()
    components = [OnDemandComponent("camera", parts), OnDemandComponent("browser", parts, recoverable=True)]
    parts.ensure()
    for component in reversed(components):  # the supervisor's shutdown order
        component.stop()
    assert journal == ["start:camera", "start:browser", "stop:browser", "stop:camera"]
    assert all(c.status.state is ComponentState.FINISHED for c in components)


# -- the controller asks for the room side per call --------------------------------------------------------------


class FakeRoomSide:
    """The on-demand room side as the controller sees it, recording into the room's action list (one journal)."""

    def __init__(self, room: FakeRoom, fail: bool = False) -> None:
        self.room, self.fail = room, fail

    def prepare(self, cancelled: threading.Event) -> None:
        self.room.actions.append("prepare")
        if self.fail:
            raise RuntimeError("chromium did not start")

    def release(self) -> None:
        self.room.actions.append("release")


def controller_with_room_side(routing: Routing = POOL, fail: bool = False,
                              **kwargs: Any) -> tuple[Controller, FakeControl, FakeRoom]:
    control, room = FakeControl(), FakeRoom()
    controller = Controller(control, room, lambda: None, routing=routing, on_demand=FakeRoomSide(room, fail),
                            room_worker=RoomWorker(threaded=False), **kwargs)  # type: ignore[arg-type]
    return controller, control, room


def test_a_taken_call_starts_the_room_side_before_its_answer_and_parks_it_after_the_leave() -> None:
    controller, control, room = controller_with_room_side()
    ring(controller, control, "c1", "1234")
    assert room.actions == ["prepare"]
    assert [cmd for cmd, _ in control.commands] == ["callstat", "accept"]  # prepare was queued before the answer
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert room.actions == ["prepare", "join:alice"]
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert room.actions == ["prepare", "join:alice", "leave", "release"]


def test_a_refused_call_starts_nothing() -> None:
    controller, control, room = controller_with_room_side()
    ring(controller, control, "c1", "..")  # no such meeting: 486 before any answer
    assert room.actions == []
    assert ("hangup", "c1") in control.commands


def test_the_keypad_menu_call_also_gets_the_room_side_and_gives_it_back_when_it_hangs_up_unanswered() -> None:
    menu = FakeMenu()
    controller, control, room = controller_with_room_side(menu=menu)
    ring(controller, control, "c1", "meet")
    assert room.actions == ["prepare"]  # the menu draws on the room display: it needs the browser
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))  # gone before the answer
    assert room.actions == ["prepare", "release"]
    assert menu.seen == []


def test_a_failed_start_leaves_the_join_to_report_it_and_still_parks() -> None:
    controller, control, room = controller_with_room_side(fail=True)
    ring(controller, control, "c1", "1234")
    assert controller.error is not None and "prepare failed" in controller.error
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert room.actions[:2] == ["prepare", "join:alice"]  # the join runs (the real slot starts the browser again)
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert room.actions[-1] == "release"


def test_a_gateway_without_an_on_demand_room_side_never_asks() -> None:
    control, room = FakeControl(), FakeRoom()
    controller = Controller(control, room, lambda: None, routing=Routing("gw", fixed=FIXED),
                            room_worker=RoomWorker(threaded=False))
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert room.actions == ["join:alice", "leave"]


# -- a known room is entered from the INVITE on (join_on_invite) ------------------------------------------------


def test_a_known_room_is_joined_from_the_invite_on_and_the_answer_only_starts_the_watch() -> None:
    controller, control, room = controller_with_room_side(join_on_invite=True)
    ring(controller, control, "c1", "1234")
    assert room.actions == ["prepare", "join:alice"]  # the join queued behind the browser's start, before the answer
    assert [cmd for cmd, _ in control.commands] == ["callstat", "accept"]
    # in the room already, but not answered: the state says neither in-call nor a caller yet
    assert controller.call is not None and not controller.in_call and controller.call_fields()["caller"] is None
    controller.handle(call("CALL_ESTABLISHED", "c1", peerdisplayname="Alice"))
    assert room.actions == ["prepare", "join:alice"]  # never a second join
    assert controller.in_call and controller.call_fields()["caller"] == "Alice"
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert room.actions == ["prepare", "join:alice", "leave", "release"]


def test_a_call_that_ends_unanswered_leaves_the_room_it_was_entering() -> None:
    control, room = FakeControl(), FakeRoom()
    worker = RoomWorker(threaded=False)
    controller = Controller(control, room, lambda: None, routing=Routing("gw", fixed=FIXED), join_on_invite=True,
                            room_worker=worker)
    ring(controller, control, "c1", "gw")
    assert room.actions == ["join:alice"]
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))  # the caller gave up ringing
    assert room.actions == ["join:alice", "leave"]
    assert controller.call is None and not controller.in_call


def test_the_keypad_menu_still_waits_for_the_answer_with_join_on_invite() -> None:
    menu = FakeMenu()
    controller, control, room = controller_with_room_side(menu=menu, join_on_invite=True)
    ring(controller, control, "c1", "meet")
    assert room.actions == ["prepare"] and menu.seen == []
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.pump(0)
    assert menu.seen[:1] == ["start:meet"] and room.actions == ["prepare"]


class SlowRoomSide(FakeRoomSide):
    """A browser that takes its time to start: prepare() runs until the test releases it (on a real worker thread)."""

    def __init__(self, room: FakeRoom) -> None:
        super().__init__(room)
        self.started = threading.Event()
        self.release_start = threading.Event()

    def prepare(self, cancelled: threading.Event) -> None:
        self.started.set()
        assert self.release_start.wait(10)
        super().prepare(cancelled)


def test_keys_typed_while_the_browser_starts_reach_the_menu_in_order_once_it_shows() -> None:
    menu, control, room = FakeMenu(), FakeControl(), FakeRoom()
    side = SlowRoomSide(room)
    controller = Controller(control, room, lambda: None, routing=POOL, on_demand=side, menu=menu,
                            room_worker=RoomWorker())  # type: ignore[arg-type]
    ring(controller, control, "c1", "meet")
    assert side.started.wait(10)
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    for key in "1235#":  # a caller who knows the meeting types it at once
        controller.handle({"type": "CALL_DTMF_START", "param": key, "id": "c1"})
    assert menu.seen == []  # the menu waits for the browser; the keys are kept, not dropped
    side.release_start.set()
    # the supervisor's loop turning until the browser is free
    pump_until(controller, lambda: menu.seen[:1] == ["start:meet"], "the menu to start")
    assert menu.seen[:6] == ["start:meet", "key:1", "key:2", "key:3", "key:5", "key:#"]
