"""CPU/memory admission arithmetic."""

import pytest

from sipmediagw.errors import ResourceError
from sipmediagw.resources import Budget, HostResources, admit, capacity, human_bytes, sample_host

GIB = 1024**3


@pytest.mark.parametrize("cpus,mem,budget,fits", [
    (2, 24 * GIB, Budget(0.7, GIB // 2), 2),
    (2, 24 * GIB, Budget(0.5, GIB // 2), 4),
    (64, 2 * GIB, Budget(0.5, GIB // 2), 4),  # memory bound
    (1, GIB, Budget(2.0, GIB), 0),
])
def test_capacity(cpus, mem, budget, fits):
    assert capacity(budget, HostResources(cpus, mem, mem)) == fits


def test_admit_allows_until_capacity():
    host = HostResources(2, 24 * GIB, 20 * GIB)
    admit(Budget(0.5, GIB), host, running=3)
    with pytest.raises(ResourceError, match="4 gateway\\(s\\) running, the host fits 4"):
        admit(Budget(0.5, GIB), host, running=4)


def test_sample_host_reads_this_machine():
    host = sample_host()
    assert host.cpu_count >= 1 and host.memory_total >= host.memory_available > 0


def test_human_bytes():
    assert human_bytes(512 * 1024**2) == "512.0 MiB" and human_bytes(100) == "100 B"
