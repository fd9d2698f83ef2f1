"""Config precedence: defaults < YAML < SIPMEDIAGW_* env < flags; bad values name the file and line."""

from pathlib import Path

import pytest

from sipmediagw.errors import ConfigError, FileLineError
from sipmediagw.settings import Settings, load_settings, parse_size, read_config_file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipmediagw.yaml"
    path.write_text(text)
    return path


def test_defaults_without_any_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"HOME": str(tmp_path)})
    assert settings == Settings()
    assert settings.image == "sipmediagw:latest" and settings.media == "auto" and settings.stop_timeout == 20


def test_each_layer_overrides_the_previous(tmp_path):
    config = write(tmp_path, "image: from-yaml\nplatform: jitsi\nbase_url: https://yaml\nmemory_per_gateway: 1G\n")
    env = {"SIPMEDIAGW_PLATFORM": "bigbluebutton", "SIPMEDIAGW_BASE_URL": "https://env", "HOME": str(tmp_path)}
    settings = load_settings(config, env=env, overrides={"base_url": "https://flag", "image": None})
    assert settings.image == "from-yaml"  # only YAML set it (flag given as None = not given)
    assert settings.platform == "bigbluebutton"  # env beats YAML
    assert settings.base_url == "https://flag"  # flag beats env
    assert settings.memory_per_gateway == 1024**3


def test_config_found_in_current_directory(tmp_path, monkeypatch):
    write(tmp_path, "platform: jitsi\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={"HOME": str(tmp_path)}).platform == "jitsi"


def test_config_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text("image: via-env-config\n")
    assert load_settings(env={"SIPMEDIAGW_CONFIG": str(other)}).image == "via-env-config"


def test_unknown_key_names_file_and_line(tmp_path):
    config = write(tmp_path, "image: x\n\nimgae: typo\n")
    with pytest.raises(FileLineError) as caught:
        load_settings(config, env={})
    assert caught.value.line == 3 and str(config) in str(caught.value) and "imgae" in str(caught.value)


def test_bad_value_names_file_and_line(tmp_path):
    config = write(tmp_path, "cpu_per_gateway: lots\n")
    with pytest.raises(FileLineError, match=r":1: cpu_per_gateway"):
        load_settings(config, env={})


def test_invalid_yaml_is_a_file_line_error(tmp_path):
    config = write(tmp_path, "image: [unclosed\n")
    with pytest.raises(FileLineError):
        load_settings(config, env={})


def test_bad_env_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="SIPMEDIAGW_READY_TIMEOUT"):
        load_settings(env={"SIPMEDIAGW_READY_TIMEOUT": "soon", "HOME": str(tmp_path)})


def test_invalid_media_mode_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="media"):
        load_settings(env={"HOME": str(tmp_path)}, overrides={"media": "magic"})


def test_container_side_variables_are_not_settings(tmp_path):
    # SIPMEDIAGW_ROOM etc. belong to the container's contract; the host ignores them
    settings = load_settings(env={"SIPMEDIAGW_ROOM": "x", "SIPMEDIAGW_LOG_DIR": "/y", "HOME": str(tmp_path)})
    assert settings.logs_dir != Path("/y")


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})


@pytest.mark.parametrize("text,expected", [("512M", 512 * 1024**2), ("1.5G", 1536 * 1024**2), ("2048", 2048),
                                           ("64MiB", 64 * 1024**2), (100, 100)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage():
    with pytest.raises(ValueError):
        parse_size("big")


DISPATCH_YAML = """\
base_url: https://meet.example.org
dispatch:
  - match: '9(?P<id>[0-9]{3})'
    platform: jitsi
    base_url: https://other.example.org
    room: 'conf-{id}'
  - match: '[0-9]{4}'
    platform: janus
    base_url: http://172.17.0.1:8000
service_user: conf
"""


def test_dispatch_rules_from_yaml_remember_their_file_and_line(tmp_path):
    config = write(tmp_path, DISPATCH_YAML)
    settings = load_settings(config, env={})
    assert [rule.to_dict() for rule in settings.dispatch] == [
        {"match": "9(?P<id>[0-9]{3})", "platform": "jitsi", "base_url": "https://other.example.org",
         "room": "conf-{id}"},
        {"match": "[0-9]{4}", "platform": "janus", "base_url": "http://172.17.0.1:8000", "room": "{meeting}"}]
    assert [rule.source for rule in settings.dispatch] == [f"{config}:3", f"{config}:7"]
    assert settings.service_user == "conf"


@pytest.mark.parametrize("change, line, message", [
    (("room: 'conf-{id}'", "room: 'conf-{nope}'"), 6, "dispatch: room: unknown field {nope}"),
    (("match: '[0-9]{4}'", "match: '[0-9'"), 7, "dispatch: match: invalid regular expression"),
    (("platform: janus", "platform: Janus"), 8, "dispatch: platform: invalid name 'Janus'"),
    (("    base_url: http://172", "    base_url: ftp://172"), 9, "dispatch: base_url: invalid base URL"),
    (("    platform: janus\n", ""), 7, "dispatch: platform is required"),
    ((DISPATCH_YAML, "base_url: https://x\ndispatch: everything\n"), 2, "dispatch: expected a list of rules"),
])
def test_a_bad_dispatch_rule_names_the_file_and_the_line_of_the_key(tmp_path, change, line, message):
    config = write(tmp_path, DISPATCH_YAML.replace(*change))
    with pytest.raises(FileLineError) as caught:
        load_settings(config, env={})
    assert (caught.value.line, caught.value.path) == (line, str(config)), str(caught.value)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_dispatch_from_the_environment_is_json(tmp_path):
    env = {"HOME": str(tmp_path), "SIPMEDIAGW_DISPATCH": '[{"match": "1", "platform": "janus", "base_url": "https://h"}]'}
    assert load_settings(env=env).dispatch[0].to_dict()["base_url"] == "https://h"
    with pytest.raises(ConfigError, match="SIPMEDIAGW_DISPATCH rule 1: match is required"):
        load_settings(env={**env, "SIPMEDIAGW_DISPATCH": '[{"platform": "janus", "base_url": "https://h"}]'})
    with pytest.raises(ConfigError, match="service_user must be a SIP user part"):
        load_settings(env={"HOME": str(tmp_path), "SIPMEDIAGW_SERVICE_USER": "no spaces"})


def test_yaml_aliases_huge_files_and_deep_nesting_are_refused_in_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "dispatch: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n")
    with pytest.raises(ConfigError, match=r"bomb.yaml:\d+: .*aliases"):
        read_config_file(bomb)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# padding\n" * 40_000)
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        read_config_file(huge)
    deep = tmp_path / "deep.yaml"
    deep.write_text("dispatch: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):
        read_config_file(deep)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"image: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_config_file(binary)
