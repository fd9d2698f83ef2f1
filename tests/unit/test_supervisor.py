"""Supervisor loop: start order, readiness, failure handling, recovery, once mode, signals, state file.

Components are small fakes or real ManagedProcess children; the call controller is a fake with the Controller's
attributes (the real one is covered by its own tests and the docker tier).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from sipmediagw.gateway import supervisor as supervisor_module
from sipmediagw.gateway.process import ComponentFailed, ManagedProcess
from sipmediagw.gateway.supervisor import FunctionComponent, Supervisor
from sipmediagw.state import ComponentState, ComponentStatus, GatewayState, GatewayStatus, read_state


@pytest.fixture(autouse=True)
def fast_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "LIVENESS_INTERVAL", 0.0)


class FakeComponent:
    def __init__(self, name: str, events: list[str], *, fail_start: bool = False, recoverable: bool = False) -> None:
        self.name = name
        self.events = events
        self.fail_start = fail_start
        self.recoverable = recoverable
        self.running = False
        self.starts = 0
        self._status = ComponentStatus()

    def start(self) -> None:
        self.events.append(f"start {self.name}")
        self.starts += 1
        if self.fail_start:
            self._status = ComponentStatus(ComponentState.ERROR, "boom")
            raise ComponentFailed(self.name, "boom")
        self.running = True
        self._status = ComponentStatus(ComponentState.STARTING)

    def wait_ready(self, timeout: float) -> None:
        self._status = ComponentStatus(ComponentState.RUNNING)

    def alive(self) -> bool:
        if not self.running and self._status.state is ComponentState.RUNNING:
            self._status = ComponentStatus(ComponentState.ERROR, "crashed")
        return self.running

    def stop(self) -> int | None:
        self.events.append(f"stop {self.name}")
        self.running = False
        if self._status.state is not ComponentState.ERROR:
            self._status = ComponentStatus(ComponentState.FINISHED)
        return 0

    @property
    def status(self) -> ComponentStatus:
        return self._status


class FakeControl:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def connect(self, timeout: float) -> None:
        self.events.append("control connect")

    def quit(self) -> None:
        self.events.append("baresip quit")

    def close(self) -> None:
        self.events.append("control close")


class FakeController:
    """Stands in for controller.Controller; `script` runs on every pump so a test can act from inside the loop."""

    def __init__(self, events: list[str], on_change: Callable[[], None], script: Callable[["FakeController"], None]):
        self.events = events
        self.on_change = on_change
        self.script = script
        self.control = FakeControl(events)
        self.registered = True
        self.in_call = False
        self.joining = False
        self.in_menu = False
        self.dialling = False
        self.notifying = False
        self.call_id: str | None = None
        self.caller: str | None = None
        self.calls = 0
        self.done = False
        self.error: str | None = None
        self.control_lost = False
        self.turns = 0

    def pump(self, timeout: float) -> Any:
        self.turns += 1
        time.sleep(0.01)
        self.script(self)
        return None

    def sync_registration(self) -> bool:
        return self.registered

    def hangup_and_wait(self, timeout: float, reason: str = "") -> bool:
        self.events.append("hangup")
        self.in_call, self.call_id, self.caller = False, None, None
        return True

    def settle_room(self, timeout: float) -> bool:
        return True

    def call_fields(self) -> dict[str, Any]:
        return {"caller": self.caller}

    def start_call(self, caller: str) -> None:
        self.in_call, self.call_id, self.caller = True, "c1", caller
        self.calls += 1
        self.on_change()


def make(tmp_path: Path, components: list, script: Callable[[FakeController], None], *, once: bool = False):
    events: list[str] = []
    for c in components:
        if isinstance(c, FakeComponent):
            c.events = events
    holder: dict[str, FakeController] = {}

    def make_controller(on_change: Callable[[], None]) -> FakeController:
        holder["c"] = FakeController(events, on_change, script)
        return holder["c"]

    sup = Supervisor(
        status=GatewayStatus(gateway="gw-test", sip_uri="sip:gw@example.org", room="1234"),
        log_dir=tmp_path,
        components=[(c, 5.0) for c in components],
        make_controller=make_controller,
        once=once,
        poll_interval=0.01,
        install_signals=False,
    )
    return sup, events, holder


def names(*n: str) -> list[FakeComponent]:
    return [FakeComponent(x, []) for x in n]


def test_starts_in_order_stops_in_reverse_and_is_ready_when_registered(tmp_path: Path) -> None:
    seen: list[GatewayState] = []

    def script(ctl: FakeController) -> None:
        state = read_state(tmp_path)
        seen.append(state.state)
        if ctl.turns == 1:
            ctl.registered = False
        elif ctl.turns == 3:
            ctl.registered = True
        elif ctl.turns == 6:
            sup.request_stop(signal.SIGTERM)

    sup, events, _ = make(tmp_path, names("xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "browser"), script)
    assert sup.run() == 0
    assert events == [
        "start xvfb-web", "start xvfb-sip", "start pulseaudio", "start baresip", "start browser",
        "stop browser", "baresip quit", "stop baresip", "stop pulseaudio", "stop xvfb-sip", "stop xvfb-web",
        "control close",
    ]
    # not ready while unregistered, ready once registered
    assert GatewayState.STARTING in seen[1:3] and seen[-1] is GatewayState.READY
    final = read_state(tmp_path)
    assert final.state is GatewayState.EXITED
    assert final.sip_uri == "sip:gw@example.org"
    assert {n: c.state for n, c in final.components.items()} == {
        n: ComponentState.FINISHED for n in ("xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "browser")}


def test_in_call_state_and_hangup_before_stop(tmp_path: Path) -> None:
    seen: list[Any] = []

    def script(ctl: FakeController) -> None:
        if ctl.turns == 1:
            ctl.start_call("Alice")
        elif ctl.turns == 3:
            state = read_state(tmp_path)
            seen.append((state.state, state.caller, state.calls))
            sup.request_stop(signal.SIGTERM)

    sup, events, _ = make(tmp_path, names("xvfb-web", "baresip", "browser"), script)
    assert sup.run() == 0
    assert seen == [(GatewayState.IN_CALL, "Alice", 1)]
    # BYE goes out before anything is stopped
    assert events.index("hangup") < events.index("stop browser") < events.index("baresip quit")


def test_start_failure_stops_what_started_and_exits_non_zero(tmp_path: Path) -> None:
    comps = names("xvfb-web", "pulseaudio", "baresip", "browser")
    comps[1].fail_start = True
    sup, events, holder = make(tmp_path, comps, lambda ctl: None)
    assert sup.run() == 1
    assert "start baresip" not in events and "start browser" not in events
    assert "stop xvfb-web" in events
    assert "c" not in holder  # the controller is never built
    state = read_state(tmp_path)
    assert state.state is GatewayState.ERROR
    assert state.last_error == "pulseaudio: boom"
    assert state.components["pulseaudio"].state is ComponentState.ERROR


def test_critical_component_death_hangs_up_and_exits_non_zero(tmp_path: Path) -> None:
    comps = names("xvfb-web", "pulseaudio", "baresip", "browser")

    def script(ctl: FakeController) -> None:
        if ctl.turns == 1:
            ctl.start_call("Bob")
        elif ctl.turns == 3:
            comps[1].running = False  # pulseaudio dies mid-call

    sup, events, _ = make(tmp_path, comps, script)
    assert sup.run() == 1
    assert events.index("hangup") < events.index("stop browser")
    assert comps[1].starts == 1  # not restarted
    state = read_state(tmp_path)
    assert state.state is GatewayState.ERROR
    assert state.last_error == "pulseaudio: crashed"


def test_recoverable_browser_is_restarted_after_hanging_up(tmp_path: Path) -> None:
    comps = names("xvfb-web", "baresip", "browser")
    comps[2].recoverable = True
    seen: list[Any] = []

    def script(ctl: FakeController) -> None:
        if ctl.turns == 1:
            ctl.start_call("Carol")
        elif ctl.turns == 3:
            comps[2].running = False  # chromium killed mid-call
        elif ctl.turns == 6:
            state = read_state(tmp_path)
            seen.append((state.state, state.last_error, ctl.in_call))
            sup.request_stop(signal.SIGTERM)

    sup, events, _ = make(tmp_path, comps, script)
    assert sup.run() == 0
    assert comps[2].starts == 2
    assert events[events.index("hangup"):events.index("hangup") + 3] == ["hangup", "stop browser", "start browser"]
    assert seen == [(GatewayState.READY, "browser: crashed", False)]


def test_recovery_gives_up_after_repeated_deaths(tmp_path: Path) -> None:
    comps = names("baresip", "browser")
    comps[1].recoverable = True

    def script(ctl: FakeController) -> None:
        comps[1].running = False  # dies again on every turn

    sup, _events, _ = make(tmp_path, comps, script)
    assert sup.run() == 1
    assert comps[1].starts == 1 + supervisor_module.MAX_RECOVERIES
    assert read_state(tmp_path).state is GatewayState.ERROR


def test_once_mode_exits_zero_when_the_call_is_over(tmp_path: Path) -> None:
    def script(ctl: FakeController) -> None:
        if ctl.turns == 2:
            ctl.done = True

    sup, events, _ = make(tmp_path, names("baresip"), script, once=True)
    assert sup.run() == 0
    assert read_state(tmp_path).state is GatewayState.EXITED


def test_sigterm_sets_a_flag_and_the_loop_stops(tmp_path: Path) -> None:
    def script(ctl: FakeController) -> None:
        # Sent from inside the loop, i.e. once run() has installed its handlers: a timer could fire before that and
        # kill pytest itself.
        if ctl.turns == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    sup, events, _ = make(tmp_path, names("xvfb-web", "baresip"), script)
    sup.install_signals = True
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        assert sup.run() == 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert sup.stop_requested == "SIGTERM"
    assert events[-3:] == ["stop baresip", "stop xvfb-web", "control close"]


def test_state_file_heartbeat_keeps_updated_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "HEARTBEAT", 0.05)
    stamps: list[str] = []

    def script(ctl: FakeController) -> None:
        if ctl.turns % 10 == 0:
            stamps.append((tmp_path / "state.json").stat().st_mtime_ns)
        if ctl.turns == 60:
            sup.request_stop(signal.SIGTERM)

    sup, _events, _ = make(tmp_path, names("baresip"), script)
    sup.run()
    assert len(set(stamps)) > 1  # rewritten while nothing changed


def test_real_child_death_is_detected_and_everything_else_stopped(tmp_path: Path) -> None:
    py = sys.executable
    sleeper = [py, "-c", "import time; time.sleep(120)"]
    a = ManagedProcess("xvfb-web", sleeper)
    b = ManagedProcess("pulseaudio", sleeper)
    c = ManagedProcess("baresip", sleeper)

    def script(ctl: FakeController) -> None:
        if ctl.turns == 3:
            os.kill(b.pid, signal.SIGKILL)

    sup, _events, _ = make(tmp_path, [a, b, c], script)
    assert sup.run() == 1
    state = read_state(tmp_path)
    assert state.last_error == f"pulseaudio: exited unexpectedly with code {-signal.SIGKILL}"
    assert not a.alive() and not c.alive()
    assert state.components["xvfb-web"].state is ComponentState.FINISHED
    for pid in (a.pid, b.pid, c.pid):
        assert not os.path.exists(f"/proc/{pid}")  # stopped and reaped: no zombies


def test_function_component_wraps_exceptions_as_component_failures() -> None:
    def explode() -> None:
        raise RuntimeError("chromedriver crashed\nstack...")

    comp = FunctionComponent("browser", start=explode, stop=lambda: None, alive=lambda: True)
    with pytest.raises(ComponentFailed) as failure:
        comp.start()
    assert failure.value.reason == "start failed: RuntimeError: chromedriver crashed"
    assert comp.status == ComponentStatus(ComponentState.ERROR, failure.value.reason)

    alive = [True]
    comp = FunctionComponent("browser", start=lambda: None, stop=lambda: None, alive=lambda: alive[0],
                             recoverable=True)
    comp.start()
    comp.wait_ready(1)
    assert comp.status.state is ComponentState.RUNNING and comp.recoverable
    alive[0] = False
    assert not comp.alive()
    assert comp.status == ComponentStatus(ComponentState.ERROR, "stopped responding")


def test_lost_control_connection_is_reconnected_while_baresip_runs(tmp_path: Path) -> None:
    seen: list[Any] = []

    def script(ctl: FakeController) -> None:
        if ctl.turns == 2:
            ctl.control_lost, ctl.registered = True, False  # what Controller does on CTRL_DISCONNECTED
        elif ctl.turns == 3:
            seen.append(read_state(tmp_path).state)
            ctl.registered = True  # sync_registration after the reconnect finds the account registered
        elif ctl.turns == 5:
            seen.append(read_state(tmp_path).state)
            sup.request_stop(signal.SIGTERM)

    sup, events, holder = make(tmp_path, names("baresip"), script)
    assert sup.run() == 0
    assert events.count("control connect") == 1 and holder["c"].control_lost is False
    assert seen == [GatewayState.STARTING, GatewayState.READY]
