"""Launch pieces that need no daemon: the container's configuration, URL/platform checks, the readiness wait."""

from pathlib import Path

import pytest

from sipmediagw import labels, seccomp
from sipmediagw.accounts import parse_account_line
from sipmediagw.allocator import Allocation
from sipmediagw.backends import Handle, Observation
from sipmediagw.devices import discover
from sipmediagw.errors import ConfigError, LaunchFailed, ValidationError
from sipmediagw.dispatch import parse_rules, rules_from_json
from sipmediagw.launcher import (LaunchRequest, check_rooms, container_config, normalise_base_url, pool_names,
                                 prepare_log_folder, validate_platform, wait_ready)
from sipmediagw.settings import Settings
from sipmediagw.state import ComponentState, ComponentStatus, GatewayState, GatewayStatus, write_state

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ACCOUNT = parse_account_line("<sip:gw1@sip.example.org;transport=tcp>;auth_pass=TOPSECRET;stunpass=ALSOSECRET")


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings(logs_dir=tmp_path / "logs", browsing_dir=tmp_path, baresip_dir=tmp_path, **kw)


def test_container_config_follows_the_contract(tmp_path):
    create, host = container_config(settings(tmp_path), LaunchRequest("My_GW", "room1"),
                                    Allocation("userspace", 2, ACCOUNT, None), "https://meet.example.org")
    assert create["name"] == "sipmediagw-x---4dy-5f-47-57" and create["stop_timeout"] == 20
    assert create["labels"][labels.MANAGED] == "true" and create["labels"][labels.SLOT] == "2"
    assert create["labels"][labels.ACCOUNT] == "sip:gw1@sip.example.org"
    assert create["labels"][labels.GATEWAY] == "My_GW" and create["labels"][labels.MEDIA] == "userspace"
    env = create["environment"]
    assert env["SIPMEDIAGW_BASE_URL"] == "https://meet.example.org" and env["SIPMEDIAGW_ROOM"] == "room1"
    assert env["SIPMEDIAGW_ACCOUNT_FILE"] == "/run/secrets/sipmediagw-account"
    assert host["init"] is True and host["shm_size"] == "256m" and host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges", seccomp.security_opt()] and "devices" not in host
    # browsing and baresip share one host folder here: both mounts must still be there; of baresip/ only the
    # template is mounted (the folder holds the accounts file: every gateway's password)
    assert host["binds"] == [f"{(tmp_path / 'logs' / 'My_GW').resolve()}:/var/log/sipmediagw:rw",
                             f"{tmp_path.resolve()}:/opt/sipmediagw/browsing:ro",
                             f"{(tmp_path / 'config_default').resolve()}:/opt/sipmediagw/baresip/config_default:ro"]
    assert "SECRET" not in repr((create, host))


def test_a_fixed_gateway_has_a_room_label_and_the_fixed_mode(tmp_path):
    create, _ = container_config(settings(tmp_path), LaunchRequest("gw", "room1"),
                                 Allocation("userspace", 0, ACCOUNT, None), "https://x")
    assert (create["labels"][labels.MODE], create["labels"][labels.ROOM]) == ("fixed", "room1")
    assert "SIPMEDIAGW_DISPATCH" not in create["environment"] and "SIPMEDIAGW_SERVICE_USER" not in create["environment"]


def test_a_pool_gateway_has_no_room_and_gets_the_rules_and_service_user(tmp_path):
    rules = parse_rules([{"match": "9.*", "platform": "jitsi", "base_url": "https://other.example.org"}])
    pool = settings(tmp_path, dispatch=rules, service_user="conf")
    create, _ = container_config(pool, LaunchRequest("gw"), Allocation("userspace", 0, ACCOUNT, None),
                                 "https://meet.example.org")
    assert create["labels"][labels.MODE] == "pool" and labels.ROOM not in create["labels"]
    env = create["environment"]
    assert "SIPMEDIAGW_ROOM" not in env and env["SIPMEDIAGW_SERVICE_USER"] == "conf"
    assert env["SIPMEDIAGW_BASE_URL"] == "https://meet.example.org" and env["SIPMEDIAGW_PLATFORM"] == "janus"
    assert rules_from_json(env["SIPMEDIAGW_DISPATCH"]) == rules  # one non-secret variable, JSON
    # rules only (no default service): no base URL variable at all
    create, _ = container_config(pool, LaunchRequest("gw"), Allocation("userspace", 0, ACCOUNT, None), "")
    assert "SIPMEDIAGW_BASE_URL" not in create["environment"]


def test_check_rooms_validates_rules_and_drivers_before_anything_starts(tmp_path):
    (tmp_path / "janus.py").write_text((Path(__file__).resolve().parents[2] / "browsing" / "janus.py").read_text())
    rules = parse_rules([{"match": "9.*", "platform": "jitsi", "base_url": "https://o"}], sources=["conf.yaml:4"])
    assert check_rooms(settings(tmp_path, base_url="meet.example.org"), LaunchRequest("gw")).base_url == \
        "https://meet.example.org"
    with pytest.raises(ConfigError, match=r"^conf\.yaml:4: unknown platform 'jitsi'"):
        check_rooms(settings(tmp_path, base_url="https://m", dispatch=rules), LaunchRequest("gw"))
    (tmp_path / "jitsi.py").write_text("")
    assert check_rooms(settings(tmp_path, dispatch=rules), LaunchRequest("gw")).base_url == ""  # the rules alone
    with pytest.raises(ValidationError, match="a pool gateway needs a conferencing service"):
        check_rooms(settings(tmp_path), LaunchRequest("gw"))
    with pytest.raises(ValidationError, match="no conferencing service given"):
        check_rooms(settings(tmp_path, dispatch=rules), LaunchRequest("gw", "room1"))  # fixed: the default's URL
    with pytest.raises(ValidationError, match="invalid room name"):
        check_rooms(settings(tmp_path, base_url="https://m"), LaunchRequest("gw", "bad room"))


def test_pool_names_are_prefix_dash_number_and_all_valid():
    assert pool_names("pool", 3) == ["pool-1", "pool-2", "pool-3"]
    with pytest.raises(ValidationError, match="invalid gateway name prefix"):
        pool_names("p" * 38, 10)  # p...-10 would be 41 characters
    with pytest.raises(ValidationError, match="invalid gateway name prefix"):
        pool_names("-bad", 1)


def test_kernel_mode_maps_the_slot_devices(tmp_path):
    slot = discover(FIXTURES / "sysroot-4slots").slots[1]
    create, host = container_config(settings(tmp_path), LaunchRequest("gw", "r"),
                                    Allocation("kernel", 1, ACCOUNT, slot), "https://x")
    assert create["environment"]["SIPMEDIAGW_ALSA_CARDS"] == "2,3"
    assert "/dev/video1:/dev/video0:rwm" in host["devices"]
    assert "/dev/snd/controlC3:/dev/snd/controlC3:rwm" in host["devices"]


@pytest.mark.parametrize("given,expected", [("meet.example.org", "https://meet.example.org"),
                                            ("http://127.0.0.1:8088/", "http://127.0.0.1:8088")])
def test_normalise_base_url(given, expected):
    assert normalise_base_url(given) == expected


@pytest.mark.parametrize("bad", ["", "ftp://x", "https://user:pw@x", "https://", "https://a b", "https://[::1",
                                 "https://h:99999", "https://h/x?room=1", "https://h/#top", "https://h?"])
def test_bad_base_urls(bad):
    with pytest.raises(ValidationError):
        normalise_base_url(bad)


def test_platform_must_have_a_driver(tmp_path):
    (tmp_path / "jitsi.py").write_text("")
    assert validate_platform("jitsi", tmp_path) == "jitsi"
    with pytest.raises(ValidationError, match="unknown platform 'zoom'.*available: jitsi"):
        validate_platform("zoom", tmp_path)
    with pytest.raises(ValidationError, match="invalid platform"):
        validate_platform("../x", tmp_path)


def test_prepare_log_folder_drops_a_stale_state_file(tmp_path):
    folder = tmp_path / "gw"
    write_state(folder, GatewayStatus("gw", GatewayState.READY))
    prepare_log_folder(folder)
    assert folder.is_dir() and not (folder / "state.json").exists()


class ScriptedBackend:
    """A backend whose observations follow a script (one per poll); diagnostics like the engine's."""

    kind = "engine"

    def __init__(self, steps):
        self.steps = list(steps)

    def observe(self, handle):
        return self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]

    def diagnostics(self, handle, lines):
        return ["container sipmediagw-gw: status=exited exit_code=3", "last lines of its log:",
                "  docker says hello auth_pass=LEAK", "  [t] baresip: 401 Unauthorized auth_pass=LEAK"]


HANDLE = Handle("gw", "sipmediagw-gw", {}, None)


def status(state, **kw):
    return GatewayStatus("gw", state, components={"baresip": ComponentStatus(ComponentState.STARTING)}, **kw)


def run_wait(steps, timeout=100.0):
    said = []
    ticks = iter(range(10_000))
    node = wait_ready(ScriptedBackend(steps), HANDLE, timeout, said.append, clock=lambda: next(ticks),
                      sleep=lambda s: None)
    return said, node


def test_wait_ready_reports_progress_then_returns_the_node():
    steps = [Observation("starting", detail="task preparing"), Observation("running", node="n1"),
             Observation("running", status(GatewayState.STARTING), node="n1"),
             Observation("running", status(GatewayState.READY, sip_uri="sip:gw1@h"), node="n1")]
    said, node = run_wait(steps)
    assert said == ["started, waiting for its first state report (task preparing)",
                    "started, waiting for its first state report", "starting (waiting for baresip)",
                    "ready (sip:gw1@h) on n1"]
    assert node == "n1"


def test_a_ready_document_of_a_task_not_yet_running_is_not_ready():
    """Swarm: a state line from the previous task must not make a restarting gateway look ready."""
    steps = [Observation("starting", status(GatewayState.READY)), Observation("running", status(GatewayState.READY))]
    said, _ = run_wait(steps)
    assert len(said) == 2 and said[-1] == "ready (registered)"


def test_wait_ready_fails_at_once_on_error_state_with_logs_and_hint():
    steps = [Observation("running", status(GatewayState.ERROR, last_error="registration failed"))]
    with pytest.raises(LaunchFailed) as caught:
        run_wait(steps)
    text = str(caught.value)
    assert "reported error: registration failed" in text and "401 Unauthorized" in text and "hint:" in text
    assert "LEAK" not in text and "auth_pass=***" in text


@pytest.mark.parametrize("answer, hint", [("401 Unauthorized (kam)", "auth_pass"), ("404 Not Found", "sip:user@domain"),
                                          ("no answer from the registrar within 5 s", "registrar reachable")])
def test_wait_ready_fails_at_once_when_the_registrar_refuses_or_is_silent(answer, hint):
    steps = [Observation("running", status(GatewayState.STARTING, sip_uri="sip:gw1@h", registration="failed",
                                           registration_reason=answer)),
             Observation("running", status(GatewayState.READY))]
    with pytest.raises(LaunchFailed) as caught:
        run_wait(steps)
    text = str(caught.value)
    assert f"sip:gw1@h could not register: {answer}" in text and hint in text and "LEAK" not in text


def test_wait_ready_keeps_waiting_while_registration_is_only_pending():
    steps = [Observation("running", status(GatewayState.STARTING, registration="registering")),
             Observation("running", status(GatewayState.READY, registration="registered"))]
    said, _ = run_wait(steps)
    assert said[-1] == "ready (registered)"


def test_wait_ready_fails_when_the_gateway_exits():
    with pytest.raises(LaunchFailed) as caught:
        run_wait([Observation("exited", detail="exit code 3")])
    text = str(caught.value)
    assert "exited before it was ready (exit code 3)" in text and "exit_code=3" in text
    assert "docker says hello" in text and "LEAK" not in text


def test_wait_ready_times_out():
    with pytest.raises(LaunchFailed, match="not ready after 5 s"):
        run_wait([Observation("running", status(GatewayState.STARTING))], timeout=5)


def test_a_bad_base_url_error_never_shows_a_password():
    with pytest.raises(ValidationError) as caught:
        normalise_base_url("https://alice:s3cret@[::1")
    assert "s3cret" not in str(caught.value) and "***@" in str(caught.value)


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_ready_timeout_that_would_never_end_is_refused(timeout):
    with pytest.raises(ConfigError, match="ready_timeout must be between 0 and 86400"):
        Settings(ready_timeout=timeout)
