"""A gateway launched by the real CLI (engine backend: the project's seccomp profile) into a room site a test
serves, with its own account, settings file and log folder; shared by the docker tier's tests that attack or inspect a
running gateway from its room page (test_hostile_page.py, test_secret_isolation.py)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import discard_gateway
from sipmediagw.testbed.kamailio import Kamailio

PROJECT = Path(__file__).resolve().parents[2]


class CliGateway:
    """One gateway of platform `platform` (its driver's source `driver`) in the room site `base_url`, registered with
    `registrar` as `user` (password `secret`) of `domain`."""

    def __init__(self, root: Path, *, image: str, platform: str, driver: str, base_url: str, bridge: str,
                 registrar: Kamailio, user: str, secret: str, domain: str, gateway: str,
                 ready_timeout: float) -> None:
        self.root = root
        self.gateway = gateway
        self.logs_dir = root / "logs"
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / f"{platform}.py").write_text(driver)
        (root / "accounts").write_text(f'<sip:{user}@{domain};transport=udp>;auth_pass={secret};answermode=auto;'
                                       f'outbound="sip:{bridge}:{registrar.port};transport=udp";regint=300\n')
        self.config = root / "sipmediagw.yaml"
        # a small budget: the gateway must be admitted next to other people's on a shared 2-core engine
        self.config.write_text(
            f"image: {image}\nlogs_dir: {self.logs_dir}\nbrowsing_dir: {browsing}\naccounts_file: {root / 'accounts'}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\nbackend: engine\nplatform: {platform}\nbase_url: {base_url}\n"
            f"media: userspace\nready_timeout: {ready_timeout}\ncpu_per_gateway: 0.8\nmemory_per_gateway: 1024M\n")
        self.log_dir = self.logs_dir / gateway
        self.container: Any = None

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `sipmediagw` with this gateway's settings (none of the caller's SIPMEDIAGW_* variables)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def containers(self, client: Any) -> list[Any]:
        """This gateway's containers (by its log folder: other tests' gateways share the engine)."""
        return [c for c in dockerops.list_gateways(client)
                if c.labels.get(labels.LOGS, "").startswith(str(self.logs_dir))]

    def state(self) -> dict[str, Any]:
        """Its state.json ({} until written)."""
        try:
            return json.loads((self.log_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def app_log(self) -> str:
        path = self.log_dir / "app.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def python(self, script: str) -> Any:
        """Run `script` in the gateway as its user; its stdout parsed as JSON."""
        code, out = self.container.exec_run(["python3", "-c", script], user="gw")
        assert code == 0, out.decode(errors="replace")
        return json.loads(out)

    def report(self) -> str:
        """What to show when an assertion fails: the state and the end of the app log."""
        return (f"state: {json.dumps(self.state(), indent=1)}\napp.log (end):\n"
                + "\n".join(self.app_log().splitlines()[-40:]))


@contextlib.contextmanager
def launched(client: Any, gateway: CliGateway, room: str = "1234") -> Iterator[CliGateway]:
    """`gateway` launched (ready) in `room`; removed with its claims afterwards, also when the test failed."""
    try:
        result = gateway.cli("launch", "-r", room, "-g", gateway.gateway)
        assert result.returncode == 0, result.stderr + gateway.report()
        [gateway.container] = gateway.containers(client)
        yield gateway
    finally:
        for container in gateway.containers(client):
            discard_gateway(client, container.labels[labels.GATEWAY], EngineBackend(client))
