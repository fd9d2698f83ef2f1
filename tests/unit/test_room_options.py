"""Room options from the operator to the driver: plain ones by flag/settings into the environment, secret ones from
files into the account's secret file; each kind refused on the other's path; checked by the driver at launch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sipmediagw.errors import ConfigError, ValidationError
from sipmediagw.gateway.config import read_account_file
from sipmediagw.redaction import redact
from sipmediagw.room import Option, Room
from sipmediagw.room_options import (check_against_driver, from_env, parse_assignment, parse_secret_line,
                                     read_secret_file, secret_lines, to_env)
from sipmediagw.settings import load_settings

from test_cli import PROJECT, FakeDocker, env, invoke  # noqa: F401 (env: the CLI tests' fixture)

SECRET_DRIVER = '''from sipmediagw.room import Option, Room


class SecretRoom(Room):
    platform = "janus"
    OPTIONS = {"page": Option(str, "a page"), "password": Option(str, "the room's password", secret=True),
               "retries": Option(int, "retries", minimum=0, maximum=5)}

    def url(self):
        return self.base_url + "/" + self.room

    def join(self, display_name):
        pass

    def leave(self):
        pass
'''


class Driver(Room):
    platform = "demo"
    OPTIONS = {"page": Option(str), "password": Option(str, secret=True), "retries": Option(int, minimum=0, maximum=5),
               "mode": Option(str, choices=("a", "b")), "fast": Option(bool)}

    def url(self) -> str:
        return ""

    def join(self, display_name: str) -> None:
        pass

    def leave(self) -> None:
        pass


def test_assignments_need_a_key_and_an_equals_sign() -> None:
    assert parse_assignment("page=videoroomtest.html", "--room-option") == ("page", "videoroomtest.html")
    assert parse_assignment("config=a=b", "--room-option") == ("config", "a=b")  # only the first '=' splits
    for bad in ("page", "=x", "Page=x", "a b=x", "1a=x"):
        with pytest.raises(ValidationError, match="^--room-option: expected KEY=VALUE"):
            parse_assignment(bad, "--room-option")


def test_the_driver_types_and_ranges_each_option_and_refuses_unknown_ones() -> None:
    assert check_against_driver(Driver, {"retries": "3", "fast": "yes", "mode": "b", "join_timeout": "12.5"}, {}) \
        == {"retries": 3, "fast": True, "mode": "b", "join_timeout": 12.5}
    with pytest.raises(ValidationError, match=r"demo: unknown room option 'colour' \(known: audio_only, fast, "):
        check_against_driver(Driver, {"colour": "red"}, {})
    with pytest.raises(ValidationError, match="demo: option retries: 'many' is not a whole number"):
        check_against_driver(Driver, {"retries": "many"}, {})
    with pytest.raises(ValidationError, match=r"demo: option retries: 9 is out of range \[0, 5\]"):
        check_against_driver(Driver, {"retries": "9"}, {})
    with pytest.raises(ValidationError, match="option join_timeout: 'nan' is not a number"):
        check_against_driver(Driver, {"join_timeout": "nan"}, {})
    with pytest.raises(ValidationError, match="option mode: 'c' is not one of a, b"):
        check_against_driver(Driver, {"mode": "c"}, {})


def test_each_kind_is_refused_on_the_other_path() -> None:
    with pytest.raises(ValidationError, match="room option 'password' is secret, so it comes from a file: pass --room-secret KEY=FILE"):
        check_against_driver(Driver, {"password": "hunter2"}, {})
    with pytest.raises(ValidationError, match="room option 'page' is not secret, so it is plain: pass it with --room-option"):
        check_against_driver(Driver, {}, {"page": "x.html"})
    assert check_against_driver(Driver, {"page": "x.html"}, {"password": "hunter2"}) == \
        {"page": "x.html", "password": "hunter2"}


def test_a_bad_secret_value_is_never_shown() -> None:
    with pytest.raises(ValidationError) as caught:
        check_against_driver(Driver, {}, {"password": "x"}) and None
        Option(int, secret=True).convert("pin", "s3cr3t-not-a-number", "demo")
    assert "s3cr3t" not in str(caught.value) and "option pin: is not a whole number" in str(caught.value)


def test_secret_files_give_one_line_and_errors_never_show_the_content(tmp_path: Path) -> None:
    good = tmp_path / "secret"
    good.write_text("Sh4red-Secret-1\n")
    assert read_secret_file("shared_secret", good) == "Sh4red-Secret-1"
    assert "Sh4red-Secret-1" not in redact("checksum computed with Sh4red-Secret-1")  # masked from now on
    cases = {"empty": ("\n", "the file is empty"), "two": ("Line-One-x\nLine-Two-y\n", "more than one line"),
             "big": ("y" * 5000, "larger than 4096 bytes"), "ctl": ("bad\x07bell-z\n", "control characters")}
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(ValidationError, match=message) as caught:
            read_secret_file("shared_secret", path)
        assert "Line-One" not in str(caught.value) and "bell-z" not in str(caught.value)
    with pytest.raises(ValidationError, match=r"room secret shared_secret \(.*missing\): cannot read the file"):
        read_secret_file("shared_secret", tmp_path / "missing")


def test_plain_options_travel_as_json_in_the_environment() -> None:
    options = {"page": "videoroomtest.html", "retries": 2, "config": {"a": True}}
    assert from_env(to_env(options)) == options
    assert from_env("") == {}
    with pytest.raises(ConfigError, match="SIPMEDIAGW_ROOM_OPTIONS: expected a JSON object"):
        from_env("[1, 2]")
    with pytest.raises(ValidationError, match="invalid room option name 'Bad'"):
        from_env('{"Bad": 1}')


def test_secret_options_travel_in_the_account_file_and_the_gateway_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "sipmediagw-account"
    account = "<sip:gw@example.org>;auth_pass=Pw-123456"
    path.write_text(account + "\n" + secret_lines({"shared_secret": "Bbb-Secret-42", "password": "Room=Pass;1"}))
    line, uri, secrets = read_account_file(path)
    assert (line, uri) == (account, "sip:gw@example.org")
    assert secrets == {"shared_secret": "Bbb-Secret-42", "password": "Room=Pass;1"}
    assert "Bbb-Secret-42" not in redact("joining with Bbb-Secret-42")
    assert parse_secret_line("<sip:x@y>", "f:1") is None
    with pytest.raises(ConfigError, match="^f:2: expected room-secret KEY=VALUE$"):
        parse_secret_line("room-secret novalue", "f:2")


def test_settings_take_room_options_and_secret_files_from_yaml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(f"room_options:\n  page: videoroomtest.html\n  retries: 2\nroom_secrets:\n  password: {tmp_path}/pw\n")
    settings = load_settings(config, env={})
    assert settings.room_options == {"page": "videoroomtest.html", "retries": 2}
    assert settings.room_secrets == {"password": tmp_path / "pw"}
    settings = load_settings(config, env={"SIPMEDIAGW_ROOM_OPTIONS": '{"page": "other.html"}'})
    assert settings.room_options == {"page": "other.html"}
    config.write_text("room_options:\n  - page\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:1: room_options: expected a mapping of option: value"):
        load_settings(config, env={})


@pytest.fixture
def secret_env(env: Path) -> Path:
    (env / "browsing" / "janus.py").write_text(SECRET_DRIVER)
    (env / "room.pw").write_text("Room-Pw-777\n")
    return env


def test_launch_passes_plain_options_in_the_environment_and_secrets_in_the_secret_file(secret_env: Path) -> None:
    fake = FakeDocker()
    result = invoke(fake, "launch", "-r", "r1", "-g", "gw-o", "--room-option", "page=videoroomtest.html",
                    "--room-option", "retries=2", "--room-secret", f"password={secret_env / 'room.pw'}")
    assert result.exit_code == 0, result.output
    [gateway] = fake.gateways()
    environment = gateway.attrs["Config"]["Env"]
    assert json.loads(environment["SIPMEDIAGW_ROOM_OPTIONS"]) == {"page": "videoroomtest.html", "retries": 2}
    [(uid, mode, content)] = gateway.files.values()
    assert content.decode().splitlines() == ["<sip:gw1@h>;auth_pass=SECRET1", "room-secret password=Room-Pw-777"]
    assert mode & 0o077 == 0
    everything_visible = json.dumps([gateway.attrs, gateway.labels]) + result.output
    assert "Room-Pw-777" not in everything_visible


@pytest.mark.parametrize("args, message", [
    (["--room-option", "password=inline"], "room option 'password' is secret, so it comes from a file: pass --room-secret KEY=FILE"),
    (["--room-option", "colour=red"], "unknown room option 'colour'"),
    (["--room-option", "retries=9"], "option retries: 9 is out of range"),
    (["--room-option", "nokey"], "--room-option: expected KEY=VALUE"),
    (["--room-secret", "password=/nonexistent/pw"], "room secret password (/nonexistent/pw): cannot read the file"),
    (["--room-secret", "page=/etc/hostname"], "room option 'page' is not secret, so it is plain"),
])
def test_a_bad_room_option_is_one_line_exit_2_and_nothing_started(secret_env: Path, args: list[str],
                                                                    message: str) -> None:
    fake = FakeDocker()
    result = invoke(fake, "launch", "-r", "r1", "-g", "gw-o", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "inline" not in result.stderr
    assert fake.containers_by_id == {}  # no gateway, no claim


def test_the_real_janus_driver_takes_its_page_option_at_launch(env: Path) -> None:
    (env / "browsing" / "janus.py").write_text((PROJECT / "browsing" / "janus.py").read_text())
    fake = FakeDocker()
    result = invoke(fake, "launch", "-r", "1234", "-g", "gw-p", "--room-option", "page=../etc/passwd")
    assert result.exit_code == 2 and "janus: invalid page name" in result.stderr
    result = invoke(fake, "launch", "-r", "1234", "-g", "gw-p", "--room-option", "page=videoroomtest.html")
    assert result.exit_code == 0, result.output
