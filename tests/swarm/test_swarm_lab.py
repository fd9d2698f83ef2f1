"""The one-machine swarm lab itself: three Ready nodes, worker engines on TCP, the registry's image on every worker,
node loss and recovery. Every other swarm test relies on these facts."""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
from typing import Any

import docker
import pytest

from sipmediagw.testbed import swarmlab

pytestmark = pytest.mark.swarm


def _nodes() -> list[dict[str, Any]]:
    with contextlib.closing(docker.from_env(timeout=60)) as client:
        return [node.attrs for node in client.nodes.list()]


def test_three_nodes_ready_one_manager_two_labelled_workers(lab: swarmlab.Lab) -> None:
    nodes = _nodes()
    assert len(nodes) == 3, [n["Description"]["Hostname"] for n in nodes]
    assert all(n["Status"]["State"] == "ready" for n in nodes), [(n["Description"]["Hostname"], n["Status"]["State"])
                                                                 for n in nodes]
    managers = [n for n in nodes if n["Spec"]["Role"] == "manager"]
    workers = {n["ID"]: n for n in nodes if n["Spec"]["Role"] == "worker"}
    assert len(managers) == 1 and len(workers) == 2
    assert managers[0]["ManagerStatus"]["Leader"] is True
    assert {w.node_id for w in lab.workers} == set(workers)
    for worker in lab.workers:
        node = workers[worker.node_id]
        assert node["Description"]["Hostname"] == worker.hostname == worker.name
        assert node["Spec"]["Labels"].get("sipmediagw") == "yes"
    assert [w.name for w in lab.workers] == ["worker-1", "worker-2"]
    assert swarmlab.current() == lab


def test_worker_engine_answers_over_tcp(lab: swarmlab.Lab) -> None:
    for worker in lab.workers:
        assert worker.docker_host == f"tcp://{worker.address}:{swarmlab.ENGINE_PORT}"
        with contextlib.closing(docker.DockerClient(base_url=worker.docker_host, timeout=30)) as client:
            info = client.info()
            assert info["Name"] == worker.hostname
            assert info["Swarm"]["LocalNodeState"] == "active"
            assert info["Swarm"]["NodeID"] == worker.node_id
            assert info["Swarm"]["ControlAvailable"] is False
            # the registry is verified over TLS with its certificate, not declared insecure
            assert lab.registry not in info["RegistryConfig"]["IndexConfigs"], info["RegistryConfig"]
            # its own bridge, apart from the host's 172.17.0.0/16 the node sits on
            bridge = client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]
            assert bridge.startswith("10.201."), bridge


def test_registry_serves_the_gateway_image_to_every_worker(lab: swarmlab.Lab, current_gateway_image: str) -> None:
    assert swarmlab.REPOSITORY in swarmlab.registry_repositories()
    with pytest.raises(urllib.error.URLError):  # HTTPS only, and with a certificate no public CA signed
        urllib.request.urlopen(f"https://{lab.registry}/v2/", timeout=10)
    assert "latest" in swarmlab.registry_tags()
    served = swarmlab.registry_digest()
    assert served and served.startswith("sha256:")
    with contextlib.closing(docker.from_env(timeout=60)) as host:
        source_id = host.images.get(current_gateway_image).id
        assert host.images.get(lab.image).id == source_id  # the manager has the nodes' name without a pull
        # the manager reads the registry itself (TLS, its certificate in certs.d): Swarm pins the digest it serves
        assert host.images.get_registry_data(lab.image).id == served
    for worker in lab.workers:
        with contextlib.closing(docker.DockerClient(base_url=worker.docker_host, timeout=60)) as client:
            image = client.images.get(lab.image)
            assert image.id == source_id  # same config digest: the very image built from this tree
            assert f"{lab.registry}/{swarmlab.REPOSITORY}@{served}" in image.attrs["RepoDigests"]


def test_up_again_reuses_the_lab(lab: swarmlab.Lab, current_gateway_image: str) -> None:
    lines: list[str] = []
    started = time.monotonic()
    again = swarmlab.up(current_gateway_image, progress=lines.append)
    took = time.monotonic() - started
    print(f"up on a lab already up: {took:.1f} s", *lines, sep="\n  ")
    assert again == lab
    assert not any(line.startswith(("building", "registry started", "swarm created")) for line in lines), lines


def test_stopped_worker_engine_is_down_then_ready_again(lab: swarmlab.Lab) -> None:
    worker = lab.workers[-1]
    started = time.monotonic()
    swarmlab.stop_worker_engine(worker)
    try:
        killed = time.monotonic() - started
        assert not swarmlab.engine_answers(worker.docker_host)
        down_after = swarmlab.wait_node_state(worker.node_id, "down", timeout=60)
        others = [n for n in _nodes() if n["ID"] != worker.node_id]
        assert all(n["Status"]["State"] == "ready" for n in others)
    finally:
        restarted = time.monotonic()
        swarmlab.start_worker_engine(worker)
    ready_after = time.monotonic() - restarted
    print(f"\n{worker.name}: engine killed in {killed:.1f} s, node Down {down_after:.1f} s later, "
          f"Ready {ready_after:.1f} s after the restart")
    assert swarmlab.node_state(worker.node_id) == "ready"
    assert swarmlab.engine_answers(worker.docker_host)
    assert swarmlab.current() == lab  # same node, same address
