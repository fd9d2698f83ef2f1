"""What the caller heard: how much of the time the tone was there (its frequency: sipmediagw.testbed.tones)."""

from __future__ import annotations

import array
import math
import sys
import wave
from pathlib import Path

FRAME_S = 0.02  # one Opus/G.711 packet
AUDIBLE_SHARE = 0.25  # a frame counts as audible above this share of the loud (90th percentile) frames' RMS


def audible_share(wav: Path, start: float = 0.0, duration: float | None = None) -> float:
    """Share (0-1) of 20 ms frames of channel 1, from the first audible one on, that carry sound.

    A steady tone scores ~1, a choppy one (packets lost or late on a starved host) low; 0 if nothing was heard.
    """
    with wave.open(str(wav)) as w:
        if w.getsampwidth() != 2:
            raise RuntimeError(f"{wav}: expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        w.setpos(min(w.getnframes(), int(start * rate)))
        count = w.getnframes() - w.tell() if duration is None else int(duration * rate)
        samples = array.array("h", w.readframes(count))
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    mono = samples[::channels]
    step = int(FRAME_S * rate)
    rms = [math.sqrt(sum(s * s for s in mono[i:i + step]) / step) for i in range(0, len(mono) - step + 1, step)]
    if not rms:
        return 0.0
    loud = sorted(rms)[int(0.9 * (len(rms) - 1))]
    if loud == 0:
        return 0.0
    audible = [r >= AUDIBLE_SHARE * loud for r in rms]
    heard = audible[audible.index(True):]  # the wait before the room's audio first arrives is latency, not loss
    return sum(heard) / len(heard)
