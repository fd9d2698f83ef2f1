"""Room joins that take too long, with a real Chromium (headful on its own Xvfb) and the real drivers: a room page
that never loads fails within the page-load timeout, stopping the browser mid-load ends the join at once, a
cancelled join stops at its next page step, and a supervisor asked to stop mid-join (SIGTERM) ends promptly.

The "room servers" are local: one accepts connections and never answers (a page that never loads), one serves a page
that loads but never becomes a conference (a join that waits in its driver).
"""

from __future__ import annotations

import http.server
import queue
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
from selenium.common.exceptions import TimeoutException

from sipmediagw.gateway import __main__ as entry
from sipmediagw.gateway.browser import PAGE_LOAD_TIMEOUT, Browser, BrowserRoomSession, PageActionCancelled
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.gateway.controller import Controller
from sipmediagw.gateway.media import MediaPlan
from sipmediagw.gateway.supervisor import FunctionComponent, Supervisor
from sipmediagw.room import RoomDrivers, load_room_driver
from sipmediagw.state import GatewayState, GatewayStatus, read_state

from test_browser_real import BROWSING, REPO, room_display, start_browser, wait_for  # noqa: F401 (fixtures)

WAIT = 20.0  # bound on every wait (a busy 2-core machine only waits longer)


class HungServer:
    """Accepts HTTP connections and never answers: Chromium waits for the page until its page-load timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connected = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class _NeverJoinsPage(http.server.BaseHTTPRequestHandler):
    """A page that loads at once but is no conference: a driver waits for "joined" until its own timeout."""

    served: threading.Event

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<!doctype html><title>lobby</title><p>waiting for the meeting to start</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.served.set()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def hung() -> Iterator[HungServer]:
    server = HungServer()
    yield server
    server.close()


@pytest.fixture
def never_joins() -> Iterator[tuple[str, threading.Event]]:
    served = threading.Event()
    handler = type("Handler", (_NeverJoinsPage,), {"served": served})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


class JoinThread(threading.Thread):
    """Runs `session.join` as the room worker would; records how it ended and when."""

    def __init__(self, session: BrowserRoomSession, cancelled: threading.Event | None = None) -> None:
        super().__init__(name="join", daemon=True)
        self.session, self.cancelled = session, cancelled
        self.error: Exception | None = None
        self.ended_at = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.session.join("Alice", self.cancelled)
        except Exception as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.done.set()


def chromium_processes(display: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "chromium" in cmdline and f"DISPLAY={display}" in _environ(proc) and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def _environ(proc: psutil.Process) -> str:
    try:
        return " ".join(f"{k}={v}" for k, v in proc.environ().items())
    except psutil.Error:
        return ""


def test_a_room_page_that_never_loads_fails_the_join_within_the_page_load_timeout(
        room_display: Any, start_browser: Callable[..., Browser], hung: HungServer) -> None:
    assert Browser(display=":0", env={}, camera_url=None).page_load_timeout == PAGE_LOAD_TIMEOUT == 30.0
    browser = start_browser(display=room_display.display, env={}, camera_url=None, page_load_timeout=3)
    session = BrowserRoomSession(browser, load_room_driver("jitsi", BROWSING), hung.url, "never-loads")
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        session.join("Alice")
    took = time.monotonic() - started
    print(f"join on a page that never loads failed after {took:.2f} s (page-load timeout 3 s)")
    assert hung.connected.is_set() and 2.5 <= took < 10
    session.leave()  # the browser is at once usable again
    assert browser.driver.current_url == "about:blank" and browser.alive()


def test_stopping_the_browser_mid_page_load_ends_the_join_at_once(
        room_display: Any, start_browser: Callable[..., Browser], hung: HungServer) -> None:
    browser = start_browser(display=room_display.display, env={}, camera_url=None)  # the 30 s page-load timeout
    session = BrowserRoomSession(browser, load_room_driver("jitsi", BROWSING), hung.url, "never-loads")
    join = JoinThread(session)
    join.start()
    assert hung.connected.wait(WAIT), "Chromium never asked for the page"
    probe_started = time.monotonic()
    assert browser.alive()  # busy, not dead, and the supervisor's probe does not wait for the page
    probe_took = time.monotonic() - probe_started
    pid = browser.pid
    assert pid is not None
    started = time.monotonic()
    browser.quit()
    quit_took = time.monotonic() - started
    assert join.done.wait(WAIT), "the join did not return after the browser stopped"
    join_took = join.ended_at - started
    print(f"alive() during the load: {probe_took:.3f} s; quit mid-load: {quit_took:.2f} s; "
          f"join returned {join_took:.2f} s after the quit started ({join.error.__class__.__name__})")
    assert probe_took < 1.0 and quit_took < 5.0 and join_took < 5.0
    assert join.error is not None  # the WebDriver command failed: no "joined" on a dead browser
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    wait_for(lambda: not chromium_processes(room_display.display), 10, "no Chromium left")


def test_a_cancelled_join_stops_at_its_next_page_step(
        room_display: Any, start_browser: Callable[..., Browser],
        never_joins: tuple[str, threading.Event]) -> None:
    url, served = never_joins
    browser = start_browser(display=room_display.display, env={}, camera_url=None)
    session = BrowserRoomSession(browser, load_room_driver("jitsi", BROWSING), url, "lobby")
    cancelled = threading.Event()
    join = JoinThread(session, cancelled)
    join.start()
    assert served.wait(WAIT), "the page was never asked for"
    started = time.monotonic()
    cancelled.set()  # the driver waits up to 45 s for "joined": it stops at its next poll
    assert join.done.wait(WAIT)
    took = join.ended_at - started
    print(f"cancelled join returned after {took:.2f} s ({join.error.__class__.__name__})")
    assert isinstance(join.error, PageActionCancelled) and took < 3.0
    session.leave()  # (a leave is no cancelled action: it runs)
    assert browser.driver.current_url == "about:blank"


# -- the whole supervisor with the gateway's own browser glue (__main__.BrowserSlot) --------------------------------


class FakeBaresip:
    """baresip's control connection as the supervisor and the controller use it: registered, answers callstat for a
    call to the gateway's own user, and a hang-up comes back as CALL_CLOSED."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.commands: list[str] = []

    def _ok(self, command: str, data: str = "") -> dict[str, Any]:
        self.commands.append(command)
        return {"response": True, "ok": True, "data": data}

    def reginfo(self) -> dict[str, Any]:
        return self._ok("reginfo", "\n--- User Agents (1) ---\n> sip:gw@example.org  OK \n")

    def callstat(self) -> dict[str, Any]:
        return self._ok("callstat", " local_uri:  <sip:gw@example.org>\n af=AF_INET id=c1\n")

    def accept(self) -> dict[str, Any]:
        return self._ok("accept")

    def hangup(self, call_id: str | None = None) -> dict[str, Any]:
        self.events.put({"event": True, "type": "CALL_CLOSED", "id": call_id or "c1",
                         "param": "Connection reset by user"})
        return self._ok("hangup")

    def connect(self, timeout: float) -> None:
        self.commands.append("connect")

    def quit(self) -> None:
        self.commands.append("quit")

    def close(self) -> None:
        self.commands.append("close")

    def call_in(self) -> None:
        fields = {"event": True, "class": "call", "direction": "incoming", "peeruri": "sip:alice@example.org",
                  "id": "c1", "param": ""}
        self.events.put({**fields, "type": "CALL_INCOMING"})
        self.events.put({**fields, "type": "CALL_ESTABLISHED"})


def gateway_config(tmp_path: Path, base_url: str) -> GatewayConfig:
    account = tmp_path / "account"
    account.write_text("<sip:gw@example.org>;auth_pass=Join-Test-Secret-1\n")
    return GatewayConfig.from_env({
        "SIPMEDIAGW_PLATFORM": "jitsi", "SIPMEDIAGW_ROOM": "team-room", "SIPMEDIAGW_BASE_URL": base_url,
        "SIPMEDIAGW_ACCOUNT_FILE": str(account), "SIPMEDIAGW_LOG_DIR": str(tmp_path / "logs"),
        "SIPMEDIAGW_BARESIP_DIR": str(REPO / "baresip"), "SIPMEDIAGW_BROWSING_DIR": str(BROWSING),
        "SIPMEDIAGW_RUN_DIR": str(tmp_path / "run"), "SIPMEDIAGW_NET_INTERFACE": "lo",
    })


@pytest.mark.parametrize("page", ["never loads", "never joins"])
def test_sigterm_mid_join_stops_the_supervisor_promptly(
        tmp_path: Path, room_display: Any, hung: HungServer, never_joins: tuple[str, threading.Event],
        page: str, require_programs: Callable[..., None]) -> None:
    """A gateway (the real browser slot, controller and supervisor; baresip faked) joins a room whose page never
    loads / never becomes a conference; SIGTERM meanwhile ends the supervisor well within the container's 20 s."""
    require_programs("chromium", "chromedriver")
    base_url, served = (hung.url, hung.connected) if page == "never loads" else never_joins
    config = gateway_config(tmp_path, base_url)
    drivers = RoomDrivers(BROWSING)
    plan = MediaPlan(config.media, tmp_path / "run" / "pulse.sock", camera_size=config.camera_size, fps=config.fps,
                     alsa_cards=config.alsa_cards, video_device=config.video_device, video=False)
    slot = entry.BrowserSlot(config, plan, drivers, room_display.display, camera_url=lambda: None)
    browser = FunctionComponent("browser", start=slot.start, stop=slot.stop, alive=slot.alive, recoverable=True)
    control = FakeBaresip()
    supervisor = Supervisor(
        status=GatewayStatus(gateway="gw-join"), log_dir=tmp_path / "logs", components=[(browser, 90.0)],
        make_controller=lambda on_change: Controller(control, slot, on_change,  # type: ignore[arg-type]
                                                     routing=entry.routing_of(config, drivers)),
        poll_interval=0.05, install_signals=False)
    exit_code: list[int] = []
    ended = threading.Event()
    runner = threading.Thread(target=lambda: (exit_code.append(supervisor.run()), ended.set()), daemon=True)
    runner.start()
    try:
        wait_for(lambda: (s := read_state(tmp_path / "logs")) and s.state is GatewayState.READY, 120, "ready")
        control.call_in()
        assert served.wait(WAIT), "the room page was never asked for"
        joining = read_state(tmp_path / "logs")
        assert joining is not None and joining.state is GatewayState.IN_CALL and joining.caller == "alice"
        started = time.monotonic()
        supervisor.request_stop(signal.SIGTERM)
        assert ended.wait(WAIT), "the supervisor did not end"
        took = time.monotonic() - started
    finally:
        supervisor.request_stop(signal.SIGTERM)
        runner.join(WAIT)
        slot.stop()
    print(f"SIGTERM mid-join (page {page}) -> supervisor exit: {took:.2f} s")
    assert exit_code == [0] and took < 10.0
    final = read_state(tmp_path / "logs")
    assert final is not None and final.state is GatewayState.EXITED and final.last_end_reason == "gateway stopping"
    assert "hangup" in control.commands
    wait_for(lambda: not chromium_processes(room_display.display), 10, "no Chromium left")
