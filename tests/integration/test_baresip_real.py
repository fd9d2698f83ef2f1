"""Real baresip 1.0.0 processes on 127.0.0.1 (no registrar): the ctrl_tcp client and the controller on real events.

The gateway runs the real ``baresip/config_default`` template; only its devices are swapped for ones that need no
sound server or X display (ausine tone as the "room" audio, aubridge as the player, cairo/fakevideo video). Callers
use the same template plus the sndfile recorder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import threading
import wave
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sipmediagw.gateway.baresip import BaresipControl, baresip_argv, render_baresip_config
from sipmediagw.dispatch import RoomTarget
from sipmediagw.gateway.controller import Controller, Routing
from sipmediagw.testbed.network import free_port_range
from sipmediagw.testbed.tones import recorded_seconds

TEMPLATES = Path(__file__).resolve().parents[2] / "baresip"
LOOPBACK = "127.0.0.1"
WAIT = 20.0  # generous: these are upper bounds on waits, not timing assertions
#: a fixed gateway `gw` in room 1234: every call dialled to sip:gw@... joins it
FIXED = Routing("gw", fixed=RoomTarget("testroom", "http://127.0.0.1", "1234"))


class Baresip:
    """One real baresip process on loopback rendered from our template, with its ctrl_tcp client."""

    def __init__(self, workdir: Path, name: str, account: str, tone_hz: int, record: bool = False,
                 settings: dict[str, str] | None = None) -> None:
        self.name = name
        base = free_port_range(LOOPBACK, 3)
        self.sip_port, ctrl_port = base, base + 2
        extra = {"sip_listen": f"{LOOPBACK}:{self.sip_port}", "ausrc_channels": "2"}  # ausine needs 2 channels
        extra.update(settings or {})
        self.record_dir = workdir / f"{name}-rec"
        if record:
            self.record_dir.mkdir(parents=True)
            extra["snd_path"] = str(self.record_dir)
        self.config_dir = render_baresip_config(
            TEMPLATES, workdir / name, account_line=account, audio_player=f"aubridge,{name}",
            audio_source=f"ausine,{tone_hz}", video_source="cairo,nil", video_display="fakevideo,nil",
            video_size=(320, 240), fps=10, sip_port=self.sip_port, ctrl_port=ctrl_port, net_interface=LOOPBACK,
            extra=extra, answermode="manual",  # as the gateway renders it: the controller answers (after callstat)
        )
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(baresip_argv(self.config_dir), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.control = BaresipControl(LOOPBACK, ctrl_port)
        try:
            self.control.connect(timeout=WAIT)
        except Exception:
            self.stop()
            raise

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@{LOOPBACK}:{self.sip_port}"

    def wait_event(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """Skip events until one of type `kind` arrives."""
        import queue
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.control.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name}: no {kind} within {timeout}s; log:\n{self.tail()}") from None
            if event.get("type") == kind:
                return event

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        self.control.quit()
        self.control.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class RecordingRoom:
    """The RoomSession seen by the controller: records what it was asked to do."""

    def __init__(self, fail_join: bool = False) -> None:
        self.actions: list[str] = []
        self.fail_join = fail_join

    def check(self, target: RoomTarget) -> None:
        pass

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: Any = None) -> None:
        self.actions.append(f"join:{display_name}")
        if self.fail_join:
            raise RuntimeError("room page unreachable")

    def leave(self) -> None:
        self.actions.append("leave")


@pytest.fixture
def spawn(tmp_path: Path, require_programs: Callable[..., None]) -> Iterator[Any]:
    require_programs("baresip")
    with contextlib.ExitStack() as started:  # every instance is stopped, even when stopping another one fails

        def make(name: str, account: str, tone_hz: int = 440, record: bool = False,
                 settings: dict[str, str] | None = None) -> Baresip:
            instance = Baresip(tmp_path, name, account, tone_hz, record, settings)
            started.callback(instance.stop)
            return instance

        yield make


def pump_until(controller: Controller, condition: Any, what: str, gateway: Baresip) -> None:
    import time

    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gateway: not {what} within {WAIT}s; log:\n{gateway.tail()}")
        controller.pump(0.2)


def wait_recorded(caller: Baresip, seconds: float) -> None:
    """Wait until the caller's decoded-audio dump holds `seconds` of audio (testbed/tones.recorded_seconds)."""
    import time

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if any(recorded_seconds(dump) >= seconds for dump in caller.record_dir.glob("dump-*-dec.wav")):
            return
        time.sleep(0.2)
    raise AssertionError(f"{caller.name}: less than {seconds}s of audio recorded within {WAIT}s")


def dominant_frequency(path: Path, start: float = 1.0, duration: float = 2.0) -> float:
    """Zero-crossing estimate of the tone in the first channel of a 16-bit WAV (stdlib only)."""
    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        wav.setpos(int(start * rate))
        frames = wav.readframes(int(duration * rate))
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)[::channels]
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)


def test_call_is_answered_bridged_and_left_then_a_second_call_is_hung_up_by_the_gateway(spawn: Any) -> None:
    gateway = spawn("gw", f"<sip:gw@{LOOPBACK}>;regint=0", tone_hz=440)
    changes: list[bool] = []
    room = RecordingRoom()
    controller = Controller(gateway.control, room, lambda: changes.append(controller.in_call),  # type: ignore
                            routing=FIXED)
    alice = spawn("alice", f'"Alice Caller" <sip:alice@{LOOPBACK}>;regint=0', tone_hz=1000, record=True)

    assert alice.control.dial(gateway.uri)["ok"] is True
    pump_until(controller, lambda: controller.in_call, "in call", gateway)
    assert room.actions == ["join:Alice Caller"]
    assert controller.caller == "Alice Caller" and controller.caller_uri == f"sip:alice@{LOOPBACK}"
    alice.wait_event("CALL_ESTABLISHED")

    # let 3.5 s of the gateway's tone reach alice's recorder, then alice hangs up
    wait_recorded(alice, seconds=3.5)
    assert alice.control.hangup()["ok"] is True
    pump_until(controller, lambda: controller.call_id is None, "free again", gateway)
    assert controller.settle_room(WAIT)  # the leave runs on the room worker
    assert room.actions == ["join:Alice Caller", "leave"]
    assert changes == [False, True, False] and not controller.done  # joining, in the room, over
    decoded = sorted(alice.record_dir.glob("dump-*-dec.wav"))
    assert decoded, f"alice recorded nothing in {alice.record_dir}"
    assert abs(dominant_frequency(decoded[-1]) - 440) < 25

    # second call, caller without display name: the SIP user part is used; the gateway hangs up (SIGTERM path)
    bob = spawn("bob", f"<sip:bob@{LOOPBACK}>;regint=0", tone_hz=1000)
    assert bob.control.dial(gateway.uri)["ok"] is True
    pump_until(controller, lambda: controller.in_call, "in call again", gateway)
    assert room.actions[-1] == "join:bob" and controller.calls == 2
    assert controller.hangup_and_wait(timeout=WAIT) is True
    assert controller.settle_room(WAIT) and room.actions[-1] == "leave" and not controller.in_call
    assert "reset by peer" in bob.wait_event("CALL_CLOSED")["param"]


def test_a_concurrent_second_call_is_refused_and_the_first_one_kept(spawn: Any) -> None:
    gateway = spawn("gw", f"<sip:gw@{LOOPBACK}>;regint=0")
    room = RecordingRoom()
    controller = Controller(gateway.control, room, lambda: None, once=True,  # type: ignore[arg-type]
                            routing=FIXED)
    alice = spawn("alice", f"<sip:alice@{LOOPBACK}>;regint=0")
    mallory = spawn("mallory", f"<sip:mallory@{LOOPBACK}>;regint=0")
    alice.control.dial(gateway.uri)
    pump_until(controller, lambda: controller.in_call, "in call", gateway)

    mallory.control.dial(gateway.uri)
    closed = mallory.wait_event("CALL_CLOSED")
    assert closed["param"].startswith("486")  # busy: one call per gateway
    for _ in range(5):
        controller.pump(0.2)
    assert controller.in_call and controller.caller == "alice" and room.actions == ["join:alice"]

    alice.control.hangup()
    pump_until(controller, lambda: controller.done, "done (once mode)", gateway)
    assert controller.settle_room(WAIT) and room.actions == ["join:alice", "leave"]


def test_a_room_that_cannot_be_joined_makes_the_gateway_hang_up(spawn: Any) -> None:
    gateway = spawn("gw", f"<sip:gw@{LOOPBACK}>;regint=0")
    room = RecordingRoom(fail_join=True)
    controller = Controller(gateway.control, room, lambda: None, routing=FIXED)  # type: ignore[arg-type]
    alice = spawn("alice", f"<sip:alice@{LOOPBACK}>;regint=0")
    alice.control.dial(gateway.uri)
    pump_until(controller, lambda: controller.error is not None, "in error", gateway)
    assert "room page unreachable" in (controller.error or "")
    assert "reset by peer" in alice.wait_event("CALL_CLOSED")["param"]
    pump_until(controller, lambda: controller.call_id is None, "free again", gateway)
    assert not controller.in_call


def test_quit_is_seen_as_a_lost_connection(spawn: Any) -> None:
    gateway = spawn("gw", f"<sip:gw@{LOOPBACK}>;regint=0")
    controller = Controller(gateway.control, RecordingRoom(), lambda: None,  # type: ignore[arg-type]
                            routing=FIXED)
    assert "sip:gw@127.0.0.1" in gateway.control.reginfo()["data"]
    gateway.control.quit()
    pump_until(controller, lambda: controller.control_lost, "aware baresip is gone", gateway)
    assert gateway.process.wait(timeout=WAIT) == 0
