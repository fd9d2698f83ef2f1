"""Is one tone heard clean in a recording that mixes several (a room with several callers, each its own tone)?

`sipmediagw.testbed.tones.check_tone` judges a recording that carries ONE tone: its broadband level per 20 ms frame
and the share of each 100 ms block's energy at the tone. In a mix both fail by construction (the level is the sum,
a tone holds only part of the energy), so this check applies the same two criteria narrowband: the tone's own level
(a Hann-windowed single-frequency DFT) in every 20 ms frame must be at most MAX_DROP_DB below what was sent, and in
every 100 ms block (resolution +-20 Hz: the tones of a run are >= 150 Hz apart) as well. A tone that fades or breaks
up fails, whatever the other tones do.
"""

from __future__ import annotations

import dataclasses
import wave
from pathlib import Path

import numpy as np

from sipmediagw.testbed.tones import (BLOCK_S, FRAME_S, MAX_DROP_DB, MIN_AUDIBLE_SHARE, MIN_TONE_SHARE, MIN_WINDOW_S,
                                      SETTLE_S, TAIL_S)


@dataclasses.dataclass(frozen=True)
class MixCheck:
    """The verdict on one tone of a mix."""

    hz: float
    min_level_db: float
    onset: float | None  # seconds into the recording (None: never heard)
    seconds: float  # judged window
    audible_share: float  # of 20 ms frames with the tone at level
    tone_share: float  # of 100 ms blocks with the tone at level (+-20 Hz)
    median_db: float  # the tone's narrowband level, median over the window

    @property
    def ok(self) -> bool:
        """Heard at level for >= 10 s, steadily (the thresholds of testbed/tones.py)."""
        return bool(self.onset is not None and self.seconds >= MIN_WINDOW_S - 2
                    and self.audible_share >= MIN_AUDIBLE_SHARE and self.tone_share >= MIN_TONE_SHARE)

    def summary(self) -> str:
        """One line for reports."""
        if self.onset is None:
            return f"{self.hz:.0f} Hz never heard above {self.min_level_db:.0f} dBFS (narrowband)"
        text = (f"{self.hz:.0f} Hz narrowband median {self.median_db:.0f} dBFS, audible {self.audible_share:.0%} / "
                f"tone {self.tone_share:.0%} of {self.seconds:.1f} s")
        return text if self.ok else text + ": NOT clean"

    def as_dict(self) -> dict[str, object]:
        """For results.json."""
        return dataclasses.asdict(self) | {"ok": self.ok, "summary": self.summary()}


def read_channel(path: Path) -> tuple[np.ndarray, int]:
    """Channel 1 of a 16-bit WAV as float64 in [-1, 1], and its rate."""
    with wave.open(str(path)) as handle:
        rate, channels = handle.getframerate(), handle.getnchannels()
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return data[::channels].astype(np.float64) / 32768.0, rate


def narrowband_db(samples: np.ndarray, rate: int, hz: float, size: int) -> np.ndarray:
    """The RMS level (dBFS) of the `hz` component in consecutive chunks of `size` samples."""
    count = len(samples) // size
    if count == 0:
        return np.zeros(0)
    chunks = samples[:count * size].reshape(count, size)
    window = np.hanning(size)
    phase = np.exp(-2j * np.pi * hz * np.arange(size) / rate)
    amplitude = 2 * np.abs(chunks @ (window * phase)) / window.sum()  # A of A*sin(...) at hz
    return 20 * np.log10(np.maximum(amplitude / np.sqrt(2), 1e-6))


def check_in_mix(path: Path, hz: float, sent_level_db: float, max_drop_db: float = MAX_DROP_DB) -> MixCheck:
    """Judge tone `hz` in the recording at `path` against the level it was sent at."""
    samples, rate = read_channel(path)
    threshold = sent_level_db - max_drop_db
    frame = max(8, int(FRAME_S * rate))
    frames = narrowband_db(samples, rate, hz, frame)
    heard = np.nonzero(frames >= threshold)[0]
    if len(heard) == 0:
        return MixCheck(hz, threshold, None, 0.0, 0.0, 0.0, float(np.median(frames)) if len(frames) else -120.0)
    onset = float(heard[0]) * FRAME_S
    start, end = onset + SETTLE_S, len(samples) / rate - TAIL_S
    judged = frames[int(round(start / FRAME_S)):int(end / FRAME_S)]
    block = max(8, int(BLOCK_S * rate))
    blocks = narrowband_db(samples[int(start * rate):int(end * rate)], rate, hz, block)
    return MixCheck(hz, threshold, round(onset, 2), round(max(0.0, end - start), 1),
                    round(float(np.mean(judged >= threshold)), 3) if len(judged) else 0.0,
                    round(float(np.mean(blocks >= threshold)), 3) if len(blocks) else 0.0,
                    round(float(np.median(judged)), 1) if len(judged) else -120.0)
