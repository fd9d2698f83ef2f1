"""The codec floor: CPU seconds that the video codecs alone need for 60 s of a gateway's media, timed with ffmpeg.

A gateway cannot use less CPU than decoding what the caller sends plus encoding what it sends back (SIP leg), and on
the room side Chromium encodes the camera and decodes the other participants (room leg). Each piece is one ffmpeg
run on the host, single-threaded, at the fastest real-time settings, timed with wait4() (user + system of that
child only). The cost of generating the synthetic source (lavfi) is measured alone and subtracted.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

FFMPEG = "ffmpeg"

#: encoder options close to what baresip's vp8/avcodec modules and WebRTC use: real time, one pass, no look-ahead.
ENCODERS = {
    "VP8": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "16", "-lag-in-frames", "0",
            "-error-resilient", "1", "-f", "webm"],
    "H264": ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
             "-f", "mp4"],
}
EXTENSIONS = {"VP8": "webm", "H264": "mp4"}


@dataclasses.dataclass(frozen=True)
class Stream:
    """One video stream of a call: codec, size, frame rate, bit rate."""

    codec: str
    width: int
    height: int
    fps: float
    bitrate: int  # bit/s

    @property
    def label(self) -> str:
        """e.g. VP8 1280x720@15 922 kbit/s."""
        return f"{self.codec} {self.width}x{self.height}@{self.fps:g} {self.bitrate // 1000} kbit/s"


def timed(argv: list[str]) -> float:
    """Run `argv`, return its user+system CPU seconds (this child only); raise with stderr when it fails."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode(errors='replace')[-800:]}")
    return usage.ru_utime + usage.ru_stime


def _source(stream: Stream, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={stream.width}x{stream.height}:rate={stream.fps:g}",
            "-t", f"{seconds:g}", "-pix_fmt", "yuv420p"]


def _rate(stream: Stream) -> list[str]:
    rate = str(stream.bitrate)
    return ["-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", str(stream.bitrate // 2)]


def source_cost(stream: Stream, seconds: float) -> float:
    """CPU seconds to generate the raw test frames alone (subtracted from encode timings)."""
    return timed([FFMPEG, "-nostdin", "-loglevel", "error", "-threads", "1", *_source(stream, seconds),
                  "-f", "null", "-"])


def encode_cost(stream: Stream, seconds: float, out: Path | None = None) -> tuple[float, Path | None]:
    """(CPU seconds to encode `seconds` of `stream`, source generation excluded; the file if `out` is given)."""
    target = str(out) if out else "-"
    argv = [FFMPEG, "-nostdin", "-loglevel", "error", "-y", *_source(stream, seconds), "-threads", "1",
            *_rate(stream), *ENCODERS[stream.codec]]
    if out is None:
        argv = argv[:-2] + ["-f", "null"]  # same encoder, output discarded
    total = timed([*argv, target])
    return max(0.0, total - source_cost(stream, seconds)), out


def decode_cost(path: Path) -> float:
    """CPU seconds to decode a file (single thread, frames discarded)."""
    return timed([FFMPEG, "-nostdin", "-loglevel", "error", "-threads", "1", "-i", str(path), "-f", "null", "-"])


def measure(sip_in: Stream, sip_out: Stream, room_out: Stream, room_in: Stream, workdir: Path,
            seconds: float = 60) -> dict:
    """CPU seconds per `seconds` of media: SIP leg (decode caller + encode room view), room leg (Chromium: encode
    camera + decode the participant), for the streams of the measured call."""
    workdir.mkdir(parents=True, exist_ok=True)

    def decode_of(stream: Stream, name: str) -> float:
        encoded, path = encode_cost(stream, seconds, workdir / f"{name}.{EXTENSIONS[stream.codec]}")
        assert path is not None
        cost = decode_cost(path)
        path.unlink(missing_ok=True)
        return cost

    parts = {
        "sip_decode_caller": (sip_in, decode_of(sip_in, "caller")),
        "sip_encode_room_view": (sip_out, encode_cost(sip_out, seconds)[0]),
        "room_encode_camera": (room_out, encode_cost(room_out, seconds)[0]),
        "room_decode_participant": (room_in, decode_of(room_in, "participant")),
    }
    result = {name: {"stream": stream.label, "cpu_s": round(cost, 2)} for name, (stream, cost) in parts.items()}
    sip = parts["sip_decode_caller"][1] + parts["sip_encode_room_view"][1]
    room = parts["room_encode_camera"][1] + parts["room_decode_participant"][1]
    result["seconds_of_media"] = seconds
    result["sip_leg_cpu_s"] = round(sip, 2)
    result["both_legs_cpu_s"] = round(sip + room, 2)
    result["sip_leg_pct_of_one_core"] = round(100 * sip / seconds, 1)
    result["both_legs_pct_of_one_core"] = round(100 * (sip + room) / seconds, 1)
    return result


def measure_audio(workdir: Path, seconds: float = 60, codec: str = "opus") -> dict:
    """The audio-only call's floor: the caller's audio decoded + the room's encoded (SIP leg), the same on the room
    leg (Chromium), each one mono 48 kHz Opus stream at 20 ms frames (or G.711 mu-law at 8 kHz), timed as above."""
    workdir.mkdir(parents=True, exist_ok=True)
    rate, args, ext = ((48000, ["-c:a", "libopus", "-b:a", "32000", "-frame_duration", "20", "-application",
                               "voip"], "ogg") if codec == "opus"
                       else (8000, ["-c:a", "pcm_mulaw"], "wav"))
    source = ["-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate={rate}", "-t", f"{seconds:g}", "-ac", "1"]
    base = [FFMPEG, "-nostdin", "-loglevel", "error", "-y", "-threads", "1"]
    generate = timed([*base, *source, "-f", "null", "-"])
    path = workdir / f"audio.{ext}"
    encode = max(0.0, timed([*base, *source, *args, str(path)]) - generate)
    decode = timed([*base, "-i", str(path), "-f", "null", "-"])
    path.unlink(missing_ok=True)
    per_leg = encode + decode
    return {"codec": codec, "seconds_of_media": seconds, "encode_cpu_s": round(encode, 3),
            "decode_cpu_s": round(decode, 3), "sip_leg_pct_of_one_core": round(100 * per_leg / seconds, 2),
            "both_legs_pct_of_one_core": round(200 * per_leg / seconds, 2)}
