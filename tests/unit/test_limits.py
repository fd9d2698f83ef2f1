"""Enforced limits: the per-gateway budget as memory/CPU/pids limits, Docker's log rotated, the gateway's own logs
rotated (and still read whole by `logs`), a restart policy, and what `status`, `launch` and the claims make of a
gateway that Docker restarted. tests/docker/test_limits.py checks the same on a real engine."""

from __future__ import annotations

import datetime as dt
import io
import logging
import tarfile
from pathlib import Path
from typing import Any

import docker
import pytest

from sipmediagw import claims, labels
from sipmediagw.accounts import parse_account_line
from sipmediagw.allocator import Allocation
from sipmediagw.backends import Handle, Observation
from sipmediagw.backends.engine import EngineBackend, EngineClaims, _follow_file, restart_note
from sipmediagw.backends.swarm import SwarmBackend
from sipmediagw.errors import ConfigError, FileLineError, LaunchFailed
from sipmediagw.gateway import logs
from sipmediagw.launcher import LaunchRequest, container_config, gateway_spec, tail_log, wait_ready
from sipmediagw.launcher import cpu_limit as launcher_cpu_limit
from sipmediagw.settings import Settings, load_settings
from sipmediagw.status import HostStatus, describe, render_table

ACCOUNT = parse_account_line("<sip:gw1@sip.example.org>;auth_pass=TOPSECRET")
MiB = 1024**2


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(logs_dir=tmp_path / "logs", browsing_dir=tmp_path, baresip_dir=tmp_path, **kw)


def host_config(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    _create, host = container_config(settings(tmp_path, **kw), LaunchRequest("gw", "room1"),
                                     Allocation("userspace", 0, ACCOUNT, None), "https://meet.example.org")
    return host


# --- the budget as limits, the restart policy, Docker's log ----------------------------------------------------


def test_the_budget_is_each_gateways_memory_cpu_and_pids_limit(tmp_path):
    host = host_config(tmp_path, cpu_per_gateway=0.75, memory_per_gateway=640 * MiB, pids_per_gateway=300)
    assert host["mem_limit"] == host["memswap_limit"] == 640 * MiB  # no swap on top of the memory limit
    assert host["nano_cpus"] == 1_500_000_000  # CPU_BURST x the budget: a call's peaks must not be cut off
    assert host["pids_limit"] == 300
    defaults = host_config(tmp_path)
    assert (defaults["nano_cpus"], defaults["mem_limit"], defaults["pids_limit"]) == (2_600_000_000, 768 * MiB, 512)


def test_the_cpu_quota_is_twice_the_budget_but_never_more_than_the_engine_has():
    assert launcher_cpu_limit(0.6) == 1.2
    assert launcher_cpu_limit(0.6, engine_cpus=8) == 1.2
    assert launcher_cpu_limit(1.3, engine_cpus=2) == 2.0  # Docker refuses a quota above the engine's CPUs
    assert launcher_cpu_limit(1.5, engine_cpus=1) == 1.5  # (admission never lets a budget exceed the CPUs)


def test_a_gateway_comes_back_after_an_engine_restart_but_a_once_gateway_only_after_a_failure(tmp_path):
    assert host_config(tmp_path)["restart_policy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert host_config(tmp_path, once=True)["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_a_restarted_gateway_starts_with_an_empty_tmp(tmp_path):
    """Xvfb refuses a display whose lock file the previous run left in /tmp: a tmpfs is new at every start."""
    assert host_config(tmp_path)["tmpfs"] == {"/tmp": "mode=1777,size=256m"}


def test_dockers_log_of_a_gateway_is_json_file_rotated(tmp_path):
    assert host_config(tmp_path)["log_config"] == {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}


def test_docker_py_turns_the_host_config_into_the_engines_fields(tmp_path):
    """What docker-py sends for it (no engine asked): the names `docker inspect` shows."""
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    sent = api.create_host_config(**host_config(tmp_path, pids_per_gateway=400))
    assert (sent["Memory"], sent["MemorySwap"], sent["NanoCpus"], sent["PidsLimit"]) == \
        (768 * MiB, 768 * MiB, 2_600_000_000, 400)
    assert sent["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert sent["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert sent["Tmpfs"] == {"/tmp": "mode=1777,size=256m"}


def test_a_remote_engines_gateway_keeps_its_limits_without_host_folders(tmp_path):
    request, allocation = LaunchRequest("gw", "room1"), Allocation("userspace", 0, ACCOUNT, None)
    spec = gateway_spec(settings(tmp_path, pids_per_gateway=256), request, allocation, "https://m", local_engine=False)
    assert "binds" not in spec.host_config
    assert spec.host_config["pids_limit"] == spec.pids == 256 and spec.host_config["mem_limit"] == spec.memory


class FakeServices:
    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def create(self, image: str, **kw: Any) -> Any:
        self.created = kw
        return type("Service", (), {"id": "svc1"})()


class FakeSwarmClient:
    def __init__(self, api_version: str) -> None:
        self.services = FakeServices()
        self.api = type("Api", (), {"api_version": api_version})()


@pytest.mark.parametrize("api_version, pids", [("1.41", 300), ("1.43", 300), ("1.40", None)])
def test_a_swarm_service_gets_the_pids_limit_where_the_api_has_one_and_the_same_log(tmp_path, api_version, pids):
    spec = gateway_spec(settings(tmp_path, pids_per_gateway=300), LaunchRequest("gw", "r"),
                        Allocation("userspace", 0, ACCOUNT, None), "https://m", local_engine=False)
    client = FakeSwarmClient(api_version)
    claim = claims.Claim("secret1", "sipmediagw-claim-account-x", claims.ACCOUNT, "sip:gw1@sip.example.org", "gw", 0)
    SwarmBackend(client).create(spec, b"line\n", claim)  # type: ignore[arg-type]
    made = client.services.created
    assert made["resources"]["Limits"].get("Pids") == pids
    assert made["resources"]["Limits"]["MemoryBytes"] == 768 * MiB
    assert (made["log_driver"], made["log_driver_options"]) == ("json-file", {"max-size": "10m", "max-file": "3"})


# --- settings ----------------------------------------------------------------------------------------------------


def test_pids_per_gateway_is_read_like_the_other_numbers(tmp_path):
    config = tmp_path / "sipmediagw.yaml"
    config.write_text("pids_per_gateway: 1024\n")
    assert load_settings(config, env={}).pids_per_gateway == 1024
    assert load_settings(config, env={"SIPMEDIAGW_PIDS_PER_GATEWAY": "2048"}).pids_per_gateway == 2048


@pytest.mark.parametrize("text", ["pids_per_gateway: 0", "pids_per_gateway: 63", "pids_per_gateway: 4194305",
                                  "pids_per_gateway: -1", "pids_per_gateway: true", "pids_per_gateway: .inf",
                                  "pids_per_gateway: .nan", "pids_per_gateway: lots", "cpu_per_gateway: .nan",
                                  "cpu_per_gateway: .inf", "cpu_per_gateway: 0.001", "memory_per_gateway: 1M"])
def test_limits_docker_would_refuse_or_that_make_no_sense_are_refused_up_front(tmp_path, text):
    config = tmp_path / "sipmediagw.yaml"
    config.write_text(text + "\n")
    with pytest.raises((ConfigError, FileLineError), match=text.split(":")[0]):
        load_settings(config, env={})


# --- the gateway's own logs ----------------------------------------------------------------------------------------


@pytest.fixture
def gateway_logging():
    """Gateway logging set up by the test; its files are closed afterwards."""
    yield
    root = logging.getLogger("sipmediagw.gw")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def test_app_and_err_logs_are_rotated_at_the_cap_and_keep_two_older_files(tmp_path, monkeypatch, gateway_logging):
    assert (logs.LOG_MAX_BYTES, logs.LOG_BACKUPS) == (5 * MiB, 2)  # as docs/container.md says
    monkeypatch.setattr(logs, "LOG_MAX_BYTES", 64 * 1024)  # the same handlers, at a size a test writes quickly
    logs.setup_logging(tmp_path, stdout=False)
    log = logs.get_logger("chromium")
    for number in range(4 * 64):  # 4 caps' worth of 1 KiB lines, to both files
        log.warning("%04d %s", number, "word " * 200)
    log.warning("the newest line")
    for name in (logs.APP_LOG, logs.ERR_LOG):
        kept = sorted(p.name for p in tmp_path.glob(name + "*"))
        assert kept == [name, f"{name}.1", f"{name}.2"]
        for path in tmp_path.glob(name + "*"):
            assert path.stat().st_size <= 64 * 1024
        assert (tmp_path / name).read_text().rstrip().endswith("chromium: the newest line")


@pytest.fixture
def small_logs(tmp_path, monkeypatch, gateway_logging):
    """Gateway logging with a 1 KiB cap, into tmp_path."""
    monkeypatch.setattr(logs, "LOG_MAX_BYTES", 1024)
    logs.setup_logging(tmp_path, stdout=False)
    return logs.get_logger("supervisor")


def test_the_logs_of_a_stopped_gateway_reach_into_the_rotated_file(tmp_path, small_logs):
    for number in range(40):
        small_logs.info("line %02d", number)
    current = (tmp_path / "app.log").read_text().splitlines()
    assert 0 < len(current) < 30 and (tmp_path / "app.log.1").exists()
    shown = tail_log(tmp_path / "app.log", 30)
    assert [line.rsplit(" ", 1)[1] for line in shown] == [f"{n:02d}" for n in range(10, 40)]
    assert tail_log(tmp_path / "app.log", 2) == current[-2:]


def test_a_rotated_file_that_is_a_symbolic_link_is_not_followed(tmp_path):
    (tmp_path / "secret").write_text("host secret\n")
    (tmp_path / "app.log").write_text("only line\n")
    (tmp_path / "app.log.1").symlink_to(tmp_path / "secret")
    assert tail_log(tmp_path / "app.log", 10) == ["only line"]


class FileContainer:
    """A running container whose files are those of a host folder, read through a fake archive API."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.status = "running"
        self.name = "sipmediagw-gw"

    def reload(self) -> None:
        pass

    def get_archive(self, path: str) -> tuple[Any, dict[str, Any]]:
        source = self.folder / Path(path).name
        if not source.exists():
            raise docker.errors.NotFound("no such file")
        data = source.read_bytes()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(source.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return iter([buffer.getvalue()]), {"size": len(data)}


def test_logs_err_through_the_engine_reaches_into_the_rotated_file_and_reads_a_file_near_the_cap(tmp_path):
    (tmp_path / "err.log.1").write_text("".join(f"old {n}\n" for n in range(5)))
    (tmp_path / "err.log").write_text("new 0\nnew 1\n")
    container = FileContainer(tmp_path)
    assert list(_follow_file(container, "/var/log/sipmediagw/err.log", 4, follow=False)) == \
        ["old 3", "old 4", "new 0", "new 1"]
    big = "y" * 1000 + "\n"
    (tmp_path / "err.log").write_text(big * (3 * 1024))  # 3 MiB: more than the archive reads allowed before
    assert list(_follow_file(container, "/var/log/sipmediagw/err.log", 1, follow=False)) == [big.strip()]


# --- a gateway Docker restarted: status, launch, claims --------------------------------------------------------


CREATED = "2026-12-01T10:00:00.123456789Z"


class InspectedContainer:
    """What docker-py's Container offers the engine backend: status, attrs (the inspect document), labels."""

    def __init__(self, status: str, restart_count: int = 0, started: str = "2026-12-01T10:00:00.400000000Z",
                 exit_code: int = 0, oom: bool = False) -> None:
        self.status = status
        self.id = "c" * 64
        self.name = "sipmediagw-gw"
        self.labels = {labels.MANAGED: "true", labels.GATEWAY: "gw"}
        self.attrs = {"Created": CREATED, "RestartCount": restart_count,
                      "State": {"Status": status, "ExitCode": exit_code, "OOMKilled": oom, "StartedAt": started,
                                "Error": ""}}

    def reload(self) -> None:
        pass

    def get_archive(self, path: str) -> Any:
        raise docker.errors.NotFound("no state file in this fake")


class EngineInfo:
    def info(self) -> dict[str, str]:
        return {"Name": "host1"}


def observe(container: InspectedContainer) -> Observation:
    return EngineBackend(EngineInfo()).observe(Handle("gw", container.name, container.labels, container))  # type: ignore[arg-type]


def test_a_running_gateway_that_docker_restarted_says_how_often():
    seen = observe(InspectedContainer("running", restart_count=2))
    assert (seen.runtime, seen.restarts, seen.detail) == ("running", 2, "restarted 2x by Docker")
    assert observe(InspectedContainer("running")).detail is None


def test_a_gateway_started_again_after_an_engine_restart_says_so_though_docker_reset_its_count():
    seen = observe(InspectedContainer("running", started="2026-12-01T13:05:09.5Z"))
    assert seen.restarts == 0
    assert seen.detail == "started again by Docker at 2026-12-01 13:05:09 UTC (engine restart or host reboot?)"
    assert restart_note({"Created": CREATED, "State": {"StartedAt": "2026-12-01T10:00:59Z"}}) is None


def test_a_gateway_between_two_runs_is_restarting_and_one_that_gave_up_says_after_how_many():
    seen = observe(InspectedContainer("restarting", restart_count=3, exit_code=137, oom=True))
    assert (seen.runtime, seen.restarts, seen.exit_code) == ("restarting", 3, 137)
    assert seen.detail == "restarting after exit code 137, killed: out of memory (restarted 3x by Docker so far)"
    ended = observe(InspectedContainer("exited", restart_count=3, exit_code=1))
    assert (ended.runtime, ended.detail) == ("exited", "exit code 1, after 3 restart(s) by Docker")


def test_status_shows_the_restarts_under_the_table():
    now = dt.datetime(2026, 12, 1, 11, 0, tzinfo=dt.timezone.utc)
    restarted = describe(Handle("gw", "sipmediagw-gw", {labels.GATEWAY: "gw"}, None),
                         observe(InspectedContainer("running", restart_count=2)), now=now)
    looping = describe(Handle("gw2", "sipmediagw-gw2", {labels.GATEWAY: "gw2"}, None),
                       observe(InspectedContainer("restarting", restart_count=5, exit_code=1)), now=now)
    assert looping.state == "restarting" and looping.uptime is None
    text = render_table(HostStatus([restarted, looping], "userspace", 0, 0))
    assert "gw: restarted 2x by Docker" in text.splitlines()
    assert "gw2: restarting after exit code 1 (restarted 5x by Docker so far)" in text.splitlines()


class Scripted:
    kind = "engine"

    def __init__(self, seen: Observation) -> None:
        self.seen = seen

    def observe(self, handle: Handle) -> Observation:
        return self.seen

    def diagnostics(self, handle: Handle, lines: int) -> list[str]:
        return ["container sipmediagw-gw: status=restarting exit_code=3 oom_killed=False restarts=1"]


@pytest.mark.parametrize("seen", [Observation("restarting", detail="restarting after exit code 3", restarts=1),
                                  Observation("running", restarts=1, detail="restarted 1x by Docker")])
def test_launch_fails_at_once_when_docker_restarts_a_gateway_that_was_not_ready_yet(seen):
    polls = iter(range(1000))
    with pytest.raises(LaunchFailed, match="exited before it was ready") as caught:
        wait_ready(Scripted(seen), Handle("gw", "sipmediagw-gw", {}, None), 100, lambda said: None,  # type: ignore[arg-type]
                   clock=lambda: next(polls), sleep=lambda s: None)
    assert "restarts=1" in str(caught.value)


class ClaimsClient:
    """The engine as EngineClaims.gateway_presence reads it: one gateway container in a given state."""

    def __init__(self, container: InspectedContainer) -> None:
        class Api:
            def containers(self, all: bool, filters: dict[str, Any]) -> list[dict[str, str]]:  # noqa: A002
                return [{"Id": container.id}]

        class Containers:
            def get(self, container_id: str) -> InspectedContainer:
                return container

        self.api, self.containers = Api(), Containers()


@pytest.mark.parametrize("state, presence", [("restarting", claims.HOLDS), ("running", claims.HOLDS),
                                             ("exited", claims.DEAD)])
def test_a_restarting_gateway_still_holds_its_account(state, presence):
    store = EngineClaims(ClaimsClient(InspectedContainer(state)), "sipmediagw:latest")  # type: ignore[arg-type]
    assert store.gateway_presence("gw") == presence
    claim = claims.Claim("k1", "sipmediagw-claim-account-x", claims.ACCOUNT, "sip:gw1@h", "gw", 0.0)
    assert claims.is_stale(claim, store, now=1e9) is (presence == claims.DEAD)
