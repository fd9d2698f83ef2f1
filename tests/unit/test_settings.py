"""Config precedence: defaults < YAML < SIPMEDIAGW_* env < flags; bad values name the file and line."""

from pathlib import Path

import pytest

from sipmediagw.errors import ConfigError, FileLineError
from sipmediagw.settings import Settings, load_settings, parse_size


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
