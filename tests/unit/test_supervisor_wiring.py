"""The entrypoint's wiring (gateway/__main__.py): component order, environments, rendered baresip devices, and bad
input refused before anything starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sipmediagw.gateway import __main__ as entry
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.gateway.process import ManagedProcess
from sipmediagw.room import Room
from sipmediagw.state import GatewayState, read_state

ROOT = Path(__file__).resolve().parents[2]


class NoRoom(Room):
    platform = "noroom"

    def url(self) -> str:
        return "about:blank"

    def join(self, display_name: str) -> None:
        pass

    def leave(self) -> None:
        pass


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    account = tmp_path / "account"
    account.write_text("<sip:gw1@sip.example.org>;auth_pass=Wiring-Secret-1\n")
    return {
        "SIPMEDIAGW_ROOM": "1234", "SIPMEDIAGW_BASE_URL": "http://172.17.0.1:8000",
        "SIPMEDIAGW_ACCOUNT_FILE": str(account), "SIPMEDIAGW_LOG_DIR": str(tmp_path / "logs"),
        "SIPMEDIAGW_BARESIP_DIR": str(ROOT / "baresip"), "SIPMEDIAGW_BROWSING_DIR": str(ROOT / "browsing"),
        "SIPMEDIAGW_RUN_DIR": str(tmp_path / "run"), "SIPMEDIAGW_NET_INTERFACE": "lo",
    }


@pytest.fixture(autouse=True)
def close_log_handlers():
    yield
    root = logging.getLogger("sipmediagw.gw")
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)


def test_userspace_components_in_start_order_with_their_wiring(env: dict[str, str], tmp_path: Path) -> None:
    config = GatewayConfig.from_env(env)
    components, make_controller = entry.build(config, NoRoom)
    assert [c.name for c, _ in components] == ["xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "camera", "browser"]
    by_name = {c.name: c for c, _ in components}
    assert by_name["xvfb-web"].argv[:4] == ["Xvfb", ":0", "-screen", "0"] and "1280x720x24" in by_name["xvfb-web"].argv
    assert ":1" in by_name["xvfb-sip"].argv
    baresip = by_name["baresip"]
    assert isinstance(baresip, ManagedProcess)
    assert baresip.env["DISPLAY"] == ":1"
    assert baresip.env["PULSE_SERVER"] == f"unix:{tmp_path / 'run' / 'pulse.sock'}"
    rendered = (tmp_path / "run" / "baresip" / "config").read_text()
    settings = dict(line.split(None, 1) for line in rendered.splitlines() if line and not line.startswith("#")
                    and len(line.split(None, 1)) == 2)
    assert settings["audio_player"] == "pulse,from_caller"
    assert settings["audio_source"] == "pulse,to_caller.monitor"
    assert settings["video_source"] == "x11grab,:0"  # the caller sees the room display
    assert settings["video_display"] == "x11,nil"  # and its video is drawn on the caller display
    assert (tmp_path / "run" / "baresip" / "accounts").stat().st_mode & 0o777 == 0o600
    assert "from_caller_mic" in (tmp_path / "run" / "gateway.pa").read_text()
    assert getattr(by_name["browser"], "recoverable") is True
    assert not getattr(by_name["camera"], "recoverable", False)


def test_kernel_mode_camera_is_ffmpeg_into_the_v4l2_device(env: dict[str, str], tmp_path: Path) -> None:
    env.update(SIPMEDIAGW_MEDIA="kernel", SIPMEDIAGW_ALSA_CARDS="3,4")
    components, _ = entry.build(GatewayConfig.from_env(env), NoRoom)
    camera = dict((c.name, c) for c, _ in components)["camera"]
    assert camera.argv[0] == "ffmpeg" and camera.argv[-1] == "/dev/video0"
    assert "hw:3,0" in (tmp_path / "run" / "gateway.pa").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SIPMEDIAGW_ROOM": ""}, "SIPMEDIAGW_ROOM is required"),
        ({"SIPMEDIAGW_PLATFORM": "nosuch"}, "no driver for platform 'nosuch'"),
        ({"SIPMEDIAGW_BARESIP_DIR": "/nonexistent"}, "cannot read the baresip template"),
    ],
)
def test_bad_input_exits_2_with_the_reason_in_the_state_file_and_nothing_started(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, message: str) -> None:
    started: list[str] = []
    monkeypatch.setattr(ManagedProcess, "start", lambda self: started.append(self.name))
    for key, value in {**env, **change}.items():
        monkeypatch.setenv(key, value)
    assert entry.main([]) == 2
    state = read_state(tmp_path / "logs")
    assert state is not None and state.state is GatewayState.ERROR
    assert message in (state.last_error or "")
    assert started == []
    assert "Wiring-Secret-1" not in (tmp_path / "logs" / "app.log").read_text()


def test_tolerant_probe_waits_out_short_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(entry.time, "monotonic", lambda: now[0])
    alive = [False]
    probe = entry.tolerant(lambda: alive[0], grace=10.0)
    assert probe() is True  # first failure: within grace
    now[0] += 9
    assert probe() is True
    alive[0] = True
    assert probe() is True
    alive[0] = False
    now[0] += 1
    assert probe() is True  # the gap restarted
    now[0] += 10.5
    assert probe() is False
