"""Media plans: the PulseAudio scripts, baresip devices, browser routing and the kernel-mode ffmpeg argv."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from sipmediagw.gateway.baresip import render_baresip_config
from sipmediagw.gateway.media import KERNEL, USERSPACE, MediaPlan, room_grab_source

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
    start = argv.index("pulseaudio")
    assert argv[start:start + 4] == ["pulseaudio", "-n", "-F", str(tmp_path / "gw.pa")]
    assert "--daemonize=no" in argv and "--exit-idle-time=-1" in argv and "--system" not in argv


def test_the_caller_sees_the_room_display_grabbed_through_shm_at_the_call_rate(tmp_path: Path) -> None:
    """baresip's video source is ffmpeg's x11grab (MIT-SHM, swscale) inside a lavfi graph read by avformat, not
    baresip's own x11grab; the graph names the room display, the rate, no pointer, and numbers frames on the rate."""
    source, display = MediaPlan(USERSPACE, SOCKET, fps=15).baresip_video(":0") or ("", "")
    assert display == "x11,nil"
    assert source == room_grab_source(":0", 15)
    driver, fmt, graph = source.split(",", 2)
    assert (driver, fmt) == ("avformat", "lavfi")
    assert graph.startswith("movie='\\:0':f=x11grab:")
    assert "draw_mouse=0" in graph and "framerate=15" in graph
    assert graph.endswith(",setpts=N/(15*TB),format=yuv420p")  # pts on the call's rate, not capture times
    assert MediaPlan(USERSPACE, SOCKET, video=False).baresip_video(":0") is None
    # the rendered config loads avformat (not x11grab) and keeps the graph on one line, as baresip reads it
    templates = Path(__file__).resolve().parents[2] / "baresip"
    out = render_baresip_config(templates, tmp_path / "cfg", account_line="<sip:gw@example.org>",
                                audio_player="pulse,a", audio_source="pulse,b.monitor", video_source=source,
                                video_display=display, video_size=(1280, 720), fps=15)
    text = (out / "config").read_text()
    assert f"video_source\t\t{source}\n" in text
    assert "avformat.so" in text and "x11grab.so" not in text


@pytest.mark.parametrize("display, fps", [(":0'", 15), ("0", 15), (":0,x", 15), (":1", 0), (":1", 61)])
def test_room_grab_source_refuses_what_would_break_the_graph(display: str, fps: int) -> None:
    with pytest.raises(ValueError):
        room_grab_source(display, fps)


@pytest.fixture
def xvfb(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private Xvfb on a free display number; yields ':N'."""
    number = next(n for n in range(190, 290) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "320x240x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():  # the server is up when its socket exists
            assert proc.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.integration  # runs the host's ffmpeg against a real Xvfb
def test_the_grab_graph_delivers_yuv_frames_of_the_whole_display(xvfb: str) -> None:
    """The escaping survives ffmpeg's two parsing levels: the graph baresip's avformat opens yields frames."""
    graph = room_grab_source(xvfb, 15).split(",", 2)[2]
    probe = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-f", "lavfi", "-i", graph, "-frames:v", "3",
                            "-f", "null", "-"], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert re.search(r"Video: rawvideo .*yuv420p.*320x240", probe.stderr), probe.stderr[-2000:]
    assert re.search(r"frame=\s*3\b", probe.stderr), probe.stderr[-2000:]
    assert re.search(r"Video: rawvideo .*, 15 tbr", probe.stderr), probe.stderr[-2000:]


def test_pulseaudio_runs_every_stream_at_the_sinks_rate() -> None:
    """Chromium opens its streams at PulseAudio's default rate (44100 Hz unless configured): the gateway's daemon.conf
    makes it the null sinks' 48000 Hz, so no stream of the call is resampled (measured: Chromium's three streams went
    from speex-float-1 to copy)."""
    plan = MediaPlan(USERSPACE, SOCKET)
    argv = plan.pulse_argv(Path("/tmp/gw.pa"))
    assert argv[0] == "env" and argv[2] == "pulseaudio"
    assert argv[1] == f"PULSE_CONFIG={plan.template_dir / 'daemon.conf'}"
    conf = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in (plan.template_dir / "daemon.conf").read_text().splitlines())
        if key.strip() and not key.lstrip().startswith("#")
    )
    sink_rates = {m["rate"] for m in _modules(plan.pulse_script()) if m["module"] == "module-null-sink"}
    assert sink_rates == {conf["default-sample-rate"]} == {"48000"}
