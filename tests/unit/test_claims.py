"""Allocation claims: the engine's unique names settle races; stale claims are taken back by id, fresh ones never."""

from __future__ import annotations

import itertools
import threading

import pytest

from sipmediagw import claims, labels
from sipmediagw.claims import Claim, ClaimTaken
from sipmediagw.sipuri import account_identity


class NameUniqueStore:
    """What the engine guarantees, no more: create is atomic per name, remove is by id."""

    def __init__(self, clock):
        self.clock = clock
        self.objects: dict[str, Claim] = {}
        self.live_gateways: set[str] = set()
        self.dead_gateways: set[str] = set()
        self.ids = itertools.count()
        self.lock = threading.Lock()

    def create(self, name, claim_labels, payload):
        with self.lock:
            if name in self.objects:
                raise ClaimTaken(self.objects[name])
            claim = Claim.from_labels(f"id{next(self.ids)}", name, claim_labels, self.clock())
            self.objects[name] = claim
            return claim

    def remove(self, claim_id):
        with self.lock:
            for name, claim in list(self.objects.items()):
                if claim.id == claim_id:
                    del self.objects[name]

    def list(self):
        return list(self.objects.values())

    def gateway_presence(self, gateway):
        if gateway in self.live_gateways:
            return claims.HOLDS
        return claims.DEAD if gateway in self.dead_gateways else claims.ABSENT


@pytest.fixture
def now():
    return [1000.0]


@pytest.fixture
def store(now):
    return NameUniqueStore(lambda: now[0])


def test_one_account_is_claimed_once_among_many_concurrent_takers(store, now):
    won: list[str] = []
    barrier = threading.Barrier(20)

    def racer(number):
        barrier.wait()
        if claims.take(store, claims.ACCOUNT, "sip:gw1@example.org", f"g{number}", clock=lambda: now[0]):
            won.append(f"g{number}")

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert [c.gateway for c in store.list()] == won


def test_the_same_account_written_differently_is_one_claim(store, now):
    assert claims.take(store, claims.ACCOUNT, "sip:x@example.org", "a", clock=lambda: now[0])
    assert claims.take(store, claims.ACCOUNT, "sip:x@EXAMPLE.org:5060", "b", clock=lambda: now[0]) is None
    assert claims.take(store, claims.ACCOUNT, "sip:X@example.org", "b", clock=lambda: now[0])  # user part: case counts


def test_a_claim_whose_gateway_never_came_is_taken_back_after_the_grace_period(store, now):
    first = claims.take(store, claims.ACCOUNT, "sip:a@h", "dead-cli", clock=lambda: now[0])
    assert claims.take(store, claims.ACCOUNT, "sip:a@h", "next", clock=lambda: now[0]) is None  # still fresh
    now[0] += claims.STALE_AFTER + 1
    second = claims.take(store, claims.ACCOUNT, "sip:a@h", "next", clock=lambda: now[0])
    assert second is not None and second.id != first.id and second.gateway == "next"


def test_a_claim_of_a_live_gateway_is_never_stale(store, now):
    claims.take(store, claims.ACCOUNT, "sip:a@h", "gw1", clock=lambda: now[0])
    store.live_gateways.add("gw1")
    now[0] += 10 * claims.STALE_AFTER
    assert claims.take(store, claims.ACCOUNT, "sip:a@h", "other", clock=lambda: now[0]) is None
    assert [c.gateway for c in claims.live_claims(store, clock=lambda: now[0])] == ["gw1"]


def test_a_claim_of_an_exited_gateway_is_stale_at_once(store, now):
    claims.take(store, claims.ACCOUNT, "sip:a@h", "gw1", clock=lambda: now[0])
    store.dead_gateways.add("gw1")
    assert claims.take(store, claims.ACCOUNT, "sip:a@h", "gw2", clock=lambda: now[0]).gateway == "gw2"


def test_a_fresh_claim_made_after_a_stale_one_was_seen_is_not_removed(store, now):
    stale = claims.take(store, claims.ACCOUNT, "sip:a@h", "dead", clock=lambda: now[0])
    now[0] += claims.STALE_AFTER + 1
    # A saw the stale claim and removed it (by id), then made its own; B, late, removes the stale id again
    winner = claims.take(store, claims.ACCOUNT, "sip:a@h", "A", clock=lambda: now[0])
    store.remove(stale.id)
    assert claims.take(store, claims.ACCOUNT, "sip:a@h", "B", clock=lambda: now[0]) is None
    assert [c.id for c in store.list()] == [winner.id]


def test_release_gateway_removes_only_that_gateways_claims(store, now):
    claims.take(store, claims.ACCOUNT, "sip:a@h", "gw1", clock=lambda: now[0])
    claims.take(store, claims.SLOT, "kernel-0", "gw1", clock=lambda: now[0])
    claims.take(store, claims.ACCOUNT, "sip:b@h", "gw2", clock=lambda: now[0])
    assert {c.kind for c in claims.release_gateway(store, "gw1")} == {claims.ACCOUNT, claims.SLOT}
    assert [c.gateway for c in store.list()] == ["gw2"]


def test_claim_names_are_engine_safe_and_reveal_nothing():
    name = claims.claim_name(claims.ACCOUNT, "sip:alice@example.org")
    assert name.startswith("sipmediagw-claim-account-") and "alice" not in name
    assert len(name) < 64 and name.replace("-", "").isalnum()
    assert claims.claim_name(claims.ACCOUNT, "sip:alice@example.org") != claims.claim_name(claims.SLOT, "sip:alice@example.org")


@pytest.mark.parametrize("a, b", [
    ("sip:x@example.org", "sip:x@example.org:5060"),
    ("sip:x@Example.ORG", "sip:x@example.org;transport=udp"),
    ("sips:x@example.org:5061", "SIPS:x@example.org"),
    ("sip:x@[2001:DB8::1]:5060", "sip:x@[2001:db8::1]"),
])
def test_account_identity_is_one_for_the_same_account(a, b):
    assert account_identity(a) == account_identity(b)


@pytest.mark.parametrize("a, b", [
    ("sip:x@example.org", "sip:x@example.org:5070"),
    ("sip:x@example.org", "sips:x@example.org"),
    ("sip:x@example.org", "sip:y@example.org"),
])
def test_account_identity_tells_different_accounts_apart(a, b):
    assert account_identity(a) != account_identity(b)


# -- launch leases ---------------------------------------------------------------------------------------------------


def test_a_launch_lease_refuses_a_second_launch_of_the_name_until_its_deadline(store, now):
    lease = claims.take(store, claims.LAUNCH, "gw", "gw", clock=lambda: now[0], deadline=now[0] + 180)
    assert lease is not None and lease.deadline == 1180.0
    now[0] += 179
    assert claims.take(store, claims.LAUNCH, "gw", "gw", clock=lambda: now[0], deadline=now[0] + 180) is None
    assert claims.abandoned_leases(store, lambda: now[0]) == []
    now[0] += 2  # the launch that took it died without unwinding (kill -9)
    assert claims.abandoned_leases(store, lambda: now[0]) == [lease]
    again = claims.take(store, claims.LAUNCH, "gw", "gw", clock=lambda: now[0], deadline=now[0] + 180)
    assert again is not None and again.id != lease.id


def test_a_lease_is_not_released_with_the_gateways_claims_unless_asked(store, now):
    lease = claims.take(store, claims.LAUNCH, "gw", "gw", deadline=now[0] + 100)
    account = claims.take(store, claims.ACCOUNT, "sip:a@h", "gw")
    assert claims.release_gateway(store, "gw") == [account]
    assert store.list() == [lease]
    claims.release_gateway(store, "gw", leases=True)
    assert store.list() == []


def test_release_lease_drops_the_lease_only(store, now):
    claims.take(store, claims.LAUNCH, "gw", "gw", deadline=now[0] + 100)
    account = claims.take(store, claims.ACCOUNT, "sip:a@h", "gw")
    claims.release_lease(store, "gw")
    assert store.list() == [account]
