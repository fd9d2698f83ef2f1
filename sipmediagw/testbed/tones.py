"""Tone checks on recordings: is a test tone heard as a person would hear it, for the whole call?

One home for every audio measurement of the test bed, the demo and the benchmark:
- :func:`check_tone` judges a recording over a long window: the level of every 20 ms frame (is it loud enough,
  relative to what was sent?) and, in every 100 ms block, whether the energy is at the expected frequency. A tone
  that fades 40 dB after two seconds, or that comes and goes, fails it; sox's "rough frequency" alone would not
  notice (it reports a frequency for a signal 60 dB down).
- :func:`dominant_frequency` is sox's estimate, shown next to the verdict.
- :func:`wait_wav_complete` waits until a WAV's writer closed it (sndfile finalises the header on hang-up).

Pure Python (``wave`` + ``array``) except the sox estimate, so the verdict logic is unit-tested anywhere.
"""

from __future__ import annotations

import array
import dataclasses
import math
import re
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Sequence

_FREQ = re.compile(r"Rough\s+frequency:\s*(-?\d+)")
#: sox's "rough frequency" grows with any energy above the tone: Opus at 48 kHz leaves coding noise up there that
#: lifted a clean 440 Hz tone to 444-473 Hz (PCMU at 8 kHz has none). Our test tones are <= 1 kHz: cut at 2 kHz.
LOWPASS_HZ = 2000
FRAME_S = 0.02  # one Opus/G.711 packet: the unit of "was there sound"
BLOCK_S = 0.1  # frequency blocks: +-10 Hz resolution, short enough to see a tone come and go
#: a frame is audible when it is at most this far below the level that was sent: 40 dB down fails, codec and
#: mixing losses (a few dB) pass
MAX_DROP_DB = 20.0
MIN_AUDIBLE_SHARE = 0.9  # of the 20 ms frames in the window
MIN_TONE_SHARE = 0.8  # of the 100 ms blocks in the window, energy mostly at the expected frequency
TONE_RATIO = 0.5  # a block "is the tone" when at least half its energy is within the Goertzel main lobe
MIN_WINDOW_S = 10.0  # the "at least 10 s spread over the call"
SETTLE_S = 0.5  # skipped after the onset (jitter buffer fill, first packets)
TAIL_S = 0.3  # skipped at the end (the hang-up cuts the last packets)
TOLERANCE = 0.05  # relative, on sox's frequency estimate


def read_mono(path: Path) -> tuple[list[float], int]:
    """Channel 1 of a 16-bit PCM WAV as floats in [-1, 1], and its sample rate."""
    with wave.open(str(path)) as handle:
        if handle.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples, got {8 * handle.getsampwidth()}-bit")
        rate, channels = handle.getframerate(), handle.getnchannels()
        samples = array.array("h", handle.readframes(handle.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    return [s / 32768.0 for s in samples[::channels]], rate


def write_pcm16(path: Path, pcm: array.array, rate: int) -> Path:
    """Write 16-bit samples (native byte order, as an ``array('h')``) as a mono WAV."""
    if sys.byteorder == "big":
        pcm = array.array("h", pcm)
        pcm.byteswap()  # WAV is little-endian
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return path


def write_mono(path: Path, samples: Sequence[float], rate: int) -> Path:
    """Write floats in [-1, 1] as a 16-bit mono WAV (synthetic signals)."""
    return write_pcm16(path, array.array("h", (max(-32768, min(32767, round(s * 32767))) for s in samples)), rate)


def level_db(samples: Sequence[float]) -> float:
    """RMS level in dBFS (a full-scale sine is -3 dBFS); -120 for silence."""
    if not samples:
        return -120.0
    power = math.fsum(s * s for s in samples) / len(samples)
    return 10 * math.log10(power) if power > 1e-12 else -120.0


def tone_ratio(block: Sequence[float], rate: int, hz: float) -> float:
    """Share (0-1) of a block's energy at `hz`: Hann-windowed Goertzel power over the windowed energy.

    A clean tone scores about 1 (0.7 when it is half a bin off), noise or another tone close to 0.
    """
    n = len(block)
    if n < 8:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = energy = wsum = wsq = 0.0
    step = 2 * math.pi / (n - 1)
    for i, x in enumerate(block):
        w = 0.5 - 0.5 * math.cos(step * i)
        v = x * w
        s0 = v + coeff * s1 - s2
        s2, s1 = s1, s0
        energy += v * v
        wsum += w
        wsq += w * w
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    if energy <= 1e-12:
        return 0.0
    # For A*sin at hz: power = (A*wsum/2)^2 and energy = A^2*wsq/2, so this ratio is 1 for a pure tone.
    return min(1.0, power * 2 * wsq / (wsum * wsum * energy))


@dataclasses.dataclass(frozen=True)
class ToneCheck:
    """What a recording says about a tone: when it was first heard, and how steadily over the window after that."""

    expected_hz: float
    min_level_db: float  # a 20 ms frame below this is "not heard"
    duration: float  # of the whole recording, seconds
    onset: float | None  # first audible frame, seconds into the recording (None: never heard)
    window: tuple[float, float]  # what was judged, seconds into the recording
    audible_share: float  # of the 20 ms frames in the window
    tone_share: float  # of the 100 ms blocks in the window
    median_db: float  # median frame level in the window
    low_db: float  # 5th-percentile frame level in the window
    hz: float | None = None  # sox's estimate over the window (None: not measured)
    min_window: float = MIN_WINDOW_S

    @property
    def seconds(self) -> float:
        """Length of the judged window."""
        return max(0.0, self.window[1] - self.window[0])

    @property
    def frequency_ok(self) -> bool:
        """sox's estimate (when measured) agrees with the expected frequency."""
        return self.hz is None or abs(self.hz - self.expected_hz) <= self.expected_hz * TOLERANCE

    @property
    def ok(self) -> bool:
        """Heard at the right level and frequency for at least `min_window` seconds without fading or gaps."""
        return (self.onset is not None and self.seconds >= self.min_window
                and self.audible_share >= MIN_AUDIBLE_SHARE and self.tone_share >= MIN_TONE_SHARE
                and self.frequency_ok)

    def why(self) -> str:
        """The first reason the check fails ('' when it passes)."""
        if self.onset is None:
            return f"never heard above {self.min_level_db:.0f} dBFS in {self.duration:.1f} s"
        if self.seconds < self.min_window:
            return f"heard for only {self.seconds:.1f} s (need {self.min_window:.0f} s)"
        if self.audible_share < MIN_AUDIBLE_SHARE:
            return (f"audible in only {self.audible_share:.0%} of 20 ms frames (5th percentile "
                    f"{self.low_db:.0f} dBFS, threshold {self.min_level_db:.0f})")
        if self.tone_share < MIN_TONE_SHARE:
            return f"the {self.expected_hz:.0f} Hz tone in only {self.tone_share:.0%} of 100 ms blocks"
        if not self.frequency_ok:
            return f"dominant frequency {self.hz:.0f} Hz, expected {self.expected_hz:.0f} Hz"
        return ""

    def summary(self) -> str:
        """One line for reports: frequency, level, steadiness, window."""
        hz = f"{self.hz:.0f} Hz" if self.hz is not None else f"{self.expected_hz:.0f} Hz (tone share)"
        text = (f"{hz}, median {self.median_db:.0f} dBFS, audible {self.audible_share:.0%} / tone "
                f"{self.tone_share:.0%} of {self.seconds:.1f} s")
        return text if self.ok else f"{text}: {self.why()}"


def judge(samples: Sequence[float], rate: int, expected_hz: float, min_level_db: float, *,
          min_window: float = MIN_WINDOW_S, after: float = 0.0) -> ToneCheck:
    """The verdict on `samples` (mono floats): onset (not before `after` seconds), then level and frequency over
    everything after it."""
    frame = max(1, int(FRAME_S * rate))
    levels = [level_db(samples[i:i + frame]) for i in range(0, len(samples) - frame + 1, frame)]
    duration = len(samples) / rate if rate else 0.0
    first = int(after / FRAME_S)
    onset_index = next((i for i, db in enumerate(levels) if i >= first and db >= min_level_db), None)
    if onset_index is None:
        return ToneCheck(expected_hz, min_level_db, duration, None, (0.0, 0.0), 0.0, 0.0,
                         _percentile(levels, 0.5), _percentile(levels, 0.05), min_window=min_window)
    onset = onset_index * FRAME_S
    start, end = onset + SETTLE_S, max(onset + SETTLE_S, duration - TAIL_S)
    judged = levels[int(round(start / FRAME_S)):int(end / FRAME_S)]
    audible = sum(db >= min_level_db for db in judged) / len(judged) if judged else 0.0
    block = max(8, int(BLOCK_S * rate))
    first, last = int(start * rate), int(end * rate)
    ratios = [tone_ratio(samples[i:i + block], rate, expected_hz) for i in range(first, last - block + 1, block)]
    tone = sum(r >= TONE_RATIO for r in ratios) / len(ratios) if ratios else 0.0
    return ToneCheck(expected_hz, min_level_db, duration, onset, (start, end), audible, tone,
                     _percentile(judged, 0.5), _percentile(judged, 0.05), min_window=min_window)


def check_tone(wav: Path, expected_hz: float, sent_level_db: float, *, max_drop_db: float = MAX_DROP_DB,
               min_window: float = MIN_WINDOW_S, measure_hz: bool = True, after: float = 0.0) -> ToneCheck:
    """Judge the tone in `wav` against what was sent at `sent_level_db`, from `after` seconds in (e.g. once a call
    left the keypad menu for the room); with `measure_hz`, add sox's estimate of the dominant frequency over the
    judged window."""
    samples, rate = read_mono(wav)
    result = judge(samples, rate, expected_hz, sent_level_db - max_drop_db, min_window=min_window, after=after)
    if measure_hz and result.onset is not None and result.seconds > 0:
        result = dataclasses.replace(result, hz=dominant_frequency(wav, start=result.window[0],
                                                                   duration=result.seconds))
    return result


def sent_level(wav: Path) -> float:
    """The median 20 ms level (dBFS) of what a source sent, e.g. baresip's encoder-side sndfile dump."""
    samples, rate = read_mono(wav)
    frame = max(1, int(FRAME_S * rate))
    levels = [level_db(samples[i:i + frame]) for i in range(0, len(samples) - frame + 1, frame)]
    return _percentile([db for db in levels if db > -100], 0.5)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return -120.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]


def dominant_frequency(wav: Path, start: float = 1, duration: float = 3, lowpass_hz: int | None = LOWPASS_HZ) -> float:
    """Rough dominant frequency (Hz) of channel 1 of `wav` between `start` and `start + duration` seconds,
    low-passed at `lowpass_hz` first (None: not filtered).

    `remix 1` matters: on a stereo file sox's estimate is otherwise halved.
    """
    effects = ["remix", "1", "trim", f"{start:.3f}", f"{duration:.3f}"]
    if lowpass_hz:
        effects += ["sinc", f"-{lowpass_hz}"]
    proc = subprocess.run(["sox", str(wav), "-n", *effects, "stat", "-freq"], capture_output=True, text=True,
                          timeout=60)
    match = _FREQ.search(proc.stderr)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"sox could not measure {wav}: {proc.stderr.strip()[-500:]}")
    return float(match.group(1))


def make_tone(path: Path, freq: float, seconds: float = 30, rate: int = 48000, channels: int = 1) -> Path:
    """Write a sine tone WAV (16-bit, amplitude 0.5: -9 dBFS RMS) with sox; used as a fake microphone."""
    subprocess.run(["sox", "-n", "-r", str(rate), "-c", str(channels), "-b", "16", str(path),
                    "synth", str(seconds), "sine", str(freq), "vol", "0.5"], check=True, capture_output=True,
                   timeout=60)
    return path


#: the level of make_tone's tone: amplitude 0.5 -> 20*log10(0.5/sqrt(2))
MAKE_TONE_LEVEL_DB = 20 * math.log10(0.5 / math.sqrt(2))


def wav_complete(path: Path) -> bool:
    """True when the WAV's RIFF header accounts for the whole file: its writer finalised (closed) it.

    libsndfile writes the real sizes into the header only when the file is closed; until then they are stale.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
            size = path.stat().st_size
    except OSError:
        return False
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return False
    return struct.unpack("<I", header[4:8])[0] + 8 == size


def recorded_seconds(path: Path) -> float:
    """Seconds of audio in a canonical PCM WAV that may still be being written (its header sizes are then stale, so
    the length comes from the file size and the format fields); 0 while even the header is missing."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(44)
        size = path.stat().st_size
    except OSError:
        return 0.0
    if len(header) < 44 or header[:4] != b"RIFF" or header[12:16] != b"fmt ":
        return 0.0
    channels, rate = struct.unpack("<HI", header[22:28])
    bits = struct.unpack("<H", header[34:36])[0]
    bytes_per_second = rate * channels * bits // 8
    return max(0, size - 44) / bytes_per_second if bytes_per_second else 0.0


def wait_wav_complete(path: Path, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Wait until `path` is a closed, complete WAV (see :func:`wav_complete`); False on timeout."""
    deadline = time.monotonic() + timeout
    while not wav_complete(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
