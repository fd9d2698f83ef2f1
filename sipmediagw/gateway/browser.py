"""The room side of the gateway: Chromium driven by Selenium, headful on the room display.

Chromium runs app-like (kiosk) on the Xvfb room display whose pixels baresip sends to the caller, so nothing but the
room may be visible: no infobars, no first-run bubbles. Its camera and microphone come from :file:`inject.js`, added
before any page script runs (see docs/rooms.md). Works with Debian's selenium 4.8.3 (in the image) and current
selenium (host): only APIs both have are used, and the driver path is always given so Selenium Manager never runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import psutil
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from ..room import Room
from . import isolation
from .isolation import IsolationCheck
from .join_dialogue import JoinDialogue
from .logs import LogSink, get_logger
from .overlay import BrowserControls, Panel

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
INJECT_JS = Path(__file__).with_name("inject.js")
#: a navigation that has not loaded after this long fails (Chromium would wait 300 s), so a room page that never
#: loads cannot hold the browser; the join then fails with a timeout (the controller's own limit is longer)
PAGE_LOAD_TIMEOUT = 30.0

# Features that would make Chromium talk to the Internet, show UI over the room, or block the page from reading the
# 127.0.0.1 MJPEG camera (Local/Private Network Access checks). Unknown names are ignored by Chromium.
DISABLED_FEATURES = (
    "LocalNetworkAccessChecks",
    "BlockInsecurePrivateNetworkRequests",
    "PrivateNetworkAccessSendPreflights",
    "PrivateNetworkAccessRespectPreflightResults",
    "Translate",
    "MediaRouter",
    "OptimizationHints",
    "AutofillServerCommunication",
    "CertificateTransparencyComponentUpdater",
    "InterestFeedContentSuggestions",
    "DialMediaRouteProvider",
    "GlobalMediaControls",
)


def insecure_origin(url: str) -> str | None:
    """The origin of an http:// URL that Chromium would not treat as secure (None for https or localhost)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    if parts.hostname in ("localhost", "127.0.0.1", "::1") or parts.hostname.endswith(".localhost"):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def chromium_arguments(
    *,
    window_size: tuple[int, int],
    user_data_dir: str,
    log_file: str | None = None,
    insecure_origins: Sequence[str] = (),
    headless: bool = False,
    extra_args: Sequence[str] = (),
    sandbox: bool = False,
) -> list[str]:
    """The Chromium command-line switches of the gateway browser (pure: unit-tested).

    `insecure_origins` are room URLs; the http:// ones that are not localhost are treated as secure origins.
    `sandbox`: Chromium may isolate its renderers (gateway/sandbox.py found user namespaces); else ``--no-sandbox``.
    """
    width, height = window_size
    args = [] if sandbox else [
        "--no-sandbox",  # no user namespaces here (the engine's seccomp profile refuses them): see gateway/sandbox.py
        "--test-type",  # suppresses the "unsupported command-line flag" infobar --no-sandbox would show
    ]
    args += [
        "--kiosk",  # app-like, no tab strip or address bar: the room fills the display
        "--window-position=0,0",
        f"--window-size={width},{height}",
        "--start-fullscreen",
        f"--user-data-dir={user_data_dir}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-infobars",
        "--disable-session-crashed-bubble",
        "--hide-crash-restore-bubble",
        "--noerrdialogs",
        "--disable-notifications",
        "--disable-translate",
        "--password-store=basic",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",  # grant camera/microphone without a prompt (the devices are real)
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--no-pings",
        "--disable-background-timer-throttling",  # the canvas camera is drawn from a timer
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--disable-gpu",  # Xvfb has no GPU; software compositing is what runs anyway
        f"--disable-features={','.join(DISABLED_FEATURES)}",
    ]
    if log_file:
        args += ["--enable-logging", "--log-level=1", f"--log-file={log_file}"]
    origins = sorted({o for o in map(insecure_origin, insecure_origins) if o})
    if origins:
        # getUserMedia needs a secure context: our test Janus is served over http on the Docker bridge address.
        args.append(f"--unsafely-treat-insecure-origin-as-secure={','.join(origins)}")
    if headless:
        args.append("--headless=new")
    args.extend(extra_args)
    return args


def injection_source(camera_url: str | None, camera_size: tuple[int, int], fps: int = 15,
                     audio_only: bool = False) -> str:
    """inject.js applied to its configuration, ready for Page.addScriptToEvaluateOnNewDocument; `audio_only`: the page
    gets no camera at all (an audio-only gateway publishes its microphone only)."""
    config = {"cameraUrl": camera_url, "cameraSize": list(camera_size), "fps": fps, "audioOnly": audio_only}
    return INJECT_JS.read_text(encoding="utf-8").rstrip().rstrip(";") + f"({json.dumps(config)});\n"


# Chromium complains at length about the D-Bus services a container does not have: harmless, hides real errors.
_NOISE = re.compile(r"dbus/|bluez_dbus|idle_linux|Floss manager|UPower|PropertiesChanged")


class _FileFollower(threading.Thread):
    """Forwards lines appended to a log file to a LogSink (chromedriver's and Chromium's own log files)."""

    def __init__(self, path: Path, sink: LogSink, stop: threading.Event) -> None:
        super().__init__(name=f"follow-{path.name}", daemon=True)
        self.path, self.sink, self.stop = path, sink, stop

    def run(self) -> None:
        position = 0
        pending = ""
        while True:
            stopping = self.stop.wait(0.5)
            try:
                with open(self.path, encoding="utf-8", errors="replace") as handle:
                    handle.seek(position)
                    pending += handle.read()
                    position = handle.tell()
            except OSError:
                pass
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.strip() and not _NOISE.search(line):
                    try:
                        self.sink(line)
                    except Exception:
                        pass
            if stopping:
                return


class PageActionCancelled(RuntimeError):
    """The page action (a join) was given up by its owner while it ran: raised by its next WebDriver command."""


class _CancellableChrome(webdriver.Chrome):  # type: ignore[misc]
    """Chrome's WebDriver whose commands raise PageActionCancelled once `cancelled()` is true (it reads the calling
    thread's page action): a join is abandoned between two WebDriver round trips instead of running its waits out.
    A command already sent is not interrupted."""

    def __init__(self, *args: Any, cancelled: Callable[[], bool], **kwargs: Any) -> None:
        self._cancelled = cancelled
        super().__init__(*args, **kwargs)

    def execute(self, driver_command: str, params: Any = None) -> Any:
        if self._cancelled():
            raise PageActionCancelled(f"page action cancelled (before WebDriver {driver_command})")
        return super().execute(driver_command, params)


#: how often chromedriver's port is tried while it starts (it listens ~50 ms after its exec)
SERVICE_POLL_S = 0.01
SERVICE_START_TIMEOUT_S = 30.0


class _PromptService(Service):  # type: ignore[misc]
    """chromedriver's Service, ready as soon as chromedriver listens. Selenium's own start (4.8.3 and current) tries
    the port every 0.5 s, so every browser start waited ~0.45 s for nothing (measured: 0.50 s from start to
    connectable); a pool gateway starts Chromium while its caller waits (docs/benchmarks.md, dial -> heard)."""

    def start(self) -> None:
        self._start_process(self.path)
        deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
        try:
            while not self.is_connectable():
                self.assert_process_still_running()  # raises with chromedriver's exit code when it died
                if time.monotonic() > deadline:
                    raise WebDriverException(f"chromedriver not listening after {SERVICE_START_TIMEOUT_S:g} s")
                time.sleep(SERVICE_POLL_S)  # polling a port that has no readiness event
        except BaseException:
            self.stop()  # no chromedriver left behind by a failed start
            raise


class _LauncherService(_PromptService):
    """chromedriver's Service started through a launcher command (gateway/isolation.py): Selenium runs
    ``launcher[0]`` with ``launcher[1:]`` before chromedriver's own arguments; the launcher execs chromedriver, so the
    process Selenium watches and stops is chromedriver's (the same in selenium 4.8.3 and current selenium)."""

    def __init__(self, launcher: Sequence[str], **kwargs: Any) -> None:
        self._launcher = list(launcher)
        super().__init__(executable_path=self._launcher[0], **kwargs)

    def command_line_args(self) -> list[str]:
        return [*self._launcher[1:], *super().command_line_args()]


class Browser:
    """Chromium on an X display, pre-warmed on about:blank, with the gateway's camera/microphone injected."""

    def __init__(
        self,
        *,
        display: str,
        env: Mapping[str, str],
        camera_url: str | None,
        camera_size: tuple[int, int] = (640, 360),
        log: LogSink | None = None,
        extra_args: Sequence[str] = (),
        insecure_origins: Sequence[str] = (),
        window_size: tuple[int, int] = (1280, 720),
        headless: bool = False,
        fps: int = 15,
        chromedriver: str = CHROMEDRIVER,
        chromium: str = CHROMIUM,
        audio_only: bool = False,
        page_load_timeout: float = PAGE_LOAD_TIMEOUT,
        sandbox: bool = False,
        isolate: bool | None = None,
        hidden: Sequence[str] | None = None,
    ) -> None:
        self.display = display
        self.env = dict(env)
        self.camera_url = camera_url
        self.camera_size = camera_size
        self.log = log
        self.extra_args = list(extra_args)
        self.insecure_origins = list(insecure_origins)
        self.window_size = window_size
        self.headless = headless
        self.fps = fps
        self.chromedriver = chromedriver
        self.chromium = chromium
        self.audio_only = audio_only
        self.page_load_timeout = page_load_timeout
        self.sandbox = sandbox  # Chromium's own sandbox (gateway/sandbox.py decides whether it can work here)
        # chromedriver and Chromium in namespaces of their own where the secret folders are covered (isolation.py):
        # by default where the sandbox works, since both need user namespaces (the launcher falls back by itself)
        self.isolate = sandbox if isolate is None else isolate
        self.hidden = tuple(isolation.secret_folders(os.environ) if hidden is None else hidden)
        #: the launcher's outcome at the last start (None: not isolated by choice, or not started)
        self.isolation: IsolationCheck | None = None
        self._driver: Any = None
        self._workdir: str | None = None
        self._stop_followers = threading.Event()
        self._followers: list[_FileFollower] = []
        self._lock = threading.RLock()  # WebDriver is not thread-safe: the supervisor polls while the controller joins
        self._action = threading.local()  # .cancelled: the Event of the page action this thread runs (page_action)

    @property
    def driver(self) -> Any:
        """The Selenium WebDriver (raises if the browser is not started)."""
        if self._driver is None:
            raise RuntimeError("browser not started")
        return self._driver

    @property
    def lock(self) -> threading.RLock:
        """Hold this while driving pages from another thread than the one polling alive()."""
        return self._lock

    @contextlib.contextmanager
    def page_action(self, cancelled: threading.Event | None = None) -> Iterator[Any]:
        """Hold the browser (its lock) for a page action run on this thread, e.g. a join, and give its driver. Once
        `cancelled` is set (from any thread), each further WebDriver command of the action raises PageActionCancelled.
        """
        with self._lock:
            previous = getattr(self._action, "cancelled", None)
            self._action.cancelled = cancelled
            try:
                yield self.driver
            finally:
                self._action.cancelled = previous

    def _cancelled_here(self) -> bool:
        cancelled = getattr(self._action, "cancelled", None)
        return cancelled is not None and cancelled.is_set()

    def start(self) -> None:
        """Start Chromium on the display, inject the getUserMedia wrapper, open about:blank."""
        if self._driver is not None:
            raise RuntimeError("browser already started")
        self._workdir = tempfile.mkdtemp(prefix="sipmediagw-chromium-")
        work = Path(self._workdir)
        options = webdriver.ChromeOptions()
        options.binary_location = self.chromium
        for arg in chromium_arguments(
            window_size=self.window_size,
            user_data_dir=str(work / "profile"),
            insecure_origins=self.insecure_origins,
            headless=self.headless,
            extra_args=self.extra_args,
            sandbox=self.sandbox,
        ):
            options.add_argument(arg)
        # The "controlled by automated test software" infobar and the automation extension.
        options.add_experimental_option("excludeSwitches", ["enable-automation", "enable-logging"])
        options.add_experimental_option("prefs", {
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
            "translate.enabled": False,
        })
        # service_args works identically in selenium 4.8.3 (log_path) and current selenium (log_output).
        service_kwargs: dict[str, Any] = {
            "service_args": [f"--log-path={work / 'chromedriver.log'}", "--log-level=WARNING"],
            "env": {**os.environ, **self.env, "DISPLAY": self.display},
        }
        report = work / "isolation.json"
        self.isolation = None
        if self.isolate:
            service = _LauncherService(isolation.launcher_argv(self.chromedriver, self.hidden, str(report)),
                                       **service_kwargs)
        else:
            service = _PromptService(executable_path=self.chromedriver, **service_kwargs)
        if self.log is not None:
            # chromedriver's log also carries Chromium's stderr.
            follower = _FileFollower(work / "chromedriver.log", self.log, self._stop_followers)
            follower.start()
            self._followers.append(follower)
        self._emit(f"starting chromium on {self.display}")
        try:
            with self._lock:
                self._driver = _CancellableChrome(service=service, options=options, cancelled=self._cancelled_here)
                self._driver.set_page_load_timeout(self.page_load_timeout)
                self._driver.execute_cdp_cmd(
                    "Page.addScriptToEvaluateOnNewDocument",
                    {"source": injection_source(self.camera_url, self.camera_size, self.fps, self.audio_only)},
                )
                self._driver.get("about:blank")
            if not self.headless:
                self._fill_display()
        except Exception:
            self.quit()
            raise
        if self.isolate:
            self.isolation = self._read_isolation(report)
            if self.isolation.available:
                self._emit(f"secrets hidden from chromium: {self.isolation.reason}")
            else:
                self._emit(f"secrets NOT hidden from chromium (it runs in the gateway's namespaces): "
                           f"{self.isolation.reason}")
        self._emit("chromium ready on about:blank")

    @staticmethod
    def _read_isolation(report: Path) -> IsolationCheck:
        try:
            return IsolationCheck.from_json(report.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            return IsolationCheck(False, f"no report from the isolation launcher ({exc.__class__.__name__})")

    def _fill_display(self) -> None:
        """Resize Chromium's window to the whole display: without a window manager its fullscreen/kiosk window is one
        pixel short in each direction, a black seam the caller would see."""
        env = {**os.environ, "DISPLAY": self.display}
        try:
            found = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", "chromium"], env=env,
                                   capture_output=True, text=True, timeout=10)
            for window in found.stdout.split():
                subprocess.run(["xdotool", "windowsize", window, str(self.window_size[0]), str(self.window_size[1])],
                               env=env, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:
            self._emit(f"cannot resize the browser window with xdotool: {exc}")

    def _browser_process(self) -> psutil.Process | None:
        service = getattr(self._driver, "service", None)
        process = getattr(service, "process", None)
        if process is None:
            return None
        try:
            for child in psutil.Process(process.pid).children():
                if child.name() in ("chromium", "chrome") and child.status() != psutil.STATUS_ZOMBIE:
                    return child
        except psutil.Error:
            return None
        return None

    def alive(self) -> bool:
        """True if Chromium runs and answers the driver (Selenium alone does not notice a crash)."""
        if self._driver is None:
            return False
        if self._browser_process() is None:
            return False
        # Non-blocking (the supervisor's loop calls this): a page action holding the driver (a join on the room worker)
        # means busy, not dead; the process check above still catches a crash meanwhile.
        if not self._lock.acquire(blocking=False):
            return True
        try:
            _ = self._driver.current_window_handle
            return True
        except WebDriverException:
            return False
        finally:
            self._lock.release()

    @property
    def pid(self) -> int | None:
        """Pid of the Chromium browser process, None if it is not running."""
        process = self._browser_process()
        return process.pid if process else None

    def screenshot(self, path: str | Path) -> None:
        """Save what the browser shows as PNG."""
        with self._lock:
            if not self.driver.save_screenshot(str(path)):
                raise RuntimeError(f"screenshot to {path} failed")

    def quit(self) -> None:
        """Close Chromium and chromedriver (also after a crash, and while another thread's page action is stuck in a
        page load); idempotent."""
        driver, self._driver = self._driver, None
        if driver is not None:
            browser = None
            try:
                service = getattr(driver, "service", None)
                process = getattr(service, "process", None)
                browser = psutil.Process(process.pid).children(recursive=True) if process else []
            except psutil.Error:
                browser = []
            if self._lock.acquire(blocking=False):
                self._lock.release()
            else:
                # Another thread's WebDriver command is running (a join loading a page): chromedriver would answer our
                # quit only after it, i.e. after the page-load timeout (measured: 58 s left of a 60 s one). Killing
                # Chromium first makes that command fail at once (measured: 0.06 s) and the quit return.
                self._emit("a page action is running: killing chromium before quitting")
                self._kill(browser or [])
            try:
                driver.quit()
            except Exception as exc:  # a crashed browser makes quit() complain; the processes still go
                self._emit(f"quit: {exc.__class__.__name__}")
            # Helpers left over by a crash (renderers, zygotes) must not outlive the browser.
            self._kill(browser or [])
            self._emit("chromium stopped")
        self._stop_followers.set()
        for follower in self._followers:
            follower.join(timeout=2)
        self._followers = []
        self._stop_followers = threading.Event()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @staticmethod
    def _kill(processes: Sequence[psutil.Process]) -> None:
        for proc in processes:
            try:
                proc.kill()
            except psutil.Error:
                pass

    def _emit(self, message: str) -> None:
        if self.log is not None:
            try:
                self.log(message)
            except Exception:
                pass


JOIN_PANEL_TITLE = "Joining the meeting"


def _tell_caller(screen: BrowserControls, dialogue: JoinDialogue, text: str) -> None:
    """A driver's progress line: to the state file (through `dialogue`) and over the room's page."""
    dialogue.report(text)
    try:
        screen.draw([], Panel(JOIN_PANEL_TITLE, message=text[:1].upper() + text[1:] + "…"), 3600)
    except Exception:  # noqa: BLE001 - the page may be navigating: the state file still says it
        pass


def _ask_caller(screen: BrowserControls, dialogue: JoinDialogue, prompt: str, timeout: float,
                cancelled: threading.Event | None) -> str | None:
    """A driver's question (a meeting password): drawn over the page with the digits typed so far as dots; the
    caller's keys come through the controller (JoinDialogue.take_key)."""
    def draw(typed: int) -> None:
        hint = ("● " * typed).strip() or "Type the digits on your keypad, then #  (* starts again)"
        try:
            screen.draw([], Panel(JOIN_PANEL_TITLE, message=f"{prompt}\n{hint}", kind="ask"), timeout + 5)
        except Exception:  # noqa: BLE001 - a redraw that fails must not end the question
            pass

    draw(0)
    return dialogue.ask(prompt, timeout, cancelled, draw)


class BrowserRoomSession:
    """RoomSession (controller.py) backed by a Browser and a platform driver: join on a call, leave after it."""

    def __init__(
        self, browser: Browser, room_cls: type[Room], base_url: str, room: str, options: dict | None = None
    ) -> None:
        self.browser = browser
        self.room_cls = room_cls
        self.base_url = base_url
        self.room_name = room
        self.options = dict(options or {})
        self.room: Room | None = None

    def join(self, display_name: str, cancelled: threading.Event | None = None,
             dialogue: JoinDialogue | None = None) -> None:
        """Open the room in the browser and enter it as `display_name`; once `cancelled` is set (from another thread)
        the join raises PageActionCancelled at its next WebDriver command. What the driver waits for or asks the
        caller goes to `dialogue` and is drawn over the page (the caller's screen)."""
        with self.browser.page_action(cancelled) as driver:
            self.room = self.room_cls(driver, self.base_url, self.room_name, self.options)
            # which page the driver opens, without its query or fragment (where tokens and room secrets travel)
            try:
                page = urlsplit(self.room.url())
                get_logger("rooms").info("%s: opening %s://%s%s", self.room.platform, page.scheme, page.netloc,
                                         page.path)
            except Exception:  # noqa: BLE001 - only a log line: the join itself reports what is wrong
                pass
            if dialogue is None:
                self.room.join(display_name)
                return
            screen = BrowserControls(lambda: driver, lambda: None)
            self.room.on_progress = lambda text: _tell_caller(screen, dialogue, text)
            self.room.on_ask = lambda prompt, timeout: _ask_caller(screen, dialogue, prompt, timeout, cancelled)
            generation = dialogue.generation
            self.room.join(display_name)
            if dialogue.generation != generation:  # a wait or a question was drawn: the caller sees the room now
                try:
                    screen.draw([], None, 0)
                except Exception:  # noqa: BLE001 - the room is joined; a panel left over is cosmetic
                    pass

    def leave(self) -> None:
        """Leave the room (if joined) and go back to about:blank; never raises for an already-gone page."""
        with self.browser.lock:
            room, self.room = self.room, None
            try:
                if room is not None:
                    room.leave()
            except WebDriverException as exc:  # a page that never loaded, or hangs: blanking it is the leave
                get_logger("rooms").warning("%s: leaving the room failed (%s); blanking the page",
                                            room.platform if room else "?", str(exc).strip().splitlines()[0][:120])
            finally:
                try:
                    self.browser.driver.get("about:blank")
                except Exception:
                    pass

