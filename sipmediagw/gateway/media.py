"""Media wiring of one gateway: which PulseAudio devices exist, who plays/records where, how caller video gets to the
room's camera. Two modes (docs/container.md):

* ``userspace``: null sinks + a remapped monitor source in PulseAudio; caller video reaches the page through the MJPEG
  relay and the injected getUserMedia wrapper. Needs nothing from the host.
* ``kernel`` (the seed's): PulseAudio on the slot's two snd-aloop cards; ffmpeg grabs the caller display into the
  slot's v4l2loopback device, which is Chromium's camera.

Pure data + text: nothing here starts a process, so it is unit-testable without devices.
"""

from __future__ import annotations

import dataclasses
import re
import string
from pathlib import Path

USERSPACE = "userspace"
KERNEL = "kernel"
MODES = (USERSPACE, KERNEL)

CALLER_SINK = "from_caller"  # baresip plays the caller's audio here
ROOM_MIC = "from_caller_mic"  # ... and Chromium records it from here
ROOM_SINK = "to_caller"  # Chromium plays the room's audio here
CALLER_SOURCE_KERNEL = "to_caller_capture"  # kernel mode: capture side of loopback card B

#: how often the mic clock (MediaPlan.mic_clock_argv) reads: the longest a new reader of the microphone waits
MIC_CLOCK_LATENCY_MS = 100
#: every component a gateway can have, in start order (gateway/__main__.py builds them by these names)
COMPONENTS = ("xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "camera", "browser")
#: the ones that only carry video: the caller display baresip draws on, and the camera made from it. The room
#: display (xvfb-web) stays on an audio-only gateway: Chromium needs a display, even when nothing grabs it.
VIDEO_COMPONENTS = ("xvfb-sip", "camera")


_X_DISPLAY = re.compile(r"^:\d{1,4}(?:\.\d{1,2})?$")


def room_grab_source(display: str, fps: int) -> str:
    """baresip ``video_source`` grabbing X `display` (``:N``) whole at `fps`: ffmpeg's x11grab in a lavfi graph, read
    by baresip's avformat module.

    Why not baresip's own x11grab: in 1.0.0 it copies each frame through the X socket with XGetSubImage (unpacked
    pixel by pixel in libX11) and converts BGRA to YUV in C (rem's vidconv); ffmpeg's x11grab uses MIT-SHM and
    swscale converts with SIMD. Measured at 720p15 (docs/benchmarks.md): baresip 6 -> 3 ms of CPU per frame, about
    5 % of a core less per call, Xvfb 1.2 % -> 0.45 %. ``setpts`` numbers the frames on the call's rate: avformat 1.0.0 paces its reads by pts
    against its own clock, started after the stream probe; with x11grab's capture-time pts (absolute: no frame
    after the first; relative: every capture waits out the probe again) it delivered 0 or 3-4 fps, measured.
    Same size and rate as before (the whole display, which is the video size), no mouse pointer (as before).
    """
    if not _X_DISPLAY.match(display):
        raise ValueError(f"expected an X display like ':0', got {display!r}")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ValueError(f"expected a frame rate 1-60, got {fps!r}")
    # Two levels of lavfi escaping: the quotes keep '\:' for the movie filter's options, where it is a literal ':'.
    escaped = display.replace(":", "\\:")
    graph = (f"movie='{escaped}':f=x11grab:format_opts='draw_mouse=0\\:framerate={fps}',"
             f"setpts=N/({fps}*TB),format=yuv420p")
    return f"avformat,lavfi,{graph}"


def _template_dir() -> Path:
    """docker/pulse next to the package: the repository root (host), or /opt/sipmediagw when the package is installed
    as /opt/sipmediagw/lib/sipmediagw (the image keeps lib/ alone on PYTHONPATH so docker/ is no importable name)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "docker" / "pulse", here.parents[3] / "docker" / "pulse"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


DEFAULT_TEMPLATE_DIR = _template_dir()


@dataclasses.dataclass(frozen=True)
class MediaPlan:
    """Everything the supervisor needs to wire audio and video for one media mode."""

    mode: str
    pulse_socket: Path
    camera_size: tuple[int, int] = (640, 360)
    fps: int = 15
    alsa_cards: tuple[int, int] | None = None  # kernel mode: loopback cards A (caller -> room) and B (room -> caller)
    video_device: str = "/dev/video0"
    template_dir: Path = DEFAULT_TEMPLATE_DIR
    video: bool = True  # False: an audio-only gateway (no video in the SDP, no caller display, no camera)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown media mode {self.mode!r} (expected one of: {', '.join(MODES)})")
        if self.mode == KERNEL and self.alsa_cards is None:
            raise ValueError("kernel media mode needs the slot's two ALSA loopback cards (SIPMEDIAGW_ALSA_CARDS=A,B)")
        if self.alsa_cards is not None and (len(self.alsa_cards) != 2 or self.alsa_cards[0] == self.alsa_cards[1]):
            raise ValueError(f"kernel media mode needs two different loopback cards, got {self.alsa_cards}")
        width, height = self.camera_size
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"camera size must be even and positive, got {width}x{height}")

    # -- PulseAudio ----------------------------------------------------------------------------------------------
    @property
    def pulse_server(self) -> str:
        """Value of PULSE_SERVER for every client of this gateway's PulseAudio."""
        return f"unix:{self.pulse_socket}"

    def pulse_script(self) -> str:
        """The ``pulseaudio -n -F`` script creating the module socket and the virtual devices."""
        values = {
            "socket": str(self.pulse_socket),
            "caller_sink": CALLER_SINK,
            "room_mic": ROOM_MIC,
            "room_sink": ROOM_SINK,
            "caller_source": CALLER_SOURCE_KERNEL,
        }
        if self.mode == KERNEL:
            assert self.alsa_cards is not None
            values.update(card_a=str(self.alsa_cards[0]), card_b=str(self.alsa_cards[1]))
        template = (self.template_dir / f"{self.mode}.pa").read_text(encoding="utf-8")
        return string.Template(template).substitute(values)

    def pulse_argv(self, script_path: Path) -> list[str]:
        """Per-user PulseAudio (``--system`` fails in a container) in the foreground, never exiting when idle, with
        the gateway's daemon.conf: PulseAudio takes its default sample rate only from a daemon.conf (no command-line
        option), and PULSE_CONFIG is the one way to name it; ``env`` execs pulseaudio, so the pid stays the same."""
        return [
            "env", f"PULSE_CONFIG={self.template_dir / 'daemon.conf'}",
            "pulseaudio", "-n", "-F", str(script_path), "--daemonize=no", "--use-pid-file=no", "--realtime=no",
            "--high-priority=no", "--exit-idle-time=-1", "--disallow-exit", "--log-target=stderr",
        ]

    @property
    def components(self) -> tuple[str, ...]:
        """The names of the components this gateway runs, in start order."""
        return tuple(name for name in COMPONENTS if self.video or name not in VIDEO_COMPONENTS)

    # -- baresip -------------------------------------------------------------------------------------------------
    def baresip_video(self, room_display: str) -> tuple[str, str] | None:
        """baresip (``video_source``, ``video_display``): the caller sees the room display (:func:`room_grab_source`),
        its video is drawn on the caller display (baresip's DISPLAY); None on an audio-only gateway (no video)."""
        return (room_grab_source(room_display, self.fps), "x11,nil") if self.video else None

    @property
    def audio_player(self) -> str:
        """baresip ``audio_player``: the caller's audio goes to the sink feeding the room's microphone."""
        return f"pulse,{CALLER_SINK}"

    @property
    def audio_source(self) -> str:
        """baresip ``audio_source``: what Chromium plays (the room) is sent to the caller."""
        return f"pulse,{ROOM_SINK}.monitor" if self.mode == USERSPACE else f"pulse,{CALLER_SOURCE_KERNEL}"

    # -- Chromium ------------------------------------------------------------------------------------------------
    def mic_clock_argv(self) -> list[str] | None:
        """userspace: a reader of the room microphone's sink, at MIC_CLOCK_LATENCY_MS, for as long as Chromium runs
        (None in kernel mode: snd-aloop is clocked by the kernel).

        Why: an idle null sink renders in 2 s blocks, and a monitor reader that connects (Chromium's getUserMedia at
        the join) gets its first data only when the block under way ends: up to 2 s of nothing, measured 1.5-1.9 s.
        Chromium then sends the room nothing until the block ends, so a caller answered once the room is joined was
        heard 0.4-1.4 s after the answer. A standing reader keeps the sink rendering in short blocks: a new reader
        gets data within 40-90 ms (measured), at 0.3 % of a core for the reader and PulseAudio.
        """
        if self.mode != USERSPACE:
            return None
        return ["parec", "-s", self.pulse_server, "-d", f"{CALLER_SINK}.monitor", "--raw",
                f"--latency-msec={MIC_CLOCK_LATENCY_MS}", "--rate=48000", "--channels=1", "--format=s16le",
                "/dev/null"]

    def browser_env(self) -> dict[str, str]:
        """Environment routing Chromium's output to the caller and its microphone from the caller."""
        return {"PULSE_SERVER": self.pulse_server, "PULSE_SINK": ROOM_SINK, "PULSE_SOURCE": ROOM_MIC}

    @property
    def uses_mjpeg_relay(self) -> bool:
        """userspace: the caller's video reaches the page as an MJPEG stream turned into a camera track."""
        return self.mode == USERSPACE

    def camera_argv(self, display: str, grab_size: tuple[int, int], grab_offset: tuple[int, int] = (0, 0)) -> list[str]:
        """kernel mode: ffmpeg grabbing the caller display region into the v4l2loopback camera, scaled (letterboxed,
        never cropped) to the camera size."""
        if self.mode != KERNEL:
            raise ValueError("the v4l2 camera feed only exists in kernel media mode")
        width, height = self.camera_size
        scale = (
            f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p"
        )
        return [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning",
            "-f", "x11grab", "-draw_mouse", "0", "-framerate", str(self.fps),
            "-video_size", f"{grab_size[0]}x{grab_size[1]}", "-i", f"{display}+{grab_offset[0]},{grab_offset[1]}",
            "-vf", scale, "-r", str(self.fps),
            "-f", "v4l2", self.video_device,
        ]
