"""README command 1 (after host setup): `sipmediagw demo` measures a real call, leaves the stack up; `--down` stops it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sipmediagw.demo import record_path
from sipmediagw.testbed.network import docker_bridge_ip, port_open

from .conftest import _require_tools

pytestmark = pytest.mark.e2e


def sipmediagw(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipmediagw.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_demo_measures_media_both_ways_then_down_stops_everything() -> None:
    _require_tools()
    try:
        run = sipmediagw("demo")
        assert run.returncode == 0, run.stdout + run.stderr
        for line in ("caller -> room  audio", "room -> caller  audio", "media flowed both ways"):
            assert line in run.stdout, run.stdout
        assert "FAILED" not in run.stdout
        # Left running on purpose: the registrar and the room answer, the gateway is listed.
        ip = docker_bridge_ip()
        assert port_open(ip, 5060) and port_open(ip, 8000)
        record = json.loads(record_path().read_text())
        assert record["pids"]
        status = json.loads(sipmediagw("status", "--json").stdout)
        assert any(g["name"] == "demo" and g["state"] == "ready" for g in status["gateways"]), status
    finally:
        down = sipmediagw("demo", "--down")
    assert down.returncode == 0 and "demo stopped" in down.stdout, down.stdout + down.stderr
    assert not record_path().exists()
    assert not port_open(docker_bridge_ip(), 5060)
    status = json.loads(sipmediagw("status", "--json").stdout)
    assert all(g["name"] != "demo" for g in status["gateways"])
