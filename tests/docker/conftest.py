"""Fixtures of the docker tier of the host CLI: a real daemon, the stub (or real) gateway image, an isolated host setup.

Every container the launcher creates for a test carries the test's own logs folder in its `org.sipmediagw.logs`
label: cleanup selects containers by that label, so other people's gateways on the same daemon are never touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import docker
import pytest

from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import discard_gateway

STUB_TAG = "sipmediagw-test-stub:latest"
STUB_DIR = Path(__file__).parent / "stub"
PROJECT = Path(__file__).resolve().parents[2]
SECRETS = ("SECRETpw", "STUNsecret")  # substrings of every password in the test accounts files


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The real daemon; a missing daemon is a failure of the docker tier, not a skip."""
    return dockerops.connect()


@pytest.fixture(scope="session")
def gateway_image(docker_client: docker.DockerClient) -> str:
    """SIPMEDIAGW_TEST_IMAGE if set (e.g. the real sipmediagw:latest), else the stub built from tests/docker/stub."""
    chosen = os.environ.get("SIPMEDIAGW_TEST_IMAGE")
    if chosen:
        assert dockerops.image_present(docker_client, chosen), f"SIPMEDIAGW_TEST_IMAGE={chosen} is not built"
        return chosen
    docker_client.images.build(path=str(STUB_DIR), tag=STUB_TAG, rm=True, labels={"sipmediagw-test": "stub"})
    return STUB_TAG


@pytest.fixture(scope="session")
def real_gateway_image(docker_client: docker.DockerClient, request: pytest.FixtureRequest) -> str:
    """The real gateway image: SIPMEDIAGW_TEST_IMAGE if set (used as is), else the one built from this source tree
    (tests/conftest.py's current_gateway_image, built once per session only when stale)."""
    chosen = os.environ.get("SIPMEDIAGW_TEST_IMAGE")
    if chosen:
        assert dockerops.image_present(docker_client, chosen), f"SIPMEDIAGW_TEST_IMAGE={chosen} is not built"
        return chosen
    return str(request.getfixturevalue("current_gateway_image"))


@dataclasses.dataclass
class HostSetup:
    """An isolated host configuration for one test: accounts, logs, lock, config file."""

    root: Path
    config: Path
    logs_dir: Path
    accounts_file: Path
    client: docker.DockerClient

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a subprocess with this setup's config file."""
        return subprocess.run(
            [sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout, env=cli_env(),
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start the real CLI without waiting for it."""
        return subprocess.Popen(
            [sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        )

    def status(self) -> dict:
        """`status --json`, parsed."""
        result = self.run("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def containers(self) -> list:
        """This test's gateway containers (running or not)."""
        return [c for c in dockerops.list_gateways(self.client) if c.labels.get(labels.LOGS, "").startswith(str(self.logs_dir))]


STUB_DRIVER = """from sipmediagw.room import Room


class StubRoom(Room):
    platform = "{platform}"

    def url(self):
        return "about:blank"

    def join(self, display_name):
        self.driver.get("data:text/html,<title>{platform}</title>")

    def leave(self):
        pass
"""


def cli_env() -> dict[str, str]:
    """The environment minus any SIPMEDIAGW_* setting that could leak in from the caller's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}


def account_lines(count: int) -> str:
    return "# test accounts\n\n" + "".join(
        f"<sip:gw{i}@127.0.0.1;transport=udp>;auth_pass=SECRETpw{i};answermode=auto;stunpass=STUNsecret{i}\n"
        for i in range(1, count + 1)
    )


@pytest.fixture
def make_host(tmp_path: Path, docker_client: docker.DockerClient, gateway_image: str, request: pytest.FixtureRequest) -> Iterator:
    """Factory: make_host(accounts=N) -> HostSetup. Teardown dumps state on failure and removes the test's containers."""
    setups: list[HostSetup] = []

    def factory(accounts: int = 4) -> HostSetup:
        root = tmp_path / f"host{len(setups)}"
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        for driver in sorted((PROJECT / "browsing").glob("*.py")):
            (browsing / driver.name).write_text(driver.read_text())
        # janus: a stand-in that takes any room name (these tests name rooms r1, room-one: the real driver's rule that
        # a Janus room is a number is checked at launch, and tested in tests/unit/test_cli.py)
        (browsing / "janus.py").write_text(STUB_DRIVER.format(platform="janus"))
        # drivers the host accepts (it loads a fixed room's driver at launch) on which the stub image misbehaves:
        # it fails on stubfail and never gets ready on stubslow
        for platform in ("stubfail", "stubslow"):
            (browsing / f"{platform}.py").write_text(STUB_DRIVER.format(platform=platform))
        accounts_file = root / "accounts"
        accounts_file.write_text(account_lines(accounts))
        config = root / "sipmediagw.yaml"
        config.write_text(
            f"image: {gateway_image}\n"
            f"accounts_file: {accounts_file}\n"
            f"logs_dir: {root / 'logs'}\n"
            f"browsing_dir: {browsing}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\n"
            "base_url: http://127.0.0.1:8088\n"
            "backend: engine\n"  # these tests are about one engine, even on a host that is a swarm manager
            "platform: janus\n"
            "media: userspace\n"
            "cpu_per_gateway: 0.01\n"
            "memory_per_gateway: 16M\n"
            "ready_timeout: 90\n"
        )
        setup = HostSetup(root, config, root / "logs", accounts_file, docker_client)
        setups.append(setup)
        return setup

    yield factory

    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for setup in setups:
        for container in setup.containers():
            if failed:
                sys.stderr.write(f"\n--- {container.name} ({container.status}) ---\n"
                                 f"{json.dumps(container.attrs.get('State'), indent=1)}\n"
                                 f"{dockerops.container_logs(container, 50)}\n")
            discard_gateway(setup.client, container.labels[labels.GATEWAY], EngineBackend(setup.client))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    """Remember each phase's report on the test item, so fixtures know whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
