"""Allocation claims that the Docker engine itself keeps unique: no lock file, no lock to leave behind.

Before a gateway is created, `launch` claims its SIP account (and, in kernel media mode, its device slot) by
creating an engine object whose *name* is derived from what is claimed. The engine refuses a second object of the
same name (409), atomically, whoever asks: two `launch`es on one host, or on two hosts against the same engine or
the same swarm (a swarm's secrets live in the managers' replicated store, so two managers agree too). The loser
tries the next free account.

The object is removed with the gateway. A claim is *stale* when its gateway exists but no longer holds resources
(its container exited), or when its gateway never came (the CLI was killed between the claim and the gateway) and
the claim is older than `STALE_AFTER`, the time a launch takes to create its gateway after claiming. The next
`launch` removes a stale claim by its id (not its name, so a fresh claim made meanwhile under the same name is never
removed by mistake) and claims again. A dead CLI thus blocks an account for at most a minute.

A *launch lease* (kind LAUNCH, one per gateway name) is held by a `launch` from before its claims until it returns:
the gateway is ready (or started, without waiting), or everything was removed. A lease still there after its
deadline means the CLI died without unwinding (`kill -9`, a host crash): the next `launch` or `status` removes that
gateway and its claims (launcher.reclaim_abandoned), so an interrupted launch never leaves a gateway holding an
account. A live lease also refuses a second launch of the same name while the first one runs.

Stores: the single-engine backend uses created-but-never-started containers (`EngineClaims` in
backends/engine.py); the swarm backend uses Docker secrets, and the account claim *is* the secret that carries the
account line to the gateway's task (backends/swarm.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Callable, Iterable, Protocol

from . import labels
from .sipuri import account_identity

#: a claim without a live gateway is taken back after this many seconds (launch creates the gateway right after
#: its claims, in well under a second; the margin covers a slow engine)
STALE_AFTER = 60.0

ACCOUNT = "account"
SLOT = "slot"
LAUNCH = "launch"
HOLDS, DEAD, ABSENT = "holds", "dead", "absent"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim object as the engine shows it."""

    id: str
    name: str
    kind: str  # ACCOUNT | SLOT
    value: str  # the account's SIP URI, or "<media>-<slot>"
    gateway: str
    created: float  # seconds since the epoch
    deadline: float | None = None  # LAUNCH leases: when their launch is taken as dead (seconds since the epoch)

    @classmethod
    def from_labels(cls, claim_id: str, name: str, tags: dict[str, str],
                    created: float | None = None) -> "Claim | None":
        """The claim an engine object's labels describe; None for an object that is not a claim of ours."""
        if labels.CLAIM not in tags:
            return None  # never treat a foreign object as a claim
        try:
            deadline: float | None = float(tags[labels.DEADLINE]) if labels.DEADLINE in tags else None
        except ValueError:
            deadline = 0.0  # unreadable: long past
        return cls(claim_id, name, tags[labels.CLAIM], tags.get(labels.CLAIM_VALUE, ""), tags.get(labels.GATEWAY, ""),
                   time.time() if created is None else created, deadline)


class ClaimTaken(Exception):
    """The engine already holds an object of that name (`existing`: it, when it could be read)."""

    def __init__(self, existing: Claim | None) -> None:
        super().__init__("claim taken")
        self.existing = existing


class ClaimStore(Protocol):
    """Engine objects with unique names: containers (single engine) or secrets (swarm)."""

    def create(self, name: str, claim_labels: dict[str, str], payload: bytes | None) -> Claim:
        """Create the object; ClaimTaken when one of that name exists."""
        ...

    def remove(self, claim_id: str) -> None:
        """Remove by id; an object already gone is fine."""
        ...

    def list(self) -> list[Claim]:
        """Every claim object."""
        ...

    def gateway_presence(self, gateway: str) -> str:
        """HOLDS (exists and holds its resources: created, running, a service), DEAD (exists, exited) or ABSENT."""
        ...


def claim_name(kind: str, value: str) -> str:
    """``sipmediagw-claim-account-<16 hex>``: the engine object's name (a digest: names allow few characters and
    must not reveal more than the labels do)."""
    identity = account_identity(value) if kind == ACCOUNT else value
    digest = hashlib.sha256(f"{kind}\0{identity}".encode()).hexdigest()[:16]
    return f"sipmediagw-claim-{kind}-{digest}"


def claim_labels(kind: str, value: str, gateway: str, deadline: float | None = None) -> dict[str, str]:
    """Labels of a claim object: what it claims, for whom (and a lease's deadline). Never a password."""
    tags = {labels.CLAIM: kind, labels.CLAIM_VALUE: value, labels.GATEWAY: gateway}
    if deadline is not None:
        tags[labels.DEADLINE] = f"{deadline:.0f}"
    return tags


def is_stale(claim: Claim, store: ClaimStore, now: float) -> bool:
    """Its gateway exited, or never came and the claim is older than STALE_AFTER; a launch lease: its deadline
    passed (its launch died: the gateway it made is abandoned too)."""
    if claim.kind == LAUNCH:
        return now > (claim.deadline if claim.deadline is not None else claim.created + STALE_AFTER)
    presence = store.gateway_presence(claim.gateway)
    return presence == DEAD or (presence == ABSENT and now - claim.created > STALE_AFTER)


def take(store: ClaimStore, kind: str, value: str, gateway: str, payload: bytes | None = None,
         clock: Callable[[], float] = time.time, deadline: float | None = None) -> Claim | None:
    """Claim `value` for `gateway`; None when someone else holds it (a stale claim is taken back first)."""
    name = claim_name(kind, value)
    for _ in range(2):
        try:
            return store.create(name, claim_labels(kind, value, gateway, deadline), payload)
        except ClaimTaken as taken:
            if taken.existing is None or not is_stale(taken.existing, store, clock()):
                return None
            store.remove(taken.existing.id)
    return None


def abandoned_leases(store: ClaimStore, clock: Callable[[], float] = time.time) -> list[Claim]:
    """Launch leases past their deadline: launches that died without unwinding."""
    now = clock()
    return [claim for claim in store.list() if claim.kind == LAUNCH and is_stale(claim, store, now)]


def live_claims(store: ClaimStore, clock: Callable[[], float] = time.time) -> list[Claim]:
    """Claims that still count (stale ones are left for `take` to remove)."""
    now = clock()
    return [claim for claim in store.list() if not is_stale(claim, store, now)]


def release(store: ClaimStore, claims: Iterable[Claim]) -> None:
    """Remove these claims (by id)."""
    for claim in claims:
        store.remove(claim.id)


def release_lease(store: ClaimStore, gateway: str) -> None:
    """The launch of `gateway` is over (its gateway is ready, or started without waiting): drop its lease."""
    release(store, [claim for claim in store.list() if claim.kind == LAUNCH and claim.gateway == gateway])


def release_gateway(store: ClaimStore, gateway: str, leases: bool = False) -> list[Claim]:
    """Remove every claim made for `gateway` (its `stop`, or a new launch under the name of a dead one); its launch
    lease too only with `leases` (a launch in progress keeps its own)."""
    mine = [claim for claim in store.list() if claim.gateway == gateway and (leases or claim.kind != LAUNCH)]
    release(store, mine)
    return mine
