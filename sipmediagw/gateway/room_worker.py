"""Room joins and leaves, one at a time, on a thread beside the supervisor's event loop.

Entering a room takes seconds to a minute (page loads, the platform's own waits). The loop that pumps baresip events,
writes the state file's heartbeat and answers SIGTERM must not wait for it: the controller submits a task and goes on;
this worker runs it and hands it back finished; the controller applies the outcome on a later pump, so its state
machine stays on one thread. Tasks run in submission order (the browser does one thing at a time): the leave of an
abandoned join runs after that join returns.

A Selenium call cannot be interrupted, but a task can be cancelled (:meth:`RoomWorker.cancel`): one not started yet is
skipped; a running one sees its ``cancelled`` event (the browser makes the join's next WebDriver command raise,
browser.Browser.page_action). One stuck inside a single command (a page load) is abandoned: stopping the browser makes
that command fail, which is what the supervisor does when it stops.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Callable

from .logs import get_logger

JOIN = "join"
LEAVE = "leave"


@dataclasses.dataclass(eq=False)
class RoomTask:
    """One join or leave: what it runs, for whom (`owner`: the controller's call), and how it ended."""

    kind: str  # JOIN | LEAVE
    action: Callable[[threading.Event], None]  # runs on the worker; gets `cancelled`
    owner: Any = None
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    cancelled_at: float | None = None  # monotonic time of the cancel request
    started: float | None = None  # monotonic times, for the log
    finished: float | None = None
    error: Exception | None = None  # what the action raised (None: it succeeded, or was skipped)
    skipped: bool = False  # cancelled before it started: never ran

    @property
    def seconds(self) -> float:
        """How long the action ran (0 when skipped)."""
        return (self.finished or 0.0) - (self.started or self.finished or 0.0)


class RoomWorker:
    """Runs submitted room tasks one at a time on a daemon thread and hands them back through :meth:`finished`.

    `threaded=False` runs each task at once on the submitting thread (its result is still collected through
    :meth:`finished`): for tools and for tests of the controller's decisions that need no thread.
    """

    def __init__(self, *, threaded: bool = True, name: str = "room-worker") -> None:
        self.threaded = threaded
        self.name = name
        self._tasks: queue.Queue[RoomTask] = queue.Queue()
        self._done: queue.Queue[RoomTask] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0  # submitted, not finished
        self._current: RoomTask | None = None
        self._thread: threading.Thread | None = None
        self._log = get_logger("rooms")

    # -- the controller's side ------------------------------------------------------------------------------------
    def submit(self, kind: str, action: Callable[[threading.Event], None], owner: Any = None) -> RoomTask:
        """Queue `action` (called with the task's `cancelled` event); returns the task to cancel or recognise later."""
        task = RoomTask(kind, action, owner)
        with self._idle:
            self._pending += 1
        if not self.threaded:
            self._run(task)
            return task
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        self._tasks.put(task)
        return task

    def cancel(self, task: RoomTask) -> None:
        """Give up on `task`: skipped if it has not started, told through its event if it runs. Never blocks."""
        if not task.cancelled.is_set():
            task.cancelled_at = time.monotonic()
            task.cancelled.set()

    def finished(self) -> list[RoomTask]:
        """The tasks finished since the last call, in order (never blocks)."""
        tasks = []
        while True:
            try:
                tasks.append(self._done.get_nowait())
            except queue.Empty:
                return tasks

    @property
    def busy(self) -> bool:
        """A task is queued or running (the browser is the worker's until it is idle again)."""
        with self._idle:
            return self._pending > 0

    @property
    def current(self) -> RoomTask | None:
        """The task running now, if any."""
        return self._current

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` s until no task is queued or running; True when idle."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=max(0.0, timeout))

    # -- the worker's side -------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            self._run(self._tasks.get())

    def _run(self, task: RoomTask) -> None:
        task.started = time.monotonic()
        if task.cancelled.is_set():
            task.skipped = True
        else:
            self._current = task
            try:
                task.action(task.cancelled)
            except Exception as exc:  # whatever a page did, the task ends and the controller hears of it
                task.error = exc
            finally:
                self._current = None
        task.finished = time.monotonic()
        if task.cancelled.is_set() and not task.skipped:
            self._log.info("abandoned %s returned after %.1f s%s", task.kind, task.seconds,
                           f" ({task.error.__class__.__name__})" if task.error else "")
        self._done.put(task)
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()
