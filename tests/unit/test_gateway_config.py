"""GatewayConfig.from_env: defaults, validation naming the variable or file:line, secrets kept out of sight."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sipmediagw.errors import ConfigError, FileLineError
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.redaction import redact

ACCOUNT = "<sip:gw1@sip.example.org;transport=tcp>;auth_pass=Sup3rSecret;answermode=auto;stunpass=TurnSecret7"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    account = tmp_path / "account"
    account.write_text(f"# gateway account\n\n{ACCOUNT}\n")
    return {
        "SIPMEDIAGW_ROOM": "1234",
        "SIPMEDIAGW_BASE_URL": "http://172.17.0.1:8000",
        "SIPMEDIAGW_ACCOUNT_FILE": str(account),
        "SIPMEDIAGW_GATEWAY": "gw-a",
    }


def test_defaults(env: dict[str, str]) -> None:
    config = GatewayConfig.from_env(env)
    assert config.gateway == "gw-a"
    assert config.room == "1234"
    assert config.platform == "janus"
    assert config.media == "userspace"
    assert config.sip_uri == "sip:gw1@sip.example.org"
    assert config.account_line == ACCOUNT
    assert config.video_size == (1280, 720) and config.camera_size == (640, 360)
    assert config.once is False
    assert config.log_dir == Path("/var/log/sipmediagw")
    assert config.ctrl_port == 6666  # IRC's: Chromium refuses it to pages (net::ERR_UNSAFE_PORT)
    # a plain-http room must be treated as a secure origin or getUserMedia is refused
    assert config.insecure_origins == ("http://172.17.0.1:8000",)


def test_account_secret_stays_out_of_repr_and_is_masked_in_logs(env: dict[str, str]) -> None:
    config = GatewayConfig.from_env(env)
    assert "Sup3rSecret" not in repr(config) and "TurnSecret7" not in repr(config)
    assert redact("debug: Sup3rSecret / TurnSecret7") == "debug: *** / ***"


def test_overrides(env: dict[str, str]) -> None:
    env.update(
        SIPMEDIAGW_MEDIA="kernel", SIPMEDIAGW_ALSA_CARDS="2,3", SIPMEDIAGW_ONCE="1", SIPMEDIAGW_VIDEO_SIZE="640x480",
        SIPMEDIAGW_BASE_URL="https://rendez-vous.renater.fr", SIPMEDIAGW_PLATFORM="jitsi",
    )
    config = GatewayConfig.from_env(env)
    assert (config.media, config.alsa_cards, config.once, config.video_size) == ("kernel", (2, 3), True, (640, 480))
    assert config.insecure_origins == ()


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("SIPMEDIAGW_BASE_URL", "", "SIPMEDIAGW_BASE_URL is required"),
        ("SIPMEDIAGW_SERVICE_USER", "a b", "SIPMEDIAGW_SERVICE_USER must be a SIP user part"),
        ("SIPMEDIAGW_ROOM", "a\nb", "SIPMEDIAGW_ROOM contains control characters"),
        ("SIPMEDIAGW_BASE_URL", "ftp://x", "SIPMEDIAGW_BASE_URL must be an http(s) URL"),
        ("SIPMEDIAGW_MEDIA", "magic", "SIPMEDIAGW_MEDIA must be one of"),
        ("SIPMEDIAGW_MEDIA", "kernel", "SIPMEDIAGW_ALSA_CARDS=A,B is required"),
        ("SIPMEDIAGW_ALSA_CARDS", "1,1", "SIPMEDIAGW_ALSA_CARDS must be two different"),
        ("SIPMEDIAGW_VIDEO_SIZE", "big", "SIPMEDIAGW_VIDEO_SIZE must look like 1280x720"),
        ("SIPMEDIAGW_CAMERA_SIZE", "641x360", "SIPMEDIAGW_CAMERA_SIZE must be even"),
        ("SIPMEDIAGW_ONCE", "yes", "SIPMEDIAGW_ONCE must be 0 or 1"),
        ("SIPMEDIAGW_FPS", "0", "SIPMEDIAGW_FPS must be between 1 and 60"),
        # a port a page can open would let it take baresip's single control connection from the supervisor
        ("SIPMEDIAGW_CTRL_PORT", "4444", "SIPMEDIAGW_CTRL_PORT must be a port Chromium refuses to pages"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], name: str, value: str, message: str) -> None:
    env[name] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        GatewayConfig.from_env(env)


def test_missing_account_file(env: dict[str, str], tmp_path: Path) -> None:
    env["SIPMEDIAGW_ACCOUNT_FILE"] = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="nope: account file not found"):
        GatewayConfig.from_env(env)


def test_bad_account_line_names_file_and_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("# comment\nnot an account;auth_pass=x\n")
    env["SIPMEDIAGW_ACCOUNT_FILE"] = str(bad)
    with pytest.raises(FileLineError) as failure:
        GatewayConfig.from_env(env)
    assert (failure.value.path, failure.value.line) == (str(bad), 2)
    assert str(failure.value).startswith(f"{bad}:2: ")


def test_empty_account_file(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# only a comment\n")
    env["SIPMEDIAGW_ACCOUNT_FILE"] = str(empty)
    with pytest.raises(ConfigError, match="no account line"):
        GatewayConfig.from_env(env)


def test_without_a_room_it_is_a_pool_gateway_with_its_dispatch_rules(env: dict[str, str]) -> None:
    del env["SIPMEDIAGW_ROOM"]
    config = GatewayConfig.from_env(env)
    assert (config.mode, config.room, config.dispatch, config.service_user) == ("pool", None, (), "meet")
    assert config.account_user == "gw1"
    env.update(SIPMEDIAGW_BASE_URL="", SIPMEDIAGW_SERVICE_USER="conf", SIPMEDIAGW_DISPATCH=(
        '[{"match": "(?P<n>9[0-9]+)", "platform": "jitsi", "base_url": "http://10.0.0.5:8443/x", "room": "r{n}"}]'))
    config = GatewayConfig.from_env(env)  # the rules alone give rooms: no default service needed
    assert config.base_url == "" and config.service_user == "conf"
    assert [rule.to_dict() for rule in config.dispatch] == [
        {"match": "(?P<n>9[0-9]+)", "platform": "jitsi", "base_url": "http://10.0.0.5:8443/x", "room": "r{n}"}]
    assert config.insecure_origins == ("http://10.0.0.5:8443",)  # plain-http rooms of the rules are whitelisted
    env["SIPMEDIAGW_DISPATCH"] = '[{"match": "(", "platform": "jitsi", "base_url": "https://x"}]'
    with pytest.raises(ConfigError, match=re.escape("SIPMEDIAGW_DISPATCH rule 1: match: invalid regular expression")):
        GatewayConfig.from_env(env)


def test_a_fixed_gateway_ignores_dispatch_rules(env: dict[str, str]) -> None:
    env["SIPMEDIAGW_DISPATCH"] = "not even json"
    config = GatewayConfig.from_env(env)
    assert (config.mode, config.dispatch) == ("fixed", ())
