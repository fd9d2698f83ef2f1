"""docs/kamailio.cfg routes meetings to a pool of gateways: real Kamailio, real baresip gateways and callers.

Two baresip instances registered as gw1 and gw2 stand in for pool gateways: they auto-answer (or, in answermode=manual,
refuse a call by hanging up before answering, as the gateway's controller does) and, like the gateway's own baresip
(`call_max_calls 1`), answer a second concurrent INVITE with 486. Which gateway took a call, and which meeting it was
told, is read the way a gateway reads it: baresip's `callstat` (local_uri = the To header, call id). Kamailio's log
is printed after each test (pytest shows it for a failure).
"""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sipmediagw.testbed._proc import wait_until
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port_range

pytestmark = pytest.mark.integration

DOMAIN = "sipmediagw.test"
LOOPBACK = "127.0.0.1"
GATEWAYS = ("gw1", "gw2")
CALLERS = ("alice", "bob", "carol")
PASSWORDS = {user: f"{user}-Secret-{i}" for i, user in enumerate(GATEWAYS + CALLERS)}
#: docs/kamailio.cfg's POOL_TRY_TIMEOUT default (ms): how long a silent (dead) pool gateway delays a call
POOL_TRY_TIMEOUT = 3.0
CALL_TIMEOUT = 20


class Bed:
    """Kamailio with digest auth plus baresip endpoints; every process started is stopped by close()."""

    def __init__(self, tmp_path: Path, defines: dict[str, str | int | None] | None = None) -> None:
        self.tmp_path = tmp_path
        self._stack = ExitStack()
        self.kamailio = Kamailio(domain=DOMAIN, listen=[LOOPBACK], port=free_port_range(LOOPBACK),
                                 workdir=tmp_path / "kamailio", users=PASSWORDS, defines=defines)
        self.kamailio.start()
        self._stack.callback(self.kamailio.stop)
        self.endpoints: dict[str, BaresipCaller] = {}

    def start(self, *users: str, answermode: str = "auto") -> list[BaresipCaller]:
        """Start one registered baresip per user (gateways with max_calls 1), wait for all registrations."""
        started = []
        for user in users:
            endpoint = BaresipCaller(user=user, domain=DOMAIN, registrar=f"{LOOPBACK}:{self.kamailio.port}",
                                     workdir=self.tmp_path / user, password=PASSWORDS[user], video=False,
                                     max_calls=1 if user in GATEWAYS else None,
                                     answermode=answermode if user in GATEWAYS else "auto")
            self._stack.callback(endpoint.stop)  # registered before start(): a failed start is cleaned up too
            endpoint.start()
            self.endpoints[user] = endpoint
            started.append(endpoint)
        for endpoint in started:
            endpoint.wait_registered(30)
            self.kamailio.wait_registered(endpoint.user)
        return started

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def bed(request: pytest.FixtureRequest, tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[Bed]:
    """The test bed; parametrized indirectly with a dict, it passes those config defines (-A) to Kamailio."""
    require_programs("kamailio", "kamcmd", "baresip")
    bed = Bed(tmp_path, getattr(request, "param", None))
    try:
        yield bed
    finally:
        # Shown by pytest only when the test failed: the hunt as Kamailio logged it.
        print(f"--- {bed.kamailio.log_path} (tail) ---\n{bed.kamailio.tail(60)}")
        bed.close()


def current_call(endpoint: BaresipCaller) -> tuple[str, str] | None:
    """(local_uri, call id) of the endpoint's call from `callstat`, None when it has none."""
    data = str(endpoint.command("callstat").get("data", ""))
    uri = re.search(r"local_uri:\s*<([^>]+)>", data)
    call_id = re.search(r"\bid=(\S+)", data)
    return (uri.group(1), call_id.group(1)) if uri and call_id else None


def user_of(uri: str) -> str:
    return uri.removeprefix("sip:").split("@", 1)[0]


def answered_by(gateways: list[BaresipCaller], caller: BaresipCaller, established: dict) -> BaresipCaller:
    """The one gateway holding `caller`'s established call (same call id), after its own CALL_ESTABLISHED."""
    holders: list[BaresipCaller] = []

    def found() -> bool:
        holders[:] = [gw for gw in gateways if (call := current_call(gw)) and call[1] == established["id"]]
        return bool(holders)

    assert wait_until(found, CALL_TIMEOUT, 0.2), f"no gateway holds call {established['id']}"
    assert len(holders) == 1, [gw.user for gw in holders]
    gateway = holders[0]
    event = gateway.wait_established(CALL_TIMEOUT)
    assert event["direction"] == "incoming" and event["peeruri"].startswith(caller.uri), event
    return gateway


def dial_and_land(gateways: list[BaresipCaller], caller: BaresipCaller, uri: str) -> BaresipCaller:
    """`caller` dials `uri`; return the gateway that answered, checked to have been told the dialled address."""
    caller.dial(uri)
    established = caller.wait_established(CALL_TIMEOUT)
    gateway = answered_by(gateways, caller, established)
    local_uri, _ = current_call(gateway)
    # The To header reached the gateway as dialled: that is how a pool gateway learns the meeting.
    assert user_of(local_uri) == user_of(uri) and local_uri.startswith(uri), (local_uri, uri)
    return gateway


def dial_and_fail(caller: BaresipCaller, uri: str) -> str:
    """`caller` dials `uri` and the call fails; return the final SIP status line baresip reports."""
    caller.dial(uri)
    closed = caller.wait_closed(CALL_TIMEOUT)
    return str(closed.get("param", ""))


def hang_up(caller: BaresipCaller, gateway: BaresipCaller) -> None:
    """The caller hangs up; the gateway sees the BYE (relayed along the Record-Route)."""
    caller.hangup()
    caller.wait_closed(CALL_TIMEOUT)
    gateway.wait_closed(CALL_TIMEOUT)
    assert wait_until(lambda: current_call(gateway) is None, CALL_TIMEOUT, 0.2)


def pool_order(bed: Bed) -> list[str]:
    """The gateway users bound to the pool AoR, in the order docs/kamailio.cfg hunts them (registration order)."""
    return [user_of(contact).split("-", 1)[0] for contact in bed.kamailio.contacts_of("pool")]


def test_meetings_hunt_the_pool_busy_gateways_are_skipped_and_a_freed_one_is_reused(bed: Bed) -> None:
    gw1, gw2, alice, bob, carol = bed.start(*GATEWAYS, *CALLERS)
    gateways = [gw1, gw2]
    assert sorted(pool_order(bed)) == ["gw1", "gw2"]

    first = dial_and_land(gateways, alice, f"sip:1234@{DOMAIN}")
    second = dial_and_land(gateways, bob, f"sip:1235@{DOMAIN}")
    assert second is not first  # the busy member answered 486 and the hunt went on

    status = dial_and_fail(carol, f"sip:1236@{DOMAIN}")
    assert status.startswith("486"), status  # both busy: one clean 486 Busy Here
    assert "every gateway busy" in bed.kamailio.tail(20)
    # Neither call in progress was disturbed.
    assert user_of(current_call(first)[0]) == "1234" and user_of(current_call(second)[0]) == "1235"

    hang_up(alice, first)
    third = dial_and_land(gateways, carol, f"sip:1236@{DOMAIN}")
    assert third is first  # the freed gateway took the next meeting
    assert user_of(current_call(second)[0]) == "1235"

    # A BYE from the gateway's side reaches the caller too (Record-Route kept for pool calls).
    second.hangup()
    bob.wait_closed(CALL_TIMEOUT)
    second.wait_closed(CALL_TIMEOUT)
    hang_up(carol, third)


def test_gateway_accounts_are_reached_directly_and_the_service_address_goes_to_the_pool(bed: Bed) -> None:
    gw1, gw2, alice = bed.start(*GATEWAYS, "alice")
    gateways = [gw1, gw2]
    # Both accounts, so one of them is not the pool's first choice: a direct call is never hunted.
    for gateway in gateways:
        reached = dial_and_land(gateways, alice, f"sip:{gateway.user}@{DOMAIN}")
        assert reached is gateway
        hang_up(alice, reached)

    reached = dial_and_land(gateways, alice, f"sip:meet@{DOMAIN}")
    assert user_of(current_call(reached)[0]) == "meet"
    hang_up(alice, reached)

    # The pool's own AoR and gateway accounts that are not registered are no meetings.
    assert dial_and_fail(alice, f"sip:pool@{DOMAIN}").startswith("404")
    assert dial_and_fail(alice, f"sip:gw7@{DOMAIN}").startswith("404")


def offered(gateway: BaresipCaller, caller: BaresipCaller, uri: str) -> dict:
    """The next call offered to a gateway in answermode=manual: from `caller`, To = `uri` (read with callstat)."""
    event = gateway.wait_event({"CALL_INCOMING"}, CALL_TIMEOUT)
    assert event["peeruri"].startswith(caller.uri), event
    local_uri, call_id = current_call(gateway)
    assert local_uri.startswith(uri) and call_id == event["id"], (local_uri, call_id, event)
    return event


def reject(gateway: BaresipCaller) -> None:
    """Hang up the offered call before answering, as the gateway's controller does: baresip sends 486 Rejected."""
    gateway.command("hangup")
    gateway.wait_closed(CALL_TIMEOUT)


def test_a_meeting_every_gateway_refuses_is_404_and_a_refusal_hunts_on(bed: Bed) -> None:
    gw1, gw2, alice, bob = bed.start(*GATEWAYS, "alice", "bob", answermode="manual")
    by_user = {"gw1": gw1, "gw2": gw2}
    first, second = (by_user[user] for user in pool_order(bed))

    # Every gateway refuses (an unknown meeting): one after the other, then 404 for the caller.
    alice.dial(f"sip:9999@{DOMAIN}")
    offered(first, alice, f"sip:9999@{DOMAIN}")
    reject(first)
    offered(second, alice, f"sip:9999@{DOMAIN}")
    reject(second)
    status = str(alice.wait_closed(CALL_TIMEOUT).get("param", ""))
    assert status.startswith("404"), status

    # The first refuses (e.g. a fixed gateway of another meeting), the next one takes the call.
    alice.dial(f"sip:1234@{DOMAIN}")
    offered(first, alice, f"sip:1234@{DOMAIN}")
    reject(first)
    offered(second, alice, f"sip:1234@{DOMAIN}")
    second.command("accept")
    alice.wait_established(CALL_TIMEOUT)
    second.wait_established(CALL_TIMEOUT)

    # One busy (baresip's own "486 Max Calls"), the other refuses: busy wins, the caller may retry later.
    bob.dial(f"sip:1235@{DOMAIN}")
    offered(first, bob, f"sip:1235@{DOMAIN}")
    reject(first)
    status = str(bob.wait_closed(CALL_TIMEOUT).get("param", ""))
    assert status.startswith("486"), status
    log = bed.kamailio.tail(20)
    assert f"486 Rejected from sip:{first.user}-" in log and f"486 Max Calls from sip:{second.user}-" in log, log
    hang_up(alice, second)


def test_an_empty_pool_answers_480_and_a_gateway_that_unregisters_leaves_the_pool(bed: Bed) -> None:
    (alice,) = bed.start("alice")
    assert bed.kamailio.contacts_of("pool") == []
    assert dial_and_fail(alice, f"sip:1234@{DOMAIN}").startswith("480")

    (gw1,) = bed.start("gw1")
    assert pool_order(bed) == ["gw1"]
    reached = dial_and_land([gw1], alice, f"sip:1234@{DOMAIN}")
    hang_up(alice, reached)

    gw1.stop()  # baresip unregisters (Expires: 0) on SIGTERM: both bindings go
    assert wait_until(lambda: not bed.kamailio.registered("gw1") and not bed.kamailio.contacts_of("pool"), 15, 0.2), \
        (bed.kamailio.contacts_of("pool"), gw1.tail())
    assert dial_and_fail(alice, f"sip:1234@{DOMAIN}").startswith("480")


def test_a_dead_gateway_with_a_stale_registration_is_skipped_after_the_try_timeout(bed: Bed) -> None:
    gw1, gw2, alice = bed.start(*GATEWAYS, "alice")
    by_user = {"gw1": gw1, "gw2": gw2}
    order = pool_order(bed)
    dead, alive = by_user[order[0]], by_user[order[1]]
    # SIGKILL our own child: no de-registration, the pool keeps its contact (as with a crashed container).
    dead._daemon.popen.kill()
    dead._daemon.popen.wait(10)
    assert pool_order(bed) == order

    started = time.monotonic()
    reached = dial_and_land([alive], alice, f"sip:1234@{DOMAIN}")
    elapsed = time.monotonic() - started
    assert reached is alive
    assert elapsed >= POOL_TRY_TIMEOUT - 0.5, elapsed  # the dead one was tried first and timed out
    assert re.search(r"pool: 408 .* for sip:1234@", bed.kamailio.tail(20))
    hang_up(alice, reached)

    alive._daemon.popen.kill()
    alive._daemon.popen.wait(10)
    # Nobody busy, nobody answering: temporarily unavailable, after one try timeout per stale contact.
    started = time.monotonic()
    status = dial_and_fail(alice, f"sip:1235@{DOMAIN}")
    assert status.startswith("480"), status
    assert time.monotonic() - started >= 2 * POOL_TRY_TIMEOUT - 0.5


@pytest.mark.parametrize("bed", [{"MEETING_PATTERN": "^[0-9]{4}$", "SERVICE_USER": "menu"}], indirect=True,
                         ids=["defines"])
def test_the_pool_is_configured_with_defines(bed: Bed) -> None:
    gw1, alice = bed.start("gw1", "alice")
    reached = dial_and_land([gw1], alice, f"sip:4321@{DOMAIN}")
    hang_up(alice, reached)
    reached = dial_and_land([gw1], alice, f"sip:menu@{DOMAIN}")
    hang_up(alice, reached)
    # Outside the pattern, and the default service user no longer special: plain 404s.
    assert dial_and_fail(alice, f"sip:43210@{DOMAIN}").startswith("404")
    assert dial_and_fail(alice, f"sip:meet@{DOMAIN}").startswith("404")
