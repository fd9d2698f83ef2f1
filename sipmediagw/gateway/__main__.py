"""``python3 -m sipmediagw.gateway``: the container entrypoint. Reads the config, wires the real components, runs the
Supervisor.

Wiring (docs/container.md): Xvfb :web (the room, grabbed by baresip) -> Xvfb :sip (baresip draws the caller's video)
-> PulseAudio (MediaPlan script) -> baresip (config rendered from the baresip/ templates) -> camera (MJPEG relay in
userspace mode, ffmpeg into /dev/video0 in kernel mode) -> Chromium pre-warmed on about:blank. Which of them a gateway
runs is the MediaPlan's `components` (an audio-only gateway has no :sip display and no camera); build() makes each by
name. A pool gateway parks its camera and Chromium while idle (ondemand.py): they start when a call comes in.
The supervisor also serves the request socket (request_socket.py: `sipmediagw dial`).
Everything that can be refused (config, account file, room driver, baresip template) is checked before anything is
started, so bad input never leaves a half-started gateway.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..dispatch import Dispatcher, RoomTarget
from ..errors import SipMediaGwError
from ..room import RoomDrivers
from ..state import GatewayState, GatewayStatus, write_state
from .baresip import BaresipControl, RegistrationLog, baresip_argv, render_baresip_config
from .config import GatewayConfig
from .controller import CallWatch, Controller, Menu, Notifier, Routing
from .incall import InCall, Timeouts, rtp_timeout_backstop
from .join_dialogue import JoinDialogue
from .logs import get_logger, line_sink, setup_logging
from .media import KERNEL, ROOM_MIC, MediaPlan
from .ondemand import OnDemand, OnDemandComponent, Part
from .process import ComponentFailed, ManagedProcess
from .request_socket import GatewayRequests
from .sandbox import SandboxCheck, probe_sandbox
from .supervisor import Component, FunctionComponent, Supervisor

XVFB_READY_TIMEOUT = 15.0
PULSE_READY_TIMEOUT = 15.0
BARESIP_READY_TIMEOUT = 20.0
CAMERA_READY_TIMEOUT = 20.0
BROWSER_READY_TIMEOUT = 90.0  # Chromium's first start on a busy 2-core CI machine
CONTROL_CONNECT_TIMEOUT = 10.0
CAMERA_RESTART_GRACE = 10.0
X11_SOCKET_DIR = Path("/tmp/.X11-unix")
#: started at once, then waited for (supervisor.start_together): the two displays and PulseAudio need nothing from
#: one another. baresip waits for them: its pulse module connects to PulseAudio when it loads (measured: started
#: beside it, baresip 1.0.0 logs "pa_context_connect failed" and has no pulse devices); the camera grabs a display
#: and Chromium draws on one
START_TOGETHER = (("xvfb-web", "xvfb-sip", "pulseaudio"),)


def _unix_socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def _tcp_port_accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def tolerant(alive: Callable[[], bool], grace: float) -> Callable[[], bool]:
    """An alive probe that reports death only after `grace` seconds of failing: the MJPEG relay restarts its ffmpeg
    by itself whenever baresip's video window changes size, and that short gap is not a failure."""
    failing_since: list[float] = []

    def probe() -> bool:
        if alive():
            failing_since.clear()
            return True
        if not failing_since:
            failing_since.append(time.monotonic())
        return time.monotonic() - failing_since[0] < grace

    return probe


def default_interface() -> str | None:
    """The first non-loopback interface that is up (eth0 in a container): baresip needs it for its SDP address."""
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        return None
    for name in names:
        if name == "lo":
            continue
        try:
            state = Path(f"/sys/class/net/{name}/operstate").read_text().strip()
        except OSError:
            continue
        if state in ("up", "unknown"):
            return name
    return None


def xvfb(name: str, display: int, size: tuple[int, int]) -> ManagedProcess:
    """An Xvfb server on `display`; ready when its X socket accepts connections."""
    return ManagedProcess(
        name,
        ["Xvfb", f":{display}", "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp", "-noreset"],
        log=line_sink(name),
        ready=lambda: _unix_socket_accepts(X11_SOCKET_DIR / f"X{display}"),
    )


def pulseaudio(plan: MediaPlan, run_dir: Path) -> ManagedProcess:
    """Per-user PulseAudio running the plan's script; ready when the room microphone source exists."""
    script = run_dir / "gateway.pa"
    script.write_text(plan.pulse_script(), encoding="utf-8")

    def ready() -> bool:
        out = subprocess.run(
            ["pactl", "-s", plan.pulse_server, "list", "short", "sources"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout
        return any(line.split("\t")[1:2] == [ROOM_MIC] for line in out.splitlines())

    return ManagedProcess(
        "pulseaudio",
        plan.pulse_argv(script),
        env={"XDG_RUNTIME_DIR": str(run_dir / "xdg")},
        log=line_sink("pulseaudio"),
        ready=ready,
    )


class BrowserSlot:
    """The room side as one recoverable component: a fresh Browser on each start, and the RoomSession the call
    controller uses. Each call brings its own target: the driver class is loaded by platform (once per platform) and
    a room object is built per call, always on the current browser, so a restart is invisible to the controller."""

    def __init__(self, config: GatewayConfig, plan: MediaPlan, drivers: RoomDrivers, display: str,
                 camera_url: Callable[[], str | None], sandbox: bool | Callable[[], bool] = False,
                 on_demand: OnDemand | None = None) -> None:
        self.config = config
        self.plan = plan
        self.drivers = drivers
        self.display = display
        self.camera_url = camera_url
        self.sandbox = sandbox  # Chromium's sandbox can work here (gateway/sandbox.py); a callable: asked at start
        #: the parts parked while idle (a pool gateway: camera and browser), started by prepare(); None: always on
        self.on_demand = on_demand
        self.browser: Any = None
        self.session: Any = None
        self._mic_clock: ManagedProcess | None = None

    def start(self) -> None:
        """Start Chromium pre-warmed on about:blank."""
        from .browser import Browser  # selenium is imported only when a browser is needed

        self._start_mic_clock()
        browser = Browser(
            display=self.display,
            env=self.plan.browser_env(),
            camera_url=self.camera_url(),
            camera_size=self.config.camera_size,
            log=line_sink("chromium"),
            insecure_origins=self.config.insecure_origins,
            window_size=self.config.video_size,
            fps=self.config.fps,
            audio_only=self.config.audio_only,
            sandbox=self.sandbox() if callable(self.sandbox) else self.sandbox,
        )
        browser.start()
        self.browser = browser

    def alive(self) -> bool:
        """Chromium runs and answers WebDriver."""
        return self.browser is not None and self.browser.alive()

    def stop(self) -> None:
        """Quit Chromium (also after a crash), and its mic clock."""
        browser, self.browser, self.session = self.browser, None, None
        if browser is not None:
            browser.quit()
        clock, self._mic_clock = self._mic_clock, None
        if clock is not None:
            clock.stop()

    def _start_mic_clock(self) -> None:
        """Start the reader that keeps Chromium's microphone prompt (MediaPlan.mic_clock_argv), before Chromium so
        that the sink renders short blocks by its first getUserMedia. Without it a call only starts slower: a
        failure is logged, not fatal."""
        argv = self.plan.mic_clock_argv()
        if argv is None or self._mic_clock is not None:
            return
        clock = ManagedProcess("mic-clock", argv, log=line_sink("mic-clock"), stop_timeout=2.0)
        try:
            clock.start()
        except ComponentFailed as exc:
            line_sink("mic-clock")(f"not started, the room may hear a caller up to 2 s late: {exc.reason}")
            return
        self._mic_clock = clock

    # RoomSession
    def prepare(self, cancelled: threading.Event) -> None:
        """A call is coming (controller.OnDemandRoomSide; on the room worker, before the answer): start what is
        parked."""
        if self.on_demand is not None and not cancelled.is_set():
            self.on_demand.ensure()

    def release(self) -> None:
        """The call is over (controller.OnDemandRoomSide; on the room worker, after its leave): park what runs on
        demand."""
        if self.on_demand is not None:
            self.on_demand.park()

    def check(self, target: RoomTarget) -> None:
        """The driver refuses rooms it cannot open (controller.RoomSession); no page is loaded for this."""
        self.drivers.check(target.platform, target.base_url, target.room, self._options(target))

    def _options(self, target: RoomTarget) -> dict[str, Any]:
        """The driver options of `target`'s room: the gateway's room options go to its own platform's driver (a
        dispatch rule to another platform gets none); `audio_only` tells the driver to join without a camera."""
        options = dict(self.config.room_options) if target.platform == self.config.platform else {}
        if self.config.audio_only:
            options["audio_only"] = True
        return options

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: JoinDialogue | None = None) -> None:
        """Enter `target`'s room (controller.RoomSession; on the room worker: once `cancelled` is set, the next
        page step raises). The supervisor may stop the browser meanwhile: the WebDriver command running fails."""
        from .browser import BrowserRoomSession

        self.prepare(cancelled)  # (started already by the prepare queued at the call's arrival, unless it failed)
        browser = self.browser
        if browser is None:
            raise RuntimeError("browser not running")
        # `audio_only` tells the driver to join without a camera where its platform asks (docs/rooms.md)
        options = self._options(target)
        self.session = BrowserRoomSession(browser, self.drivers.get(target.platform), target.base_url,
                                          target.room, options)
        self.session.join(display_name, cancelled, dialogue)

    def leave(self) -> None:
        """Leave the room, or blank whatever page the call showed (controller.RoomSession; on the room worker)."""
        session, self.session = self.session, None
        browser = self.browser  # (the supervisor's thread may stop it meanwhile)
        if session is not None:
            session.leave()
        elif browser is not None:
            with browser.page_action() as driver:
                driver.get("about:blank")


def room_side_on_demand(config: GatewayConfig, plan: MediaPlan, slot: BrowserSlot, sip_display: str,
                        set_relay: Callable[[Any], None]) -> OnDemand:
    """The parts a pool gateway starts per call, in order: the camera (a fresh relay or ffmpeg each time: the page's
    camera URL is taken from it when Chromium starts) and Chromium. Neither waits for the camera's first frame: the
    page's camera shows it when it comes."""
    parts: list[Part] = []
    if "camera" in plan.components:
        camera: dict[str, Any] = {}

        def start_camera() -> None:
            if config.media == KERNEL:
                process = ManagedProcess("camera", plan.camera_argv(sip_display, config.sip_display_size),
                                         log=line_sink("camera"), stop_timeout=3.0)
                process.start()
                camera.update(stop=process.stop, alive=process.alive)
                return
            from .mjpeg import MjpegRelay

            relay = MjpegRelay(display=sip_display, size=config.camera_size, fps=config.fps, log=line_sink("camera"))
            relay.start()
            set_relay(relay)
            camera.update(stop=relay.stop, alive=tolerant(relay.alive, CAMERA_RESTART_GRACE))

        def stop_camera() -> None:
            stop = camera.pop("stop", None)
            camera.pop("alive", None)
            set_relay(None)
            if stop is not None:
                stop()

        parts.append(Part("camera", start_camera, stop_camera, lambda: camera.get("alive", lambda: False)()))
    parts.append(Part("browser", slot.start, slot.stop, slot.alive))
    return OnDemand(parts, log=line_sink("on-demand"))


class SandboxProbe:
    """probe_sandbox() on a thread from the start on: it runs two Python children (about half a second) that only
    Chromium needs, so it overlaps the start of the displays, PulseAudio and baresip instead of preceding it."""

    def __init__(self, probe: Callable[[], SandboxCheck] = probe_sandbox) -> None:
        self._probe = probe
        self._check: SandboxCheck | None = None
        self._thread = threading.Thread(target=self._run, name="sandbox-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._check = self._probe()
        except Exception as exc:  # noqa: BLE001 - no verdict is a refusal: Chromium then runs unsandboxed, and says so
            self._check = SandboxCheck(False, f"the sandbox probe failed: {exc.__class__.__name__}: {exc}")

    def result(self) -> SandboxCheck:
        """The probe's verdict (waits for it)."""
        self._thread.join()
        assert self._check is not None
        return self._check


def routing_of(config: GatewayConfig, drivers: RoomDrivers) -> Routing:
    """The gateway's call routing; every driver it may need is loaded and a fixed room checked by its driver now, so
    a bad platform or room fails the start (exit 2) instead of the first call."""
    if config.room is not None:
        target = RoomTarget(config.platform, config.base_url, config.room)
        drivers.check(target.platform, target.base_url, target.room, config.room_options)
        return Routing(account_user=config.account_user, fixed=target, service_user=config.service_user)
    dispatcher = Dispatcher.build(config.dispatch, config.platform, config.base_url)
    dispatcher.check_platforms(drivers.get)
    return Routing(account_user=config.account_user, dispatcher=dispatcher, service_user=config.service_user)


def caller_screen(slot: BrowserSlot) -> Callable[[], Any]:
    """The menu page (menu_screen.MenuScreen) in the slot's current browser: where the keypad menu and the notices
    draw on the room display."""
    from .menu_screen import MenuScreen

    def screen() -> MenuScreen:
        browser = slot.browser
        if browser is None:
            raise RuntimeError("browser not running")
        return MenuScreen(browser.driver, lock=browser.lock)

    return screen


def keypad_menu(slot: BrowserSlot) -> Menu:
    """The keypad menu of a pool gateway (menu.py): the menu page in the slot's current browser, the prompts played
    into the sink the caller hears."""
    from .menu import KeypadMenuSession
    from .prompts import PromptPlayer

    return KeypadMenuSession(caller_screen(slot), PromptPlayer(server=slot.plan.pulse_server,
                                                               log=line_sink("prompts")))


def join_notice(slot: BrowserSlot) -> Notifier:
    """What tells a caller (of any gateway) why their meeting cannot be joined: the menu page and a prompt (menu.py)."""
    from .menu import NoticeScreen
    from .prompts import PromptPlayer

    return NoticeScreen(caller_screen(slot), PromptPlayer(server=slot.plan.pulse_server, log=line_sink("prompts")))


def call_watch(slot: BrowserSlot) -> CallWatch:
    """Keypad controls in the room and the call's timeouts (incall.py), drawn in the slot's current browser."""
    from .overlay import BrowserControls

    def driver() -> Any:
        return slot.browser.driver if slot.browser is not None else None

    def room() -> Any:
        return slot.session.room if slot.session is not None else None

    def lock() -> Any:
        return slot.browser.lock if slot.browser is not None else contextlib.nullcontext()

    config = slot.config
    return InCall(BrowserControls(driver, room, lock),
                  Timeouts(alone=config.alone_timeout, no_media=config.no_media_timeout,
                           max_call=config.max_call_duration))


def build(config: GatewayConfig, drivers: RoomDrivers, routing: Routing,
          menu: Callable[[BrowserSlot], Menu] = keypad_menu,
          watch: Callable[[BrowserSlot], CallWatch] = call_watch, *,
          sandbox: SandboxCheck | Callable[[], SandboxCheck] | None = None,
          notice: Callable[[BrowserSlot], Notifier | None] = join_notice,
          park_room_side: bool | None = None,
          ) -> tuple[list[tuple[Component, float]], Callable]:
    """The real components in start order (with ready timeouts) and the controller factory. `menu` makes the keypad
    menu of a pool gateway from the browser slot, `watch` the keypad controls and timeouts of its calls, `notice` what
    tells a caller why their room cannot be joined (None: a bare hang-up), `sandbox` whether Chromium may run
    sandboxed (None: probe now; a callable: its answer when Chromium first starts, e.g. a SandboxProbe's result),
    `park_room_side` whether camera and Chromium run only during calls (None: a pool gateway parks them, a fixed one
    keeps them warm; docs/benchmarks.md has both ways measured)."""
    sandbox = sandbox or probe_sandbox()
    sandbox_available = (lambda: sandbox().available) if callable(sandbox) else sandbox.available
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (run_dir / "xdg").mkdir(exist_ok=True, mode=0o700)
    if not X11_SOCKET_DIR.is_dir():
        X11_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        X11_SOCKET_DIR.chmod(0o1777)
    web_display, sip_display = config.display_base, config.display_base + 1
    plan = MediaPlan(
        config.media, run_dir / "pulse.sock", camera_size=config.camera_size, fps=config.fps,
        alsa_cards=config.alsa_cards, video_device=config.video_device, video=not config.audio_only,
    )
    video_source, video_display = plan.baresip_video(f":{web_display}") or (None, None)
    baresip_dir = render_baresip_config(
        config.baresip_dir, run_dir / "baresip",
        account_line=config.account_line,
        answermode="manual",  # the controller answers once it knows the dialled address (callstat)
        audio_player=plan.audio_player,
        audio_source=plan.audio_source,
        video_source=video_source,
        video_display=video_display,
        video_size=config.video_size,
        fps=config.fps,
        sip_port=config.sip_port,
        ctrl_port=config.ctrl_port,
        net_interface=config.net_interface or default_interface(),
        # baresip's own no-RTP hang-up, behind the call watch's (which tells the caller first): incall.py
        extra={"rtp_timeout": str(rtp_timeout_backstop(config.no_media_timeout))},
    )
    relay: Any = None
    registration_log = RegistrationLog()

    def make_baresip() -> Component:
        env = {"PULSE_SERVER": plan.pulse_server}
        if "xvfb-sip" in plan.components:
            env["DISPLAY"] = f":{sip_display}"  # where baresip's x11 display draws the caller's video
        return ManagedProcess("baresip", baresip_argv(baresip_dir), env=env,
                              log=registration_log.sink(line_sink("baresip")),
                              ready=lambda: _tcp_port_accepts(config.ctrl_port), stop_timeout=5.0)

    def make_camera() -> Component:
        nonlocal relay
        if config.media == KERNEL:
            return ManagedProcess("camera", plan.camera_argv(f":{sip_display}", config.sip_display_size),
                                  log=line_sink("camera"), stop_timeout=3.0)
        from .mjpeg import MjpegRelay

        relay = MjpegRelay(display=f":{sip_display}", size=config.camera_size, fps=config.fps,
                           log=line_sink("camera"))
        return FunctionComponent("camera", start=relay.start, stop=relay.stop,
                                 alive=tolerant(relay.alive, CAMERA_RESTART_GRACE), wait_ready=relay.wait_frame)

    slot = BrowserSlot(config, plan, drivers, f":{web_display}",
                       camera_url=lambda: relay.url if relay is not None else None, sandbox=sandbox_available)
    # Every component this gateway may have, by name; plan.components says which it has and in what order.
    factories: dict[str, tuple[Callable[[], Component], float]] = {
        "xvfb-web": (lambda: xvfb("xvfb-web", web_display, config.video_size), XVFB_READY_TIMEOUT),
        "xvfb-sip": (lambda: xvfb("xvfb-sip", sip_display, config.sip_display_size), XVFB_READY_TIMEOUT),
        "pulseaudio": (lambda: pulseaudio(plan, run_dir), PULSE_READY_TIMEOUT),
        "baresip": (make_baresip, BARESIP_READY_TIMEOUT),
        "camera": (make_camera, CAMERA_READY_TIMEOUT),
        "browser": (lambda: FunctionComponent("browser", start=slot.start, stop=slot.stop, alive=slot.alive,
                                              recoverable=True), BROWSER_READY_TIMEOUT),
    }
    if park_room_side is None:
        park_room_side = config.room is None
    if park_room_side:
        # A pool gateway parks the camera and Chromium while idle (ondemand.py); a fixed gateway keeps them warm,
        # its answer -> audible being the figure that matters there.
        def set_relay(current: Any) -> None:
            nonlocal relay
            relay = current

        slot.on_demand = room_side_on_demand(config, plan, slot, f":{sip_display}", set_relay)
        for name in ("camera", "browser"):
            factories[name] = (lambda name=name: OnDemandComponent(name, slot.on_demand,  # type: ignore[arg-type]
                                                                    recoverable=name == "browser"), 1.0)
    components: list[tuple[Component, float]] = [(factories[name][0](), factories[name][1])
                                                 for name in plan.components]

    def make_controller(on_change: Callable[[], None]) -> Controller:
        control = BaresipControl(port=config.ctrl_port)
        control.connect(CONTROL_CONNECT_TIMEOUT)
        return Controller(control, slot, on_change, once=config.once, routing=routing,
                          menu=menu(slot), watch=watch(slot), notifier=notice(slot),
                          default_display_name=config.display_name,
                          registration_hint=registration_log.last_failure,
                          on_demand=slot if slot.on_demand is not None else None,
                          join_on_invite=True)  # the join overlaps the answer (issue 12: answer -> audible)

    return components, make_controller


def main(argv: list[str] | None = None) -> int:
    """Run one gateway until SIGTERM (exit 0), a fatal component failure (1) or bad configuration (2)."""
    parser = argparse.ArgumentParser(prog="python3 -m sipmediagw.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="exit after the first call (same as SIPMEDIAGW_ONCE=1)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.once:
        env["SIPMEDIAGW_ONCE"] = "1"
    log_dir = Path(env.get("SIPMEDIAGW_LOG_DIR") or "/var/log/sipmediagw")
    try:
        setup_logging(log_dir)
    except OSError as exc:
        print(f"sipmediagw: cannot write logs in {log_dir}: {exc}", file=sys.stderr)
        return 2
    log = get_logger("supervisor")
    status = GatewayStatus(gateway=env.get("SIPMEDIAGW_GATEWAY") or socket.gethostname())
    try:
        config = GatewayConfig.from_env(env)
        status = GatewayStatus(gateway=config.gateway, sip_uri=config.sip_uri, mode=config.mode,
                               platform=config.platform or None, media=config.media, audio_only=config.audio_only)
        drivers = RoomDrivers(config.browsing_dir)
        routing = routing_of(config, drivers)
        sandbox_probe = SandboxProbe()
        components, make_controller = build(config, drivers, routing, sandbox=sandbox_probe.result)
    except SipMediaGwError as exc:
        log.error("configuration error: %s", exc)
        status.set_state(GatewayState.ERROR)
        status.last_error = str(exc)
        write_state(log_dir, status)
        return exc.exit_code
    if config.room is not None:
        log.info("gateway %s: %s -> %s room %r (fixed, %s media%s)", config.gateway, config.sip_uri,
                 config.platform, config.room, config.media, ", audio only" if config.audio_only else "")
    else:
        log.info("gateway %s: %s, pool gateway: %d dispatch rule(s)%s, keypad menu on %r (%s media%s)",
                 config.gateway, config.sip_uri, len(config.dispatch),
                 f" + default {config.platform} {config.base_url}" if config.base_url else "", config.service_user,
                 config.media, ", audio only" if config.audio_only else "")

    def controller_once_probed(on_change: Callable[[], None]) -> Controller:
        # the state file says ready only with the sandbox's verdict in it (the probe ran beside the start-up)
        sandbox = sandbox_probe.result()
        status.sandbox = sandbox.summary
        if sandbox.available:
            log.info("chromium sandbox: on (%s)", sandbox.reason)
        else:
            log.warning("chromium sandbox: OFF, chromium runs with --no-sandbox: %s", sandbox.reason)
        return make_controller(on_change)

    return Supervisor(status=status, log_dir=log_dir, components=components, make_controller=controller_once_probed,
                      once=config.once, requests=GatewayRequests(config.request_socket),
                      start_together=START_TOGETHER).run()


if __name__ == "__main__":
    sys.exit(main())
