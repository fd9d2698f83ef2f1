"""Fixtures of the e2e tier: the local stack (Kamailio + Janus on the Docker bridge) and the `sipmediagw` CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from sipmediagw.demo import CALLER_TONE, ROOM_TONE, CallReport
from sipmediagw.testbed.network import free_port, free_port_range
from sipmediagw.testbed.stack import LocalStack

REQUIRED_TOOLS = ("docker", "kamailio", "kamcmd", "janus", "baresip", "chromium", "chromedriver", "sox")
#: SIPMEDIAGW_E2E_IMAGE is used as is; else sipmediagw:latest, kept current by the session fixture below
IMAGE = os.environ.get("SIPMEDIAGW_E2E_IMAGE") or "sipmediagw:latest"


@pytest.fixture(scope="session", autouse=True)
def e2e_gateway_image(request: pytest.FixtureRequest) -> str:
    """The image every e2e gateway runs: SIPMEDIAGW_E2E_IMAGE if set (it must exist), else sipmediagw:latest built
    from this source tree when stale (tests/conftest.py). Autouse: every test here launches the real image."""
    if os.environ.get("SIPMEDIAGW_E2E_IMAGE"):
        probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.fail(f"SIPMEDIAGW_E2E_IMAGE={IMAGE} is not built", pytrace=False)
        return IMAGE
    built = str(request.getfixturevalue("current_gateway_image"))
    assert built == IMAGE, (built, IMAGE)
    return built


def _require_tools() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"e2e tools missing: {', '.join(missing)} (run scripts/setup-host)")

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Kamailio (two gateway accounts + a caller, digest auth) and a Janus room site on the bridge address."""
    _require_tools()
    workdir = tmp_path_factory.mktemp("stack")
    probe = LocalStack(workdir)  # only to learn the bridge address for free ports
    local = LocalStack(workdir, gateways=2, callers=3, sip_port=free_port_range(probe.ip),
                       janus_http_port=free_port(probe.ip), janus_web_port=free_port(probe.ip))
    with local:
        yield local

class Cli:
    """Runs the real `sipmediagw` console script against one logs folder and accounts file."""

    def __init__(self, workdir: Path, stack: LocalStack) -> None:
        self.workdir = workdir
        self.logs_dir = workdir / "logs"
        self.env = dict(os.environ)
        self.env.update({
            "SIPMEDIAGW_LOGS_DIR": str(self.logs_dir),
            "SIPMEDIAGW_ACCOUNTS_FILE": str(stack.accounts_file()),
            "SIPMEDIAGW_IMAGE": IMAGE,
            "SIPMEDIAGW_PLATFORM": "janus",
            "SIPMEDIAGW_BASE_URL": stack.base_url,
            "SIPMEDIAGW_MEDIA": "userspace",
            "SIPMEDIAGW_BACKEND": "engine",  # one engine, even on a host that is also a swarm manager
            # The default budget fits one video gateway on a 2-core host; the two-gateway test checks
            # reachability and audio, so it asks for a smaller budget, as an operator would for audio-mostly use.
            "SIPMEDIAGW_CPU_PER_GATEWAY": "0.6",
        })
        self.launched: list[str] = []

    def run(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run `sipmediagw ARGS`; with `check`, fail showing its output when it exits non-zero."""
        proc = subprocess.run([sys.executable, "-m", "sipmediagw.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"sipmediagw {' '.join(args)} -> exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def launch(self, room: str, gateway: str) -> subprocess.CompletedProcess[str]:
        """Launch a gateway and wait until it is ready (registered)."""
        self.launched.append(gateway)
        return self.run("launch", "-r", room, "-g", gateway, "--timeout", "180")

    def launch_pool(self, prefix: str, count: int) -> subprocess.CompletedProcess[str]:
        """Launch `count` pool gateways PREFIX-1..PREFIX-N (no room: each call names its room) and wait for them."""
        self.launched += [f"{prefix}-{i}" for i in range(1, count + 1)]
        return self.run("launch", "-g", prefix, "--count", str(count), "--timeout", "180")

    def status(self) -> dict[str, Any]:
        """`sipmediagw status --json`, parsed."""
        return json.loads(self.run("status", "--json").stdout)

    def gateway(self, name: str) -> dict[str, Any] | None:
        """This gateway's entry in `status --json`."""
        return next((g for g in self.status()["gateways"] if g["name"] == name), None)

    def wait_state(self, name: str, state: str, timeout: float = 60) -> dict[str, Any]:
        """Poll `status --json` until gateway `name` is in `state`."""
        deadline = time.monotonic() + timeout
        entry: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            entry = self.gateway(name)
            if entry and entry["state"] == state:
                return entry
            time.sleep(1)
        pytest.fail(f"gateway {name} not {state} after {timeout:.0f} s: {entry}\n{self.log_tails(name)}")

    def log_tails(self, name: str, lines: int = 60) -> str:
        """The gateway's app and error logs (the host-mounted log folder), for failure reports."""
        out = []
        for log in ("app.log", "err.log"):
            path = self.logs_dir / name / log
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(none)"]
            out.append(f"--- {name}/{log} ---\n" + "\n".join(text))
        return "\n".join(out)

    def stop_all(self) -> None:
        """Stop every gateway this object launched (idempotent)."""
        for name in self.launched:
            self.run("stop", name, check=False)

@pytest.fixture
def cli(tmp_path: Path, stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[Cli]:
    """The CLI bound to the stack; on failure prints every component's log tail; stops what it launched."""
    runner = Cli(tmp_path, stack)
    yield runner
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in runner.launched:
            sys.stderr.write(runner.log_tails(name) + "\n")
        sys.stderr.write(stack.tails() + "\n")
    runner.stop_all()

@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Expose each phase's report on the test item so fixtures can dump logs when the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

def close_to(measured: float | None, expected: float, tolerance: float = 0.05) -> bool:
    """`measured` within `tolerance` (relative) of `expected`."""
    return measured is not None and abs(measured - expected) <= expected * tolerance


def assert_media_both_ways(report: CallReport, tails: str) -> None:
    """The call's media judged both ways over its length (level and frequency of each tone, video frames changing)
    and the room left after the hang-up; `tails` (the logs) go with every failure."""
    assert report.answered_after is not None, f"the call was not answered\n{tails}"
    assert report.room_hears_caller, f"{report.problems()}\n{tails}"
    assert close_to(report.room_audio_hz, CALLER_TONE), f"room heard {report.room_audio_hz} Hz\n{tails}"
    assert report.room_video_changing, f"the caller's video did not reach the room\n{tails}"
    assert report.caller_hears_room, f"{report.problems()}\n{tails}"
    assert close_to(report.caller_audio_hz, ROOM_TONE), f"caller heard {report.caller_audio_hz} Hz\n{tails}"
    assert report.caller_video_changing, f"the caller got no changing room video\n{tails}"
    assert report.room_left_after is not None, f"the gateway's browser stayed in the room\n{tails}"
