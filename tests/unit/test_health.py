"""The HEALTHCHECK reads the real state file written by sipmediagw.state."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sipmediagw.gateway.health import check
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
