"""One wrapper for every child process of the gateway: start -> ready check -> watch -> stop (signal, timeout, kill).

Each child runs in its own session (so its whole process group can be signalled, Chromium helpers included). When the
supervisor is PID 1 it must also reap orphans: :func:`reap_children` collects every dead child with
``waitpid(-1, WNOHANG)`` and records the exit status of the ones we started, because ``Popen.poll()`` reports 0 for a
child someone else already reaped. ManagedProcess therefore never calls ``Popen.wait``/``poll``: it asks
:func:`_collect` which reads the shared record first.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from typing import IO, Callable, Mapping, Sequence

from ..state import ComponentState, ComponentStatus
from ..redaction import redact
from .logs import LogSink, strip_ansi

_POLL_INTERVAL = 0.05
_KILL_WAIT = 5.0  # after SIGKILL a process is gone within milliseconds unless stuck in the kernel (D state)

_lock = threading.Lock()  # guards the two tables below and every waitpid we do
_exit_codes: dict[int, int] = {}  # pid -> exit code (negative = killed by that signal), for pids we started
_started_pids: set[int] = set()


class ComponentFailed(Exception):
    """A component exited or failed its ready check; `reason` says why in one line."""

    def __init__(self, component: str, reason: str) -> None:
        self.component = component
        self.reason = reason
        super().__init__(f"{component}: {reason}")


def _record(pid: int, status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    if pid in _started_pids:
        _exit_codes[pid] = code
    return code


def reap_children() -> list[tuple[int, int]]:
    """Collect every dead child (orphans re-parented to us included); return ``[(pid, exit_code)]`` reaped now."""
    reaped = []
    with _lock:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped.append((pid, _record(pid, status)))
    return reaped


def _collect(pid: int) -> int | None:
    """Exit code of our child `pid` if it has exited (reaping it if nobody did yet), else None."""
    with _lock:
        if pid in _exit_codes:
            return _exit_codes[pid]
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # Reaped by someone we do not know of (e.g. a foreign waitpid(-1)): the status is lost.
            _exit_codes[pid] = 0
            return 0
        if done == 0:
            return None
        return _record(pid, status)


class ManagedProcess:
    """A child process with a name, a ready check and an orderly stop.

    `env` is added on top of the supervisor's environment. Output lines (stdout and stderr) go to `log` with ANSI codes
    stripped and secrets masked; a sink with an ``err`` method receives stderr lines through it.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: LogSink | None = None,
        ready: Callable[[], bool] | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 5.0,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = dict(env or {})
        self.log = log
        self.ready = ready
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._is_ready = False
        self._stopping = False
        self._error: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=20)  # last output lines, for error messages

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child in a new session; raise ComponentFailed if the executable cannot be run."""
        if self._popen is not None:
            raise RuntimeError(f"{self.name}: already started")
        env = {**os.environ, **self.env}
        capture = subprocess.PIPE if self.log is not None else subprocess.DEVNULL
        self._emit(f"starting: {redact(' '.join(self.argv))}")
        try:
            with _lock:  # so a concurrent reap_children cannot collect the pid before it is registered
                self._popen = subprocess.Popen(
                    self.argv,
                    env=env,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=capture,
                    stderr=capture,
                    start_new_session=True,
                    close_fds=True,
                )
                _started_pids.add(self._popen.pid)
        except OSError as exc:
            self._error = f"cannot start {self.argv[0]}: {exc.strerror or exc}"
            raise ComponentFailed(self.name, self._error) from exc
        if self.log is not None:
            assert self._popen.stdout is not None and self._popen.stderr is not None
            self._readers = [
                threading.Thread(target=self._pump, args=(self._popen.stdout, False), daemon=True,
                                 name=f"{self.name}-stdout"),
                threading.Thread(target=self._pump, args=(self._popen.stderr, True), daemon=True,
                                 name=f"{self.name}-stderr"),
            ]
            for reader in self._readers:
                reader.start()

    def wait_ready(self, timeout: float) -> None:
        """Poll the ready check until it passes; raise ComponentFailed if the child exits or `timeout` passes."""
        if self._popen is None:
            raise ComponentFailed(self.name, "not started")
        deadline = time.monotonic() + timeout
        while True:
            code = self.returncode
            if code is not None:
                self._error = f"exited with code {code} before it was ready{self._tail_hint()}"
                raise ComponentFailed(self.name, self._error)
            if self.ready is None or self._check_ready():
                self._is_ready = True
                self._emit("ready")
                return
            if time.monotonic() >= deadline:
                self._error = f"not ready after {timeout:g} s{self._tail_hint()}"
                raise ComponentFailed(self.name, self._error)
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> int | None:
        """Send stop_signal to the process group, wait stop_timeout, then SIGKILL the group; return the exit code."""
        if self._popen is None:
            return None
        self._stopping = True
        pid = self._popen.pid
        if self.returncode is None:
            self._signal_group(self.stop_signal)
            if not self._wait_exit(self.stop_timeout):
                self._emit(f"did not stop within {self.stop_timeout:g} s after {signal.Signals(self.stop_signal).name}: "
                           "killing its process group")
                self._signal_group(signal.SIGKILL)
                self._wait_exit(_KILL_WAIT)
        # Helpers that outlived the leader (Chromium's zygotes, a shell's children) would become orphans: kill them.
        self._signal_group(signal.SIGKILL)
        for reader in self._readers:
            reader.join(timeout=1.0)
        code = self.returncode
        self._emit(f"stopped (exit code {code}, pid {pid})")
        return code

    def kill(self) -> None:
        """SIGKILL the whole process group at once (no grace period)."""
        if self._popen is not None:
            self._signal_group(signal.SIGKILL)

    # -- observation ---------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The child's pid (also its process-group id), None before start."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit code once the child has exited (negative: killed by that signal), else None; reaper-safe."""
        if self._popen is None:
            return None
        code = _collect(self._popen.pid)
        if code is not None and self._popen.returncode is None:
            self._popen.returncode = code  # keeps Popen from polling a pid that may have been reused
        return code

    def alive(self) -> bool:
        """True while the child is running."""
        return self._popen is not None and self.returncode is None

    @property
    def status(self) -> ComponentStatus:
        """starting until ready, running, error(reason) if it failed or died on its own, finished once stopped."""
        if self._popen is None:
            return ComponentStatus(ComponentState.ERROR, self._error) if self._error else ComponentStatus()
        code = self.returncode
        if code is None:
            if self._error:
                return ComponentStatus(ComponentState.ERROR, self._error)
            return ComponentStatus(ComponentState.RUNNING if self._is_ready else ComponentState.STARTING)
        if self._stopping:
            return ComponentStatus(ComponentState.FINISHED)
        return ComponentStatus(ComponentState.ERROR, self._error or f"exited unexpectedly with code {code}")

    # -- internals -----------------------------------------------------------------------------------------------
    def _check_ready(self) -> bool:
        try:
            return bool(self.ready())  # type: ignore[misc]
        except Exception:  # a probe that raises (connection refused...) just means "not yet"
            return False

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_INTERVAL)
        return True

    def _signal_group(self, sig: int) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already empty

    def _pump(self, stream: IO[bytes], is_stderr: bool) -> None:
        err_sink = getattr(self.log, "err", None) if is_stderr else None
        sink = err_sink or self.log
        assert sink is not None
        with stream:
            for raw in iter(stream.readline, b""):
                line = strip_ansi(redact(raw.decode("utf-8", "replace").rstrip("\n")))
                if not line.strip():
                    continue
                self.tail.append(line)
                try:
                    sink(line)
                except Exception:  # a broken sink must not kill the reader (the child would block on a full pipe)
                    pass

    def _tail_hint(self) -> str:
        return f"; last output: {self.tail[-1]}" if self.tail else ""

    def _emit(self, message: str) -> None:
        if self.log is not None:
            try:
                self.log(message)
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, returncode={self.returncode})"
