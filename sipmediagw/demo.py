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
from .launcher import LaunchResult, launch_pool, log_folder, pool_names, stop_gateway
from .settings import Settings, project_root
from .state import GatewayState, read_state
from .testbed.caller import BaresipCaller
from .testbed.janus import ROOMS as JANUS_ROOMS
from .testbed.participant import Participant
from .testbed.stack import SIP_DOMAIN, LocalStack
from .gateway.ivr import MEETING as MENU_MEETING
from .testbed._proc import TestbedError, wait_until
from .testbed.tones import MAKE_TONE_LEVEL_DB, ToneCheck, check_tone

CALLER_TONE = 1000  # Hz, sent by the SIP caller
ROOM_TONE = 440  # Hz, sent by the participant in the room
DEMO_ROOM = "1234"
DEMO_GATEWAY = "demo"  # the pool's name: its gateways are demo-1, demo-2
POOL_SIZE = 2
DEMO_KEYS = "1234#"  # typed in the keypad menu by the demo's second call
TOLERANCE = 0.05  # relative, on measured tone frequencies
ROOM_LISTEN_S = 12.0  # how long the room's audio is recorded and judged (>= 10 s of it is checked)

Progress = Callable[[str], None]


def demo_dir() -> Path:
    """Where the demo keeps its stack's files, logs and record by default (inside the project, git-ignored)."""
    return project_root() / ".demo"


@dataclasses.dataclass
class CallReport:
    """What a test call measured. Times in seconds. Audio is judged over the call, both ways (testbed/tones.py)."""

    answered_after: float | None = None  # dial -> CALL_ESTABLISHED at the caller
    room_joined_after: float | None = None  # answer -> the gateway publishes in the room
    room_audible_after: float | None = None  # answer -> the caller's tone is heard in the room
    room_heard: ToneCheck | None = None  # the caller's tone as the room participant heard it
    room_video_changing: bool = False
    caller_heard: ToneCheck | None = None  # the room's tone in the caller's recording
    caller_video_changing: bool = False
    room_left_after: float | None = None  # caller's hang-up -> the gateway is gone from the room
    menu_shown_after: float | None = None  # answer -> the keypad menu on the caller's screen (keypad calls)
    screenshots: list[str] = dataclasses.field(default_factory=list)

    @property
    def room_hears_caller(self) -> bool:
        """The caller's tone was heard in the room at its level, for the whole window."""
        return self.room_heard is not None and self.room_heard.ok

    @property
    def caller_hears_room(self) -> bool:
        """The room's tone was heard by the caller at its level, for the whole window."""
        return self.caller_heard is not None and self.caller_heard.ok

    @property
    def room_audio_hz(self) -> float | None:
        """sox's estimate of what the room heard."""
        return self.room_heard.hz if self.room_heard else None

    @property
    def caller_audio_hz(self) -> float | None:
        """sox's estimate of what the caller heard."""
        return self.caller_heard.hz if self.caller_heard else None

    @property
    def ok(self) -> bool:
        """Media flowed both ways, audio and video."""
        return (self.room_hears_caller and self.room_video_changing and self.caller_hears_room
                and self.caller_video_changing and self.room_left_after is not None)

    def problems(self) -> str:
        """What failed, in words (for test failures)."""
        out = []
        for what, check in (("caller -> room audio", self.room_heard), ("room -> caller audio", self.caller_heard)):
            if check is None:
                out.append(f"{what}: not measured")
            elif not check.ok:
                out.append(f"{what}: {check.summary()}")
        if not self.room_video_changing:
            out.append("caller -> room video: frames not changing")
        if not self.caller_video_changing:
            out.append("room -> caller video: frames not changing")
        if self.room_left_after is None:
            out.append("the gateway did not leave the room after the hang-up")
        return "; ".join(out)


def make_caller(stack: LocalStack, workdir: Path, tone: int = CALLER_TONE, *, index: int = 0,
                **options: Any) -> BaresipCaller:
    """The host baresip caller (`index` picks one of the stack's caller accounts), registered at the stack's Kamailio
    on the bridge address; `options` go to BaresipCaller (e.g. ``video_codecs="H264"``)."""
    user = stack.caller_users[index]
    return BaresipCaller(user=user.user, domain=SIP_DOMAIN, registrar=stack.registrar, workdir=workdir,
                         tone_hz=tone, password=user.password, sip_ip=stack.ip, **options)


def wait_audible(participant: Participant, expected: float, timeout: float) -> float | None:
    """Wait until the room page hears `expected` Hz (within TOLERANCE); return the frequency heard at once (None:
    not within `timeout`). The page listens continuously, so the time this returns is when the tone became audible."""
    return participant.wait_tone(expected, expected * TOLERANCE, timeout)


def grab_gateway_screen(container: str, path_in_logs: str = "room-as-gateway-sees-it.png") -> bool:
    """Save the gateway's room display (what x11grab sends to the caller) into its log folder."""
    proc = subprocess.run(
        ["docker", "exec", container, "ffmpeg", "-loglevel", "error", "-y", "-f", "x11grab", "-video_size",
         "1280x720", "-draw_mouse", "0", "-i", ":0", "-frames:v", "1", f"/var/log/sipmediagw/{path_in_logs}"],
        capture_output=True, text=True, timeout=30)
    return proc.returncode == 0


def wait_left_room(participant: Participant, timeout: float = 30) -> bool:
    """Wait until the participant receives nobody any more (the gateway left)."""
    return wait_until(lambda: participant.remote_count() == 0, timeout, 0.1)


def run_test_call(stack: LocalStack, gateway_uri: str, room: str, workdir: Path, *,
                  during_call: Callable[[], None] | None = None,
                  container: str | Callable[[], str | None] | None = None,
                  caller_options: dict[str, Any] | None = None, keypad: str | None = None,
                  progress: Progress = lambda message: None) -> CallReport:
    """A participant joins `room`, a caller dials `gateway_uri` through Kamailio; measure media both ways, hang up.

    With `keypad` (e.g. ``"1234#"``), the call goes through the keypad menu first: once the menu shows on the
    caller's screen (its marker in the caller's decoded video), the caller types those keys.

    Audio is judged over the call: the room records ROOM_LISTEN_S seconds of what it hears from the caller, and the
    caller's whole recording of the room is judged after the hang-up (>= 10 s of each, level and frequency).
    `during_call` runs while the call is up (tests check `status` there); with `container` (a name, or a function
    that finds the gateway that took the call), the gateway's room display is saved as a PNG in its log folder.
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
        if keypad is not None:
            if not wait_until(lambda: (m := caller.menu_marker()) is not None and m.stage == MENU_MEETING, 60, 0.5):
                raise TestbedError(f"no keypad menu on the caller's screen after dialling {gateway_uri}")
            report.menu_shown_after = time.monotonic() - answered
            progress(f"the keypad menu is on the caller's screen: typing {keypad}")
            caller.send_keys(keypad)
            answered = time.monotonic()  # from here on, times count from the last key
        participant.wait_remote(1, timeout=60)
        report.room_joined_after = time.monotonic() - answered
        if wait_audible(participant, CALLER_TONE, 60) is not None:
            report.room_audible_after = time.monotonic() - answered
        in_room_at = caller.recorded_seconds()  # what the caller heard before (a menu prompt) is not the room
        report.room_video_changing = participant.remote_video_changing(timeout=60)
        report.caller_video_changing = caller.received_video_changing(60)
        # Once video flows both ways (the gateway's camera relay adapts to the caller's picture when it arrives),
        # the room listens; the caller records the whole call meanwhile.
        progress(f"listening to the call for {ROOM_LISTEN_S:.0f} s in the room (the caller records meanwhile)")
        room_recording = participant.record_remote_audio(workdir / "room-heard.wav", ROOM_LISTEN_S)
        if during_call:
            during_call()
        shot = workdir / "room-as-participant-sees-it.png"
        participant.screenshot(shot)
        report.screenshots.append(str(shot))
        name = container() if callable(container) else container
        if name and grab_gateway_screen(name):
            report.screenshots.append("room-as-gateway-sees-it.png (in the gateway's log folder)")
        progress("caller hangs up")
        hung_up = time.monotonic()
        caller.hangup()
        caller.wait_closed(30)
        if wait_left_room(participant):
            report.room_left_after = time.monotonic() - hung_up
        report.caller_heard = caller.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB, after=in_room_at)
        if room_recording is not None:
            report.room_heard = check_tone(room_recording, CALLER_TONE, caller.sent_level(),
                                           min_window=ROOM_LISTEN_S - 2)
    return report


# --- the demo: stack + gateway + call, left running until `sipmediagw demo --down` ---


@dataclasses.dataclass(frozen=True)
class DemoPlace:
    """Where one demo lives: its folder (record, logs, stack files), its gateway's name and its stack's ports.

    The defaults are the README's demo; the tests run their own demo beside it (own folder, name and ports), so
    running the suite never stops a demo someone left running.
    """

    folder: Path = dataclasses.field(default_factory=demo_dir)
    gateway: str = DEMO_GATEWAY
    sip_port: int = 5060
    janus_port: int = 8088
    web_port: int = 8000

    @property
    def record(self) -> Path:
        """The JSON record of this demo's running stack (pids, bridge container, gateway)."""
        return self.folder / "stack.json"

    @property
    def caller_account(self) -> Path:
        """The demo caller's credentials, for a softphone (0600)."""
        return self.folder / "caller-account.txt"


@dataclasses.dataclass
class DemoResult:
    """What `run_demo` started and measured."""

    place: DemoPlace
    stack: LocalStack
    pool: list[LaunchResult]  # the pool gateways, in launch order
    logs_dir: Path  # the host folder holding one log folder per gateway
    ready_after: float  # launch of the pool -> every gateway ready
    call: CallReport  # the call that dialled sip:<DEMO_ROOM>@<domain>
    answered_by: str | None  # the pool gateway that took it
    keypad_call: CallReport  # the call to the service address that typed DEMO_KEYS in the keypad menu
    service_uri: str  # the service address (keypad menu)

    @property
    def ok(self) -> bool:
        """Both calls carried media both ways."""
        return self.call.ok and self.keypad_call.ok


#: the demo places one call at a time: its idle pool gateways need far less than a gateway in a call. The budget is
#: also each gateway's CPU limit: the largest that admits the pool on a 2-core host, so the gateway in the call gets
#: what such a host can spare beside the room's participant
DEMO_CPU_PER_GATEWAY = 1.0


def in_call_gateway(settings: Settings, gateways: list[LaunchResult]) -> LaunchResult | None:
    """The pool gateway whose state file says it is in a call (the demo runs locally: its log folders are here)."""
    for gateway in gateways:
        status = read_state(log_folder(settings, gateway.gateway))
        if status is not None and status.state is GatewayState.IN_CALL:
            return gateway
    return None


def run_demo(settings: Settings, client: docker.DockerClient, place: DemoPlace | None = None,
             progress: Progress = lambda message: None) -> DemoResult:
    """Start Kamailio + Janus + a pool of POOL_SIZE gateways on `place`'s ports, dial sip:1234@<domain>, measure the
    call; leave it all running."""
    place = place or DemoPlace()
    teardown(settings, client, place)  # a previous run of this demo holds its ports
    place.folder.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(place.folder / "stack", gateways=POOL_SIZE, sip_port=place.sip_port,
                       janus_http_port=place.janus_port, janus_web_port=place.web_port)
    progress(f"starting Kamailio (sip:{stack.registrar}, domain {SIP_DOMAIN}) and Janus ({stack.janus.base_url})")
    stack.start()
    try:
        save_record(place, stack)
        settings = dataclasses.replace(settings, accounts_file=stack.accounts_file(), base_url=stack.base_url,
                                       platform="janus", logs_dir=place.folder / "logs",
                                       cpu_per_gateway=min(settings.cpu_per_gateway, DEMO_CPU_PER_GATEWAY))
        started = time.monotonic()
        pool = launch_pool(settings, place.gateway, POOL_SIZE, client, progress=progress)
        ready_after = time.monotonic() - started
        answered_by: list[LaunchResult] = []

        def locate() -> str | None:
            gateway = in_call_gateway(settings, pool)
            if gateway is not None:
                answered_by.append(gateway)
            return gateway.container if gateway else None

        call = run_test_call(stack, meeting_uri(DEMO_ROOM), DEMO_ROOM, place.folder / "call", container=locate,
                             progress=progress)
        service = meeting_uri(settings.service_user)
        keypad_call = run_test_call(stack, service, DEMO_ROOM, place.folder / "keypad-call", keypad=DEMO_KEYS,
                                    progress=progress)
    except BaseException:
        teardown(settings, client, place)
        raise
    return DemoResult(place, stack, pool, settings.logs_dir, ready_after, call,
                      answered_by[0].gateway if answered_by else None, keypad_call, service)


def meeting_uri(meeting: str) -> str:
    """What a caller dials to reach `meeting` through the demo's pool."""
    return f"sip:{meeting}@{SIP_DOMAIN}"


def caller_account_file(place: DemoPlace, stack: LocalStack) -> Path:
    """Write the demo caller's credentials (user, password, registrar) to a 0600 file; passwords stay off screen."""
    path = place.caller_account
    path.touch(mode=0o600)
    path.write_text(f"user: {stack.caller_user.user}@{SIP_DOMAIN}\npassword: {stack.caller_user.password}\n"
                    f"registrar/outbound proxy: sip:{stack.registrar};transport=udp\n")
    return path


def save_record(place: DemoPlace, stack: LocalStack) -> None:
    """Remember what to stop on `--down`: the stack's processes outlive this command by design."""
    record = {"pids": stack.kamailio.pids() + stack.janus.pids(), "bridge_container": stack.bridge.container_id,
              "gateways": pool_names(place.gateway, POOL_SIZE)}
    place.record.write_text(json.dumps(record))


def teardown(settings: Settings, client: docker.DockerClient, place: DemoPlace | None = None) -> bool:
    """Stop the demo gateway and the recorded demo stack of `place`; True when something was running."""
    place = place or DemoPlace()
    record = json.loads(place.record.read_text()) if place.record.exists() else None
    found = False
    recorded = (record or {}).get("gateways") or pool_names(place.gateway, POOL_SIZE)
    for gateway in dict.fromkeys([*recorded, place.gateway]):  # the pool, and a fixed demo gateway of old
        try:
            stop_gateway(client, gateway, settings.stop_timeout)
            found = True
        except GatewayNotFound:
            pass
    if record is not None:
        for pid in record.get("pids", []):
            _stop_group(pid)
        if record.get("bridge_container"):
            subprocess.run(["docker", "rm", "-f", record["bridge_container"]], capture_output=True, timeout=60)
        place.record.unlink()
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
    """The demo's closing text: what was measured, where to look, how to dial in yourself, how to stop."""
    call, keypad, stack = result.call, result.keypad_call, result.stack

    def sec(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "never"

    def heard(check: ToneCheck | None) -> str:
        return check.summary() if check is not None else "nothing recorded"

    def mark(ok: bool) -> str:
        return "ok" if ok else "FAILED"

    names = ", ".join(g.gateway for g in result.pool)
    down = "scripts/demo --down" if result.place == DemoPlace() else f"sipmediagw demo --down --dir {result.place.folder}"
    registrar = f"sip:{stack.registrar};transport=udp"
    lines = [
        "",
        f"sipmediagw demo: a pool of {len(result.pool)} gateways ({names}) behind Kamailio, Janus rooms, "
        f"media {result.pool[0].media}",
        f"  pool ready (launch -> registered)  {sec(result.ready_after)}",
        f"  dialled {meeting_uri(DEMO_ROOM)}: answered by {result.answered_by or '?'} in {sec(call.answered_after)}",
        f"  in room {DEMO_ROOM} (answer -> publish)   {sec(call.room_joined_after)}",
        f"  caller audible in the room       {sec(call.room_audible_after)} after answer",
        f"  caller -> room  audio  sent {CALLER_TONE} Hz: {heard(call.room_heard)}  {mark(call.room_hears_caller)}",
        f"  caller -> room  video  frames changing: {call.room_video_changing}  {mark(call.room_video_changing)}",
        f"  room -> caller  audio  sent {ROOM_TONE} Hz: {heard(call.caller_heard)}  {mark(call.caller_hears_room)}",
        f"  room -> caller  video  frames changing: {call.caller_video_changing}  {mark(call.caller_video_changing)}",
        f"  hang-up -> gateway left the room {sec(call.room_left_after)}",
        f"  dialled {result.service_uri} (keypad menu): menu on the caller's screen {sec(keypad.menu_shown_after)} "
        f"after answer, typed {DEMO_KEYS}",
        f"    caller audible in room {DEMO_ROOM}      {sec(keypad.room_audible_after)} after the last key",
        f"    caller -> room  audio  {heard(keypad.room_heard)}  {mark(keypad.room_hears_caller)}",
        f"    room -> caller  audio  {heard(keypad.caller_heard)}  {mark(keypad.caller_hears_room)}",
        f"    video both ways changing: {keypad.room_video_changing and keypad.caller_video_changing}  "
        f"{mark(keypad.room_video_changing and keypad.caller_video_changing)}",
        f"  verdict: {'media flowed both ways in both calls' if result.ok else 'MEDIA CHECK FAILED'}",
        "",
        "Where to look:",
        "  sipmediagw status                  (the pool: state, room, caller, call duration)",
        f"  sipmediagw logs {result.pool[0].gateway}            (files: {result.logs_dir}/<gateway>/app.log, err.log)",
        *[f"  {shot}" for shot in call.screenshots if shot.startswith("/")],
        *([f"  {result.logs_dir / result.answered_by}/room-as-gateway-sees-it.png   (the room as the gateway sends "
           "it to the caller)"] if any(not shot.startswith("/") for shot in call.screenshots) and result.answered_by
          else []),
        "",
        "Still running: Kamailio, Janus and the pool. Dial in from your own softphone through the registrar",
        f"{registrar} (a test account for it: {caller_account_file(result.place, stack)}):",
        f"  {meeting_uri('<N>')}   joins Janus room N, {min(JANUS_ROOMS)}..{max(JANUS_ROOMS)} (e.g. {meeting_uri(DEMO_ROOM)})",
        f"  {result.service_uri}   the keypad menu: type the room number, then # (* erases)",
        f"  room page  {stack.janus.room_url('N')}   (open it in a browser to see and hear the call)",
        f"Stop everything:  {down}",
    ]
    return "\n".join(lines)
