"""README command 1 (after host setup): `sipmediagw demo` measures a real call, leaves the stack up; `--down` stops it.

The test runs its own demo (own folder, gateway name and ports) beside the README's: running the suite never stops
a demo someone left running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sipmediagw.testbed.network import docker_bridge_ip, free_port, free_port_range, port_open

from .conftest import _require_tools

pytestmark = pytest.mark.e2e


def sipmediagw(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipmediagw.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_demo_measures_media_both_ways_then_down_stops_everything(tmp_path: Path) -> None:
    _require_tools()
    ip = docker_bridge_ip()
    sip_port, janus_port, web_port = free_port_range(ip), free_port(ip), free_port(ip)
    gateway = f"demo-test-{os.getpid()}"
    place = ["--dir", str(tmp_path / "demo"), "--gateway", gateway]
    record = tmp_path / "demo" / "stack.json"
    try:
        run = sipmediagw("demo", *place, "--sip-port", str(sip_port), "--janus-port", str(janus_port),
                         "--web-port", str(web_port))
        assert run.returncode == 0, run.stdout + run.stderr
        for line in ("caller -> room  audio", "room -> caller  audio", "media flowed both ways"):
            assert line in run.stdout, run.stdout
        assert "FAILED" not in run.stdout
        assert f"sipmediagw demo --down --dir {tmp_path / 'demo'}" in run.stdout
        # Left running on purpose: the registrar and the room answer, the gateway is listed.
        assert port_open(ip, sip_port) and port_open(ip, web_port)
        assert json.loads(record.read_text())["pids"]
        assert f"dialled sip:1234@sipmediagw.test: answered by {gateway}-" in run.stdout, run.stdout
        assert "dialled sip:meet@sipmediagw.test (keypad menu): menu on the caller's screen" in run.stdout
        assert "media flowed both ways in both calls" in run.stdout
        status = json.loads(sipmediagw("status", "--json").stdout)
        pool = {g["name"]: g for g in status["gateways"] if g["name"].startswith(f"{gateway}-")}
        assert set(pool) == {f"{gateway}-1", f"{gateway}-2"}, status
        assert all(g["state"] == "ready" and g["mode"] == "pool" for g in pool.values()), pool
    finally:
        down = sipmediagw("demo", "--down", *place)
    assert down.returncode == 0 and "demo stopped" in down.stdout, down.stdout + down.stderr
    assert not record.exists()
    assert not port_open(ip, sip_port)
    status = json.loads(sipmediagw("status", "--json").stdout)
    assert all(not g["name"].startswith(f"{gateway}-") for g in status["gateways"])
