"""Media plans: the PulseAudio scripts, baresip devices, browser routing and the kernel-mode ffmpeg argv."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sipmediagw.gateway.media import KERNEL, USERSPACE, MediaPlan

SOCKET = Path("/tmp/pulse-gw/native")


def _modules(script: str) -> list[dict[str, str]]:
    """Parse `load-module NAME k=v ...` lines into dicts (name under key 'module')."""
    modules = []
    for line in script.splitlines():
        if line.startswith("load-module "):
            name, *args = line.split()[1:]
            modules.append({"module": name, **dict(arg.split("=", 1) for arg in args)})
    return modules


def test_userspace_script_wires_caller_to_mic_and_room_to_caller() -> None:
    plan = MediaPlan(USERSPACE, SOCKET)
    script = plan.pulse_script()
    assert "${" not in script
    mods = _modules(script)
    assert mods[0] == {"module": "module-native-protocol-unix", "auth-anonymous": "1", "socket": str(SOCKET)}
    sinks = {m["sink_name"] for m in mods if m["module"] == "module-null-sink"}
    remaps = [m for m in mods if m["module"] == "module-remap-source"]
    # baresip plays into a null sink whose monitor is remapped into the source Chromium records
    player_sink = plan.audio_player.split(",", 1)[1]
    assert player_sink in sinks
    assert remaps == [{**remaps[0], "master": f"{player_sink}.monitor"}]
    assert plan.browser_env()["PULSE_SOURCE"] == remaps[0]["source_name"]
    # Chromium plays into the other null sink, whose monitor baresip records
    room_sink = plan.browser_env()["PULSE_SINK"]
    assert room_sink in sinks and room_sink != player_sink
    assert plan.audio_source == f"pulse,{room_sink}.monitor"
    assert plan.browser_env()["PULSE_SERVER"] == f"unix:{SOCKET}"
    assert plan.uses_mjpeg_relay
    assert not any(m["module"].startswith("module-alsa") for m in mods)


def test_kernel_script_uses_the_slot_loopback_cards() -> None:
    plan = MediaPlan(KERNEL, SOCKET, alsa_cards=(4, 5), video_device="/dev/video0")
    mods = _modules(plan.pulse_script())
    alsa = {m.get("sink_name") or m.get("source_name"): (m["module"], m["device"]) for m in mods
            if m["module"].startswith("module-alsa")}
    player = plan.audio_player.split(",", 1)[1]
    mic = plan.browser_env()["PULSE_SOURCE"]
    room_sink = plan.browser_env()["PULSE_SINK"]
    source = plan.audio_source.split(",", 1)[1]
    # caller audio: played on card A device 0, Chromium's mic is card A's capture device 1
    assert alsa[player] == ("module-alsa-sink", "hw:4,0")
    assert alsa[mic] == ("module-alsa-source", "hw:4,1")
    # room audio: Chromium plays on card B device 0, baresip records card B device 1
    assert alsa[room_sink] == ("module-alsa-sink", "hw:5,0")
    assert alsa[source] == ("module-alsa-source", "hw:5,1")
    assert not any(m["module"] in ("module-null-sink", "module-remap-source") for m in mods)
    assert not plan.uses_mjpeg_relay


def test_kernel_camera_ffmpeg_scales_the_caller_display_without_cropping() -> None:
    plan = MediaPlan(KERNEL, SOCKET, camera_size=(640, 360), fps=15, alsa_cards=(0, 1), video_device="/dev/video0")
    argv = plan.camera_argv(":1", (1280, 720))
    assert argv[0] == "ffmpeg"
    assert argv[argv.index("-f") + 1] == "x11grab"
    assert argv[argv.index("-video_size") + 1] == "1280x720"
    assert argv[argv.index("-i") + 1] == ":1+0,0"
    vf = argv[argv.index("-vf") + 1]
    assert "scale=640:360:force_original_aspect_ratio=decrease" in vf
    assert "pad=640:360" in vf and "crop" not in vf
    assert argv[-3:] == ["-f", "v4l2", "/dev/video0"]
    assert argv[argv.index("-framerate") + 1] == "15"


def test_kernel_camera_grabs_a_region_when_the_window_is_offset() -> None:
    plan = MediaPlan(KERNEL, SOCKET, alsa_cards=(2, 3), video_device="/dev/video3")
    argv = plan.camera_argv(":7", (352, 288), (10, 20))
    assert argv[argv.index("-i") + 1] == ":7+10,20"
    assert argv[-1] == "/dev/video3"


def test_camera_argv_is_kernel_only() -> None:
    with pytest.raises(ValueError, match="kernel"):
        MediaPlan(USERSPACE, SOCKET).camera_argv(":1", (640, 360))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "magic"}, "unknown media mode 'magic'"),
        ({"mode": KERNEL}, "SIPMEDIAGW_ALSA_CARDS"),
        ({"mode": KERNEL, "alsa_cards": (1, 1)}, "two different loopback cards"),
        ({"mode": USERSPACE, "camera_size": (641, 360)}, "even"),
    ],
)
def test_invalid_plans_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MediaPlan(pulse_socket=SOCKET, **kwargs)


def test_pulse_argv_is_per_user_foreground_and_never_idles_out(tmp_path: Path) -> None:
    argv = MediaPlan(USERSPACE, SOCKET).pulse_argv(tmp_path / "gw.pa")
    assert argv[:4] == ["pulseaudio", "-n", "-F", str(tmp_path / "gw.pa")]
    assert "--daemonize=no" in argv and "--exit-idle-time=-1" in argv and "--system" not in argv
