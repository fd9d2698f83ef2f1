"""The caller-side check as the e2e tier and the demo use it (BaresipCaller.check_heard, with sox's estimate), fed
recordings laid out as baresip's sndfile writes them. Needs sox."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, write_mono

RATE = 48000


def tone(seconds: float, amplitude: float, hz: float = 440) -> list[float]:
    return [amplitude * math.sin(2 * math.pi * hz * i / RATE) for i in range(int(seconds * RATE))]


@pytest.fixture
def caller(tmp_path: Path) -> BaresipCaller:
    if shutil.which("sox") is None:
        pytest.fail("sox is missing: run scripts/setup-host")
    made = BaresipCaller(user="alice", domain="sipmediagw.test", registrar="127.0.0.1:5060", workdir=tmp_path)
    made.snd_dir.mkdir(parents=True)
    return made


def test_the_caller_check_fails_a_recording_40_db_down_after_two_seconds(caller: BaresipCaller) -> None:
    write_mono(caller.snd_dir / "dump-2026-12-01-10-00-00-dec.wav", tone(2, 0.5) + tone(13, 0.005), RATE)
    heard = caller.check_heard(440, MAKE_TONE_LEVEL_DB)
    assert heard.hz is not None and abs(heard.hz - 440) < 22  # sox still names the frequency...
    assert not heard.ok, heard.summary()  # ...but a person would not hear it: the check fails


def test_the_caller_check_passes_the_same_tone_at_full_level(caller: BaresipCaller) -> None:
    write_mono(caller.snd_dir / "dump-2026-12-01-10-00-00-dec.wav", tone(15, 0.5), RATE)
    heard = caller.check_heard(440, MAKE_TONE_LEVEL_DB)
    assert heard.ok, heard.summary()
