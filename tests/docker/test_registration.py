"""Registration failures through the real CLI and the real gateway image: a registrar that refuses the password, and
one that is not there. `launch` fails fast with the registrar's answer (not a generic timeout), prints no secret and
leaves nothing behind (no container, no claim holding the account)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import discard_gateway
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import docker_bridge_ip, free_port

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).resolve().parents[2]
DOMAIN = "sipmediagw.test"
GOOD_SECRET = "Reg-Good-5150"
WRONG_SECRET = "Reg-Wrong-8086"
READY_TIMEOUT = 120  # what the launch would wait for a gateway that never says why


@pytest.fixture(scope="module")
def bridge_ip() -> str:
    return docker_bridge_ip()


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, bridge_ip: str) -> Iterator[Kamailio]:
    with Kamailio(domain=DOMAIN, listen=[bridge_ip], port=free_port(bridge_ip),
                  workdir=tmp_path_factory.mktemp("kamailio-auth"), users={"gw1": GOOD_SECRET}) as kamailio:
        yield kamailio


class Host:
    """A config file and an accounts file for the real CLI, driving the real image."""

    def __init__(self, root: Path, image: str, bridge_ip: str) -> None:
        self.root, self.bridge_ip = root, bridge_ip
        self.logs_dir = root / "logs"
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / "janus.py").write_text((PROJECT / "browsing" / "janus.py").read_text())
        self.accounts = root / "accounts"
        self.config = root / "sipmediagw.yaml"
        self.config.write_text(
            f"image: {image}\naccounts_file: {self.accounts}\nlogs_dir: {self.logs_dir}\n"
            f"browsing_dir: {browsing}\nbaresip_dir: {PROJECT / 'baresip'}\nbackend: engine\n"
            f"platform: janus\nbase_url: http://{bridge_ip}:8000\nmedia: userspace\n"
            f"cpu_per_gateway: 0.5\nmemory_per_gateway: 1G\nready_timeout: {READY_TIMEOUT}\n")

    def account(self, secret: str, registrar_port: int) -> None:
        self.accounts.write_text(f'<sip:gw1@{DOMAIN};transport=udp>;auth_pass={secret};answermode=auto;'
                                 f'outbound="sip:{self.bridge_ip}:{registrar_port};transport=udp";regint=300\n')

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=READY_TIMEOUT + 60, env=env)

    def leftovers(self, client: Any) -> list[str]:
        """Containers of this host: gateways and claims (the engine objects that hold an account or slot)."""
        found = client.api.containers(all=True, filters={"label": labels.MANAGED})
        found += client.api.containers(all=True, filters={"label": labels.CLAIM})
        return sorted({(c.get("Names") or ["?"])[0] for c in found
                       if str(self.logs_dir) in json.dumps(c.get("Labels") or {})
                       or (c.get("Labels") or {}).get(labels.GATEWAY) == "regtest"})


@pytest.fixture
def host(tmp_path: Path, real_gateway_image: str, docker_client: Any, bridge_ip: str) -> Iterator[Host]:
    setup = Host(tmp_path, real_gateway_image, bridge_ip)
    yield setup
    discard_gateway(docker_client, "regtest", EngineBackend(docker_client))


def test_a_wrong_password_fails_the_launch_fast_with_the_registrars_answer(
        host: Host, registrar: Kamailio, docker_client: Any) -> None:
    host.account(WRONG_SECRET, registrar.port)
    started = time.monotonic()
    result = host.run("launch", "-r", "1234", "-g", "regtest")
    took = time.monotonic() - started
    assert result.returncode == 7, result.stderr
    assert "sip:gw1@sipmediagw.test could not register: 401 Unauthorized" in result.stderr, result.stderr
    assert "auth_pass" in result.stderr  # the hint says what to check
    assert WRONG_SECRET not in result.stdout + result.stderr
    assert took < READY_TIMEOUT / 2, f"launch took {took:.0f} s: it waited for the timeout instead of the answer"
    assert host.leftovers(docker_client) == []
    assert not registrar.registered("gw1")


def test_no_registrar_fails_the_launch_with_no_answer(host: Host, bridge_ip: str, docker_client: Any) -> None:
    host.account(GOOD_SECRET, free_port(bridge_ip))  # nothing listens there
    result = host.run("launch", "-r", "1234", "-g", "regtest")
    assert result.returncode == 7, result.stderr
    assert "sip:gw1@sipmediagw.test could not register: " in result.stderr, result.stderr
    assert "registrar reachable" in result.stderr or "no answer" in result.stderr, result.stderr
    assert host.leftovers(docker_client) == []


def test_the_right_password_registers_and_status_shows_no_registration_problem(
        host: Host, registrar: Kamailio) -> None:
    host.account(GOOD_SECRET, registrar.port)
    result = host.run("launch", "-r", "1234", "-g", "regtest")
    assert result.returncode == 0, result.stderr
    assert registrar.registered("gw1")
    status = json.loads(host.run("status", "--json", "--no-stats").stdout)
    [gateway] = [g for g in status["gateways"] if g["name"] == "regtest"]
    assert (gateway["state"], gateway["registration"], gateway["registration_reason"]) == ("ready", "registered", None)
