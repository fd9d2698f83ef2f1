"""Allocation from label-derived holdings, admission, and the host-wide flock."""

import multiprocessing
import os
from pathlib import Path

import pytest

from sipmediagw import labels
from sipmediagw.accounts import parse_accounts
from sipmediagw.allocator import (Holding, allocate, choose_media, free_resources, holding_from_labels)
from sipmediagw.devices import discover
from sipmediagw.errors import ResourceError
from sipmediagw.resources import Budget, HostResources

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ACCOUNTS = parse_accounts("".join(f"<sip:gw{i}@h>;auth_pass=p{i}\n" for i in range(4)), "acc")
BIG_HOST = HostResources(cpu_count=64, memory_total=256 * 1024**3, memory_available=200 * 1024**3)
BUDGET = Budget(cpu=0.5, memory=512 * 1024**2)
NO_DEVICES = discover(FIXTURES / "sysroot-empty")
FOUR_SLOTS = discover(FIXTURES / "sysroot-4slots")


def held(gateway, slot, account, media="userspace"):
    return Holding(gateway, slot, account, media)


def test_first_gateway_gets_slot_zero_and_first_account():
    allocation = allocate("userspace", ACCOUNTS, NO_DEVICES, [], BUDGET, BIG_HOST)
    assert (allocation.slot, allocation.account.sip_uri, allocation.device_slot) == (0, "sip:gw0@h", None)


def test_held_slot_and_account_are_skipped():
    holdings = [held("a", 0, "sip:gw0@h"), held("b", 2, "sip:gw1@h")]
    allocation = allocate("userspace", ACCOUNTS, NO_DEVICES, holdings, BUDGET, BIG_HOST)
    assert (allocation.slot, allocation.account.sip_uri) == (1, "sip:gw2@h")


def test_no_free_account():
    holdings = [held(f"g{i}", i, f"sip:gw{i}@h") for i in range(4)]
    with pytest.raises(ResourceError, match="no free SIP account: all 4"):
        allocate("userspace", ACCOUNTS, NO_DEVICES, holdings, BUDGET, BIG_HOST)


def test_no_accounts_at_all():
    with pytest.raises(ResourceError, match="no account line"):
        allocate("userspace", [], NO_DEVICES, [], BUDGET, BIG_HOST)


def test_userspace_slots_are_capped_by_cpu_budget():
    small = HostResources(cpu_count=2, memory_total=8 * 1024**3, memory_available=8 * 1024**3)
    holdings = [held("a", 0, "sip:gw0@h"), held("b", 1, "sip:gw1@h")]
    with pytest.raises(ResourceError, match="no CPU/memory headroom: 2 gateway\\(s\\) running, the host fits 2"):
        allocate("userspace", ACCOUNTS, NO_DEVICES, holdings, Budget(1.0, 512 * 1024**2), small)


def test_memory_available_now_is_checked():
    tight = HostResources(cpu_count=8, memory_total=8 * 1024**3, memory_available=100 * 1024**2)
    with pytest.raises(ResourceError, match="not enough free memory"):
        allocate("userspace", ACCOUNTS, NO_DEVICES, [], BUDGET, tight)


def test_kernel_mode_uses_device_slots():
    holdings = [held("a", 0, "sip:gw0@h", "kernel")]
    allocation = allocate("kernel", ACCOUNTS, FOUR_SLOTS, holdings, BUDGET, BIG_HOST)
    assert allocation.slot == 1 and [c.index for c in allocation.device_slot.cards] == [2, 3]


def test_kernel_mode_without_devices_says_how_to_fix():
    with pytest.raises(ResourceError, match="doctor"):
        allocate("kernel", ACCOUNTS, NO_DEVICES, [], BUDGET, BIG_HOST)


def test_kernel_slots_exhausted():
    one = discover(FIXTURES / "sysroot-1slot")
    with pytest.raises(ResourceError, match="no free kernel slot"):
        allocate("kernel", ACCOUNTS, one, [held("a", 0, "sip:gw0@h", "kernel")], BUDGET, BIG_HOST)


def test_choose_media_auto():
    assert choose_media("auto", FOUR_SLOTS) == "kernel"
    assert choose_media("auto", NO_DEVICES) == "userspace"
    assert choose_media("userspace", FOUR_SLOTS) == "userspace"


def test_free_resources_counts():
    holdings = [held("a", 0, "sip:gw0@h")]
    free = free_resources("userspace", ACCOUNTS, NO_DEVICES, holdings, BUDGET, BIG_HOST)
    assert free.slots == [1, 2, 3] and [a.sip_uri for a in free.accounts] == ["sip:gw1@h", "sip:gw2@h", "sip:gw3@h"]


def test_holding_from_labels_tolerates_odd_slot():
    holding = holding_from_labels({labels.GATEWAY: "g", labels.SLOT: "x", labels.ACCOUNT: "sip:a@h"})
    assert holding == Holding("g", None, "sip:a@h", "")
