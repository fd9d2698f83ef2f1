"""A real Kamailio registrar/proxy running docs/kamailio.cfg in a private work directory."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from ._proc import Daemon, DaemonService, TestbedError, wait_until
from .network import port_open

DOCS = Path(__file__).resolve().parents[2] / "docs"
KAMAILIO_CFG = DOCS / "kamailio.cfg"
TLS_CFG = DOCS / "tls.cfg"


class Kamailio(DaemonService):
    """Kamailio 5.6 as registrar + proxy for `domain`, listening on UDP+TCP `port` of every address in `listen`.

    `users` (user -> password) turns on digest auth of REGISTER; `tls` = (certificate, key) adds TLS on port + 1.
    `defines` adds config defines (-A): a str value is quoted (`GATEWAY_USERS="^gw[0-9]+$"`), an int is not
    (`POOL_TRY_TIMEOUT=2000`), None defines a bare switch.
    `media_relay` (an rtpengine ng socket, e.g. "udp:127.0.0.1:22222", see RtpEngine.control_socket) turns on the
    config's WITH_NAT: NAT handling of signalling and every call's media through that relay; `defines` may still
    override its other settings (e.g. NAT_PING_INTERVAL).
    """

    def __init__(self, *, domain: str, listen: Sequence[str], port: int = 5060, workdir: Path,
                 users: Mapping[str, str] | None = None, tls: tuple[Path, Path] | None = None,
                 config: Path = KAMAILIO_CFG, defines: Mapping[str, str | int | None] | None = None,
                 media_relay: str | None = None) -> None:
        if not listen:
            raise ValueError("Kamailio needs at least one listen address")
        self.domain = domain
        self.listen = list(listen)
        self.port = port
        self.tls_port = port + 1
        self.workdir = Path(workdir)
        self.users = dict(users or {})
        self.tls = tls
        self.config = config
        self.defines = dict(defines or {})
        self.media_relay = media_relay
        self.pidfile = self.workdir / "kamailio.pid"
        self.ctl_socket = self.workdir / "kamailio.ctl"
        self.log_path = self.workdir / "kamailio.log"
        self._daemon: Daemon | None = None

    def argv(self) -> list[str]:
        """The kamailio command line: foreground (-DD), logs on stderr (-E), defines with -A, sockets with -l."""
        argv = ["kamailio", "-f", str(self.config), "-DD", "-E", "-m", "64", "-M", "8",
                "-P", str(self.pidfile), "-Y", str(self.workdir / "run"),
                "-A", f'SIP_DOMAIN="{self.domain}"', "-A", f'CTL_SOCKET="unix:{self.ctl_socket}"']
        if self.users:
            argv += ["-A", "WITH_AUTH"]
        if self.tls:
            argv += ["-A", "WITH_TLS", "-A", f'TLS_CONFIG="{self.workdir / "tls.cfg"}"']
        defines: dict[str, str | int | None] = {}
        if self.media_relay:
            defines.update({"WITH_NAT": None, "RTPENGINE_SOCK": self.media_relay,
                            "NAT_PING_FROM": f"sip:keepalive@{self.domain}"})
        defines.update(self.defines)  # a define given twice would stop Kamailio ("already defined")
        for name, value in defines.items():
            if value is None:
                argv += ["-A", name]
            elif isinstance(value, int):
                argv += ["-A", f"{name}={value}"]
            else:
                argv += ["-A", f'{name}="{value}"']
        for ip in self.listen:
            argv += ["-l", f"udp:{ip}:{self.port}", "-l", f"tcp:{ip}:{self.port}"]
            if self.tls:
                argv += ["-l", f"tls:{ip}:{self.tls_port}"]
        return argv

    def start(self) -> None:
        """Check the config, start Kamailio, wait until it answers on TCP and over its ctl socket, load users."""
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        # A pidfile left by a killed run makes Kamailio refuse to start; ours is private, so it is always stale.
        self.pidfile.unlink(missing_ok=True)
        self.ctl_socket.unlink(missing_ok=True)
        if self.tls:
            self._render_tls_cfg(*self.tls)
        check = subprocess.run(self.argv() + ["-c"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise TestbedError(f"kamailio: {self.config} does not check:\n{check.stderr[-3000:]}")
        self._daemon = Daemon("kamailio", self.argv(), log_path=self.log_path)
        self._daemon.start()
        try:
            self._daemon.wait_ready(self._listening, timeout=30)
            for user, password in self.users.items():
                self.kamcmd("htable.sets", "users", user, password)
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> bool:
        if not all(port_open(ip, self.port) for ip in self.listen) or not self.ctl_socket.exists():
            return False
        try:
            self.kamcmd("core.version")
        except TestbedError:
            return False
        return True

    def _render_tls_cfg(self, certificate: Path, key: Path) -> None:
        text = TLS_CFG.read_text()
        text = text.replace("/etc/kamailio/certs/server.pem", str(Path(certificate).resolve()))
        text = text.replace("/etc/kamailio/certs/server.key", str(Path(key).resolve()))
        (self.workdir / "tls.cfg").write_text(text)

    def kamcmd(self, *args: str) -> str:
        """Run one RPC command over this instance's ctl socket and return its output."""
        if any(arg.startswith("-") for arg in args):
            raise ValueError(f"kamcmd {args[0]}: an argument starting with '-' would be taken for an option")
        proc = subprocess.run(["kamcmd", "-s", f"unix:{self.ctl_socket}", *args], capture_output=True, text=True,
                              timeout=10)
        if proc.returncode != 0:
            # Never echo the arguments: htable.sets carries passwords.
            raise TestbedError(f"kamcmd {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def contacts(self) -> dict[str, str]:
        """Registered AORs' user part -> first contact URI, read from `ul.dump`."""
        out = self.kamcmd("ul.dump")
        result: dict[str, str] = {}
        user = None
        for line in out.splitlines():
            aor = re.match(r"\s*AoR:\s*(\S+)", line)
            if aor:
                user = aor.group(1).split("@")[0].removeprefix("sip:")
                continue
            contact = re.match(r"\s*Address:\s*(\S+)", line)
            if contact and user and user not in result:
                result[user] = contact.group(1)
        return result

    def contacts_of(self, user: str) -> list[str]:
        """Every contact URI bound to `user`'s AoR, in `ul.dump` order (e.g. `contacts_of("pool")`: the gateway pool)."""
        out = self.kamcmd("ul.dump")
        result: list[str] = []
        current = None
        for line in out.splitlines():
            aor = re.match(r"\s*AoR:\s*(\S+)", line)
            if aor:
                current = aor.group(1).split("@")[0].removeprefix("sip:")
                continue
            contact = re.match(r"\s*Address:\s*(\S+)", line)
            if contact and current == user:
                result.append(contact.group(1))
        return result

    def registered(self, user: str) -> bool:
        """True when `user` has at least one live registration."""
        return user in self.contacts()

    def wait_registered(self, user: str, timeout: float = 30) -> str:
        """Wait until `user` is registered; return its contact."""
        if not wait_until(lambda: self.registered(user), timeout, 0.2):
            raise TestbedError(f"kamailio: {user} not registered after {timeout:.0f} s; "
                               f"registered: {sorted(self.contacts())}")
        return self.contacts()[user]

    def pids(self) -> list[int]:
        """Process ids of what start() launched (for a stack left running by the demo)."""
        return [pid for pid in [self._daemon.pid if self._daemon else None] if pid]

    def stop(self) -> None:
        """Stop Kamailio (SIGTERM to its process group, then SIGKILL). Idempotent."""
        super().stop()
        self.pidfile.unlink(missing_ok=True)
        self.ctl_socket.unlink(missing_ok=True)


def kamailio_available() -> bool:
    """True when the kamailio and kamcmd binaries are installed."""
    return bool(shutil.which("kamailio") and shutil.which("kamcmd"))
