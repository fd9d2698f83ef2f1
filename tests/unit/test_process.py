"""ManagedProcess with real child processes: start, ready, stop, kill escalation, group kill, reaper-safe exit codes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from sipmediagw.gateway.process import ComponentFailed, ManagedProcess, reap_children
from sipmediagw.state import ComponentState

PY = sys.executable


def _pid_exists(pid: int) -> bool:
    """True while `pid` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_output_lines_are_logged_with_ansi_stripped_and_secrets_masked() -> None:
    lines: list[str] = []
    code = "print('\\x1b[31mhello\\x1b[0m'); print('auth_pass=hunter2;x=1', flush=True)"
    proc = ManagedProcess("echoer", [PY, "-c", code], log=lines.append)
    proc.start()
    assert _wait_for(lambda: not proc.alive())
    proc.stop()
    assert "hello" in lines
    assert "auth_pass=***;x=1" in lines
    assert not any("hunter2" in line or "\x1b" in line for line in lines)
    assert proc.returncode == 0


def test_stderr_lines_go_to_the_sink_err_method() -> None:
    class Sink:
        def __init__(self) -> None:
            self.out: list[str] = []
            self.errs: list[str] = []

        def __call__(self, line: str) -> None:
            self.out.append(line)

        def err(self, line: str) -> None:
            self.errs.append(line)

    sink = Sink()
    proc = ManagedProcess("p", [PY, "-c", "import sys; print('to-out'); print('to-err', file=sys.stderr)"], log=sink)
    proc.start()
    assert _wait_for(lambda: not proc.alive())
    proc.stop()
    assert "to-out" in sink.out and "to-err" in sink.errs and "to-err" not in sink.out


def test_wait_ready_polls_the_check_until_it_passes(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    proc = ManagedProcess(
        "slow", [PY, "-c", f"import time, pathlib; time.sleep(0.3); pathlib.Path({str(flag)!r}).touch(); time.sleep(60)"],
        ready=flag.exists,
    )
    proc.start()
    assert proc.status.state is ComponentState.STARTING
    proc.wait_ready(timeout=30)
    assert proc.status.state is ComponentState.RUNNING
    assert proc.stop() == -signal.SIGTERM
    assert proc.status.state is ComponentState.FINISHED


def test_wait_ready_fails_when_the_child_exits_first() -> None:
    proc = ManagedProcess("dies", [PY, "-c", "print('boom'); raise SystemExit(3)"], log=lambda _l: None,
                          ready=lambda: False)
    proc.start()
    with pytest.raises(ComponentFailed) as failure:
        proc.wait_ready(timeout=30)
    assert failure.value.component == "dies"
    assert "code 3" in failure.value.reason and "boom" in failure.value.reason
    assert proc.status.state is ComponentState.ERROR


def test_wait_ready_times_out_with_a_reason() -> None:
    proc = ManagedProcess("never", [PY, "-c", "import time; time.sleep(60)"], ready=lambda: False)
    proc.start()
    try:
        with pytest.raises(ComponentFailed, match="not ready after 0.3 s"):
            proc.wait_ready(timeout=0.3)
        assert proc.status.state is ComponentState.ERROR
    finally:
        proc.stop()
    assert not proc.alive()


def test_a_raising_ready_check_means_not_yet() -> None:
    calls = []

    def probe() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError
        return True

    proc = ManagedProcess("probe", [PY, "-c", "import time; time.sleep(60)"], ready=probe)
    proc.start()
    try:
        proc.wait_ready(timeout=30)
        assert len(calls) == 3
    finally:
        proc.stop()


def test_missing_executable_is_a_component_failure() -> None:
    proc = ManagedProcess("ghost", ["/nonexistent/binary"])
    with pytest.raises(ComponentFailed, match="cannot start /nonexistent/binary"):
        proc.start()
    assert proc.status.state is ComponentState.ERROR


def test_stop_escalates_to_sigkill_when_the_signal_is_ignored(tmp_path: Path) -> None:
    flag = tmp_path / "armed"
    code = (f"import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"pathlib.Path({str(flag)!r}).touch(); time.sleep(60)")
    lines: list[str] = []
    proc = ManagedProcess("stubborn", [PY, "-c", code], ready=flag.exists, stop_timeout=0.5, log=lines.append)
    proc.start()
    proc.wait_ready(timeout=30)
    assert proc.stop() == -signal.SIGKILL
    assert any("killing its process group" in line for line in lines)
    assert not _pid_exists(proc.pid)


def test_stop_uses_the_configured_signal() -> None:
    # The child says when its handler is in place (installed explicitly: a SIGINT ignored by whoever started pytest
    # would otherwise stay ignored), so the signal is sent only once it can be seen, however loaded the machine is.
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGINT, lambda *_: sys.exit(7))\n"
            "print('armed', flush=True)\n"
            "time.sleep(60)")
    lines: list[str] = []
    proc = ManagedProcess("int", [PY, "-c", code], stop_signal=signal.SIGINT, log=lines.append,
                          ready=lambda: "armed" in lines)
    proc.start()
    proc.wait_ready(timeout=30)
    assert proc.stop() == 7


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    grandchild_pid = tmp_path / "gc.pid"
    # The child starts a grandchild that ignores SIGTERM, then dies on SIGTERM itself: the leftover must be killed.
    # Both are this interpreter (no shell, no sleep binary): the unit tier needs nothing but Python.
    grandchild = (f"import os, pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  f"pathlib.Path({str(grandchild_pid)!r}).write_text(str(os.getpid())); time.sleep(60)")
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    proc = ManagedProcess("tree", [PY, "-c", code], ready=grandchild_pid.exists, stop_timeout=2)
    proc.start()
    proc.wait_ready(timeout=30)
    assert _wait_for(lambda: grandchild_pid.read_text().strip().isdigit())
    gc = int(grandchild_pid.read_text())
    assert _pid_exists(gc)
    proc.stop()
    assert _wait_for(lambda: not _pid_exists(gc))


def test_children_run_in_their_own_session() -> None:
    proc = ManagedProcess("session", [PY, "-c", "import time; time.sleep(60)"])
    proc.start()
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        assert os.getsid(proc.pid) == proc.pid
    finally:
        proc.stop()


def test_exit_code_survives_the_reaper_collecting_the_child() -> None:
    proc = ManagedProcess("reaped", [PY, "-c", "raise SystemExit(42)"])
    proc.start()
    pid = proc.pid
    # Reap the way the PID-1 main loop does, before the wrapper ever looks at its child.
    assert _wait_for(lambda: any(p == pid for p, _ in reap_children()) or not _pid_exists(pid))
    reap_children()
    assert proc.returncode == 42
    assert not proc.alive()
    assert proc.status.state is ComponentState.ERROR and "42" in (proc.status.reason or "")


def test_reaper_records_a_signal_death_as_negative_code() -> None:
    proc = ManagedProcess("victim", [PY, "-c", "import time; time.sleep(60)"])
    proc.start()
    os.kill(proc.pid, signal.SIGKILL)
    assert _wait_for(lambda: (reap_children() or True) and proc.returncode is not None)
    assert proc.returncode == -signal.SIGKILL


def test_reaper_collects_orphans_it_did_not_start() -> None:
    import subprocess

    # A process we spawn directly and forget: reap_children must collect it so no zombie stays behind.
    orphan = subprocess.Popen([PY, "-c", "pass"])
    pid = orphan.pid
    collected: list[int] = []
    assert _wait_for(lambda: bool(collected.extend(p for p, _ in reap_children()) or pid in collected))
    assert not os.path.exists(f"/proc/{pid}")
    orphan.returncode = 0  # silence Popen's destructor


def test_stop_before_start_and_twice_is_harmless() -> None:
    proc = ManagedProcess("idle", [PY, "-c", "pass"])
    assert proc.stop() is None
    proc.start()
    assert _wait_for(lambda: not proc.alive())
    assert proc.stop() == 0
    assert proc.stop() == 0
