"""The gateway's supervisor: start the components in order, watch them, drive the call controller, stop in reverse.

PID-1 safe (FIELD-NOTES "PID 1 in the container"): the signal handler only sets a flag; the main loop reaps every
child (orphaned Chromium helpers included), pumps baresip events, checks component liveness, and keeps the state file
(sipmediagw/state.py) current. A dead Chromium is recovered (the call is hung up first, then the browser restarted);
any other dead component ends the gateway with a non-zero exit code after a clean hang-up.

Nothing slow runs on this loop: room joins and leaves run on the controller's room worker (room_worker.py), so the
heartbeat goes on and a SIGTERM is acted on at any moment. On stop, the call is hung up, the room worker gets a few
seconds to leave the room, then the browser is stopped, which also ends a join stuck in a page load.

Components and the call controller are passed in (see __main__ for the real wiring), so unit tests drive this loop
with small fakes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..state import (STATE_LINE_COMPONENT, ComponentState, ComponentStatus, GatewayState, GatewayStatus,
                     state_line_payload, write_state)
from .health import write_health
from .logs import get_logger
from .process import ComponentFailed, reap_children

EXIT_OK = 0
EXIT_COMPONENT_FAILED = 1  # a component failed to start or died (state file says which, and why)
HANGUP_TIMEOUT = 5.0  # seconds to wait for CALL_CLOSED after our BYE
ROOM_SETTLE_TIMEOUT = 3.0  # seconds the last call's leave may take on stop, before the browser is stopped anyway
HEARTBEAT = 5.0  # the state file is rewritten at least this often (the HEALTHCHECK treats a stale file as hung)
LIVENESS_INTERVAL = 2.0  # probing Chromium costs a WebDriver round trip: not on every loop turn
#: the loop's turn while no call is owned: baresip's events wake it at once anyway; what waits for a turn is only the
#: request socket's accept (`sipmediagw dial`) and the liveness checks, so an idle gateway turns less often
IDLE_POLL_INTERVAL = 0.5
REGISTRATION_RESYNC = 5.0  # while unregistered, ask baresip (reginfo) this often
CONTROL_RECONNECT_TIMEOUT = 5.0
MAX_RECOVERIES = 3  # restarts of a recoverable component within RECOVERY_WINDOW before giving up
RECOVERY_WINDOW = 300.0


class Component(Protocol):
    """One supervised part: a ManagedProcess or a FunctionComponent."""

    name: str

    def start(self) -> None: ...

    def wait_ready(self, timeout: float) -> None: ...

    def alive(self) -> bool: ...

    def stop(self) -> int | None: ...

    @property
    def status(self) -> ComponentStatus: ...


class CallController(Protocol):
    """What the supervisor needs from controller.Controller (baresip events -> room actions)."""

    registered: bool
    in_call: bool  # answered and in its room
    joining: bool  # answered, the browser entering its room (on the controller's room worker)
    in_menu: bool  # answered and in the keypad menu
    dialling: bool  # an outgoing call placed, not answered yet
    call_id: str | None  # the call it owns (answered or being answered)
    caller: str | None
    calls: int
    done: bool
    error: str | None
    control_lost: bool  # the ctrl_tcp connection dropped: the supervisor reconnects
    control: Any  # BaresipControl: connect(), quit() and close()

    def pump(self, timeout: float) -> Any: ...

    def sync_registration(self) -> bool: ...

    def hangup_and_wait(self, timeout: float, reason: str = ...) -> bool: ...

    def settle_room(self, timeout: float) -> bool:
        """Let the room worker finish (the last leave) for up to `timeout` s; True when idle."""
        ...

    def call_fields(self) -> dict[str, Any]:
        """The state file's fields about the current/last call (GatewayStatus names: room, caller, ...)."""
        ...


class RequestService(Protocol):
    """The gateway's request socket (request_socket.GatewayRequests): served from this loop, never blocking it."""

    def open(self, controller: Any, gateway_state: Callable[[], GatewayState]) -> None: ...

    def poll(self) -> None: ...

    def close(self, reason: str = ...) -> None: ...


class FunctionComponent:
    """A component that is not a single child process (Chromium via Selenium, the MJPEG relay), driven by callables.

    `recoverable` components are restarted by the supervisor when they die instead of ending the gateway.
    """

    def __init__(
        self,
        name: str,
        *,
        start: Callable[[], None],
        stop: Callable[[], None],
        alive: Callable[[], bool],
        wait_ready: Callable[[float], None] | None = None,
        recoverable: bool = False,
    ) -> None:
        self.name = name
        self.recoverable = recoverable
        self._start, self._stop, self._alive, self._wait_ready = start, stop, alive, wait_ready
        self._state = ComponentStatus()

    def start(self) -> None:
        """Run the start callable; any exception becomes ComponentFailed."""
        self._state = ComponentStatus()
        try:
            self._start()
        except ComponentFailed as exc:
            self._state = ComponentStatus(ComponentState.ERROR, exc.reason)
            raise
        except Exception as exc:
            reason = f"start failed: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self._state = ComponentStatus(ComponentState.ERROR, reason)
            raise ComponentFailed(self.name, reason) from exc

    def wait_ready(self, timeout: float) -> None:
        """Run the ready callable if any; running afterwards."""
        try:
            if self._wait_ready is not None:
                self._wait_ready(timeout)
        except ComponentFailed as exc:
            self._state = ComponentStatus(ComponentState.ERROR, exc.reason)
            raise
        except Exception as exc:
            self._state = ComponentStatus(ComponentState.ERROR, f"not ready: {exc}")
            raise ComponentFailed(self.name, f"not ready: {exc}") from exc
        self._state = ComponentStatus(ComponentState.RUNNING)

    def alive(self) -> bool:
        """The alive callable; a raising probe means dead."""
        try:
            alive = bool(self._alive())
        except Exception:
            alive = False
        if not alive and self._state.state is ComponentState.RUNNING:
            self._state = ComponentStatus(ComponentState.ERROR, "stopped responding")
        return alive

    def stop(self) -> int | None:
        """Run the stop callable (errors are logged by the caller's stop, never raised)."""
        try:
            self._stop()
        finally:
            if self._state.state is not ComponentState.ERROR:
                self._state = ComponentStatus(ComponentState.FINISHED)
        return None

    @property
    def status(self) -> ComponentStatus:
        """starting / running / error(reason) / finished."""
        return self._state


class Supervisor:
    """Runs one gateway: ordered start, watch loop, ordered stop; returns the process exit code from :meth:`run`."""

    def __init__(
        self,
        *,
        status: GatewayStatus,
        log_dir: Path,
        components: Sequence[tuple[Component, float]],
        make_controller: Callable[[Callable[[], None]], CallController],
        once: bool = False,
        poll_interval: float = 0.2,
        idle_poll_interval: float | None = None,
        install_signals: bool = True,
        requests: RequestService | None = None,
        start_together: Sequence[Sequence[str]] = (),
    ) -> None:
        self.status = status
        self.log_dir = Path(log_dir)
        self.components = list(components)
        #: groups of components (by name) that need nothing from one another to start: each group's members are all
        #: started, then waited for, in order (the others start one by one, each ready before the next starts)
        self.start_together = [tuple(group) for group in start_together]
        self.make_controller = make_controller
        self.once = once
        self.poll_interval = poll_interval  # a turn of the loop during a call (menu and call-watch timers)
        self.idle_poll_interval = max(poll_interval, IDLE_POLL_INTERVAL if idle_poll_interval is None
                                      else idle_poll_interval)
        self.install_signals = install_signals
        self.requests = requests
        self.controller: CallController | None = None
        self.exit_code = EXIT_OK
        self.stop_requested: str | None = None  # name of the signal that asked us to stop
        self._log = get_logger("supervisor")
        self._stopping = False
        self._last_write = 0.0
        self._recoveries: dict[str, list[float]] = {}

    # -- signals -------------------------------------------------------------------------------------------------
    def request_stop(self, signum: int, _frame: Any = None) -> None:
        """Signal handler: only records the request (no locks, no I/O: the main loop does the work)."""
        self.stop_requested = signal.Signals(signum).name

    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.request_stop)

    # -- main ----------------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything, serve calls until stopped or a component fails, stop everything; return the exit code."""
        if self.install_signals:
            self._install_signal_handlers()
        self._write(force=True)
        try:
            if self._start_all():
                self._loop()
        except Exception as exc:  # a bug must still end in an orderly stop and a readable state file
            self._log.exception("supervisor failed")
            self._fail(f"supervisor: {exc.__class__.__name__}: {exc}")
        finally:
            self._shutdown()
        return self.exit_code

    def start_waves(self) -> list[list[tuple[Component, float]]]:
        """The components in start order, cut into waves: a wave's components start one after the other without
        waiting, then the wave is waited for (start_together); a component in no group is a wave of its own."""
        waves: list[list[tuple[Component, float]]] = []
        group_of = {name: i for i, group in enumerate(self.start_together) for name in group}
        for entry in self.components:
            group = group_of.get(entry[0].name)
            if waves and group is not None and group_of.get(waves[-1][-1][0].name) == group:
                waves[-1].append(entry)
            else:
                waves.append([entry])
        return waves

    def _start_all(self) -> bool:
        for wave in self.start_waves():
            if self.stop_requested:
                self._log.info("%s received during start-up: stopping", self.stop_requested)
                return False
            try:
                for component, _timeout in wave:
                    self._log.info("starting %s", component.name)
                    component.start()
                self._write(force=True)
                for component, timeout in wave:
                    component.wait_ready(timeout)
            except ComponentFailed as exc:
                self._fail(f"{exc.component}: {exc.reason}")
                return False
            self._write(force=True)
        self.controller = self.make_controller(self._on_change)
        self.controller.sync_registration()
        if self.requests is not None:
            try:
                self.requests.open(self.controller, self._gateway_state)
            except OSError as exc:  # calls still come in; only `sipmediagw dial` is lost
                self._log.error("request socket not available: %s", exc)
        self._write(force=True)
        self._log.info("all components running; waiting for SIP registration and calls")
        return True

    def _loop(self) -> None:
        assert self.controller is not None
        last_liveness = last_sync = time.monotonic()
        while not self.stop_requested:
            reap_children()
            self.controller.pump(self.poll_interval if self._busy() else self.idle_poll_interval)
            if self.requests is not None:
                self.requests.poll()
            now = time.monotonic()
            thorough = now - last_liveness >= LIVENESS_INTERVAL
            if thorough:
                last_liveness = now
            if not self._check_components(thorough):
                return
            if self.controller.control_lost:
                self._reconnect_control()
            if self.once and self.controller.done:
                self._log.info("call over and once mode: exiting")
                return
            if not self.controller.registered and now - last_sync >= REGISTRATION_RESYNC:
                last_sync = now
                self.controller.sync_registration()
            self._write()
        self._log.info("%s received: stopping", self.stop_requested)

    def _busy(self) -> bool:
        """The controller owns a call (ringing, dialling, in the menu, joining, in the room, giving a notice)."""
        controller = self.controller
        return controller is not None and (controller.call_id is not None or controller.in_call or controller.joining
                                           or controller.in_menu or controller.dialling or controller.notifying)

    def _check_components(self, thorough: bool) -> bool:
        """False when the gateway must end (a non-recoverable component died)."""
        for component, timeout in self.components:
            if getattr(component, "recoverable", False) and not thorough:
                continue
            if component.alive():
                continue
            reason = component.status.reason or "exited"
            self._log.error("%s died: %s", component.name, reason)
            self.status.last_error = f"{component.name}: {reason}"
            self._hang_up(f"{component.name} died")
            if getattr(component, "recoverable", False) and self._may_recover(component.name):
                if self._recover(component, timeout):
                    continue
            self._fail(f"{component.name}: {reason}")
            return False
        return True

    def _reconnect_control(self) -> None:
        """baresip is alive but its ctrl_tcp connection dropped (ctrl_tcp keeps one client: a second one evicts us)."""
        controller = self.controller
        assert controller is not None
        self._log.warning("ctrl_tcp connection lost while baresip runs: reconnecting")
        try:
            controller.control.connect(CONTROL_RECONNECT_TIMEOUT)
        except Exception as exc:
            self._log.warning("ctrl_tcp reconnect failed: %s", exc)
            return
        controller.control_lost = False
        controller.error = None
        controller.sync_registration()
        self._write(force=True)

    def _may_recover(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._recoveries.get(name, []) if now - t < RECOVERY_WINDOW]
        self._recoveries[name] = recent + [now]
        return len(recent) < MAX_RECOVERIES

    def _recover(self, component: Component, timeout: float) -> bool:
        self._log.warning("restarting %s", component.name)
        self._write(force=True)
        try:
            component.stop()
        except Exception as exc:
            self._log.warning("cleanup of dead %s failed: %s", component.name, exc)
        try:
            component.start()
            component.wait_ready(timeout)
        except ComponentFailed as exc:
            self._log.error("restart of %s failed: %s", component.name, exc.reason)
            self.status.last_error = f"{component.name}: restart failed: {exc.reason}"
            return False
        self._log.info("%s recovered", component.name)
        self._write(force=True)
        return True

    def _hang_up(self, why: str) -> None:
        controller = self.controller
        if controller is None or (not controller.in_call and controller.call_id is None):
            return  # (an outgoing call's id is "" until baresip tells it: still a call to hang up)
        self._log.info("hanging up the call (%s)", why)
        try:
            controller.hangup_and_wait(HANGUP_TIMEOUT, reason=why)
        except Exception as exc:
            self._log.warning("hang-up failed: %s", exc)

    def _fail(self, reason: str) -> None:
        self._log.error("gateway failed: %s", reason)
        self.status.last_error = reason
        self.status.set_state(GatewayState.ERROR)
        self.exit_code = EXIT_COMPONENT_FAILED
        self._write(force=True)

    def _shutdown(self) -> None:
        self._stopping = True
        if self.exit_code == EXIT_OK:
            self.status.set_state(GatewayState.STOPPING)
        self._write(force=True)
        if self.requests is not None:  # first: a dial still waiting is told "stopping", not "failed, ready again"
            self.requests.close("gateway stopping")
        self._hang_up("gateway stopping")
        controller = self.controller
        if controller is not None:
            try:
                controller.settle_room(ROOM_SETTLE_TIMEOUT)
            except Exception as exc:
                self._log.warning("room work did not settle: %s", exc)
        for component, _timeout in reversed(self.components):
            if component.name == "baresip" and controller is not None:
                # `quit` lets baresip unregister before it exits; the process stop below is the fallback.
                try:
                    controller.control.quit()
                except Exception as exc:
                    self._log.warning("baresip quit failed: %s", exc)
            try:
                code = component.stop()
            except Exception as exc:
                self._log.warning("stopping %s failed: %s", component.name, exc)
                continue
            self._log.info("%s stopped%s", component.name, "" if code is None else f" (exit code {code})")
            reap_children()
        if controller is not None:
            try:
                controller.control.close()
            except Exception:
                pass
        reap_children()
        if self.exit_code == EXIT_OK:
            self.status.set_state(GatewayState.EXITED)
        self._write(force=True)
        self._log.info("supervisor finished (exit code %d)", self.exit_code)

    # -- state file ----------------------------------------------------------------------------------------------
    def _on_change(self) -> None:
        self._write(force=True)

    def _gateway_state(self) -> GatewayState:
        if self.status.state is GatewayState.ERROR:
            return GatewayState.ERROR
        if self._stopping:
            return self.status.state
        controller = self.controller
        all_running = all(c.status.state is ComponentState.RUNNING for c, _ in self.components)
        if controller is None or not all_running or not controller.registered:
            return GatewayState.STARTING
        busy = controller.in_call or controller.joining or controller.in_menu or controller.dialling \
            or controller.notifying
        return GatewayState.IN_CALL if busy else GatewayState.READY

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        controller = self.controller
        state = self._gateway_state()
        components = {c.name: c.status for c, _ in self.components}
        calls = controller.calls if controller is not None else self.status.calls
        fields = controller.call_fields() if controller is not None else {}
        changed = (state, components, calls) != (self.status.state, self.status.components, self.status.calls) \
            or any(getattr(self.status, name) != value for name, value in fields.items())
        if not (force or changed or now - self._last_write >= HEARTBEAT):
            return
        if state is not self.status.state:
            self._log.info("gateway %s", state.value)
        self.status.set_state(state)
        self.status.components = components
        self.status.calls = calls
        for name, value in fields.items():
            setattr(self.status, name, value)
        if changed or self._last_write == 0.0:
            # the swarm backend's only view of a task on another node is its log: one line per change
            get_logger(STATE_LINE_COMPONENT).info("%s", state_line_payload(self.status))
        try:
            write_state(self.log_dir, self.status)
            write_health(self.log_dir, self.status.state.value)  # what the HEALTHCHECK's shell reads (health.py)
        except OSError as exc:
            self._log.error("cannot write the state file in %s: %s", self.log_dir, exc)
        self._last_write = now
