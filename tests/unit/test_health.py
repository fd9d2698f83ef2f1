"""The HEALTHCHECK reads the real state file written by sipmediagw.state."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sipmediagw.gateway.health import (HEALTH_FILE_NAME, SHELL_CHECK, STALE_AFTER, check, health_line, read_uptime,
                                        write_health)
from sipmediagw.state import GatewayState, GatewayStatus, write_state


@pytest.mark.parametrize(
    "state, healthy",
    [(GatewayState.READY, True), (GatewayState.IN_CALL, True), (GatewayState.STARTING, False),
     (GatewayState.ERROR, False), (GatewayState.STOPPING, False), (GatewayState.EXITED, False)],
)
def test_only_ready_and_in_call_are_healthy(tmp_path: Path, state: GatewayState, healthy: bool) -> None:
    write_state(tmp_path, GatewayStatus(gateway="g", state=state, last_error="baresip: exited"))
    ok, reason = check(tmp_path)
    assert ok is healthy
    assert state.value in reason


def test_error_reason_is_reported(tmp_path: Path) -> None:
    write_state(tmp_path, GatewayStatus(gateway="g", state=GatewayState.ERROR, last_error="xvfb-web: exited with 1"))
    assert check(tmp_path) == (False, "state error: xvfb-web: exited with 1")


def test_missing_and_corrupt_state_file(tmp_path: Path) -> None:
    assert check(tmp_path)[0] is False
    (tmp_path / "state.json").write_text("{not json")
    ok, reason = check(tmp_path)
    assert not ok and "unreadable" in reason


def test_stale_state_file_is_unhealthy(tmp_path: Path) -> None:
    write_state(tmp_path, GatewayStatus(gateway="g", state=GatewayState.READY))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    ok, reason = check(tmp_path, now=later)
    assert not ok and "not updated" in reason


def test_module_exit_status(tmp_path: Path) -> None:
    env = {**os.environ, "SIPMEDIAGW_LOG_DIR": str(tmp_path)}
    run = lambda: subprocess.run([sys.executable, "-m", "sipmediagw.gateway.health"], env=env,  # noqa: E731
                                 capture_output=True, text=True)
    assert run().returncode == 1
    write_state(tmp_path, GatewayStatus(gateway="g", state=GatewayState.READY))
    result = run()
    assert result.returncode == 0 and result.stdout.strip() == "state ready"
    data = json.loads((tmp_path / "state.json").read_text())
    assert data["state"] == "ready"


# -- the cheap form: the supervisor's health file read by shell builtins (health.SHELL_CHECK) ------------------------


def shell_check(log_dir: Path, uptime: float) -> subprocess.CompletedProcess[str]:
    """SHELL_CHECK as Docker runs it (`sh -c`), with /proc/uptime replaced by a file saying `uptime`."""
    fake = log_dir / "uptime"
    fake.write_text(f"{uptime:.2f} 1234.56\n")
    script = SHELL_CHECK.replace("/proc/uptime", str(fake))
    assert script != SHELL_CHECK
    return subprocess.run(["sh", "-c", script], env={**os.environ, "SIPMEDIAGW_LOG_DIR": str(log_dir)},
                          capture_output=True, text=True)


@pytest.mark.parametrize(
    "state, healthy",
    [(GatewayState.READY, True), (GatewayState.IN_CALL, True), (GatewayState.STARTING, False),
     (GatewayState.ERROR, False), (GatewayState.STOPPING, False), (GatewayState.EXITED, False)],
)
def test_the_shell_check_gives_the_python_verdict(tmp_path: Path, state: GatewayState, healthy: bool) -> None:
    write_health(tmp_path, state.value, uptime=1000.0)
    result = shell_check(tmp_path, 1000.5)
    assert (result.returncode == 0) is healthy
    assert result.stdout.strip() == f"state {state.value}"


def test_the_shell_check_finds_a_hung_supervisor_and_a_missing_file(tmp_path: Path) -> None:
    missing = shell_check(tmp_path, 10.0)
    assert missing.returncode == 1 and "no health file" in missing.stdout
    write_health(tmp_path, "ready", uptime=1000.0)
    assert shell_check(tmp_path, 1000.0 + STALE_AFTER - 1).returncode == 0
    stale = shell_check(tmp_path, 1000.0 + STALE_AFTER + 1)  # no heartbeat for a minute
    assert stale.returncode == 1 and "supervisor hung" in stale.stdout


def test_the_health_line_and_the_real_uptime(tmp_path: Path) -> None:
    assert health_line("ready", 100.7) == f"{int(100.7 + STALE_AFTER)} ready\n"
    assert health_line("starting", 100.7) == "0 starting\n"
    write_health(tmp_path, "in-call")  # the real /proc/uptime
    deadline, state = (tmp_path / HEALTH_FILE_NAME).read_text().split()
    assert state == "in-call" and int(deadline) > read_uptime()
    result = subprocess.run(["sh", "-c", SHELL_CHECK], env={**os.environ, "SIPMEDIAGW_LOG_DIR": str(tmp_path)},
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "state in-call"
