"""Who holds what, and picking a free slot + SIP account for a new gateway.

What is held is read from the engine: the labels of gateways that still hold resources (containers created,
running or paused; swarm services) and the live claims (sipmediagw/claims.py). `allocate` only *proposes*; the
launcher then claims the proposal through the engine, which settles races between concurrent launches, and asks
again when it lost one.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

from . import labels
from .accounts import Account
from .devices import Discovery, Slot
from .errors import ConfigError, ResourceError
from .resources import Budget, HostResources, admit, capacity


@dataclasses.dataclass(frozen=True)
class Holding:
    """What one live gateway container holds, according to its labels."""

    gateway: str
    slot: int | None
    account: str
    media: str


@dataclasses.dataclass(frozen=True)
class Allocation:
    """The resources picked for a new gateway."""

    media: str
    slot: int
    account: Account
    device_slot: Slot | None  # kernel mode only


def holding_from_labels(container_labels: Mapping[str, str]) -> Holding:
    """Read a Holding from a container's labels (a missing or odd slot label holds no slot)."""
    raw_slot = container_labels.get(labels.SLOT, "")
    return Holding(
        gateway=container_labels.get(labels.GATEWAY, ""),
        slot=int(raw_slot) if raw_slot.isdigit() else None,
        account=container_labels.get(labels.ACCOUNT, ""),
        media=container_labels.get(labels.MEDIA, ""),
    )


def choose_media(requested: str, discovery: Discovery) -> str:
    """``auto`` -> kernel when at least one device slot exists, else userspace."""
    if requested == "auto":
        return "kernel" if discovery.slots else "userspace"
    if requested not in ("kernel", "userspace"):
        raise ConfigError(f"media must be auto, kernel or userspace, not {requested!r}")
    return requested


def slot_indices(media: str, accounts: Sequence[Account], discovery: Discovery, fits: int) -> list[int]:
    """All slots of a media mode: kernel = discovered device slots; userspace = one per account, capped by `fits`."""
    if media == "kernel":
        return [slot.index for slot in discovery.slots]
    return list(range(min(len(accounts), fits)))


@dataclasses.dataclass(frozen=True)
class FreeResources:
    """Free slots (of the media mode) and free accounts."""

    media: str
    slots: list[int]
    accounts: list[Account]


def free_resources(
    media: str,
    accounts: Sequence[Account],
    discovery: Discovery,
    holdings: Iterable[Holding],
    budget: Budget,
    host: HostResources | None,
) -> FreeResources:
    """What is left once the holdings are taken away; slots are also capped by CPU/memory capacity (`host` None: a
    scheduler admits gateways, as Swarm does, and every account has a slot)."""
    holdings = list(holdings)
    fits = capacity(budget, host) if host is not None else len(accounts) + len(holdings)
    held_slots = {h.slot for h in holdings if h.media == media and h.slot is not None}
    held_accounts = {h.account for h in holdings}
    slots = [s for s in slot_indices(media, accounts, discovery, fits) if s not in held_slots]
    slots = slots[: max(0, fits - len(holdings))]
    return FreeResources(media, slots, [a for a in accounts if a.sip_uri not in held_accounts])


def allocate(
    media: str,
    accounts: Sequence[Account],
    discovery: Discovery,
    holdings: Iterable[Holding],
    budget: Budget,
    host: HostResources | None,
) -> Allocation:
    """Pick the lowest free slot and the first free account; ResourceError says exactly what is missing. `host`
    None: no admission here (a scheduler does it)."""
    holdings = list(holdings)
    if not accounts:
        raise ResourceError("the accounts file has no account line: one SIP account is needed per gateway")
    held_accounts = {h.account for h in holdings}
    free_accounts = [a for a in accounts if a.sip_uri not in held_accounts]
    if not free_accounts:
        users = ", ".join(sorted(h.gateway for h in holdings if h.account)) or "-"
        raise ResourceError(f"no free SIP account: all {len(accounts)} account(s) are in use (gateways: {users})")
    fits = capacity(budget, host) if host is not None else len(accounts)
    all_slots = slot_indices(media, accounts, discovery, fits)
    if media == "kernel" and not all_slots:
        raise ResourceError(
            "kernel media mode needs snd-aloop and v4l2loopback devices and none were found "
            "(run `sipmediagw doctor` for the modprobe lines, or use --media userspace)"
        )
    held_slots = {h.slot for h in holdings if h.media == media and h.slot is not None}
    free_slots = [s for s in all_slots if s not in held_slots]
    if host is not None:
        # gateways, not holdings: a launch that lost a race is remembered once per lost account or slot
        admit(budget, host, running=len({h.gateway for h in holdings}))
    if not free_slots:
        raise ResourceError(f"no free {media} slot: all {len(all_slots)} slot(s) are in use")
    slot = free_slots[0]
    device_slot = next((s for s in discovery.slots if s.index == slot), None) if media == "kernel" else None
    return Allocation(media, slot, free_accounts[0], device_slot)
