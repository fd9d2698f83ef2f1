"""The host CLI against a real Docker daemon: launch, status, logs, stop, allocation races, cleanup, secrets."""

from __future__ import annotations

import json
import signal
import time
from typing import Iterator

import docker
import pytest

from sipmediagw import dockerops, labels, seccomp
from sipmediagw.launcher import LEASE_MARGIN


pytestmark = pytest.mark.docker

SECRETS = ("SECRETpw", "STUNsecret")  # substrings of every password in the test accounts (conftest.account_lines)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password ({secret}...) leaked into {where}"


def test_launch_status_logs_stop_round_trip(make_host):
    host = make_host(accounts=2)
    launched = host.run("launch", "-r", "room-one", "-g", "rt-gw1")
    assert launched.returncode == 0, launched.stderr
    assert "call: sip:gw1@127.0.0.1" in launched.stdout
    assert "ready" in launched.stderr  # visible progress

    status = host.status()
    [gateway] = status["gateways"]
    assert gateway["name"] == "rt-gw1"
    assert gateway["state"] == "ready"
    assert (gateway["room"], gateway["platform"], gateway["media"]) == ("room-one", "janus", "userspace")
    assert (gateway["sip_uri"], gateway["slot"]) == ("sip:gw1@127.0.0.1", 0)
    assert (status["free_slots"], status["free_accounts"]) == (1, 1)

    table = host.run("status")
    assert table.returncode == 0 and "rt-gw1" in table.stdout and "ready" in table.stdout

    [container] = host.containers()
    assert container.name == "sipmediagw-rt-gw1"
    # the account reached the container as a file only the container user (10001) can read
    code, out = container.exec_run(["stat", "-c", "%u %g %a", "/run/secrets/sipmediagw-account"])
    assert (code, out.decode().strip()) == (0, "10001 10001 400")
    host_config = container.attrs["HostConfig"]
    assert host_config["Init"] is True and host_config["ShmSize"] == 256 * 1024**2
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["SecurityOpt"] == ["no-new-privileges", seccomp.security_opt()]  # Chromium's sandbox needs it
    assert container.attrs["Config"]["StopTimeout"] == 20
    binds = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert binds["/var/log/sipmediagw"]["RW"] is True
    assert binds["/opt/sipmediagw/browsing"]["RW"] is False and binds["/opt/sipmediagw/baresip/config_default"]["RW"] is False
    # of baresip/ (where the accounts file usually lives) only the template is visible to the gateway
    assert "/opt/sipmediagw/baresip" not in binds

    logs = host.run("logs", "rt-gw1")
    assert logs.returncode == 0 and "REGISTER_OK sip:gw1@127.0.0.1" in logs.stdout

    # nothing secret anywhere an operator or `docker inspect` can see
    assert_no_secret(json.dumps(container.attrs), "docker inspect")
    assert_no_secret(json.dumps(container.labels), "labels")
    assert_no_secret(table.stdout + json.dumps(status) + launched.stdout + launched.stderr, "launch/status output")
    assert_no_secret(logs.stdout + dockerops.container_logs(container, 100), "logs")

    stopped = host.run("stop", "rt-gw1")
    assert stopped.returncode == 0, stopped.stderr
    assert host.containers() == []
    assert host.status()["gateways"] == []
    # the gateway saw SIGTERM and shut down on its own (exit 0 path of the stub/gateway)
    assert "SIGTERM" in (host.logs_dir / "rt-gw1" / "app.log").read_text() or "stopping" in \
        (host.logs_dir / "rt-gw1" / "app.log").read_text()


def test_stop_of_unknown_gateway_is_a_clear_error(make_host):
    host = make_host(accounts=1)
    result = host.run("stop", "no-such-gw")
    assert result.returncode == 4
    assert "no gateway named 'no-such-gw'" in result.stderr


def test_launch_without_free_account_fails_cleanly(make_host):
    host = make_host(accounts=1)
    first = host.run("launch", "-r", "r1", "-g", "full-a", "--no-wait")
    assert first.returncode == 0, first.stderr
    second = host.run("launch", "-r", "r1", "-g", "full-b", "--no-wait")
    assert second.returncode == 3
    assert "no free SIP account" in second.stderr
    assert [c.labels[labels.GATEWAY] for c in host.containers()] == ["full-a"]


def test_launch_of_an_existing_name_is_refused(make_host):
    host = make_host(accounts=2)
    assert host.run("launch", "-r", "r1", "-g", "twice", "--no-wait").returncode == 0
    again = host.run("launch", "-r", "r1", "-g", "twice", "--no-wait")
    assert again.returncode == 5 and "already exists" in again.stderr
    assert len(host.containers()) == 1


def test_twenty_concurrent_launches_for_four_slots(make_host):
    host = make_host(accounts=4)
    processes = [host.popen("launch", "-r", "race", "-g", f"race-{i}", "--no-wait") for i in range(20)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    ok = [r for r in results if r[0] == 0]
    failed = [r for r in results if r[0] != 0]
    assert len(ok) == 4, sorted({r[2].strip().splitlines()[-1][:150] for r in results})
    assert len(failed) == 16
    for code, _, stderr in failed:
        assert code == 3, stderr
        assert "no free SIP account" in stderr or "no free userspace slot" in stderr, stderr
    containers = host.containers()
    assert len(containers) == 4
    assert sorted(int(c.labels[labels.SLOT]) for c in containers) == [0, 1, 2, 3]
    assert len({c.labels[labels.ACCOUNT] for c in containers}) == 4


def test_container_killed_from_outside_frees_its_slot(make_host):
    host = make_host(accounts=1)
    assert host.run("launch", "-r", "r1", "-g", "victim").returncode == 0
    [container] = host.containers()
    container.kill()
    container.wait(timeout=60)
    status = host.status()
    assert [(g["name"], g["state"]) for g in status["gateways"]] == [("victim", "exited")]
    assert (status["free_slots"], status["free_accounts"]) == (1, 1)
    successor = host.run("launch", "-r", "r1", "-g", "successor")
    assert successor.returncode == 0, successor.stderr
    slots = {c.labels[labels.GATEWAY]: c.labels[labels.SLOT] for c in host.containers() if dockerops.holds_resources(c)}
    assert slots == {"successor": "0"}
    # the dead gateway's name can be launched again: its stale container is replaced
    host.run("stop", "successor")
    relaunch = host.run("launch", "-r", "r1", "-g", "victim")
    assert relaunch.returncode == 0, relaunch.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_launch_killed_while_it_waits_leaves_no_gateway_and_no_claim(make_host, sig):
    """SIGTERM to `launch` (a service manager, `timeout`), SIGHUP (its terminal closed) or SIGINT (Ctrl-C) while the
    gateway is not ready yet: the launcher unwinds as for any failure, so nothing holds the account afterwards."""
    host = make_host(accounts=1)
    process = host.popen("launch", "-r", "r1", "-g", "killed", "--platform", "stubslow", "--timeout", "300")
    said = []
    for line in process.stderr:  # wait on what the CLI says, not on time
        said.append(line)
        if "created sipmediagw-killed" in line:
            break
    assert any("created sipmediagw-killed" in line for line in said), said
    assert len(host.containers()) == 1
    process.send_signal(sig)
    process.wait(timeout=60)
    rest = process.stderr.read()
    assert process.returncode != 0 and "Traceback" not in rest, rest
    assert host.containers() == []
    claims = host.client.containers.list(all=True, filters={"label": f"{labels.GATEWAY}=killed"})
    assert claims == [], [c.name for c in claims]
    # the account is free at once
    assert host.run("launch", "-r", "r1", "-g", "next").returncode == 0


def test_launch_killed_with_sigkill_is_reclaimed_by_the_next_status(make_host):
    """`kill -9` cannot be caught: the gateway it made keeps running until its launch lease expires (ready timeout
    + LEASE_MARGIN), then the next `status` (or `launch`) removes it and its claims, and says so."""
    host = make_host(accounts=1)
    process = host.popen("launch", "-r", "r1", "-g", "orphan", "--platform", "stubslow", "--timeout", "10")
    for line in process.stderr:
        if "created sipmediagw-orphan" in line:
            break
    process.kill()
    process.communicate(timeout=30)
    assert [c.name for c in host.containers()] == ["sipmediagw-orphan"]
    early = host.run("status")  # within the lease: a launch may still be working on it
    assert "reclaimed" not in early.stderr and [c.name for c in host.containers()] == ["sipmediagw-orphan"]
    deadline = time.monotonic() + 10 + LEASE_MARGIN + 60
    while "reclaimed gateway orphan" not in (said := host.run("status").stderr):
        assert time.monotonic() < deadline, said
        time.sleep(2)  # polling `status` like an operator would; the lease's deadline is the condition
    assert host.containers() == []
    leftovers = host.client.containers.list(all=True, filters={"label": f"{labels.GATEWAY}=orphan"})
    assert leftovers == [], [c.name for c in leftovers]
    assert host.run("launch", "-r", "r1", "-g", "next").returncode == 0  # the account is free again


def test_failed_launch_reports_and_leaves_nothing(make_host):
    host = make_host(accounts=1)
    result = host.run("launch", "-r", "r1", "-g", "doomed", "--platform", "stubfail")
    assert result.returncode == 7, result.stderr
    assert "container sipmediagw-doomed" in result.stderr  # its state
    assert "last lines of" in result.stderr  # its logs
    assert "hint:" in result.stderr
    assert host.containers() == []
    assert host.status()["free_accounts"] == 1
    assert_no_secret(result.stderr, "failure report")


def test_stop_all(make_host):
    host = make_host(accounts=2)
    for name in ("all-1", "all-2"):
        assert host.run("launch", "-r", "r", "-g", name, "--no-wait").returncode == 0
    result = host.run("stop", "--all")
    assert result.returncode == 0, result.stderr
    assert host.containers() == []


def test_doctor_sees_the_image_and_accounts(make_host):
    host = make_host(accounts=3)
    result = host.run("doctor")
    assert "[ ok ] docker" in result.stdout
    assert "[ ok ] image" in result.stdout
    assert "[ ok ] accounts: 3 SIP account(s)" in result.stdout


@pytest.fixture
def build_tag(docker_client) -> Iterator[str]:
    """A tag for an image the test builds; the image is removed at teardown, pass or fail."""
    tag = "sipmediagw-test-stub:build-check"
    yield tag
    try:
        docker_client.images.remove(tag)
    except docker.errors.ImageNotFound:
        pass  # the build failed before tagging


def test_build_command_builds_an_image_with_docker_py(docker_client, build_tag):
    import subprocess
    import sys
    from pathlib import Path

    tag = build_tag
    stub = Path(__file__).parent / "stub"
    result = subprocess.run([sys.executable, "-m", "sipmediagw.cli", "build", "--path", str(stub), "--image", tag,
                             "--build-arg", "UNUSED=1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"built {tag}" in result.stdout and "Step" in result.stderr  # streamed progress
    assert dockerops.image_present(docker_client, tag)
