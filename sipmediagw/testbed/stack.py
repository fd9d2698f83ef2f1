"""The local stack the e2e tests and the demo share: Kamailio registrar + Janus room on the Docker bridge.

Gateway containers sit on the default Docker bridge, so every service they talk to listens on the bridge's host
address (e.g. 172.17.0.1): Kamailio for SIP, Janus for the room. The SIP caller runs on the host on that address too,
so its RTP reaches the containers directly. With `nat_relay`, an rtpengine on that address relays every call's media
(docs/kamailio.cfg's WITH_NAT), as it must for gateways behind NAT (e.g. on other Swarm nodes).
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from types import TracebackType

from .janus import JanusServer
from .kamailio import Kamailio
from .network import BridgeKeeper, docker_bridge_ip
from .rtpengine import RtpEngine

SIP_DOMAIN = "sipmediagw.test"


def _password() -> str:
    """A random SIP password; hex, because kamcmd (which loads it into Kamailio) takes a leading '-' for an option
    (token_urlsafe gave one in about 1 of 13 five-user stacks: "Unknown option `-o'")."""
    return secrets.token_hex(12)


@dataclasses.dataclass(frozen=True)
class SipUser:
    """A SIP account on the local registrar."""

    user: str
    password: str


class LocalStack:
    """Bridge keeper + Kamailio (digest auth for `gateways` gateway accounts and one caller) + Janus VideoRoom.

    `nat_relay` adds an rtpengine on the bridge address and runs Kamailio with WITH_NAT: every call's media then
    crosses that relay (`self.rtpengine`), and gateways behind NAT are reachable.
    """

    def __init__(self, workdir: Path, *, gateways: int = 2, callers: int = 1, sip_port: int = 5060,
                 janus_http_port: int = 8088, janus_web_port: int = 8000, nat_relay: bool = False) -> None:
        self.workdir = Path(workdir)
        self.ip = docker_bridge_ip()
        self.sip_port = sip_port
        self.gateway_users = [SipUser(f"gw{i + 1}", _password()) for i in range(gateways)]
        # caller, caller2, ...: SIP endpoints that dial in (several for tests with calls at once)
        self.caller_users = [SipUser("caller" if i == 0 else f"caller{i + 1}", _password())
                             for i in range(callers)]
        self.caller_user = self.caller_users[0]
        self.bridge = BridgeKeeper()
        # The relay's control socket stays on loopback (only Kamailio talks to it); its media ports are on the bridge.
        self.rtpengine = RtpEngine(interface=self.ip, workdir=self.workdir / "rtpengine") if nat_relay else None
        self.kamailio = Kamailio(domain=SIP_DOMAIN, listen=[self.ip], port=sip_port, workdir=self.workdir / "kamailio",
                                 users={u.user: u.password for u in [*self.gateway_users, *self.caller_users]},
                                 media_relay=self.rtpengine.control_socket if self.rtpengine else None)
        self.janus = JanusServer(listen_ip=self.ip, workdir=self.workdir / "janus", http_port=janus_http_port,
                                 web_port=janus_web_port)

    @property
    def registrar(self) -> str:
        """Kamailio's "IP:PORT", as an outbound proxy."""
        return f"{self.ip}:{self.sip_port}"

    @property
    def base_url(self) -> str:
        """The room site for `sipmediagw launch --platform janus --domain ...`."""
        return self.janus.base_url

    def gateway_uri(self, index: int) -> str:
        """SIP URI of gateway account `index` (0-based)."""
        return f"sip:{self.gateway_users[index].user}@{SIP_DOMAIN}"

    def accounts_file(self) -> Path:
        """Write the baresip accounts file for the gateways (mode 0600): one line per gateway, as in the seed."""
        lines = ["# sipmediagw local stack: one account line per gateway"]
        for user in self.gateway_users:
            lines.append(
                f'<sip:{user.user}@{SIP_DOMAIN};transport=udp>;outbound="sip:{self.registrar};transport=udp"'
                f";auth_user={user.user};auth_pass={user.password};regint=300;answermode=auto"
            )
        path = self.workdir / "accounts"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        """Start everything; on failure stop what was started."""
        try:
            self.bridge.start()  # Janus cannot bind/gather on a bridge without carrier
            if self.rtpengine:
                self.rtpengine.start()  # before Kamailio: its first call must find the relay answering
            self.kamailio.start()
            self.janus.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything (idempotent)."""
        for part in (self.janus, self.kamailio, self.rtpengine, self.bridge):
            if part is None:
                continue
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - best effort: stop the others anyway
                pass

    def tails(self) -> str:
        """Log tails of the services, for failure reports."""
        tails = f"--- kamailio ---\n{self.kamailio.tail(40)}\n--- janus ---\n{self.janus.tail(40)}"
        if self.rtpengine:
            tails += f"\n--- rtpengine ---\n{self.rtpengine.tail(40)}"
        return tails

    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
