"""A small host-side subprocess wrapper for test-bed daemons: own log file, own process group, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Mapping, Self, Sequence


class TestbedError(RuntimeError):
    """A test-bed component failed to start or to answer; the message carries its log tail."""


def log_tail(path: Path, lines: int = 30) -> str:
    """Last `lines` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `check` until it is true or `timeout` seconds passed; return its last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Daemon:
    """One child process whose stdout+stderr go to `log_path`, stopped by signalling its whole process group."""

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, stop_signal: int = signal.SIGTERM, stop_timeout: float = 5.0) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process in a new session (so stop() can reach every helper it forks)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=self.env, cwd=self.cwd, start_new_session=True)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's pid, or None before start()."""
        return self.popen.pid if self.popen else None

    def tail(self, lines: int = 30) -> str:
        """The last lines of this process's log."""
        return log_tail(self.log_path, lines)

    def fail(self, reason: str) -> TestbedError:
        """An error naming this component, the reason and its log tail."""
        return TestbedError(f"{self.name}: {reason}\n--- {self.log_path} (tail) ---\n{self.tail()}")

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> None:
        """Wait until `check()` holds; raise with the log tail if the process exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise self.fail(f"exited with code {code} before it was ready")
            if time.monotonic() >= deadline:
                raise self.fail(f"not ready after {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """Signal the process group, wait `stop_timeout`, then SIGKILL it. Idempotent."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                self.popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(5)
        # Helpers left in the group (e.g. Chromium's) must not outlive the test bed.
        self._signal_group(signal.SIGKILL)
        return self.popen.returncode

    def _signal_group(self, sig: int) -> None:
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class DaemonService:
    """A test-bed service run as one Daemon: liveness, log tail, idempotent stop, context manager.

    Subclasses set ``self._daemon`` in ``start()`` and extend ``stop()`` for their own clean-up.
    """

    _daemon: Daemon | None = None

    def start(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def alive(self) -> bool:
        """True while the service's process runs."""
        return self._daemon is not None and self._daemon.alive()

    def tail(self, lines: int = 40) -> str:
        """Last lines of the service's log (for failure reports)."""
        return self._daemon.tail(lines) if self._daemon else ""

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL). Idempotent."""
        if self._daemon:
            self._daemon.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
