"""Audio-only gateways (SIPMEDIAGW_AUDIO_ONLY=1, `launch --audio-only`): which components exist, a baresip config
that cannot put m=video in its SDP (no video codec, source or display module, no video_* setting), the browser told
to publish audio only. The docker tier checks the SDP on the wire and the audio both ways."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from sipmediagw.dispatch import RoomTarget
from sipmediagw.errors import ConfigError
from sipmediagw.gateway import __main__ as entry
from sipmediagw.gateway.baresip import VIDEO_MODULES, render_baresip_config
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.gateway.media import COMPONENTS, MediaPlan, room_grab_source
from sipmediagw.gateway.process import ManagedProcess
from sipmediagw.gateway.supervisor import FunctionComponent

from test_baresip_config import ACCOUNT, TEMPLATES, settings
from test_supervisor_wiring import NoDrivers, env  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def close_log_handlers():
    yield
    root = logging.getLogger("sipmediagw.gw")
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)


def build(env: dict[str, str]) -> tuple[GatewayConfig, dict]:
    config = GatewayConfig.from_env(env)
    drivers = NoDrivers(ROOT / "browsing")
    components, _make_controller = entry.build(config, drivers, entry.routing_of(config, drivers))
    return config, {component.name: component for component, _timeout in components}


def video_lines(config_text: str) -> list[str]:
    """Active lines that would give baresip video: video settings and video modules."""
    found = []
    for key, value in settings_text(config_text):
        module = value.removesuffix(".so") if key.startswith("module") else None
        if key.startswith(("video_", "videnc_")) or module in VIDEO_MODULES:
            found.append(f"{key} {value}")
    return found


def settings_text(text: str) -> list[tuple[str, str]]:
    """The active (key, value) pairs of a baresip config text (as test_baresip_config.settings reads a file)."""
    pairs = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.replace("\t", " ").partition(" ")
            pairs.append((key, value.strip()))
    return pairs


def test_the_media_plan_says_which_components_exist() -> None:
    plan = MediaPlan("userspace", Path("/run/pulse.sock"))
    assert plan.components == COMPONENTS
    assert plan.baresip_video(":0") == (room_grab_source(":0", 15), "x11,nil")
    audio = MediaPlan("userspace", Path("/run/pulse.sock"), video=False)
    assert audio.components == ("xvfb-web", "pulseaudio", "baresip", "browser")
    assert audio.baresip_video(":0") is None
    kernel = MediaPlan("kernel", Path("/run/pulse.sock"), alsa_cards=(1, 2), video=False)
    assert "camera" not in kernel.components and "hw:1,0" in kernel.pulse_script()


def test_an_audio_only_gateway_has_no_caller_display_no_camera_and_baresip_without_video(
        env: dict[str, str], tmp_path: Path) -> None:
    env["SIPMEDIAGW_AUDIO_ONLY"] = "1"
    config, components = build(env)
    assert config.audio_only is True
    assert list(components) == ["xvfb-web", "pulseaudio", "baresip", "browser"]  # start order kept
    baresip = components["baresip"]
    assert isinstance(baresip, ManagedProcess) and "DISPLAY" not in baresip.env  # nothing to draw on
    assert isinstance(components["browser"], FunctionComponent) and components["browser"].recoverable
    text = (tmp_path / "run" / "baresip" / "config").read_text()
    assert video_lines(text) == []
    active = dict(settings_text(text))
    assert (active["audio_player"], active["audio_source"]) == ("pulse,from_caller", "pulse,to_caller.monitor")
    modules = [value for key, value in settings_text(text) if key == "module"]
    assert {"opus.so", "g722.so", "g711.so", "pulse.so"} <= set(modules)
    assert "#module\t\t\tavcodec.so\t\t# audio-only gateway" in text.splitlines()  # says why it is off


def test_a_gateway_with_video_keeps_all_of_it(env: dict[str, str], tmp_path: Path) -> None:
    config, components = build(env)
    assert config.audio_only is False and list(components) == list(COMPONENTS)
    assert components["baresip"].env["DISPLAY"] == ":1"  # type: ignore[attr-defined]
    text = (tmp_path / "run" / "baresip" / "config").read_text()
    assert {f"video_source {room_grab_source(':0', 15)}", "video_display x11,nil", "module avcodec.so",
            "module vp8.so", "module avformat.so", "module x11.so"} <= set(video_lines(text))


def test_the_browser_of_an_audio_only_gateway_publishes_audio_only(env: dict[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    env["SIPMEDIAGW_AUDIO_ONLY"] = "1"
    config = GatewayConfig.from_env(env)
    joined: list[dict] = []

    class Session:
        def __init__(self, browser, room_cls, base_url, room, options=None) -> None:  # type: ignore[no-untyped-def]
            joined.append(dict(options or {}))

        def join(self, name: str, cancelled: threading.Event | None = None, dialogue: object = None) -> None:
            pass

    import sipmediagw.gateway.browser as browser_module

    monkeypatch.setattr(browser_module, "BrowserRoomSession", Session)
    slot = entry.BrowserSlot(config, None, NoDrivers(ROOT / "browsing"), ":0", lambda: None)  # type: ignore
    slot.browser = object()
    slot.join(RoomTarget("noroom", "https://x", "1"), "alice", threading.Event())
    assert joined == [{"audio_only": True}]  # the driver joins without a camera where its platform asks


def test_any_template_loses_its_video_modules(tmp_path: Path) -> None:
    """A site's own template that lists codecs statically still renders without video."""
    template = tmp_path / "templates"
    template.mkdir()
    (template / "config_default").write_text(
        (TEMPLATES / "config_default").read_text() + "module\t\t\tvp9.so\nmodule_app\t\tsnapshot.so\n"
        "module\t\t\tav1.so # trailing comment\nvideo_selfview\t\twindow\n")
    out = render_baresip_config(template, tmp_path / "cfg", account_line=ACCOUNT, audio_player="pulse,a",
                                audio_source="pulse,b", video_source=None, video_display=None,
                                video_size=(1280, 720), fps=15, extra={"snd_path": "/tmp/x"})
    pairs = settings(out / "config")
    assert video_lines((out / "config").read_text()) == []
    assert ("module", "sndfile.so") in pairs and ("module_app", "ctrl_tcp.so") in pairs


def test_video_source_and_display_go_together() -> None:
    with pytest.raises(ConfigError, match="give both"):
        render_baresip_config(TEMPLATES, Path("/nonexistent"), account_line=ACCOUNT, audio_player="pulse,a",
                              audio_source="pulse,b", video_source="x11grab,:0", video_display=None,
                              video_size=(1280, 720), fps=15)


def test_config_reads_the_flag_and_names_the_request_socket(env: dict[str, str], tmp_path: Path) -> None:
    assert GatewayConfig.from_env(env).request_socket == tmp_path / "run" / "requests.sock"
    with pytest.raises(ConfigError, match="SIPMEDIAGW_AUDIO_ONLY must be 0 or 1"):
        GatewayConfig.from_env({**env, "SIPMEDIAGW_AUDIO_ONLY": "yes"})


def test_jitsi_joins_an_audio_only_gateway_with_its_camera_off_and_in_audio_only_mode() -> None:
    from sipmediagw.room import load_room_driver

    jitsi = load_room_driver("jitsi", ROOT / "browsing")
    plain = jitsi(None, "https://meet.example.org", "team").url()
    audio = jitsi(None, "https://meet.example.org", "team", {"audio_only": True}).url()
    assert "config.startWithVideoMuted=false" in plain and "config.startAudioOnly" not in plain
    assert "config.startWithVideoMuted=true" in audio and "config.startAudioOnly=true" in audio
