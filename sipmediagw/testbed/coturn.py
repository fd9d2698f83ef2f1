"""A real coturn TURN server started with docs/turnserver.conf (site values added on the command line)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ._proc import Daemon, DaemonService, TestbedError
from .network import port_open

TURNSERVER_CONF = Path(__file__).resolve().parents[2] / "docs" / "turnserver.conf"


class Coturn(DaemonService):
    """coturn on `listen_ip:port` (UDP+TCP) with one long-term-credential user; loopback peers allowed for tests."""

    def __init__(self, *, listen_ip: str, workdir: Path, port: int = 3478, realm: str = "sipmediagw.local",
                 user: str = "gw", password: str = "turn-test-password", allow_loopback_peers: bool = True,
                 config: Path = TURNSERVER_CONF) -> None:
        self.listen_ip = listen_ip
        self.workdir = Path(workdir)
        self.port = port
        self.realm = realm
        self.user = user
        self.password = password
        self.allow_loopback_peers = allow_loopback_peers
        self.config = config
        self.log_path = self.workdir / "turnserver.log"
        self._daemon: Daemon | None = None

    def argv(self) -> list[str]:
        """turnserver command line: the docs config plus this instance's address, ports, realm and user."""
        argv = ["turnserver", "-c", str(self.config), "--listening-ip", self.listen_ip, "--relay-ip", self.listen_ip,
                "--listening-port", str(self.port), "--realm", self.realm, "--user", f"{self.user}:{self.password}",
                "--pidfile", str(self.workdir / "turnserver.pid"), "--log-file", "stdout",
                "--userdb", str(self.workdir / "turndb.sqlite"), "--no-rfc5780", "--no-stun-backward-compatibility"]
        if self.allow_loopback_peers:
            argv.append("--allow-loopback-peers")
        return argv

    def start(self) -> None:
        """Start coturn and wait until it listens on TCP `port`."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The password is on the command line (as coturn expects); it is never written to our logs.
        self._daemon = Daemon("coturn", self.argv(), log_path=self.log_path)
        self._daemon.start()
        try:
            self._daemon.wait_ready(lambda: port_open(self.listen_ip, self.port), timeout=20)
        except BaseException:
            self.stop()
            raise

    def allocate(self, messages: int = 5, timeout: float = 60) -> dict[str, int]:
        """A real TURN allocation with turnutils_uclient (client-to-client through relays); returns packet counts."""
        proc = subprocess.run(["turnutils_uclient", "-u", self.user, "-w", self.password, "-p", str(self.port),
                               "-e", self.listen_ip, "-y", "-n", str(messages), "-X", "-c", self.listen_ip],
                              capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        counts = {k: int(v) for k, v in re.findall(r"(tot_send_msgs|tot_recv_msgs|tot_send_bytes|tot_recv_bytes)=(\d+)",
                                                    out.replace(" ", ""))}
        lost = re.search(r"Total lost packets (\d+)", out)
        if lost:
            counts["lost"] = int(lost.group(1))
        if proc.returncode != 0 or not counts:
            raise TestbedError(f"turnutils_uclient failed (rc={proc.returncode}):\n{out[-2000:]}"
                               f"\n--- coturn ---\n{self.tail()}")
        return counts


def coturn_available() -> bool:
    """True when turnserver and turnutils_uclient are installed."""
    return bool(shutil.which("turnserver") and shutil.which("turnutils_uclient"))
