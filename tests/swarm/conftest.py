"""Fixtures of the swarm tier: the one-machine lab (sipmediagw/testbed/swarmlab.py), up once for tests/swarm.

`lab` is package-scoped (tests/swarm is a package, see __init__.py: without it "package" would mean the whole
session) and its finalizer takes the lab down, so after tests/swarm this engine is a plain engine again, as the other
tiers assume. Every test here is marked `swarm`. When a test fails, the nodes' states and the tail of each worker
engine's log are printed with its report.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Generator, Iterator

import docker
import docker.errors
import pytest

from sipmediagw.testbed import swarmlab

SWARM_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker must already be there
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `swarm` every test under tests/swarm/: a new file there cannot be missed."""
    for item in items:
        if item.path.resolve().is_relative_to(SWARM_DIR):
            item.add_marker(pytest.mark.swarm)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, for the failure dump below."""
    report: pytest.TestReport = yield
    setattr(item, f"swarm_report_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def lab(current_gateway_image: str) -> Iterator[swarmlab.Lab]:
    """The lab, up (reused if it already is) with the gateway image built from this tree; taken down at the end."""
    try:
        yield swarmlab.up(current_gateway_image, progress=lambda line: print(f"[swarm-lab] {line}"))
    finally:
        swarmlab.down(progress=lambda line: print(f"[swarm-lab] {line}"))


@pytest.fixture(autouse=True)
def swarm_dump_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """On a failed test, print what the manager sees of the nodes and the tail of every worker engine's log."""
    yield
    report = getattr(request.node, "swarm_report_call", None)
    if report is None or not report.failed:
        return
    print("\n--- swarm lab at failure ---")
    client = docker.from_env(timeout=30)
    with contextlib.closing(client):
        try:
            for node in client.nodes.list():
                attrs = node.attrs
                print(f"node {attrs['Description'].get('Hostname')} {node.id[:12]} {attrs['Spec'].get('Role')} "
                      f"{attrs['Status'].get('State')} {attrs['Status'].get('Addr')}")
        except docker.errors.APIError as exc:
            print(f"(no node list: {exc})")
        for container in client.containers.list(all=True, filters={"label": f"{swarmlab.ROLE_LABEL}=worker"}):
            print(f"--- {container.name} ({container.status}): {swarmlab.ENGINE_LOG} ---")
            if container.status == "running":
                print(container.exec_run(["tail", "-n", "40", swarmlab.ENGINE_LOG]).output.decode(errors="replace"))
