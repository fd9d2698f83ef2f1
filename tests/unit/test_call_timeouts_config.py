"""The three call timeouts as settings: host Settings (YAML/env) -> the container's environment -> GatewayConfig ->
the call watch and baresip's rtp_timeout backstop; and the pool gateway's keypad menu wired in by the entrypoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sipmediagw.errors import ConfigError
from sipmediagw.gateway import __main__ as entry
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.gateway.incall import InCall, Timeouts
from sipmediagw.gateway.menu import KeypadMenuSession
from sipmediagw.settings import Settings, load_settings
from test_supervisor_wiring import build, close_log_handlers, env  # noqa: F401 (fixtures)


def test_defaults_agree_on_both_sides() -> None:
    settings, timeouts = Settings(), Timeouts()
    fields = {f.name: f.default for f in dataclasses.fields(GatewayConfig)}
    assert (settings.alone_timeout, settings.no_media_timeout, settings.max_call_duration) == (300, 60, 14400)
    assert (fields["alone_timeout"], fields["no_media_timeout"], fields["max_call_duration"]) == (300, 60, 14400)
    assert (timeouts.alone, timeouts.no_media, timeouts.max_call) == (300, 60, 14400)


def test_settings_from_yaml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "sipmediagw.yaml"
    config.write_text("alone_timeout: 45\nmax_call_duration: 0\n")
    settings = load_settings(config, env={"SIPMEDIAGW_NO_MEDIA_TIMEOUT": "12.5"})
    assert (settings.alone_timeout, settings.no_media_timeout, settings.max_call_duration) == (45, 12.5, 0)
    with pytest.raises(ConfigError, match="no_media_timeout"):
        load_settings(config, env={"SIPMEDIAGW_NO_MEDIA_TIMEOUT": "-1"})
    config.write_text("alone_timeout: soon\n")
    with pytest.raises(ConfigError, match=r"sipmediagw.yaml:1"):
        load_settings(config, env={})


def test_the_launcher_passes_them_to_the_container(tmp_path: Path) -> None:
    from test_gateway_config_compose import _cli_config

    create, _host = _cli_config(tmp_path)
    assert {k: v for k, v in create["environment"].items() if "TIMEOUT" in k or "DURATION" in k} == {
        "SIPMEDIAGW_ALONE_TIMEOUT": "300", "SIPMEDIAGW_NO_MEDIA_TIMEOUT": "60", "SIPMEDIAGW_MAX_CALL_DURATION": "14400"}


def test_the_gateway_reads_them_and_refuses_bad_values(env: dict[str, str]) -> None:  # noqa: F811
    config = GatewayConfig.from_env({**env, "SIPMEDIAGW_ALONE_TIMEOUT": "30", "SIPMEDIAGW_NO_MEDIA_TIMEOUT": "0",
                                     "SIPMEDIAGW_MAX_CALL_DURATION": "7200"})
    assert (config.alone_timeout, config.no_media_timeout, config.max_call_duration) == (30, 0, 7200)
    for bad in ("-5", "abc", "nan", "inf", "1e9"):
        with pytest.raises(ConfigError, match="SIPMEDIAGW_ALONE_TIMEOUT"):
            GatewayConfig.from_env({**env, "SIPMEDIAGW_ALONE_TIMEOUT": bad})


def rendered(tmp_path: Path) -> dict[str, str]:
    text = (tmp_path / "run" / "baresip" / "config").read_text()
    return dict(line.split(None, 1) for line in text.splitlines()
                if line and not line.startswith("#") and len(line.split(None, 1)) == 2)


def test_baresips_rtp_timeout_is_the_backstop_behind_the_watch(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    build(GatewayConfig.from_env({**env, "SIPMEDIAGW_NO_MEDIA_TIMEOUT": "8"}))
    assert rendered(tmp_path)["rtp_timeout"].split()[0] == "28"  # 8 + 20: the caller hears from us first
    build(GatewayConfig.from_env({**env, "SIPMEDIAGW_NO_MEDIA_TIMEOUT": "0"}))
    assert rendered(tmp_path)["rtp_timeout"].split()[0] == "0"  # off in both


def test_pool_gateways_get_the_keypad_menu_and_every_call_the_watch(env: dict[str, str]) -> None:  # noqa: F811
    del env["SIPMEDIAGW_ROOM"]
    config = GatewayConfig.from_env({**env, "SIPMEDIAGW_ALONE_TIMEOUT": "30"})
    made: dict[str, Any] = {}

    def menu(slot: entry.BrowserSlot) -> Any:
        made["menu"] = entry.keypad_menu(slot)
        return made["menu"]

    def watch(slot: entry.BrowserSlot) -> Any:
        made["watch"] = entry.call_watch(slot)
        return made["watch"]

    drivers = entry.RoomDrivers(Path(env["SIPMEDIAGW_BROWSING_DIR"]))
    _components, make_controller = entry.build(config, drivers, entry.routing_of(config, drivers), menu, watch)
    # make_controller connects to baresip: build the parts it hands the controller instead
    plan = entry.MediaPlan("userspace", Path("/tmp/unused.sock"))
    slot = entry.BrowserSlot(config, plan, drivers, ":0", camera_url=lambda: None)
    assert isinstance(menu(slot), KeypadMenuSession) and isinstance(watch(slot), InCall)
    assert made["watch"].timeouts == Timeouts(alone=30, no_media=60, max_call=14400)
    assert entry.build.__defaults__ == (entry.keypad_menu, entry.call_watch)  # what main() uses
