"""The mic clock (MediaPlan.mic_clock_argv, started by BrowserSlot with Chromium): the gateway's real PulseAudio
script and daemon; what the clock changes is read from PulseAudio itself (the caller sink's configured latency), not
timed.

Without it the caller sink, which only has monitor readers until the call is answered, is configured for 2 s blocks:
a reader that connects then (Chromium's getUserMedia at the join) waits for the block under way to end, so the room
heard the caller up to 2 s after the answer (docs/benchmarks.md). With it the sink runs MIC_CLOCK_LATENCY_MS blocks.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sipmediagw.gateway import __main__ as entry
from sipmediagw.gateway.media import CALLER_SINK, KERNEL, MIC_CLOCK_LATENCY_MS, USERSPACE, MediaPlan
from sipmediagw.gateway.process import ManagedProcess
from sipmediagw.testbed._proc import wait_until

IDLE_BLOCK_US = 2_000_000  # what an idle null sink is configured for (PulseAudio 16)


@pytest.fixture()
def gateway_pulse(tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[MediaPlan]:
    """The gateway's PulseAudio (userspace plan, its own script and daemon.conf), stopped afterwards."""
    require_programs("pulseaudio", "pactl", "parec")
    run_dir = tmp_path / "run"
    (run_dir / "xdg").mkdir(parents=True, mode=0o700)
    plan = MediaPlan(USERSPACE, run_dir / "pulse.sock")
    daemon: ManagedProcess = entry.pulseaudio(plan, run_dir)
    daemon.env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    daemon.start()
    try:
        daemon.wait_ready(30)
        yield plan
    finally:
        daemon.stop()


def configured_latency_us(plan: MediaPlan, sink: str) -> int:
    """`pactl list sinks`: the "configured" latency of `sink`, in microseconds."""
    out = subprocess.run(["pactl", "-s", plan.pulse_server, "list", "sinks"], capture_output=True, text=True,
                         timeout=10, check=True, env={**os.environ, "LC_ALL": "C"}).stdout
    for block in out.split("\n\n"):
        if re.search(rf"^\s*Name: {re.escape(sink)}$", block, re.M):
            found = re.search(r"Latency: \d+ usec, configured (\d+) usec", block)
            assert found, block
            return int(found.group(1))
    raise AssertionError(f"no sink {sink} in:\n{out}")


def test_the_mic_clock_keeps_the_caller_sink_on_short_blocks_while_chromium_runs(gateway_pulse: MediaPlan) -> None:
    plan = gateway_pulse
    assert configured_latency_us(plan, CALLER_SINK) == IDLE_BLOCK_US  # the 2 s blocks a new reader waits out
    slot = entry.BrowserSlot(None, plan, None, ":0", lambda: None)  # type: ignore[arg-type]
    try:
        slot._start_mic_clock()  # what BrowserSlot.start does before Chromium
        assert wait_until(lambda: configured_latency_us(plan, CALLER_SINK) <= MIC_CLOCK_LATENCY_MS * 1000, 10), \
            f"caller sink still configured for {configured_latency_us(plan, CALLER_SINK)} us"
    finally:
        slot.stop()  # what BrowserSlot.stop does after Chromium
    assert wait_until(lambda: configured_latency_us(plan, CALLER_SINK) == IDLE_BLOCK_US, 10)  # nothing left reading


def test_kernel_mode_has_no_mic_clock() -> None:
    plan = MediaPlan(KERNEL, Path("/tmp/pulse.sock"), alsa_cards=(4, 5), video_device="/dev/video0")
    assert plan.mic_clock_argv() is None  # snd-aloop's capture side is clocked by the kernel
