"""The parts of a gateway that run only while a call needs them (issue 12: an idle pool gateway costs nothing).

A pool gateway waits for calls most of its life. Chromium (with its renderer, GPU and utility processes) and the
camera relay's ffmpeg are most of what an idle gateway costs, in CPU (WebDriver liveness probes, timers, the relay's
window watcher and its 2 fps grab) and in memory (Chromium alone is ~200 MiB). So a pool gateway parks them: they are
started when a call comes in (before it is answered, on the room worker, so the start overlaps the answer) and stopped
again when the call is over. Measured figures: docs/benchmarks.md.

:class:`OnDemand` is the lifecycle of such a group of parts (start in order, stop in reverse, one at a time whoever
asks); :class:`OnDemandComponent` shows one part to the supervisor as a component that is "running" while parked, so
the gateway is ready without it, and whose liveness is the part's own only while it runs.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Callable, Sequence

from ..state import ComponentState, ComponentStatus
from .logs import LogSink
from .process import ComponentFailed

PARKED = "parked"  # not running, by choice: started on the next call
STARTING = "starting"
RUNNING = "running"
#: the status reason of a parked part (the state file and `sipmediagw status` show it)
PARKED_REASON = "parked: started when a call comes in"


@dataclasses.dataclass
class Part:
    """One part of an on-demand group: how to start it (raise on failure), stop it (idempotent) and probe it."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]
    alive: Callable[[], bool]


class OnDemand:
    """Parts started together when needed (:meth:`ensure`) and stopped together when not (:meth:`park`).

    Thread-safe: the room worker starts and parks them, the supervisor's loop probes them and parks them on stop. A
    park asked while a start runs waits for that start, then stops what it started: nothing is left running.
    """

    def __init__(self, parts: Sequence[Part], log: LogSink | None = None) -> None:
        self.parts = list(parts)
        self._log = log
        self._lock = threading.RLock()  # held for a whole start or park: they never interleave
        self._state = PARKED
        self._started: list[Part] = []  # the parts started so far, in order (stopped in reverse)
        self.starts = 0  # completed starts since creation (for the log and tests)

    @property
    def state(self) -> str:
        """parked | starting | running."""
        return self._state

    @property
    def running(self) -> bool:
        """Every part is started."""
        return self._state == RUNNING

    def ensure(self) -> bool:
        """Start every part (in order) unless they run; True when this call started them. A part that fails to start
        parks the ones started before it, then the failure (ComponentFailed) is raised."""
        with self._lock:
            if self._state == RUNNING:
                return False
            self._state = STARTING
            self._emit("starting on demand: " + ", ".join(p.name for p in self.parts))
            try:
                for part in self.parts:
                    try:
                        part.start()
                    except ComponentFailed:
                        raise
                    except Exception as exc:
                        raise ComponentFailed(part.name, f"start failed: {exc.__class__.__name__}: {exc}") from exc
                    self._started.append(part)
            except BaseException:
                self._stop_started()
                raise
            self._state = RUNNING
            self.starts += 1
            return True

    def park(self) -> bool:
        """Stop every started part (in reverse order); True when something was running. Never raises: a part that
        fails to stop is logged (it is gone or going anyway)."""
        with self._lock:
            if not self._started and self._state == PARKED:
                return False
            self._emit("parking: " + ", ".join(p.name for p in reversed(self._started)))
            self._stop_started()
            return True

    def part_alive(self, name: str) -> bool:
        """A part's liveness as the supervisor should see it: True while parked (and while the group starts: the
        start itself reports failure), else the part's own probe."""
        if self._state != RUNNING:
            return True
        part = next((p for p in self._started if p.name == name), None)
        if part is None:
            return True
        try:
            return bool(part.alive())
        except Exception:
            return False

    def _stop_started(self) -> None:
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception as exc:  # noqa: BLE001 - the next part must still be stopped
                self._emit(f"stopping {part.name} failed: {exc.__class__.__name__}: {exc}")
        self._state = PARKED

    def _emit(self, message: str) -> None:
        if self._log is not None:
            try:
                self._log(message)
            except Exception:  # noqa: BLE001 - a log line must never break the lifecycle
                pass


class OnDemandComponent:
    """One part of an OnDemand group as a supervised component (supervisor.Component): starting it leaves it parked
    (running, by the gateway's measure); it is alive while parked, and by its own probe while it runs; stopping it
    parks the whole group. `recoverable` as for FunctionComponent: a part that dies mid-call is parked again, and
    the next call starts it afresh."""

    def __init__(self, name: str, group: OnDemand, *, recoverable: bool = False) -> None:
        self.name = name
        self.group = group
        self.recoverable = recoverable
        self._state = ComponentStatus()

    def start(self) -> None:
        """Nothing to start now: the group starts on the next call."""
        self._state = ComponentStatus()

    def wait_ready(self, timeout: float) -> None:
        """Ready at once (parked)."""
        self._state = ComponentStatus(ComponentState.RUNNING)

    def alive(self) -> bool:
        """The part's liveness (always True while parked)."""
        alive = self.group.part_alive(self.name)
        if not alive and self._state.state is ComponentState.RUNNING:
            self._state = ComponentStatus(ComponentState.ERROR, "stopped responding")
        return alive

    def stop(self) -> int | None:
        """Park the group (idempotent)."""
        try:
            self.group.park()
        finally:
            if self._state.state is not ComponentState.ERROR:
                self._state = ComponentStatus(ComponentState.FINISHED)
        return None

    @property
    def status(self) -> ComponentStatus:
        """running (with PARKED_REASON while parked) / error(reason) / finished."""
        if self._state.state is ComponentState.RUNNING and self.group.state != RUNNING:
            return ComponentStatus(ComponentState.RUNNING, PARKED_REASON)
        return self._state
