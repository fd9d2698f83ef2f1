"""Gateways on the 3-node swarm lab through the real CLI: placement over workers, the engine-kept account claims under
a race through two managers, a real call to a gateway on a worker node (behind its NAT), node loss, no secret
anywhere, and a CLI driving a remote worker engine over tcp (the single-engine backend).

The test bed (Kamailio with the NAT relay, Janus rooms) runs on this host's bridge address, which gateways inside
the worker nodes reach through their node's NAT, as in a cloud.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import docker
import pytest

from sipmediagw import labels
from sipmediagw.demo import CALLER_TONE, ROOM_TONE, run_test_call
from sipmediagw.testbed import swarmlab
from sipmediagw.testbed.network import free_port, free_port_range
from sipmediagw.testbed.stack import LocalStack

PROJECT = Path(__file__).resolve().parents[2]
WORKERS_ONLY = "node.labels.sipmediagw==yes"  # the lab labels its two worker nodes


def close_to(hz: float | None, expected: float, tolerance: float = 0.05) -> bool:
    return hz is not None and abs(hz - expected) <= expected * tolerance


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lab: swarmlab.Lab) -> Iterator[LocalStack]:
    """Kamailio (4 gateway accounts, NAT handling + RTP relay) and Janus rooms on this host's bridge address."""
    workdir = tmp_path_factory.mktemp("swarm-stack")
    probe = LocalStack(workdir)
    local = LocalStack(workdir, gateways=4, callers=1, sip_port=free_port_range(probe.ip),
                       janus_http_port=free_port(probe.ip), janus_web_port=free_port(probe.ip), nat_relay=True)
    with local:
        yield local


class SwarmCli:
    """The real `sipmediagw` CLI with a settings file for the lab; remembers what it launched to stop it."""

    def __init__(self, workdir: Path, lab: swarmlab.Lab, stack: LocalStack, **extra: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "sipmediagw.yaml"
        settings = {
            "image": lab.image, "accounts_file": str(stack.accounts_file()), "logs_dir": str(workdir / "logs"),
            "platform": "janus", "base_url": stack.base_url, "media": "userspace",
            # 4 gateways fit on one 2-core worker: what a test places is decided by spreading, not by room
            "cpu_per_gateway": 0.5, "memory_per_gateway": "512M", "ready_timeout": 240, **extra,
        }
        self.config.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items()))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPMEDIAGW_", "DOCKER_HOST"))}

    def run(self, *args: str, docker_host: str | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
        env = dict(self.env, **({"DOCKER_HOST": docker_host} if docker_host else {}))
        return subprocess.run([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                              env=env, capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, docker_host: str | None = None) -> subprocess.Popen:
        env = dict(self.env, **({"DOCKER_HOST": docker_host} if docker_host else {}))
        return subprocess.Popen([sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ok(self, *args: str, docker_host: str | None = None) -> subprocess.CompletedProcess:
        result = self.run(*args, docker_host=docker_host)
        assert result.returncode == 0, f"sipmediagw {' '.join(args)} -> {result.returncode}\n{result.stdout}\n" \
                                       f"{result.stderr}"
        return result

    def status(self, docker_host: str | None = None) -> dict:
        return json.loads(self.ok("status", "--json", "--no-stats", docker_host=docker_host).stdout)

    def gateways(self, docker_host: str | None = None) -> dict[str, dict]:
        return {g["name"]: g for g in self.status(docker_host)["gateways"]}


@pytest.fixture
def swarm_cli(tmp_path: Path, lab: swarmlab.Lab, stack: LocalStack) -> Iterator[SwarmCli]:
    """The CLI on the manager with the swarm backend; every gateway left is stopped (services, secrets, claims)."""
    cli = SwarmCli(tmp_path, lab, stack, backend="swarm", constraints=[WORKERS_ONLY])
    yield cli
    result = cli.run("stop", "--all", "--timeout", "5")
    assert result.returncode == 0, result.stderr


def manager() -> docker.DockerClient:
    return docker.from_env(timeout=60)


def claim_secrets(client: docker.DockerClient) -> list[dict]:
    return client.api.secrets(filters={"label": labels.CLAIM})


def test_three_launches_spread_over_the_worker_nodes_and_status_shows_them(swarm_cli: SwarmCli,
                                                                           lab: swarmlab.Lab) -> None:
    for name in ("spread-1", "spread-2", "spread-3"):
        out = swarm_cli.ok("launch", "-r", "1234", "-g", name)
        assert f"gateway {name} ready" in out.stdout and ", on worker-" in out.stdout, out.stdout
    gateways = swarm_cli.gateways()
    nodes = {gateways[name]["node"] for name in ("spread-1", "spread-2", "spread-3")}
    assert nodes <= {w.hostname for w in lab.workers} and len(nodes) == 2, gateways
    assert all(gateways[name]["state"] == "ready" for name in gateways), gateways
    table = swarm_cli.ok("status", "--no-stats").stdout
    assert "NODE" in table.splitlines()[0] and all(node in table for node in nodes), table
    # each service carries the budget as reservations and limits, a bounded restart policy and the stop grace
    client = manager()
    spec = client.api.inspect_service("sipmediagw-spread-1")["Spec"]
    resources = spec["TaskTemplate"]["Resources"]
    assert resources["Reservations"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 512 * 1024**2}
    assert resources["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 512 * 1024**2, "Pids": 512}
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "on-failure"
    assert spec["TaskTemplate"]["RestartPolicy"]["MaxAttempts"] == 3
    assert spec["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 20 * 10**9
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == [WORKERS_ONLY]


@pytest.fixture
def second_manager(lab: swarmlab.Lab) -> Iterator[swarmlab.LabWorker]:
    """worker-1 promoted to manager for one test (demoted after it): a second place a CLI can drive the swarm from."""
    worker = lab.workers[0]
    client = manager()
    client.api.update_node(worker.node_id, client.api.inspect_node(worker.node_id)["Version"]["Index"],
                           {**client.api.inspect_node(worker.node_id)["Spec"], "Role": "manager"})
    deadline = time.monotonic() + 60
    while not swarmlab.engine_client(worker.docker_host).info()["Swarm"].get("ControlAvailable"):
        assert time.monotonic() < deadline, f"{worker.name} did not become a manager"
        time.sleep(0.5)  # the promotion takes effect asynchronously: poll the node's own view
    try:
        yield worker
    finally:
        node = client.api.inspect_node(worker.node_id)
        client.api.update_node(worker.node_id, node["Version"]["Index"], {**node["Spec"], "Role": "worker"})


def test_twenty_concurrent_launches_for_four_accounts_through_two_managers(swarm_cli: SwarmCli,
                                                                          second_manager: swarmlab.LabWorker) -> None:
    processes = [swarm_cli.popen("launch", "-r", "1234", "-g", f"race-{i}", "--no-wait",
                                 docker_host=second_manager.docker_host if i % 2 else None) for i in range(20)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    won = [r for r in results if r[0] == 0]
    lost = [r for r in results if r[0] != 0]
    assert len(won) == 4, [r[2][-400:] for r in results]
    assert len(lost) == 16
    for code, _, stderr in lost:
        assert code == 3 and "no free SIP account: all 4 account(s) are in use" in stderr, stderr
        assert "Traceback" not in stderr
    services = manager().api.services(filters={"label": f"{labels.MANAGED}=true"})
    accounts = [s["Spec"]["Labels"][labels.ACCOUNT] for s in services]
    assert len(services) == 4 and len(set(accounts)) == 4, accounts
    claims = claim_secrets(manager())
    assert sorted(c["Spec"]["Labels"][labels.CLAIM_VALUE] for c in claims) == sorted(accounts)


def test_a_call_to_a_gateway_on_a_worker_node_carries_media_both_ways(swarm_cli: SwarmCli, stack: LocalStack,
                                                                      lab: swarmlab.Lab, tmp_path: Path) -> None:
    # a call needs its whole budget (the default, 1.3 cores: docs/benchmarks.md); it is also the task's CPU limit
    cli = SwarmCli(tmp_path / "cli", lab, stack, backend="swarm", constraints=[WORKERS_ONLY], cpu_per_gateway=1.3,
                   memory_per_gateway="768M")
    out = cli.ok("launch", "-r", "1234", "-g", "far")  # swarm_cli's finalizer stops it
    gateway = cli.gateways()["far"]
    [worker] = [w for w in lab.workers if w.hostname == gateway["node"]]
    relay = stack.rtpengine
    assert relay is not None
    streams = []

    def while_in_call() -> None:
        calls = relay.calls()
        assert len(calls) == 1, calls
        streams.extend(relay.streams(calls[0]))

    report = run_test_call(stack, gateway["sip_uri"], "1234", tmp_path / "call", during_call=while_in_call)
    logs = cli.run("logs", "far", "--tail", "80").stdout
    assert report.answered_after is not None, logs
    assert report.room_hears_caller and close_to(report.room_audio_hz, CALLER_TONE), f"{report.problems()}\n{logs}"
    assert report.caller_hears_room and close_to(report.caller_audio_hz, ROOM_TONE), f"{report.problems()}\n{logs}"
    assert report.room_video_changing and report.caller_video_changing, f"{report.problems()}\n{logs}"
    # The gateway's SDP named its address inside the node (private, unreachable from here); the relay beside
    # Kamailio latched on to where its RTP really came from: the worker node's address, i.e. through its NAT.
    from_gateway = [s for s in streams if s.endpoint.startswith(f"{worker.address}:")]
    assert {s.media for s in from_gateway} == {"audio", "video"}, streams
    assert all(not s.advertised.startswith(f"{worker.address}:") for s in from_gateway), streams
    assert all(s.packets > 0 for s in from_gateway), streams


def test_a_gateway_whose_node_dies_is_ready_on_another_node_within_90_s(swarm_cli: SwarmCli,
                                                                        lab: swarmlab.Lab) -> None:
    swarm_cli.ok("launch", "-r", "1234", "-g", "mover")
    first = swarm_cli.gateways()["mover"]["node"]
    [victim] = [w for w in lab.workers if w.hostname == first]
    swarmlab.stop_worker_engine(victim)
    try:
        killed = time.monotonic()
        while True:
            gateway = swarm_cli.gateways().get("mover", {})
            if gateway.get("state") == "ready" and gateway.get("node") not in (None, first):
                break
            assert time.monotonic() - killed < 90, f"not ready elsewhere 90 s after {first} died: {gateway}"
            time.sleep(1)  # Swarm reschedules on its own clock: poll what `status` says
        moved_after = time.monotonic() - killed
        print(f"\nmover: ready on {gateway['node']} {moved_after:.1f} s after {first}'s engine was killed")
        assert f"moved from {first}" in (gateway.get("note") or ""), gateway
        assert f"mover: moved from {first}" in swarm_cli.ok("status", "--no-stats").stdout
    finally:
        swarmlab.start_worker_engine(victim)


def test_stop_removes_service_secret_and_claims_and_no_password_shows_anywhere(swarm_cli: SwarmCli,
                                                                             stack: LocalStack) -> None:
    swarm_cli.ok("launch", "-r", "1234", "-g", "secretive")
    client = manager()
    service = client.api.inspect_service("sipmediagw-secretive")
    tasks = client.api.tasks(filters={"service": service["ID"]})
    [secret_ref] = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert secret_ref["File"] == {"Name": "sipmediagw-account", "UID": "10001", "GID": "10001", "Mode": 0o400}
    shown = [json.dumps(service), json.dumps(tasks), json.dumps(client.api.inspect_secret(secret_ref["SecretID"])),
             swarm_cli.ok("status").stdout, swarm_cli.ok("status", "--json").stdout,
             swarm_cli.ok("logs", "secretive", "--tail", "2000").stdout]
    for user in stack.gateway_users:
        assert all(user.password not in text for text in shown)
    swarm_cli.ok("stop", "secretive")
    assert client.api.services(filters={"name": "sipmediagw-secretive"}) == []
    assert [s for s in claim_secrets(client) if s["Spec"]["Labels"][labels.GATEWAY] == "secretive"] == []
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_secret(secret_ref["SecretID"])


def test_doctor_reports_the_swarm_nodes_capacity_and_the_image_in_the_registry(swarm_cli: SwarmCli,
                                                                             lab: swarmlab.Lab) -> None:
    out = swarm_cli.run("doctor").stdout
    assert "[ ok ] swarm: 1 manager(s), 2 worker(s), all ready" in out, out
    for worker in lab.workers:
        assert f"node {worker.hostname}: worker, ready, active" in out, out
    assert f"image {lab.image} in its registry" in out, out
    assert "gateway(s) can run on this swarm's nodes" in out, out


def test_a_cli_drives_a_remote_worker_engine_over_tcp(tmp_path: Path, lab: swarmlab.Lab, stack: LocalStack) -> None:
    """The single-engine backend against another machine's engine: no host folder is shared, all goes through the
    API (readiness, status, logs, stop). auto picks the engine backend: a worker is not a swarm manager."""
    worker = lab.workers[1]
    cli = SwarmCli(tmp_path, lab, stack)
    try:
        out = cli.ok("launch", "-r", "1234", "-g", "remote", docker_host=worker.docker_host)
        assert "gateway remote ready" in out.stdout and "engine backend" in out.stderr, out.stderr
        gateway = cli.gateways(worker.docker_host)["remote"]
        assert gateway["state"] == "ready" and gateway["node"] == worker.hostname, gateway
        logs = cli.ok("logs", "remote", "--tail", "200", docker_host=worker.docker_host).stdout
        assert "gateway ready" in logs, logs
        remote = swarmlab.engine_client(worker.docker_host)
        [container] = remote.containers.list(filters={"label": f"{labels.GATEWAY}=remote"})
        assert not container.attrs["HostConfig"]["Binds"], "a remote engine must get no bind mount of our folders"
        cli.ok("stop", "remote", docker_host=worker.docker_host)
        assert remote.containers.list(all=True, filters={"label": f"{labels.GATEWAY}=remote"}) == []
        assert remote.containers.list(all=True, filters={"label": labels.CLAIM}) == []
    finally:
        cli.run("stop", "--all", "--timeout", "0", docker_host=worker.docker_host)
