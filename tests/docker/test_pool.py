"""Pool gateways against the real image: launched by the real CLI without a room, reached by dialling a meeting.

A real Kamailio (a small config written here: it rewrites the dialled user "1234" to the pool gateway's user before
the location lookup, and leaves the To header as dialled, as a pool routing does) and a real baresip caller on the
Docker bridge. The room is a tiny driver (a data: page titled with the room's name) that notes each join in the
gateway's log folder, so the test sees which room the browser opened. Helpers and fixtures (client, bridge_ip,
caller, _wait) come from test_gateway.py; the registrar is this module's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import discard_gateway
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port

from test_gateway import DOMAIN, _wait, bridge_ip, caller, client  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).resolve().parents[2]
SECRET = "Pool-Secret-815"
POOL_USER, FIXED_USER = "gwpool", "gwfixed"  # SIP users of the two gateways
POOL_GW, FIXED_GW = f"pool-{os.getpid()}", f"fixed-{os.getpid()}"  # gateway names: unique on a shared daemon
#: dialled meeting -> the gateway user Kamailio routes it to (the test's stand-in for the pool routing)
ROUTES = {"1234": POOL_USER, "9999": POOL_USER, "4321": FIXED_USER}
READY_TIMEOUT = 150

KAMAILIO_CFG = """#!KAMAILIO
# Registrar + proxy for tests/docker/test_pool.py: each dialled meeting of the test goes to one gateway.
#!ifndef SIP_DOMAIN
#!define SIP_DOMAIN "127.0.0.1"
#!endif
#!ifndef CTL_SOCKET
#!define CTL_SOCKET "unix:/tmp/kamailio_ctl"
#!endif
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=2
auto_aliases=no
alias=SIP_DOMAIN

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "ctl.so"
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
modparam("ctl", "binrpc", CTL_SOCKET)

request_route {
	if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
	if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
	if (has_totag()) {
		if (loose_route()) { t_relay(); exit; }
		if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
		if (uri == myself && $rU != $null && lookup("location")) { t_relay(); exit; }
		sl_send_reply("404", "Not here");
		exit;
	}
	t_check_trans();
	if (is_method("REGISTER")) { save("location"); exit; }
	if (is_method("INVITE")) { record_route(); }
	# Only the Request-URI changes: the To header keeps sip:<meeting>@domain, which the gateway reads (callstat).
@ROUTES@
	if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
	t_relay();
}
"""

ROOM_DRIVER = '''
import html
import os
import urllib.parse

from sipmediagw.errors import ValidationError
from sipmediagw.room import Room, url_path_segment


class PoolRoom(Room):
    """A local page titled with the room's name; each join/leave is noted in joins.log of the log folder."""

    platform = "poolroom"

    def __init__(self, driver, base_url, room, options=None):
        super().__init__(driver, base_url, room, options)
        url_path_segment(room)
        if room.startswith("9"):
            raise ValidationError(f"poolroom: no room {room!r} here")

    def url(self):
        page = f"<title>{html.escape(self.room)}</title><h1>room {html.escape(self.room)}</h1>"
        return "data:text/html," + urllib.parse.quote(page)

    def _note(self, line):
        with open(os.path.join(os.environ["SIPMEDIAGW_LOG_DIR"], "joins.log"), "a", encoding="utf-8") as out:
            out.write(line + "\\n")

    def join(self, display_name):
        self.driver.get(self.url())
        self._note(f"join {self.room} as {display_name}: page {self.driver.title!r}")

    def leave(self):
        self.driver.get("about:blank")
        self._note(f"leave {self.room}")
'''


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, bridge_ip: str) -> Iterator[Kamailio]:  # noqa: F811
    """Kamailio routing the meetings of ROUTES (overrides test_gateway's: the caller fixture uses this one)."""
    workdir = tmp_path_factory.mktemp("kamailio-pool")
    routes = "\n".join(f'\tif ($rU == "{meeting}") {{ $rU = "{user}"; }}' for meeting, user in ROUTES.items())
    config = workdir / "pool.cfg"
    config.write_text(KAMAILIO_CFG.replace("@ROUTES@", routes))
    with Kamailio(domain=DOMAIN, listen=[bridge_ip], port=free_port(bridge_ip), workdir=workdir,
                  config=config) as kamailio:
        yield kamailio


class Host:
    """A host setup of the real CLI (config file, one accounts file per gateway, logs) driving the real image."""

    def __init__(self, root: Path, image: str, bridge_ip: str, registrar: Kamailio) -> None:  # noqa: F811
        self.root = root
        self.logs_dir = root / "logs"
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / "poolroom.py").write_text(ROOM_DRIVER)
        lines = {user: f'<sip:{user}@{DOMAIN};transport=udp>;auth_pass={SECRET};'
                       f'outbound="sip:{bridge_ip}:{registrar.port};transport=udp";regint=300\n'
                 for user in (POOL_USER, FIXED_USER)}
        for user in lines:  # the first free account is taken: each gateway's file lists its own account first
            (root / f"{user}.accounts").write_text(lines[user] + "".join(v for k, v in lines.items() if k != user))
        self.config = root / "sipmediagw.yaml"
        self.config.write_text(
            f"image: {image}\nlogs_dir: {self.logs_dir}\nbrowsing_dir: {browsing}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\nbackend: engine\n"
            f"platform: poolroom\nbase_url: http://{bridge_ip}:8000\nmedia: userspace\n"
            f"cpu_per_gateway: 0.5\nmemory_per_gateway: 1G\nready_timeout: {READY_TIMEOUT}\n")

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The real CLI with this setup's config; no SIPMEDIAGW_* from the caller's shell."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def launch(self, gateway: str, user: str, *args: str) -> None:
        result = self.run("launch", "-g", gateway, "--accounts", str(self.root / f"{user}.accounts"), *args)
        assert result.returncode == 0, f"launch {gateway} failed:\n{result.stderr}"

    def gateway(self, name: str) -> dict[str, Any]:
        """This gateway's entry in `status --json`."""
        result = self.run("status", "--json", "--no-stats", timeout=60)
        assert result.returncode == 0, result.stderr
        return next((g for g in json.loads(result.stdout)["gateways"] if g["name"] == name), {})

    def wait_gateway(self, name: str, predicate: Callable[[dict[str, Any]], bool], what: str,
                     timeout: float = 60) -> dict[str, Any]:
        seen: list[dict[str, Any]] = [{}]

        def check() -> dict[str, Any] | None:
            seen[0] = self.gateway(name)
            return seen[0] if predicate(seen[0]) else None

        return _wait(check, timeout, f"{name}: {what}", lambda: f"last status: {seen[0]}\n{self.report(name)}")

    def state(self, name: str) -> dict[str, Any]:
        return json.loads((self.logs_dir / name / "state.json").read_text())

    def joins(self, name: str) -> list[str]:
        path = self.logs_dir / name / "joins.log"
        return path.read_text().splitlines() if path.exists() else []

    def report(self, name: str) -> str:
        app = self.logs_dir / name / "app.log"
        tail = "\n".join(app.read_text(errors="replace").splitlines()[-40:]) if app.exists() else "(no app.log)"
        return f"app.log of {name}:\n{tail}"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, real_gateway_image: str, client: Any,  # noqa: F811
         bridge_ip: str, registrar: Kamailio) -> Iterator[Host]:  # noqa: F811
    setup = Host(tmp_path_factory.mktemp("pool-host"), real_gateway_image, bridge_ip, registrar)
    yield setup
    for container in dockerops.list_gateways(client):
        if container.labels.get(labels.LOGS, "").startswith(str(setup.logs_dir)):
            discard_gateway(client, container.labels[labels.GATEWAY], EngineBackend(client))


@pytest.fixture(scope="module")
def pool_gateway(host: Host, registrar: Kamailio) -> str:  # noqa: F811
    host.launch(POOL_GW, POOL_USER)  # no -r: a pool gateway
    registrar.wait_registered(POOL_USER, 30)
    return POOL_GW


@pytest.fixture(scope="module")
def fixed_gateway(host: Host, registrar: Kamailio) -> str:  # noqa: F811
    host.launch(FIXED_GW, FIXED_USER, "-r", "1234")
    registrar.wait_registered(FIXED_USER, 30)
    return FIXED_GW


def test_pool_gateway_joins_the_dialled_meeting_and_is_ready_in_no_room_after(
        host: Host, pool_gateway: str, caller: BaresipCaller, client: Any) -> None:  # noqa: F811
    idle = host.gateway(pool_gateway)
    assert (idle["state"], idle["mode"], idle["room"], idle["fixed_room"]) == ("ready", "pool", None, None)
    [container] = [c for c in dockerops.list_gateways(client) if c.labels[labels.GATEWAY] == pool_gateway]
    assert container.labels[labels.MODE] == "pool" and labels.ROOM not in container.labels

    caller.dial(f"sip:1234@{DOMAIN}")
    caller.wait_established(30)
    # in-call from the answer on; the room once the join finished (it runs beside the supervisor's loop)
    busy = host.wait_gateway(pool_gateway, lambda g: g.get("state") == "in-call" and g.get("room"), "in its room")
    assert (busy["mode"], busy["room"], busy["meeting"], busy["caller"], busy["platform"]) == (
        "pool", "1234", "1234", "alice", "poolroom")
    assert busy["call_started"] and busy["call_duration"] is not None
    state = host.state(pool_gateway)
    assert (state["mode"], state["room"], state["caller"], state["caller_uri"]) == (
        "pool", "1234", "alice", f"sip:alice@{DOMAIN}")
    assert host.joins(pool_gateway) == ["join 1234 as alice: page '1234'"]  # the browser shows room 1234
    row = next(line for line in host.run("status", "--no-stats").stdout.splitlines() if pool_gateway in line)
    assert row.split()[1:5] == ["in-call", "pool", "1234", "alice"]
    assert caller.snapshot("pool-room", timeout=30) is not None  # the caller receives the room display

    caller.hangup()
    caller.wait_closed(30)
    after = host.wait_gateway(pool_gateway, lambda g: g.get("state") == "ready", "ready again")
    assert (after["room"], after["caller"], after["last_end_reason"]) == (None, None, "caller hung up")
    assert host.joins(pool_gateway)[-1] == "leave 1234"
    assert host.state(pool_gateway)["calls"] == 1


def test_pool_gateway_rejects_an_unknown_meeting_before_answering(
        host: Host, pool_gateway: str, caller: BaresipCaller) -> None:  # noqa: F811
    caller.dial(f"sip:9999@{DOMAIN}")  # routed to the pool gateway; its room driver has no room 9999
    closed = caller.wait_closed(30)
    assert closed["param"] == "486 Rejected"  # what baresip 1.0.0 sends for a call hung up before answering
    assert not any(e.get("type") == "CALL_ESTABLISHED" for e in caller.history)
    entry = host.wait_gateway(pool_gateway, lambda g: (g.get("last_end_reason") or "").startswith(
        "unknown meeting 9999"), "the refusal reported")
    assert entry["state"] == "ready" and entry["room"] is None
    assert not any(line.startswith("join 9999") for line in host.joins(pool_gateway))


def test_fixed_gateway_refuses_another_meeting(host: Host, fixed_gateway: str,
                                               caller: BaresipCaller) -> None:  # noqa: F811
    idle = host.gateway(fixed_gateway)
    assert (idle["state"], idle["mode"], idle["fixed_room"]) == ("ready", "fixed", "1234")
    caller.dial(f"sip:4321@{DOMAIN}")  # a pool's meeting that a registrar hunting gateways landed here
    closed = caller.wait_closed(30)
    assert closed["param"] == "486 Rejected"
    entry = host.wait_gateway(fixed_gateway, lambda g: bool(g.get("last_end_reason")), "the refusal reported")
    assert entry["last_end_reason"] == "not this gateway's meeting: 4321 (fixed room 1234)"
    assert entry["state"] == "ready" and host.joins(fixed_gateway) == []
    # its own address still works as before pools
    caller.dial(f"sip:{FIXED_USER}@{DOMAIN}")
    caller.wait_established(30)
    busy = host.wait_gateway(fixed_gateway, lambda g: g.get("state") == "in-call" and g.get("room"), "in its room")
    assert (busy["room"], busy["caller"]) == ("1234", "alice")
    caller.hangup()
    caller.wait_closed(30)
    host.wait_gateway(fixed_gateway, lambda g: g.get("state") == "ready", "ready again")
