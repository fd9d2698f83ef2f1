"""Tone checks on recordings: the dominant frequency of a WAV file, measured with sox."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

_FREQ = re.compile(r"Rough\s+frequency:\s*(-?\d+)")
#: sox's "rough frequency" grows with any energy above the tone: Opus at 48 kHz leaves coding noise up there that
#: lifted a clean 440 Hz tone to 444-473 Hz (PCMU at 8 kHz has none). Our test tones are <= 1 kHz: cut at 2 kHz.
LOWPASS_HZ = 2000


def dominant_frequency(wav: Path, start: float = 1, duration: float = 3, lowpass_hz: int | None = LOWPASS_HZ) -> float:
    """Rough dominant frequency (Hz) of channel 1 of `wav` between `start` and `start + duration` seconds,
    low-passed at `lowpass_hz` first (None: not filtered).

    `remix 1` matters: on a stereo file sox's estimate is otherwise halved.
    """
    effects = ["remix", "1", "trim", str(start), str(duration)]
    if lowpass_hz:
        effects += ["sinc", f"-{lowpass_hz}"]
    proc = subprocess.run(["sox", str(wav), "-n", *effects, "stat", "-freq"], capture_output=True, text=True,
                          timeout=60)
    match = _FREQ.search(proc.stderr)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"sox could not measure {wav}: {proc.stderr.strip()[-500:]}")
    return float(match.group(1))


def make_tone(path: Path, freq: float, seconds: float = 30, rate: int = 48000, channels: int = 1) -> Path:
    """Write a sine tone WAV (16-bit) with sox; used as a fake microphone."""
    subprocess.run(["sox", "-n", "-r", str(rate), "-c", str(channels), "-b", "16", str(path),
                    "synth", str(seconds), "sine", str(freq), "vol", "0.5"], check=True, capture_output=True,
                   timeout=60)
    return path
