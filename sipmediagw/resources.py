"""CPU/memory admission with psutil against a per-gateway budget.

Capacity is counted, not sampled: a host with C cores fits floor(C / cpu_per_gateway) gateways whatever the load at
this instant (CPU use of idle gateways jumps when a call starts). Memory is checked both ways: the total bounds the
capacity and the memory available right now must hold one more gateway.
"""

from __future__ import annotations

import dataclasses
import math

import psutil

from .errors import ResourceError


@dataclasses.dataclass(frozen=True)
class Budget:
    """What one gateway is expected to use."""

    cpu: float  # cores
    memory: int  # bytes


@dataclasses.dataclass(frozen=True)
class HostResources:
    """What the host has."""

    cpu_count: int
    memory_total: int
    memory_available: int


def sample_host() -> HostResources:
    """Read the host's CPU count and memory with psutil."""
    memory = psutil.virtual_memory()
    return HostResources(psutil.cpu_count(logical=True) or 1, memory.total, memory.available)


def capacity(budget: Budget, host: HostResources) -> int:
    """How many gateways fit on `host` in total."""
    by_cpu = math.floor(host.cpu_count / budget.cpu + 1e-9)
    by_memory = host.memory_total // budget.memory
    return max(0, min(by_cpu, by_memory))


def human_bytes(value: int) -> str:
    """1536 * 1024**2 -> '1.5 GiB'."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def admit(budget: Budget, host: HostResources, running: int) -> None:
    """Raise ResourceError unless one more gateway fits next to `running` ones."""
    fits = capacity(budget, host)
    if running >= fits:
        raise ResourceError(
            f"no CPU/memory headroom: {running} gateway(s) running, the host fits {fits} "
            f"({host.cpu_count} cores / {budget.cpu:g} per gateway, {human_bytes(host.memory_total)} / "
            f"{human_bytes(budget.memory)} per gateway); stop a gateway or lower cpu_per_gateway/memory_per_gateway"
        )
    if host.memory_available < budget.memory:
        raise ResourceError(
            f"not enough free memory: {human_bytes(host.memory_available)} available, a gateway needs "
            f"{human_bytes(budget.memory)} (memory_per_gateway)"
        )
