"""The audio verdict used by every media check (testbed/tones.py): what a person would hear, over the whole call.

Pure Python (sox's frequency estimate is off here, `measure_hz=False`): runs on any machine.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import pytest

from sipmediagw.testbed.tones import (
    MAKE_TONE_LEVEL_DB,
    check_tone,
    level_db,
    recorded_seconds,
    sent_level,
    tone_ratio,
    wav_complete,
    write_mono,
)

RATE = 16000  # enough for tones <= 1 kHz, and fast


def sine(seconds: float, hz: float = 440, amplitude: float = 0.5) -> list[float]:
    return [amplitude * math.sin(2 * math.pi * hz * i / RATE) for i in range(int(seconds * RATE))]


def silence(seconds: float) -> list[float]:
    return [0.0] * int(seconds * RATE)


def judge(tmp_path: Path, samples: list[float], hz: float = 440):  # type: ignore[no-untyped-def]
    wav = write_mono(tmp_path / "heard.wav", samples, RATE)
    return check_tone(wav, hz, MAKE_TONE_LEVEL_DB, measure_hz=False)


def test_a_steady_tone_at_the_sent_level_passes(tmp_path: Path) -> None:
    result = judge(tmp_path, silence(1.5) + sine(14))
    assert result.ok, result.summary()
    assert result.onset == pytest.approx(1.5, abs=0.03)
    assert result.seconds >= 10
    assert result.median_db == pytest.approx(MAKE_TONE_LEVEL_DB, abs=0.5)


def test_a_tone_40_db_down_after_two_seconds_fails(tmp_path: Path) -> None:
    """What WebRTC's echo canceller / noise suppressor / AGC did to the test bed's tone: full level for ~2 s, then
    40 dB down. Its frequency is still right (sox reports it even 60 dB down): the level check must catch it."""
    result = judge(tmp_path, sine(2) + sine(13, amplitude=0.5 / 100))
    assert not result.ok
    assert result.tone_share == 1.0  # the frequency alone would have passed
    assert result.audible_share < 0.2
    assert "audible in only" in result.why()


def test_a_tone_40_db_down_from_the_start_is_never_heard(tmp_path: Path) -> None:
    result = judge(tmp_path, sine(15, amplitude=0.5 / 100))
    assert not result.ok and result.onset is None
    assert "never heard" in result.why()


def test_a_tone_that_keeps_breaking_up_fails(tmp_path: Path) -> None:
    choppy: list[float] = []
    for _ in range(30):  # 300 ms on, 200 ms off: packets lost on a starved host
        choppy += sine(0.3) + silence(0.2)
    result = judge(tmp_path, choppy)
    assert not result.ok and 0.5 < result.audible_share < 0.7, result.summary()


def test_another_frequency_at_full_level_fails(tmp_path: Path) -> None:
    result = judge(tmp_path, sine(15, hz=1000), hz=440)
    assert not result.ok and result.tone_share == 0.0
    assert "tone in only" in result.why()


def test_noise_at_full_level_is_not_the_tone(tmp_path: Path) -> None:
    noise = [0.5 * math.sin(i * i * 0.37) for i in range(15 * RATE)]  # deterministic broadband signal
    result = judge(tmp_path, noise)
    assert not result.ok and result.tone_share < 0.2, result.summary()


def test_a_call_shorter_than_ten_seconds_is_not_enough(tmp_path: Path) -> None:
    result = judge(tmp_path, sine(8))
    assert not result.ok and "heard for only" in result.why()


def test_a_few_hertz_off_still_counts_as_the_tone(tmp_path: Path) -> None:
    """Resampling in the path shifts a tone by a few Hz (445 Hz was measured for 440): that is the same tone."""
    assert judge(tmp_path, sine(14, hz=445), hz=440).ok


def test_channel_one_of_a_stereo_dump_is_judged(tmp_path: Path) -> None:
    """baresip's sndfile dumps are 48 kHz stereo."""
    left, right = sine(12), silence(12)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes(b"".join(struct.pack("<hh", round(a * 32767), round(b * 32767)) for a, b in zip(left, right)))
    assert check_tone(path, 440, MAKE_TONE_LEVEL_DB, measure_hz=False).ok


def test_levels_and_ratios() -> None:
    assert level_db(sine(1, amplitude=1.0)) == pytest.approx(-3.01, abs=0.05)
    assert level_db(silence(1)) == -120.0
    assert tone_ratio(sine(0.1), RATE, 440) > 0.95
    assert tone_ratio(sine(0.1, hz=600), RATE, 440) < 0.05


def test_sent_level_is_the_median_frame_level(tmp_path: Path) -> None:
    wav = write_mono(tmp_path / "sent.wav", silence(1) + sine(5, amplitude=0.25), RATE)
    assert sent_level(wav) == pytest.approx(20 * math.log10(0.25 / math.sqrt(2)), abs=0.3)


def test_an_unclosed_wav_is_not_complete_but_its_length_is_known(tmp_path: Path) -> None:
    """sndfile writes the sizes into the header when it closes the file: until then, wait (never sleep)."""
    wav = write_mono(tmp_path / "a.wav", sine(2), RATE)
    assert wav_complete(wav)
    data = bytearray(wav.read_bytes())
    data[4:8] = struct.pack("<I", 36)  # what a writer leaves while recording
    data[40:44] = struct.pack("<I", 0)
    growing = tmp_path / "growing.wav"
    growing.write_bytes(bytes(data))
    assert not wav_complete(growing)
    assert recorded_seconds(growing) == pytest.approx(2.0, abs=0.01)
    assert recorded_seconds(tmp_path / "missing.wav") == 0.0


def test_judging_from_an_offset_skips_what_came_before(tmp_path: Path) -> None:
    """A call that first spoke a menu prompt, then was silent, then carried the room's tone: judge the room part."""
    samples = sine(3, hz=300) + silence(2) + sine(12)
    wav = write_mono(tmp_path / "menu-then-room.wav", samples, RATE)
    assert not check_tone(wav, 440, MAKE_TONE_LEVEL_DB, measure_hz=False).ok
    later = check_tone(wav, 440, MAKE_TONE_LEVEL_DB, measure_hz=False, after=4.5)
    assert later.ok and later.onset == pytest.approx(5.0, abs=0.03), later.summary()
