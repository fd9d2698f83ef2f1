"""What a room join tells the caller and asks them while it runs: the one channel between the room worker (where the
driver waits in a lobby or needs a password) and the controller's loop (which gets the caller's keys and writes the
state file).

The driver calls Room.progress("waiting to be let in") and Room.ask_caller("Enter the meeting password, then #");
the browser side (browser.BrowserRoomSession) forwards both here and draws them on the room display. The controller
hands keypad keys to :meth:`JoinDialogue.take_key` while the call is joining, shows :attr:`JoinDialogue.status` in
the state file (so `status` says what the join waits for), and restarts its join timeout whenever
:attr:`JoinDialogue.generation` moves: a join that says what it waits for is not stuck (its driver bounds each wait).

Stdlib only; nothing here does I/O.
"""

from __future__ import annotations

import threading
from typing import Callable

MAX_DIGITS = 32  # a meeting password or PIN; more keys are ignored


class JoinDialogue:
    """Thread-safe: the room worker reports and asks, the controller reads and feeds keys."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._progress: str | None = None
        self._prompt: str | None = None  # the question while one is asked
        self._digits = ""
        self._answered = False
        self.generation = 0  # moves at every report, question and key: the controller's sign of life

    # -- the room worker's side -----------------------------------------------------------------------------------
    def report(self, text: str) -> None:
        """The join now waits for `text` (one short line in the caller's words)."""
        with self._lock:
            self._progress = text.strip()[:120] or None
            self.generation += 1

    def ask(self, prompt: str, timeout: float, cancelled: threading.Event | None = None,
            typed: Callable[[int], None] | None = None) -> str | None:
        """Ask the caller `prompt`; the digits typed before '#' ('*' starts again), or None after `timeout` s, when
        the join is cancelled or nothing was typed. `typed(n)` is called (on this thread) whenever the number of
        digits typed so far changes, so the screen can show progress."""
        with self._lock:
            self._prompt, self._digits, self._answered = prompt.strip()[:120], "", False
            self.generation += 1
            shown = 0
            remaining = max(0.0, timeout)
            while not self._answered and remaining > 0 and not (cancelled is not None and cancelled.is_set()):
                step = min(remaining, 0.25)  # wakes for `cancelled`, which cannot notify this condition
                self._lock.wait(step)
                remaining -= step
                if typed is not None and len(self._digits) != shown:
                    shown = len(self._digits)
                    self._lock.release()
                    try:
                        typed(shown)
                    finally:
                        self._lock.acquire()
            answer = self._digits if self._answered else ""
            self._prompt, self._digits = None, ""
            self.generation += 1
        return answer or None

    # -- the controller's side ------------------------------------------------------------------------------------
    @property
    def asking(self) -> bool:
        """A question waits for the caller's keys."""
        with self._lock:
            return self._prompt is not None

    def take_key(self, key: str) -> bool:
        """Feed a keypad key to the question asked; False when none is (the key is someone else's)."""
        with self._lock:
            if self._prompt is None:
                return False
            if key == "#":
                self._answered = True
            elif key == "*":
                self._digits = ""
            elif key.isdigit() and len(self._digits) < MAX_DIGITS:
                self._digits += key
            self.generation += 1
            self._lock.notify_all()
            return True

    @property
    def status(self) -> str | None:
        """What the join waits for, for the state file: the question asked, else the last progress line."""
        with self._lock:
            if self._prompt is not None:
                return f"asking the caller: {self._prompt}"
            return self._progress
