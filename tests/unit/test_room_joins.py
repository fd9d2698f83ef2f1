"""Room joins beside the event loop: the room worker, the controller's JOINING stage (cancel on hang-up, the join
timeout, late results discarded) and the supervisor's heartbeat and SIGTERM while a join takes its time.

The room is a fake whose join blocks like a page that takes its time: until the test releases it, or (when it honours
cancellation, like a driver polling its page) until the controller cancels it. Tests wait on events and conditions,
never on sleeps.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from sipmediagw.dispatch import RoomTarget
from sipmediagw.gateway import supervisor as supervisor_module
from sipmediagw.gateway.controller import CANCEL_GRACE, Controller, Routing
from sipmediagw.gateway.room_worker import JOIN, LEAVE, RoomWorker
from sipmediagw.gateway.supervisor import Supervisor
from sipmediagw.state import GatewayState, GatewayStatus, read_state, write_state

from test_controller import FIXED, POOL, FakeControl, FakeMenu, call, ring
from test_supervisor import FakeComponent

WAIT = 10.0  # generous bound on every wait: a slow machine only waits longer
REGISTERED = "\n--- User Agents (1) ---\n> sip:gw@example.org  \x1b[32mOK \x1b[;m\n"


class Cancelled(RuntimeError):
    """What a driver's next WebDriver command raises once its join is cancelled (browser.PageActionCancelled)."""


class SlowRoom:
    """A RoomSession whose join runs until `release` is set. `honours_cancel`: it also stops when the join is
    cancelled (a driver polling its page); else it is stuck (a page load) until released, e.g. by the browser's stop.
    Everything it does goes to `events` (shared with the supervisor's fake components)."""

    def __init__(self, events: list[str] | None = None, honours_cancel: bool = True,
                 release_error: Exception | None = None) -> None:
        self.events = events if events is not None else []
        self.honours_cancel = honours_cancel
        self.release_error = release_error  # raised when released (the browser killed under the join)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.left = threading.Event()
        self.cancelled: threading.Event | None = None
        self.threads: set[str] = set()

    def check(self, target: RoomTarget) -> None:
        pass

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: Any = None) -> None:
        self.threads.add(threading.current_thread().name)
        self.cancelled = cancelled
        self.events.append(f"join:{display_name}")
        self.entered.set()
        while not self.release.wait(0.01):  # one "page step" per turn, like WebDriverWait's polls
            if self.honours_cancel and cancelled.is_set():
                self.events.append("join cancelled")
                raise Cancelled("page action cancelled")
        self.events.append("join returned")
        if self.release_error is not None:
            raise self.release_error

    def leave(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append("leave")
        self.left.set()


def wait_event(event: threading.Event, what: str) -> None:
    assert event.wait(WAIT), f"timed out waiting for {what}"


def pump_until(controller: Controller, predicate: Callable[[], bool], what: str) -> None:
    """Turn the controller's loop (as the supervisor does) until `predicate` holds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        controller.pump(0.01)


def make(room: SlowRoom, routing: Routing = Routing("gw", fixed=FIXED), **kwargs: Any
         ) -> tuple[Controller, FakeControl, list[str]]:
    control = kwargs.pop("control", FakeControl())
    changes: list[str] = []
    controller: Controller

    def on_change() -> None:
        changes.append(controller.call.stage if controller.call else "idle")

    controller = Controller(control, room, on_change, routing=routing, **kwargs)  # type: ignore[arg-type]
    return controller, control, changes


# -- the worker ----------------------------------------------------------------------------------------------------


def test_the_worker_runs_tasks_in_order_on_its_thread_and_hands_them_back() -> None:
    worker = RoomWorker(name="rooms-test")
    gate, seen = threading.Event(), []
    first = worker.submit(JOIN, lambda cancelled: (seen.append(threading.current_thread().name), gate.wait(WAIT)))
    second = worker.submit(LEAVE, lambda cancelled: seen.append("second"))
    failing = worker.submit(LEAVE, lambda cancelled: 1 / 0)
    assert worker.busy and not worker.wait_idle(0.05)  # the first holds the queue
    gate.set()
    assert worker.wait_idle(WAIT) and not worker.busy
    assert seen == ["rooms-test", "second"]
    assert worker.finished() == [first, second, failing] and worker.finished() == []
    assert first.error is None and isinstance(failing.error, ZeroDivisionError)


def test_a_task_cancelled_before_it_starts_never_runs_and_a_running_one_is_told() -> None:
    worker = RoomWorker()
    gate, ran = threading.Event(), []

    def running(cancelled: threading.Event) -> None:
        gate.set()
        assert cancelled.wait(WAIT)
        ran.append("noticed")

    first = worker.submit(JOIN, running)
    queued = worker.submit(JOIN, lambda cancelled: ran.append("queued ran"))
    wait_event(gate, "the first task to run")
    assert worker.current is first
    worker.cancel(queued)
    worker.cancel(first)
    assert worker.wait_idle(WAIT)
    assert ran == ["noticed"] and queued.skipped and not first.skipped and first.cancelled_at is not None


# -- the controller: JOINING on the worker -------------------------------------------------------------------------


def test_a_join_runs_beside_the_loop_and_its_result_is_applied_by_pump() -> None:
    room = SlowRoom()
    controller, control, changes = make(room)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))  # returns while the page still loads
    wait_event(room.entered, "the join to start")
    assert controller.joining and not controller.in_call and changes[-1] == "joining"
    assert room.threads == {"room-worker"}
    for _ in range(5):  # the loop turns meanwhile
        controller.pump(0.01)
    assert controller.joining
    room.release.set()
    pump_until(controller, lambda: controller.in_call, "the join's result")
    assert controller.calls == 1 and changes[-1] == "room" and controller.error is None
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    wait_event(room.left, "the leave")
    assert room.events == ["join:alice", "join returned", "leave"]


def test_a_caller_hanging_up_mid_join_cancels_it_and_a_late_result_is_discarded() -> None:
    room = SlowRoom(honours_cancel=False)  # stuck in one page step: it returns "joined" once released
    controller, control, changes = make(room)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    wait_event(room.entered, "the join to start")
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert controller.call is None and controller.last_end_reason == "caller hung up" and changes[-1] == "idle"
    assert room.cancelled is not None and room.cancelled.is_set()
    assert "leave" not in room.events  # queued behind the join still running
    room.release.set()
    wait_event(room.left, "the leave after the join")
    pump_until(controller, lambda: not controller.room_worker.busy, "the worker to finish")
    controller.pump(0.01)
    assert room.events == ["join:alice", "join returned", "leave"]
    assert not controller.in_call and controller.calls == 0 and controller.call is None  # the late join is dropped
    assert [c for c in control.commands if c[0] == "hangup"] == []  # the caller hung up: no BYE of ours


def test_a_join_that_honours_cancellation_stops_at_its_next_page_step() -> None:
    room = SlowRoom()
    controller, control, _ = make(room)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    wait_event(room.entered, "the join to start")
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    wait_event(room.left, "the leave")
    assert room.events == ["join:alice", "join cancelled", "leave"]
    pump_until(controller, lambda: not controller.room_worker.busy, "the worker to finish")
    controller.pump(0.01)
    assert controller.error is None and controller.last_end_reason == "caller hung up"


def test_a_join_over_its_timeout_hangs_up_with_the_reason() -> None:
    now = [1000.0]
    room = SlowRoom()
    controller, control, _ = make(room, clock=lambda: now[0], join_timeout=90)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    wait_event(room.entered, "the join to start")
    now[0] += 89
    controller.pump(0.01)
    assert controller.joining and ("hangup", "c1") not in control.commands
    now[0] += 1
    controller.pump(0.01)  # times out: BYE, and the fake's CALL_CLOSED comes back
    assert ("hangup", "c1") in control.commands
    pump_until(controller, lambda: controller.call is None, "the call's end")
    assert controller.last_end_reason == "room join timed out after 90 s"
    assert controller.error == "room join timed out after 90 s"
    wait_event(room.left, "the leave")
    assert room.events == ["join:alice", "join cancelled", "leave"] and controller.calls == 0


def test_a_failing_join_hangs_up_with_its_first_line() -> None:
    room = SlowRoom(release_error=RuntimeError("Message: timeout: page load\n  (Session info: chrome=1)\nStacktrace:"))
    controller, control, _ = make(room)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    room.release.set()
    pump_until(controller, lambda: controller.call is None, "the call's end")
    assert controller.last_end_reason == "room join failed: Message: timeout: page load"
    wait_event(room.left, "the leave")


def test_a_dialled_call_reports_success_only_once_in_the_room() -> None:
    from test_dialout_host import DialControl

    room = SlowRoom()
    controller, control, _ = make(room, control=DialControl())
    controller.registered = True
    reports: list[dict[str, Any]] = []
    controller.dial("sip:bob@example.org", None, reports.append)
    controller.handle(call("CALL_RINGING", "o1", direction="outgoing"))
    controller.handle(call("CALL_ESTABLISHED", "o1", direction="outgoing", peeruri="sip:bob@example.org"))
    wait_event(room.entered, "the join to start")
    assert [r.get("progress") for r in reports] == ["dialling", "ringing", "answered"]
    room.release.set()
    pump_until(controller, lambda: controller.in_call, "the room")
    assert reports[-1]["ok"] is True and reports[-1]["room"] == "1234"


def test_the_menu_waits_until_the_last_calls_leave_gave_the_browser_back() -> None:
    room = SlowRoom()
    menu = FakeMenu()
    controller, control, _ = make(room, routing=POOL, menu=menu)
    ring(controller, control, "c1", "1234")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    room.release.set()
    pump_until(controller, lambda: controller.in_call, "the room")
    blocked = threading.Event()
    room.leave = lambda: (room.events.append("slow leave"), blocked.wait(WAIT))  # type: ignore[method-assign]
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    ring(controller, control, "c2", "meet")
    controller.handle(call("CALL_ESTABLISHED", "c2"))
    controller.handle(call("CALL_DTMF_START", "c2", param="1"))
    controller.pump(0.01)
    assert controller.in_menu and menu.seen == []  # neither shown nor fed keys while the leave has the browser
    blocked.set()
    pump_until(controller, lambda: menu.seen[:1] == ["start:meet"], "the menu to start")


def test_settle_waits_for_a_leave_but_not_for_a_cancelled_join_stuck_in_a_page_load() -> None:
    room = SlowRoom(honours_cancel=False)
    controller, control, _ = make(room)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    wait_event(room.entered, "the join to start")
    controller.handle(call("CALL_CLOSED", "c1"))
    started = time.monotonic()
    assert controller.settle_room(WAIT) is False
    assert CANCEL_GRACE <= time.monotonic() - started < WAIT / 2
    room.release.set()
    assert controller.settle_room(WAIT) is True and room.left.is_set()


# -- the supervisor: heartbeat and SIGTERM while a join takes its time ----------------------------------------------


class SupervisedControl(FakeControl):
    """FakeControl with what the supervisor calls on its control connection; registered from the start."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.log = events
        self.reginfo_data = REGISTERED

    def connect(self, timeout: float) -> None:
        self.log.append("control connect")

    def quit(self) -> None:
        self.log.append("baresip quit")

    def close(self) -> None:
        self.log.append("control close")


class BrowserComponent(FakeComponent):
    """The browser component: stopping it ends a join stuck in a page load (the WebDriver command fails)."""

    def __init__(self, events: list[str], room: SlowRoom) -> None:
        super().__init__("browser", events, recoverable=True)
        self.room = room

    def stop(self) -> int | None:
        code = super().stop()
        self.room.release.set()
        return code


class Writes:
    """Every state file the supervisor writes, with a condition to wait on."""

    def __init__(self) -> None:
        self.states: list[GatewayStatus] = []
        self.changed = threading.Condition()

    def record(self, folder: Any, status: GatewayStatus) -> Path:
        path = write_state(folder, status)
        with self.changed:
            self.states.append(GatewayStatus.from_dict(status.to_dict()))
            self.changed.notify_all()
        return path

    def wait_for(self, predicate: Callable[[list[GatewayStatus]], bool], what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.states), timeout=WAIT), f"timed out: {what}"


class Running:
    """A Supervisor (real Controller, fake components and baresip) run on a thread, as the container runs it."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: SlowRoom) -> None:
        self.events = room.events
        self.writes = Writes()
        monkeypatch.setattr(supervisor_module, "write_state", self.writes.record)
        monkeypatch.setattr(supervisor_module, "LIVENESS_INTERVAL", 0.0)
        self.control = SupervisedControl(self.events)
        self.holder: dict[str, Controller] = {}

        def make_controller(on_change: Callable[[], None]) -> Controller:
            self.holder["c"] = Controller(self.control, room, on_change,  # type: ignore[arg-type]
                                          routing=Routing("gw", fixed=FIXED))
            return self.holder["c"]

        components = [FakeComponent("xvfb-web", self.events), FakeComponent("baresip", self.events),
                      BrowserComponent(self.events, room)]
        self.supervisor = Supervisor(status=GatewayStatus(gateway="gw-test"), log_dir=tmp_path,
                                     components=[(c, 5.0) for c in components], make_controller=make_controller,
                                     poll_interval=0.01, install_signals=False)
        self.exit_code: int | None = None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, name="supervisor")

    def _run(self) -> None:
        try:
            self.exit_code = self.supervisor.run()
        finally:
            self.ended.set()

    def __enter__(self) -> "Running":
        self.thread.start()
        self.writes.wait_for(lambda states: bool(states) and states[-1].state is GatewayState.READY, "ready")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.supervisor.request_stop(signal.SIGTERM)  # (already asked by the test, normally)
        self.thread.join(WAIT)

    @property
    def controller(self) -> Controller:
        return self.holder["c"]

    def call_in(self) -> None:
        self.control.events.put(call("CALL_INCOMING", "c1"))
        self.control.events.put(call("CALL_ESTABLISHED", "c1"))


def test_the_state_file_keeps_its_heartbeat_while_a_join_takes_its_time(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "HEARTBEAT", 0.05)
    room = SlowRoom()
    with Running(tmp_path, monkeypatch, room) as gateway:
        gateway.call_in()
        wait_event(room.entered, "the join to start")
        start = len(gateway.writes.states)
        gateway.writes.wait_for(lambda states: len(states) >= start + 5, "five heartbeats during the join")
        assert not room.release.is_set() and gateway.controller.joining  # all of them while the page loads
        during = read_state(tmp_path)
        assert during is not None and during.state is GatewayState.IN_CALL and during.caller == "alice"
        room.release.set()
        gateway.writes.wait_for(lambda states: states[-1].calls == 1, "the call in its room")
        assert read_state(tmp_path).room == "1234"  # type: ignore[union-attr]
        gateway.supervisor.request_stop(signal.SIGTERM)
        wait_event(gateway.ended, "the supervisor to end")
    assert gateway.exit_code == 0
    assert gateway.events.index("leave") < gateway.events.index("stop browser")  # left the room, then stopped


def test_sigterm_mid_join_stops_the_gateway_promptly_although_the_page_never_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # stuck in a page load: only the browser's stop ends it (its WebDriver command fails)
    room = SlowRoom(honours_cancel=False, release_error=RuntimeError("chromium killed"))
    with Running(tmp_path, monkeypatch, room) as gateway:
        gateway.call_in()
        wait_event(room.entered, "the join to start")
        asked = time.monotonic()
        gateway.supervisor.request_stop(signal.SIGTERM)
        wait_event(gateway.ended, "the supervisor to end")
        took = time.monotonic() - asked
    print(f"SIGTERM mid-join (page stuck loading) -> supervisor exit: {took:.2f} s")
    assert gateway.exit_code == 0
    assert took < CANCEL_GRACE + 3.0  # hang-up (the fake answers at once) + the grace + stops
    events = gateway.events
    assert events.index("join:alice") < events.index("stop browser") < events.index("join returned")
    assert ("hangup", "c1") in gateway.control.commands
    final = read_state(tmp_path)
    assert final is not None and final.state is GatewayState.EXITED and final.last_end_reason == "gateway stopping"


def test_sigterm_mid_join_leaves_the_room_before_the_browser_stops(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    room = SlowRoom()  # a driver polling its page: it notices the cancel
    with Running(tmp_path, monkeypatch, room) as gateway:
        gateway.call_in()
        wait_event(room.entered, "the join to start")
        asked = time.monotonic()
        gateway.supervisor.request_stop(signal.SIGTERM)
        wait_event(gateway.ended, "the supervisor to end")
        took = time.monotonic() - asked
    print(f"SIGTERM mid-join (driver polling) -> supervisor exit: {took:.2f} s")
    assert gateway.exit_code == 0 and took < 3.0
    events = gateway.events
    assert events.index("join cancelled") < events.index("leave") < events.index("stop browser")
