"""Every command through Click's CliRunner, with a small in-memory Docker fake (the docker tier uses the real one)."""

from __future__ import annotations

import json
import tarfile
import time
import io
from pathlib import Path

import docker.errors
import pytest
from click.testing import CliRunner

from sipmediagw import __version__, claims, labels
from sipmediagw.backends.engine import EngineClaims
from sipmediagw.cli import cli
from sipmediagw.errors import DockerUnavailable
from sipmediagw.resources import HostResources
from sipmediagw.state import GatewayState, GatewayStatus, write_state

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROJECT = Path(__file__).resolve().parents[2]
ANY_ROOM_DRIVER = """from sipmediagw.room import Room


class AnyRoom(Room):
    platform = "janus"

    def url(self):
        return self.base_url + "/" + self.room

    def join(self, display_name):
        pass

    def leave(self):
        pass
"""
COMMANDS = ["launch", "stop", "status", "logs", "doctor", "build"]


class FakeContainer:
    def __init__(self, fake, cid, name, config, host_config):
        self.fake, self.id, self.name = fake, cid, name
        self.labels = config.get("labels") or {}
        self.status = "created"
        self.files: dict[str, tuple[int, int, bytes]] = {}
        self.attrs = {"State": {"Status": "created", "ExitCode": 0, "StartedAt": "2026-01-01T00:00:00.123456789Z"},
                      "Created": "2026-01-01T00:00:00.1Z",
                      "Config": {"Env": config.get("environment"), "Labels": self.labels}, "HostConfig": host_config}

    def __eq__(self, other):
        return isinstance(other, FakeContainer) and other.id == self.id

    def put_archive(self, path, data):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                self.files[f"{path}/{member.name}"] = (member.uid, member.mode, tar.extractfile(member).read())
        return True

    def start(self):
        self.status = "running"
        # what the gateway does: report ready through the state file in its mounted log folder
        write_state(self.labels[labels.LOGS], GatewayStatus(self.labels[labels.GATEWAY], GatewayState.READY))
        (Path(self.labels[labels.LOGS]) / "app.log").write_text("[t] gateway: ready\n[t] baresip: auth_pass=LEAK\n")

    def reload(self):
        if self.id not in self.fake.containers_by_id:
            raise docker.errors.NotFound("gone")
        self.attrs["State"]["Status"] = self.status

    def stop(self, timeout):
        self.fake.stopped.append((self.name, timeout))
        self.status = "exited"

    def remove(self, force=False):
        self.fake.containers_by_id.pop(self.id, None)

    def logs(self, tail=None, stream=False, follow=False):
        # the gateway's stdout mirrors its app.log
        path = Path(self.labels.get(labels.LOGS, "/nonexistent")) / "app.log"
        data = path.read_bytes() if path.is_file() else b""
        if tail is not None and tail != "all":
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail else b""
        return iter([data]) if stream else data

    def get_archive(self, path):
        """docker cp out of the container: the log folder is the host folder of the LOGS label (as mounted)."""
        folder = "/var/log/sipmediagw/"
        if not path.startswith(folder) or labels.LOGS not in self.labels:
            raise docker.errors.NotFound("no such file")
        source = Path(self.labels[labels.LOGS]) / path[len(folder):]
        if not source.is_file():
            raise docker.errors.NotFound("no such file")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(source, arcname=source.name)
        return iter([buffer.getvalue()]), {"size": source.stat().st_size, "mode": 0o644}

    def stats(self, stream=False):
        return {"cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
                "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
                "memory_stats": {"usage": 300 * 1024**2, "stats": {"cache": 0}}}


def all_match(container_labels, pairs):
    # a filter "key=value" matches that value, a filter "key" the key's presence (as the engine does)
    return all(container_labels.get(p[0]) == p[1] if len(p) == 2 else p[0] in container_labels for p in pairs)


class FakeDocker:
    """Just enough of docker.DockerClient for the launcher, status, stop and doctor."""

    def __init__(self, images=("sipmediagw:latest",)):
        self.images_present = set(images)
        self.containers_by_id: dict[str, FakeContainer] = {}
        self.stopped: list = []
        self.containers, self.images, self.api = self, self, self
        self.base_url = "http+docker://localhost"  # the local engine: host folders are bind-mounted

    # client.containers
    def list(self, all=False, filters=None):
        wanted = filters["label"] if isinstance(filters["label"], list) else [filters["label"]]
        pairs = [w.split("=", 1) for w in wanted]
        return [c for c in self.containers_by_id.values()
                if (all or c.status == "running") and all_match(c.labels, pairs)]

    def __call__(self, all=False, filters=None):
        """client.api.containers(): summaries (client.containers and client.api are this object too)."""
        return [{"Id": c.id, "Names": [f"/{c.name}"], "Labels": c.labels, "Created": 1767225600}
                for c in self.list(all=all, filters=filters)]

    def get(self, key):
        if key in self.containers_by_id:
            return self.containers_by_id[key]
        named = [c for c in self.containers_by_id.values() if c.name == key]
        if named:
            return named[0]
        if key in self.images_present:
            return key
        raise docker.errors.ImageNotFound(key)

    def remove_container(self, cid, force=False):
        if cid not in self.containers_by_id:
            raise docker.errors.NotFound("gone")
        self.containers_by_id.pop(cid)

    def info(self):
        return {"Name": "fakehost", "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False}}

    def claim_containers(self):
        return [c for c in self.containers_by_id.values() if labels.CLAIM in c.labels]

    def gateways(self):
        return [c for c in self.containers_by_id.values() if labels.MANAGED in c.labels]

    # client.api
    def create_host_config(self, **kw):
        return kw

    def create_container(self, host_config=None, **create):
        if any(c.name == create["name"] for c in self.containers_by_id.values()):
            raise docker.errors.APIError("Conflict", response=type("R", (), {"status_code": 409})())
        cid = f"id{len(self.containers_by_id) + len(self.stopped)}-{create['name']}"
        self.containers_by_id[cid] = FakeContainer(self, cid, create["name"], create, host_config)
        return {"Id": cid}

    def version(self):
        return {"Version": "fake"}


HOST = HostResources(cpu_count=8, memory_total=32 * 1024**3, memory_available=30 * 1024**3)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An isolated configuration: 2 accounts, tmp logs, a browsing folder with a janus driver."""
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("SIPMEDIAGW_"):
            monkeypatch.delenv(key)
    (tmp_path / "browsing").mkdir()
    # a stand-in that takes any room: these tests are about the CLI, not Janus's room rules (see the test of those)
    (tmp_path / "browsing" / "janus.py").write_text(ANY_ROOM_DRIVER)
    (tmp_path / "config_default").write_text("")
    (tmp_path / "accounts").write_text("<sip:gw1@h>;auth_pass=SECRET1\n<sip:gw2@h>;auth_pass=SECRET2\n")
    (tmp_path / "sipmediagw.yaml").write_text(
        f"accounts_file: {tmp_path / 'accounts'}\nlogs_dir: {tmp_path / 'logs'}\nbrowsing_dir: {tmp_path / 'browsing'}\n"
        f"baresip_dir: {tmp_path}\nbase_url: https://meet.example.org\n"
        f"sysroot: {FIXTURES / 'sysroot-empty'}\n")
    return tmp_path


def invoke(fake, *args):
    obj = {"docker_factory": lambda: fake, "host_sampler": lambda: HOST}
    return CliRunner().invoke(cli, list(args), obj=obj, prog_name="sipmediagw")


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help_everywhere_with_an_example(command):
    for flag in ("-h", "--help"):
        result = CliRunner().invoke(cli, command + [flag])
        assert result.exit_code == 0 and "Usage:" in result.output
        assert "Example:" in result.output and "sipmediagw " in result.output.split("Example:")[1]


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_launch_then_status_then_logs_then_stop(env):
    fake = FakeDocker()
    launched = invoke(fake, "launch", "-r", "room1", "-g", "gw-a")
    assert launched.exit_code == 0, launched.output
    assert "call: sip:gw1@h" in launched.stdout and "[sipmediagw] ready" in launched.stderr
    [container] = fake.gateways()
    uid, mode, content = container.files["/run/secrets/sipmediagw-account"]
    assert (uid, mode, content) == (10001, 0o400, b"<sip:gw1@h>;auth_pass=SECRET1\n")
    assert "SECRET" not in json.dumps(container.attrs)

    status = invoke(fake, "status", "--json")
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    [gw] = data["gateways"]
    assert {k: gw[k] for k in ("name", "state", "mode", "room", "fixed_room", "platform", "sip_uri", "slot",
                               "media", "caller")} == {
        "name": "gw-a", "state": "ready", "mode": "fixed", "room": "room1", "fixed_room": "room1", "platform": "janus",
        "sip_uri": "sip:gw1@h", "slot": 0, "media": "userspace", "caller": None}
    assert gw["cpu_percent"] == 40.0 and gw["memory"] == 300 * 1024**2
    assert (data["free_slots"], data["free_accounts"]) == (1, 1)

    table = invoke(fake, "status")
    assert "gw-a" in table.stdout and "sip:gw1@h" in table.stdout and "free slots: 1" in table.stdout
    assert "300.0 MiB" in table.stdout

    logs = invoke(fake, "logs", "gw-a", "--tail", "1")
    assert logs.exit_code == 0 and logs.stdout == "[t] baresip: auth_pass=***\n"

    stopped = invoke(fake, "stop", "gw-a")
    assert stopped.exit_code == 0 and fake.stopped == [("sipmediagw-gw-a", 20)]
    assert fake.containers_by_id == {}


def test_second_launch_takes_the_next_slot_and_account(env):
    fake = FakeDocker()
    assert invoke(fake, "launch", "-r", "r", "-g", "a", "--no-wait").exit_code == 0
    second = invoke(fake, "launch", "-r", "r", "-g", "b", "--no-wait")
    assert "slot 1" in second.stdout and "call: sip:gw2@h" in second.stdout
    third = invoke(fake, "launch", "-r", "r", "-g", "c", "--no-wait")
    assert third.exit_code == 3 and "no free SIP account" in third.stderr
    assert len(fake.gateways()) == 2 and len(fake.claim_containers()) == 4  # an account and a slot each


def test_launch_same_name_twice(env):
    fake = FakeDocker()
    assert invoke(fake, "launch", "-r", "r", "-g", "a").exit_code == 0
    again = invoke(fake, "launch", "-r", "r", "-g", "a")
    assert again.exit_code == 5 and "already exists" in again.stderr


@pytest.mark.parametrize("args,code,needle", [
    (["-r", "bad room", "-g", "a"], 2, "invalid room name"),
    (["-r", "r", "-g", "bad/name"], 2, "invalid gateway name"),
    (["-r", "r", "-g", "a", "--platform", "zoom"], 2, "unknown platform 'zoom'"),
    (["-r", "r", "-g", "a", "--domain", "ftp://x"], 2, "invalid conferencing service URL"),
    (["-r", "r", "-g", "a", "--accounts", "/nonexistent"], 2, "does not exist"),
    (["-r", "r", "-g", "a", "--media", "kernel"], 3, "kernel media mode needs"),
    (["-r", "r", "-g", "a", "--image", "other:tag"], 6, "image other:tag not found"),
    (["-r", "r"], 2, "Missing option"),
])
def test_launch_refuses_bad_input_and_starts_nothing(env, args, code, needle):
    fake = FakeDocker()
    result = invoke(fake, "launch", *args)
    assert result.exit_code == code, result.output
    assert needle in result.stderr
    assert fake.containers_by_id == {}


def test_malformed_accounts_file_names_file_and_line(env):
    (env / "accounts").write_text("# ok\n<sip:gw1@h>\nnot an account auth_pass=SECRET\n")
    result = invoke(FakeDocker(), "launch", "-r", "r", "-g", "a")
    assert result.exit_code == 2 and f"{env / 'accounts'}:3:" in result.stderr
    assert "SECRET" not in result.stderr


def test_docker_unreachable(env):
    def broken():
        raise DockerUnavailable("cannot reach the Docker daemon")
    result = CliRunner().invoke(cli, ["status"], obj={"docker_factory": broken})
    assert result.exit_code == 6 and "cannot reach the Docker daemon" in result.stderr


@pytest.mark.parametrize("typo", ["auth_pass:Hunter-22", "auth_pass : Hunter-22", "auth_pass Hunter-22"])
def test_a_typo_in_the_password_parameter_never_prints_the_password(env, typo):
    (env / "accounts").write_text(f"<sip:gw1@h>;answermode=auto;{typo}\n")
    for args in (["launch", "-r", "r", "-g", "a"], ["status"]):
        result = invoke(FakeDocker(), *args)
        assert "Hunter-22" not in result.output + result.stderr, (args, result.stderr)
        assert f"{env / 'accounts'}:1:" in result.stderr


def test_an_unexpected_error_shows_its_traceback_without_secrets(env):
    def buggy():
        raise RuntimeError("bug while handling <sip:gw@h>;auth_pass=Hunter-33 and {'jwt': 'eyJa.eyJb.c'}")
    result = CliRunner().invoke(cli, ["status"], obj={"docker_factory": buggy})
    assert result.exit_code == 1 and "Traceback" in result.stderr and "RuntimeError" in result.stderr
    assert "Hunter-33" not in result.stderr and "eyJa" not in result.stderr


def test_the_drivers_own_room_rules_are_checked_at_launch_before_anything_starts(env):
    (env / "browsing" / "janus.py").write_text((PROJECT / "browsing" / "janus.py").read_text())
    fake = FakeDocker()
    result = invoke(fake, "launch", "-r", "not-a-number", "-g", "a")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "janus: room id must be a number" in result.stderr and "Traceback" not in result.stderr
    assert fake.containers_by_id == {}
    (env / "browsing" / "janus.py").write_text("def broken(:\n")
    result = invoke(fake, "launch", "-r", "1234", "-g", "a")
    assert result.exit_code == 2 and "janus.py: the driver cannot be loaded: SyntaxError" in result.stderr
    assert fake.containers_by_id == {}


def test_status_reclaims_a_gateway_whose_launch_was_killed_without_unwinding(env):
    fake = FakeDocker()
    assert invoke(fake, "launch", "-r", "r", "-g", "a", "--no-wait").exit_code == 0
    assert invoke(fake, "launch", "-r", "r", "-g", "b", "--no-wait").exit_code == 0
    assert not any(c.labels[labels.CLAIM] == "launch" for c in fake.claim_containers())  # a finished launch's lease is gone
    # what `kill -9` of a launch leaves: its lease, past the deadline, and the gateway made under it
    lease = claims.take(EngineClaims(fake, "sipmediagw:latest"), claims.LAUNCH, "a", "a", deadline=time.time() - 1)
    [gateway] = [c for c in fake.gateways() if c.labels[labels.GATEWAY] == "a"]
    gateway.labels[labels.LEASE] = lease.id
    result = invoke(fake, "status")
    assert result.exit_code == 0 and "reclaimed gateway a: its launch was interrupted" in result.stderr
    assert [c.labels[labels.GATEWAY] for c in fake.gateways()] == ["b"]
    assert {c.labels[labels.GATEWAY] for c in fake.claim_containers()} == {"b"}
    assert invoke(fake, "launch", "-r", "r", "-g", "a", "--no-wait").exit_code == 0  # its account is free again


def test_stop_unknown_and_usage(env):
    fake = FakeDocker()
    assert invoke(fake, "stop", "ghost").exit_code == 4
    assert invoke(fake, "stop").exit_code == 2
    assert invoke(fake, "stop", "x", "--all").exit_code == 2


def test_stop_all(env):
    fake = FakeDocker()
    for name in ("a", "b"):
        invoke(fake, "launch", "-r", "r", "-g", name, "--no-wait")
    result = invoke(fake, "stop", "--all", "--timeout", "5")
    assert result.exit_code == 0 and "stopped 2 gateway(s)" in result.stdout
    assert sorted(fake.stopped) == [("sipmediagw-a", 5), ("sipmediagw-b", 5)] and fake.containers_by_id == {}


def test_status_shows_exited_gateway_and_frees_it(env):
    fake = FakeDocker()
    invoke(fake, "launch", "-r", "r", "-g", "a")
    fake.gateways()[0].status = "exited"  # killed from outside
    data = json.loads(invoke(fake, "status", "--json").stdout)
    assert data["gateways"][0]["state"] == "exited" and (data["free_slots"], data["free_accounts"]) == (2, 2)


def test_launch_without_room_starts_a_pool_gateway_and_status_shows_it(env):
    fake = FakeDocker()
    result = invoke(fake, "launch", "-g", "p")
    assert result.exit_code == 0, result.output
    assert "gateway p ready as a pool gateway" in result.stdout and "call: sip:gw1@h" in result.stdout
    [container] = fake.gateways()
    assert container.labels[labels.MODE] == "pool" and labels.ROOM not in container.labels
    environment = container.attrs["Config"]["Env"]
    assert "SIPMEDIAGW_ROOM" not in environment and environment["SIPMEDIAGW_SERVICE_USER"] == "meet"
    # the gateway takes a call for meeting 1234: what its state file then says
    write_state(env / "logs" / "p", GatewayStatus(
        "p", GatewayState.IN_CALL, mode="pool", room="1234", call_platform="janus", meeting="1234",
        caller="Alice Liddell", call_started="2026-01-01T00:00:00+00:00", last_end_reason="caller hung up"))
    [gw] = json.loads(invoke(fake, "status", "--json").stdout)["gateways"]
    assert {k: gw[k] for k in ("mode", "room", "fixed_room", "caller", "meeting", "call_started",
                               "last_end_reason")} == {
        "mode": "pool", "room": "1234", "fixed_room": None, "caller": "Alice Liddell", "meeting": "1234",
        "call_started": "2026-01-01T00:00:00+00:00", "last_end_reason": "caller hung up"}
    assert gw["call_duration"] > 0
    header, row = invoke(fake, "status").stdout.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "STATE", "MODE", "ROOM", "CALLER", "CALL"]
    assert row.split()[:5] == ["p", "in-call", "pool", "1234", "Alice"]


def test_launch_count_starts_a_numbered_pool_each_on_its_own_account(env):
    fake = FakeDocker()
    result = invoke(fake, "launch", "-g", "pool", "--count", "2")
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("gateway ")] == [
        "pool-1", "pool-2"]
    assert "call: sip:gw1@h" in result.stdout and "call: sip:gw2@h" in result.stdout
    assert sorted(c.labels[labels.GATEWAY] for c in fake.gateways()) == ["pool-1", "pool-2"]
    assert {c.labels[labels.MODE] for c in fake.gateways()} == {"pool"}


def test_launch_count_stops_when_accounts_run_out_and_keeps_what_started(env):
    fake = FakeDocker()
    result = invoke(fake, "launch", "-g", "pool", "--count", "3")
    assert result.exit_code == 3, result.output  # the cause's code: no free SIP account
    assert "gateway pool-1 ready" in result.stdout and "gateway pool-2 ready" in result.stdout
    [error] = result.stderr.strip().splitlines()[-1:]
    assert error.startswith("Error: started 2 of 3 pool gateways (pool-1, pool-2: kept running); pool-3: ")
    assert "no free SIP account" in error
    assert sorted(c.labels[labels.GATEWAY] for c in fake.gateways()) == ["pool-1", "pool-2"]


def test_launch_count_refuses_a_room_and_names_that_would_be_too_long(env):
    fake = FakeDocker()
    mixed = invoke(fake, "launch", "-g", "pool", "--count", "2", "-r", "room1")
    assert mixed.exit_code == 2 and "cannot be combined with -r" in mixed.stderr
    long_name = invoke(fake, "launch", "-g", "p" * 39, "--count", "2")
    assert long_name.exit_code == 2 and "invalid gateway name prefix" in long_name.stderr
    assert fake.containers_by_id == {}


@pytest.mark.parametrize("rule, needle", [
    ("  - {match: '(', platform: janus, base_url: 'https://x'}", ":2: dispatch: match: invalid regular expression"),
    ("  - {match: '1', platform: zoom, base_url: 'https://x'}", ":2: unknown platform 'zoom'"),
    ("  - {match: '1', platform: janus, base_url: 'x'}", ":2: dispatch: base_url: invalid base URL"),
    ("  - {match: '1', platform: janus, base_url: 'https://x', room: '{id}'}", ":2: dispatch: room: unknown field"),
])
def test_a_bad_dispatch_rule_exits_2_with_one_line_naming_file_and_line(env, rule, needle):
    config = env / "sipmediagw.yaml"
    config.write_text("dispatch:\n" + rule + "\n" + config.read_text())  # the rule is on line 2
    fake = FakeDocker()
    for args in (["-g", "p"], ["-g", "p", "--count", "2"]):
        result = invoke(fake, "launch", *args)
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr
        assert result.stderr.startswith(f"Error: {config}:2: ")
    assert fake.containers_by_id == {}


def test_launch_without_the_baresip_template_starts_nothing(env):
    fake = FakeDocker()
    (env / "config_default").unlink()
    result = invoke(fake, "launch", "-r", "r", "-g", "a")
    assert result.exit_code == 2 and "baresip template" in result.stderr
    assert not fake.containers_by_id


def test_status_without_accounts_file_still_lists_gateways(env):
    fake = FakeDocker()
    invoke(fake, "launch", "-r", "r", "-g", "a")
    (env / "accounts").unlink()
    result = CliRunner().invoke(cli, ["status", "--json"], obj={"docker_factory": lambda: fake,
                                                                "host_sampler": lambda: HOST})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [g["name"] for g in data["gateways"]] == ["a"] and data["free_accounts"] == 0
    assert "accounts file" in result.stderr and "does not exist" in result.stderr


def test_logs_err_and_missing(env):
    fake = FakeDocker()
    invoke(fake, "launch", "-r", "r", "-g", "a")
    (env / "logs" / "a" / "err.log").write_text("[t] baresip: 403 stunpass=LEAK\n")
    err = invoke(fake, "logs", "a", "--err")
    assert err.exit_code == 0 and err.stdout == "[t] baresip: 403 stunpass=***\n"
    assert invoke(fake, "logs", "nobody").exit_code == 4


def test_logs_after_the_container_is_gone(env):
    fake = FakeDocker()
    invoke(fake, "launch", "-r", "r", "-g", "a")
    invoke(fake, "stop", "a")
    result = invoke(fake, "logs", "a")
    assert result.exit_code == 0 and "gateway: ready" in result.stdout


def test_doctor_reports_and_exits_by_health(env):
    healthy = invoke(FakeDocker(), "doctor")
    assert healthy.exit_code == 0, healthy.output
    assert "[ ok ] accounts: 2 SIP account(s)" in healthy.stdout
    assert "modprobe snd-aloop" in healthy.stdout  # devices missing: warning with the fix
    assert "=> 2 gateway(s) can run on this host (userspace media)" in healthy.stdout
    sick = invoke(FakeDocker(images=()), "doctor")
    assert sick.exit_code == 1 and "[FAIL] image" in sick.stdout and "sipmediagw build" in sick.stdout


def test_doctor_with_kernel_devices(env):
    result = invoke(FakeDocker(), "doctor", "--sysroot", str(FIXTURES / "sysroot-4slots"))
    assert "-> 4 kernel slot(s)" in result.stdout and "=> 2 gateway(s) can run on this host (kernel media)" in result.stdout


def test_env_overrides_config_and_flag_overrides_env(env, monkeypatch):
    monkeypatch.setenv("SIPMEDIAGW_BASE_URL", "ftp://from-env")
    result = invoke(FakeDocker(), "launch", "-r", "r", "-g", "a")
    assert result.exit_code == 2 and "ftp://from-env" in result.stderr
    result = invoke(FakeDocker(), "launch", "-r", "r", "-g", "a", "--domain", "https://flag.example.org")
    assert result.exit_code == 0, result.output


def test_build_arguments_are_validated(env):
    result = invoke(FakeDocker(), "build", "--build-arg", "NOEQUALS")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.stderr
    result = invoke(FakeDocker(), "build", "--path", str(env))
    assert result.exit_code == 2 and "no Dockerfile" in result.stderr


def test_following_a_file_in_the_container_yields_appended_lines_until_it_stops(tmp_path):
    """`logs --err -f` reads err.log through the engine's archive API and polls it while the gateway runs."""
    from sipmediagw.backends.engine import _follow_file

    log = tmp_path / "err.log"
    log.write_text("old 1\nold 2\n")
    container = FakeContainer(FakeDocker(), "c1", "sipmediagw-x", {"labels": {labels.LOGS: str(tmp_path)}}, {})
    container.fake.containers_by_id["c1"] = container
    container.status = "running"
    reads = 0
    original = container.get_archive

    def get_archive(path):
        nonlocal reads
        reads += 1
        if reads == 2:  # the gateway writes one more line, then stops
            with open(log, "a") as handle:
                handle.write("new line\n")
        if reads == 3:
            container.status = "exited"
        return original(path)

    container.get_archive = get_archive
    assert list(_follow_file(container, "/var/log/sipmediagw/err.log", 1, follow=True, interval=0)) == \
        ["old 2", "new line"]


def test_a_gateways_own_claims_do_not_count_against_the_hosts_capacity(env):
    """The host fits 2 gateways of 4 cores: a gateway and its account + slot claims are one gateway, not three."""
    (env / "accounts").write_text("".join(f"<sip:gw{i}@h>;auth_pass=S{i}\n" for i in range(1, 4)))
    with open(env / "sipmediagw.yaml", "a") as config:
        config.write("cpu_per_gateway: 4\n")
    fake = FakeDocker()
    assert invoke(fake, "launch", "-r", "r", "-g", "a").exit_code == 0
    second = invoke(fake, "launch", "-r", "r", "-g", "b")
    assert second.exit_code == 0, second.output
    third = invoke(fake, "launch", "-r", "r", "-g", "c")
    assert third.exit_code == 3 and "no CPU/memory headroom: 2 gateway(s) running, the host fits 2" in third.stderr


def test_logs_of_a_stopped_gateway_never_follow_a_symlink(env):
    """The log folder is writable by the container's user: a link placed there must not expose a host file."""
    folder = env / "logs" / "gone"
    folder.mkdir(parents=True)
    (env / "host-secret").write_text("root-only content\n")
    (folder / "app.log").symlink_to(env / "host-secret")
    result = invoke(FakeDocker(), "logs", "gone")
    assert result.exit_code == 2 and "symbolic link" in result.stderr
    assert "root-only content" not in result.output
