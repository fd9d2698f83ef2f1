"""The local demo: Kamailio + a Janus room + one gateway, then a real test call with media measured both ways.

`run_test_call` is also what the e2e tests and the benchmark use, so the demo's claims are the tested ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import docker

from .errors import GatewayNotFound
from .launcher import LaunchRequest, LaunchResult, launch, log_folder, stop_gateway
from .settings import Settings, project_root
from .testbed.caller import BaresipCaller
from .testbed.participant import Participant
from .testbed.stack import SIP_DOMAIN, LocalStack
from .testbed.tones import dominant_frequency

CALLER_TONE = 1000  # Hz, sent by the SIP caller
ROOM_TONE = 440  # Hz, sent by the participant in the room
DEMO_ROOM = "1234"
DEMO_GATEWAY = "demo"
TOLERANCE = 0.05  # relative, on measured tone frequencies

Progress = Callable[[str], None]


def demo_dir() -> Path:
    """Where the demo keeps its stack's files, logs and record (inside the project, git-ignored)."""
    return project_root() / ".demo"


@dataclasses.dataclass
class CallReport:
    """What a test call measured. Times in seconds, frequencies in Hz."""

    answered_after: float | None = None  # dial -> CALL_ESTABLISHED at the caller
    room_joined_after: float | None = None  # answer -> the gateway publishes in the room
    room_audible_after: float | None = None  # answer -> the caller's tone is heard in the room
    room_audio_hz: float | None = None
    room_video_changing: bool = False
    caller_audio_hz: float | None = None
    caller_video_changing: bool = False
    room_left_after: float | None = None  # caller's hang-up -> the gateway is gone from the room
    screenshots: list[str] = dataclasses.field(default_factory=list)

    @property
    def room_hears_caller(self) -> bool:
        """The caller's tone arrived in the room."""
        return _close(self.room_audio_hz, CALLER_TONE)

    @property
    def caller_hears_room(self) -> bool:
        """The room's tone arrived in the caller's recording."""
        return _close(self.caller_audio_hz, ROOM_TONE)

    @property
    def ok(self) -> bool:
        """Media flowed both ways, audio and video."""
        return (self.room_hears_caller and self.room_video_changing and self.caller_hears_room
                and self.caller_video_changing and self.room_left_after is not None)


def _close(measured: float | None, expected: float) -> bool:
    return measured is not None and abs(measured - expected) <= expected * TOLERANCE


def make_caller(stack: LocalStack, workdir: Path, tone: int = CALLER_TONE, **options: Any) -> BaresipCaller:
    """The host baresip caller, registered at the stack's Kamailio on the bridge address; `options` go to
    BaresipCaller (e.g. ``video_codecs="H264"``)."""
    user = stack.caller_user
    return BaresipCaller(user=user.user, domain=SIP_DOMAIN, registrar=stack.registrar, workdir=workdir,
                         tone_hz=tone, password=user.password, sip_ip=stack.ip, **options)


def _first_audible(participant: Participant, expected: float, timeout: float) -> float | None:
    """Poll the room page in short windows until `expected` Hz is heard; return the frequency heard."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hz = participant.remote_audio_frequency(timeout=1, window_ms=250)
        if _close(hz, expected):
            return hz
    return None


def grab_gateway_screen(container: str, path_in_logs: str = "room-as-gateway-sees-it.png") -> bool:
    """Save the gateway's room display (what x11grab sends to the caller) into its log folder."""
    proc = subprocess.run(
        ["docker", "exec", container, "ffmpeg", "-loglevel", "error", "-y", "-f", "x11grab", "-video_size",
         "1280x720", "-draw_mouse", "0", "-i", ":0", "-frames:v", "1", f"/var/log/sipmediagw/{path_in_logs}"],
        capture_output=True, text=True, timeout=30)
    return proc.returncode == 0


def run_test_call(stack: LocalStack, gateway_uri: str, room: str, workdir: Path, *,
                  during_call: Callable[[], None] | None = None, container: str | None = None,
                  caller_options: dict[str, Any] | None = None,
                  progress: Progress = lambda message: None) -> CallReport:
    """A participant joins `room`, a caller dials `gateway_uri` through Kamailio; measure media both ways, hang up.

    `during_call` runs while the call is up (tests check `status` there); with `container`, the gateway's room
    display is saved as a PNG in its log folder.
    """
    report = CallReport()
    workdir.mkdir(parents=True, exist_ok=True)
    progress(f"participant joins room {room} (sending {ROOM_TONE} Hz + test video)")
    with Participant(base_url=stack.base_url, room=room, tone_hz=ROOM_TONE, name="participant",
                     workdir=workdir / "participant") as participant, \
            make_caller(stack, workdir / "caller", **(caller_options or {})) as caller:
        caller.wait_registered(30)
        progress(f"caller {caller.uri} dials {gateway_uri} through Kamailio (sending {CALLER_TONE} Hz + test video)")
        dialled = time.monotonic()
        caller.dial(gateway_uri)
        caller.wait_established(60)
        answered = time.monotonic()
        report.answered_after = answered - dialled
        participant.wait_remote(1, timeout=60)
        report.room_joined_after = time.monotonic() - answered
        if _first_audible(participant, CALLER_TONE, 60) is not None:
            report.room_audible_after = time.monotonic() - answered
        report.room_audio_hz = participant.remote_audio_frequency(timeout=30)
        report.room_video_changing = participant.remote_video_changing(timeout=60)
        report.caller_video_changing = caller.received_video_changing(60)
        if during_call:
            during_call()
        shot = workdir / "room-as-participant-sees-it.png"
        participant.screenshot(shot)
        report.screenshots.append(str(shot))
        if container and grab_gateway_screen(container):
            report.screenshots.append("room-as-gateway-sees-it.png (in the gateway's log folder)")
        time.sleep(3)  # a few more seconds of room audio in the caller's recording
        progress("caller hangs up")
        hung_up = time.monotonic()
        caller.hangup()
        caller.wait_closed(30)
        deadline = hung_up + 30
        while time.monotonic() < deadline:
            if participant.remote_count() == 0:
                report.room_left_after = time.monotonic() - hung_up
                break
            time.sleep(0.25)
        time.sleep(max(0.0, hung_up + 1 - time.monotonic()))  # sndfile closes its WAV when the call is torn down
        report.caller_audio_hz = dominant_frequency(caller.recording_path())
    return report


# --- the demo: stack + gateway + call, left running until `sipmediagw demo --down` ---


@dataclasses.dataclass
class DemoResult:
    """What `run_demo` started and measured."""

    stack: LocalStack
    launch: LaunchResult
    logs: Path  # the gateway's host log folder
    ready_after: float
    call: CallReport


def run_demo(settings: Settings, client: docker.DockerClient, progress: Progress = lambda message: None) -> DemoResult:
    """Start Kamailio + Janus + gateway `demo` on fixed local ports, place a test call; leave it all running."""
    teardown(settings, client)  # a previous demo's stack holds the ports
    workdir = demo_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(workdir / "stack", gateways=1)
    progress(f"starting Kamailio (sip:{stack.registrar}, domain {SIP_DOMAIN}) and Janus ({stack.janus.base_url})")
    stack.start()
    try:
        save_record(stack)
        settings = dataclasses.replace(settings, accounts_file=stack.accounts_file(), base_url=stack.base_url,
                                       platform="janus", logs_dir=workdir / "logs")
        started = time.monotonic()
        launched = launch(settings, LaunchRequest(DEMO_GATEWAY, DEMO_ROOM), client, progress=progress)
        ready_after = time.monotonic() - started
        call = run_test_call(stack, launched.sip_uri, DEMO_ROOM, workdir / "call", container=launched.container,
                             progress=progress)
    except BaseException:
        teardown(settings, client)
        raise
    return DemoResult(stack, launched, log_folder(settings, DEMO_GATEWAY), ready_after, call)


def caller_account_file(stack: LocalStack) -> Path:
    """Write the demo caller's credentials (user, password, registrar) to a 0600 file; passwords stay off screen."""
    path = demo_dir() / "caller-account.txt"
    path.touch(mode=0o600)
    path.write_text(f"user: {stack.caller_user.user}@{SIP_DOMAIN}\npassword: {stack.caller_user.password}\n"
                    f"registrar/outbound proxy: sip:{stack.registrar};transport=udp\n")
    return path


def record_path() -> Path:
    """The JSON record of a running demo stack (pids, bridge container)."""
    return demo_dir() / "stack.json"


def save_record(stack: LocalStack) -> None:
    """Remember what to stop on `--down`: the stack's processes outlive this command by design."""
    record = {"pids": stack.kamailio.pids() + stack.janus.pids(), "bridge_container": stack.bridge.container_id}
    record_path().write_text(json.dumps(record))


def teardown(settings: Settings, client: docker.DockerClient) -> bool:
    """Stop the demo gateway and the recorded demo stack; True when something was running."""
    found = False
    try:
        stop_gateway(client, DEMO_GATEWAY, settings.stop_timeout)
        found = True
    except GatewayNotFound:
        pass
    path = record_path()
    if path.exists():
        record = json.loads(path.read_text())
        for pid in record.get("pids", []):
            _stop_group(pid)
        if record.get("bridge_container"):
            subprocess.run(["docker", "rm", "-f", record["bridge_container"]], capture_output=True, timeout=60)
        path.unlink()
        found = True
    return found


def _stop_group(pid: int, timeout: float = 5) -> None:
    """SIGTERM the process group of `pid` (started in its own session), then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def render_report(result: DemoResult) -> str:
    """The demo's closing text: what was measured, where to look, how to stop."""
    call, stack, gw = result.call, result.stack, result.launch

    def sec(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "never"

    def hz(value: float | None) -> str:
        return f"{value:.0f} Hz" if value is not None else "nothing"

    def mark(ok: bool) -> str:
        return "ok" if ok else "FAILED"

    logs = result.logs
    lines = [
        "",
        f"sipmediagw demo: gateway {gw.gateway!r} in Janus room {gw.room}, SIP {gw.sip_uri} (media {gw.media})",
        f"  registered (launch -> ready)     {sec(result.ready_after)}",
        f"  answered (dial -> established)   {sec(call.answered_after)}",
        f"  in the room (answer -> publish)  {sec(call.room_joined_after)}",
        f"  caller audible in the room       {sec(call.room_audible_after)} after answer",
        f"  caller -> room  audio  {hz(call.room_audio_hz)} (sent {CALLER_TONE} Hz)  {mark(call.room_hears_caller)}",
        f"  caller -> room  video  frames changing: {call.room_video_changing}  {mark(call.room_video_changing)}",
        f"  room -> caller  audio  {hz(call.caller_audio_hz)} (sent {ROOM_TONE} Hz)  {mark(call.caller_hears_room)}",
        f"  room -> caller  video  frames changing: {call.caller_video_changing}  {mark(call.caller_video_changing)}",
        f"  hang-up -> gateway left the room {sec(call.room_left_after)}",
        f"  verdict: {'media flowed both ways' if call.ok else 'MEDIA CHECK FAILED'}",
        "",
        "Where to look:",
        f"  sipmediagw logs {gw.gateway}            (files: {logs}/app.log, err.log, state.json)",
        f"  {logs}/room-as-gateway-sees-it.png   (the room as the gateway sends it to the caller)",
        *[f"  {shot}" for shot in call.screenshots if shot.startswith("/")],
        "  sipmediagw status",
        "",
        "Still running: Kamailio, Janus and the gateway. Join from your side:",
        f"  room page  {stack.janus.room_url(gw.room)}",
        f"  SIP        call {gw.sip_uri} through the registrar sip:{stack.registrar};transport=udp",
        f"             (a test account for your softphone: {caller_account_file(stack)})",
        "Stop everything:  scripts/demo --down",
    ]
    return "\n".join(lines)
