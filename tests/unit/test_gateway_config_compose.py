"""docker-compose.yml describes the same gateway container as `sipmediagw launch` (launcher.py) and its
environment is accepted by the entrypoint's own config parser."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sipmediagw import launcher
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["gateway"]


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with the given variables."""
    def repl(match: re.Match[str]) -> str:
        name, op, arg = match[1], match[2], match[3]
        if name in variables:
            return variables[name]
        assert op != ":?", f"compose requires {name}"
        return arg or ""
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", repl, value)


def test_container_options_match_the_cli() -> None:
    service = _service()
    settings = Settings()
    assert service["image"] == settings.image
    assert service["init"] is True
    assert service["shm_size"] == settings.shm_size
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges"]
    assert service["stop_signal"] == "SIGTERM"
    assert service["stop_grace_period"] == f"{settings.stop_timeout}s"
    assert "user" not in service  # the image's USER gw (10001) is the contract


def test_mounts_and_secret_match_the_container_contract() -> None:
    service = _service()
    targets = dict(volume.rsplit(":", 2)[1:] for volume in service["volumes"])
    assert targets == {launcher.CONTAINER_LOG_DIR: "rw", launcher.CONTAINER_BROWSING_DIR: "ro",
                       f"{launcher.CONTAINER_BARESIP_DIR}/{launcher.BARESIP_TEMPLATE}": "ro"}
    assert service["secrets"] == [Path(launcher.CONTAINER_ACCOUNT_FILE).name]
    assert Path(launcher.CONTAINER_ACCOUNT_FILE).parent == Path("/run/secrets")  # where compose mounts secrets
    assert Path(launcher.CONTAINER_ACCOUNT_FILE).name in yaml.safe_load(COMPOSE.read_text())["secrets"]


def test_environment_is_what_the_entrypoint_reads_and_never_secret(tmp_path: Path) -> None:
    service = _service()
    environment = {k: _interpolate(str(v), {"SIPMEDIAGW_ROOM": "room1", "SIPMEDIAGW_BASE_URL": "https://meet.example"})
                   for k, v in service["environment"].items()}
    assert not any("PASS" in key.upper() or "pass=" in value for key, value in environment.items())
    assert environment["SIPMEDIAGW_ACCOUNT_FILE"] == launcher.CONTAINER_ACCOUNT_FILE
    assert environment["SIPMEDIAGW_LOG_DIR"] == launcher.CONTAINER_LOG_DIR
    assert environment["SIPMEDIAGW_BROWSING_DIR"] == launcher.CONTAINER_BROWSING_DIR
    assert environment["SIPMEDIAGW_BARESIP_DIR"] == launcher.CONTAINER_BARESIP_DIR
    # the real parser accepts it (with the secret file where the container would have it)
    account = tmp_path / "account"
    account.write_text("<sip:gw1@sip.example.org>;auth_pass=x1y2z3\n")
    config = GatewayConfig.from_env({**environment, "SIPMEDIAGW_ACCOUNT_FILE": str(account)})
    assert (config.room, config.base_url, config.platform, config.media) == (
        "room1", "https://meet.example", "janus", "userspace")
