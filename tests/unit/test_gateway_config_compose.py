"""docker-compose.yml describes the same gateway container as `sipmediagw launch` (launcher.container_config), in a
file format both Debian's docker-compose 1.29.2 and compose v2 accept, and its environment is accepted by the
entrypoint's own config parser. tests/docker/test_compose.py runs it for real."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipmediagw import labels, launcher
from sipmediagw.accounts import parse_account_line
from sipmediagw.allocator import Allocation
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.settings import Settings, parse_size

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
GATEWAY = "gw-7"  # canonical (lowercase, hyphens): the CLI keeps it as it is in the container name
VARIABLES = {"SIPMEDIAGW_GATEWAY": GATEWAY, "SIPMEDIAGW_ROOM": "room1", "SIPMEDIAGW_BASE_URL": "https://meet.example",
             "SIPMEDIAGW_ACCOUNT": "./baresip/gw-7.account"}
# What container_config may return today; a new key there must be mirrored in docker-compose.yml (then add it here).
CREATE_KEYS = {"image", "name", "hostname", "labels", "environment", "stop_signal", "stop_timeout", "detach"}
HOST_KEYS = {"binds", "init", "shm_size", "cap_drop", "security_opt", "devices", "mem_limit", "memswap_limit",
             "nano_cpus", "pids_limit", "restart_policy", "log_config", "tmpfs"}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with the given variables."""
    def repl(match: re.Match[str]) -> str:
        name, op, arg = match[1], match[2], match[3]
        if name in variables:
            return variables[name]
        assert op != ":?", f"compose requires {name}"
        return arg or ""
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", repl, value)


def _resolved(value: Any, variables: dict[str, str] = VARIABLES) -> Any:
    """The compose value after interpolation, recursively (what compose hands the engine)."""
    if isinstance(value, str):
        return _interpolate(value, variables)
    if isinstance(value, list):
        return [_resolved(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: _resolved(item, variables) for key, item in value.items()}
    return value


def _service() -> dict[str, Any]:
    return _resolved(_compose()["services"]["gateway"])


def _security_opts(options: list[str], folder: Path | None = None) -> list[Any]:
    """security_opt entries as the engine gets them: compose reads a ``seccomp=<file>`` itself and sends its JSON."""
    read = []
    for option in options:
        key, _, value = option.partition("=")
        if key == "seccomp":
            read.append((key, json.loads((folder / value).read_text() if folder and not value.startswith("{")
                                         else value)))
        else:
            read.append(option)
    return read


def _cli_config(project: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """container_config for the compose file's layout: logs/, browsing/ and baresip/ beside it."""
    settings = Settings(logs_dir=project / "logs", browsing_dir=project / "browsing", baresip_dir=project / "baresip")
    account = parse_account_line(f"<sip:{GATEWAY}@sip.example.org>;auth_pass=x1y2z3")
    return launcher.container_config(settings, launcher.LaunchRequest(GATEWAY, VARIABLES["SIPMEDIAGW_ROOM"]),
                                     Allocation("userspace", 0, account, None), VARIABLES["SIPMEDIAGW_BASE_URL"],
                                     engine_cpus=2)  # the CPU quota the file states: that of a 2-CPU engine


def test_file_format_is_accepted_by_compose_1_29_and_v2() -> None:
    compose = _compose()
    # 1.29.2 (Debian 12) rejects a top-level `name:` ("does not match any of the regexes"): the project name is -p
    assert set(compose) - {"services", "secrets"} == set()
    assert "version" not in compose  # v2 warns that it is obsolete; 1.29.2 reads a file without it as the spec
    assert list(compose["services"]) == ["gateway"]


def test_container_options_match_the_cli(tmp_path: Path) -> None:
    service = _service()
    create, host = _cli_config(tmp_path)
    assert set(create) <= CREATE_KEYS and set(host) <= HOST_KEYS, "container_config grew: mirror it in compose"
    assert service["image"] == create["image"]
    assert service["container_name"] == create["name"] == "sipmediagw-gw-7"
    assert service["hostname"] == create["hostname"]
    assert service["stop_signal"] == create["stop_signal"]
    assert service["stop_grace_period"] == f"{create['stop_timeout']}s"
    assert service["init"] is host["init"] is True
    assert service["shm_size"] == host["shm_size"]
    assert service["cap_drop"] == host["cap_drop"]
    assert _security_opts(service["security_opt"], COMPOSE.parent) == _security_opts(host["security_opt"])
    assert service["network_mode"] == "bridge"  # container_config names no network: the engine's default bridge
    # the limits of the default per-gateway budget, the restart policy of a gateway without --once, Docker's log
    assert service["cpus"] * 1e9 == host["nano_cpus"]
    assert parse_size(service["mem_limit"]) == parse_size(service["memswap_limit"]) == host["mem_limit"] == \
        host["memswap_limit"]
    assert service["pids_limit"] == host["pids_limit"]
    assert service["restart"] == host["restart_policy"]["Name"] == "unless-stopped"
    assert service["logging"] == {"driver": host["log_config"]["type"], "options": host["log_config"]["config"]}
    assert dict(entry.split(":", 1) for entry in service["tmpfs"]) == host["tmpfs"]
    assert "user" not in service  # the image's USER gw (10001) is the contract
    assert "devices" not in service and "devices" not in host  # userspace media in both
    # the org.sipmediagw.* labels are the CLI's record of what it runs (slot, account): compose must not fake them
    assert not any(str(key).startswith(labels.PREFIX) for key in service.get("labels", {}))


def test_environment_is_the_clis_and_never_secret(tmp_path: Path) -> None:
    service = _service()
    create, _host = _cli_config(tmp_path)
    environment = {key: str(value) for key, value in service["environment"].items()}
    assert environment == create["environment"]
    assert not any("PASS" in key.upper() or "pass=" in value for key, value in environment.items())


def test_mounts_and_secret_match_the_cli(tmp_path: Path) -> None:
    service = _service()
    _create, host = _cli_config(tmp_path)
    binds = []
    for volume in service["volumes"]:
        source, target, mode = volume.rsplit(":", 2)
        binds.append(f"{(tmp_path / source).resolve()}:{target}:{mode}")  # compose: relative to the project folder
    assert binds == host["binds"]
    assert service["secrets"] == [Path(launcher.CONTAINER_ACCOUNT_FILE).name]
    assert Path(launcher.CONTAINER_ACCOUNT_FILE).parent == Path("/run/secrets")  # where compose mounts secrets
    secret = _resolved(_compose()["secrets"])[Path(launcher.CONTAINER_ACCOUNT_FILE).name]
    assert secret == {"file": VARIABLES["SIPMEDIAGW_ACCOUNT"]}


def test_environment_is_what_the_entrypoint_reads(tmp_path: Path) -> None:
    service = _service()
    environment = {key: str(value) for key, value in service["environment"].items()}
    account = tmp_path / "account"
    account.write_text("<sip:gw1@sip.example.org>;auth_pass=x1y2z3\n")
    # the real parser accepts it (with the secret file where the container would have it)
    config = GatewayConfig.from_env({**environment, "SIPMEDIAGW_ACCOUNT_FILE": str(account)})
    assert (config.room, config.base_url, config.platform, config.media) == (
        "room1", "https://meet.example", "janus", "userspace")


@pytest.mark.parametrize("name", ["SIPMEDIAGW_ROOM", "SIPMEDIAGW_BASE_URL", "SIPMEDIAGW_ACCOUNT"])
def test_required_variables_are_required(name: str) -> None:
    variables = {key: value for key, value in VARIABLES.items() if key != name}
    with pytest.raises(AssertionError, match=name):
        _resolved(_compose(), variables)
