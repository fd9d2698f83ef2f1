"""A platform described in YAML (sipmediagw/room_steps.py) driving a real Chromium through tests/fixtures/pages/
steps.html: consent overlay, name and password, lobby with progress, joined; refusals (fail_if, a lobby that never
opens), participant count, the microphone toggle and leave."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from sipmediagw.gateway.browser import Browser
from sipmediagw.room import NOT_FOUND, WRONG_PASSWORD, LOBBY, RoomRefused, load_room_driver

from test_browser_real import PAGES, shared_browser  # noqa: F401 (fixture)

PASSWORD = "s3cret-pw"  # the one steps.html accepts
HOSTILE_ROOM = "Café & co/../x?y#z"
HOSTILE_NAME = 'Ålice "O\'Brien" & <b>co</b>#x=1 {name}'

STEPS_FILE = """\
platform: stepsite
url: "{base_url}/meet/{room}?lobby={option.lobby_ms}&outcome={option.outcome}"
options:
  lobby_ms: {type: int, default: 0}
  outcome: {type: str, default: join}
  password: {type: str, secret: true}
join:
  - click_if_present: {css: "#consent button.accept", timeout: 10}
  - fill: {css: "input#display-name", value: "{name}"}
  - fill: {css: "input#password", value: "{option.password}"}
  - click: {css: "button.join", timeout: 10}
  - fail_if: {css: ".error-page", contains: "not found", reason: not_found}
  - fail_if: {css: ".error-page", contains: "password", reason: wrong_password}
  - progress_while: {css: ".lobby", text: "waiting to be let in", timeout: LOBBY_TIMEOUT}
  - wait_for: {css: ".in-meeting", timeout: WAIT_TIMEOUT}
leave:
  - click_if_present: {css: "button.leave"}
  - wait_for: {css: ".goodbye", timeout: 10}
participants: {css: ".participant-list .participant"}
microphone: {css: "button.toggle-mic"}
camera: {css: "button.toggle-camera"}
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """/meet/<room> -> steps.html; /event/<what> is recorded (the page's leave beacon); other paths: the pages."""

    events: list[str]

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, directory=str(PAGES), **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/event/"):
            self.server.events.append(self.path)  # type: ignore[attr-defined]
            self.send_response(204)
            self.end_headers()
            return
        if self.path.startswith("/meet/"):
            self.path = "/steps.html"
        super().do_GET()

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]  # noqa: A002
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.events = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def site_url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def steps_platform(tmp_path: Path, wait_timeout: float = 20, lobby_timeout: float = 60):  # type: ignore[no-untyped-def]
    (tmp_path / "stepsite.yaml").write_text(STEPS_FILE.replace("WAIT_TIMEOUT", str(wait_timeout))
                                            .replace("LOBBY_TIMEOUT", str(lobby_timeout)))
    return load_room_driver("stepsite", tmp_path)


def fixture_state(browser: Browser) -> dict:
    return browser.driver.execute_script("return window.fixture")


def test_steps_join_through_consent_name_and_lobby_then_count_toggle_and_leave(
    shared_browser: Browser, site: http.server.ThreadingHTTPServer, tmp_path: Path
) -> None:
    """The whole flow; the lobby lasts longer than the wait_for's own timeout: lobby time does not count."""
    room_cls = steps_platform(tmp_path, wait_timeout=1)
    room = room_cls(shared_browser.driver, site_url(site), HOSTILE_ROOM,
                    {"lobby_ms": "2500", "password": PASSWORD})
    progress: list[str] = []
    room.on_progress = progress.append
    room.join(HOSTILE_NAME)
    state = fixture_state(shared_browser)
    assert state["consentAccepted"] is True and state["joinClicks"] == 1  # the overlay was out of the way first
    assert state["room"] == HOSTILE_ROOM and state["segments"] == 1  # one path segment, decoded back intact
    assert state["name"] == HOSTILE_NAME  # typed as is: no placeholder expanded inside a value
    assert state["password"] == PASSWORD
    assert state["lobbyShown"] is True and state["joined"] is True
    assert progress == ["waiting to be let in"]
    assert room.participant_count() == 3

    assert room_cls.supports("set_microphone") and room_cls.supports("set_camera")
    room.set_microphone(False)
    assert fixture_state(shared_browser)["micMuted"] is True
    room.set_microphone(False)  # already muted: no second click (it would unmute)
    assert fixture_state(shared_browser)["micClicks"] == 1
    room.set_microphone(True)
    state = fixture_state(shared_browser)
    assert state["micMuted"] is False and state["micClicks"] == 2
    room.set_camera(False)
    assert fixture_state(shared_browser)["cameraOff"] is True

    before = len(site.events)  # type: ignore[attr-defined]
    room.leave()
    assert shared_browser.driver.current_url == "about:blank"
    # the page's leave beacon: the leave button was clicked and the goodbye awaited before about:blank
    assert site.events[before:] == ["/event/left?room=" + "Caf%C3%A9%20%26%20co%2F..%2Fx%3Fy%23z"]  # type: ignore[attr-defined]


def test_fail_if_refuses_the_join_at_once_not_after_the_timeout(
    shared_browser: Browser, site: http.server.ThreadingHTTPServer, tmp_path: Path
) -> None:
    room_cls = steps_platform(tmp_path, wait_timeout=120)
    room = room_cls(shared_browser.driver, site_url(site), "room-1", {"outcome": "not_found", "password": PASSWORD})
    started = time.monotonic()
    with pytest.raises(RoomRefused) as refused:
        room.join("Bob")
    assert refused.value.reason == NOT_FOUND
    assert "stepsite.yaml:" in refused.value.detail and ".error-page" in refused.value.detail
    assert time.monotonic() - started < 30  # the wait_for would have lasted 120 s
    before = len(site.events)  # type: ignore[attr-defined]
    room.leave()  # nothing joined: no leave steps (their wait_for would time out), just about:blank
    assert shared_browser.driver.current_url == "about:blank" and site.events[before:] == []  # type: ignore[attr-defined]


def test_a_wrong_secret_password_is_refused_and_never_shown(
    shared_browser: Browser, site: http.server.ThreadingHTTPServer, tmp_path: Path
) -> None:
    room_cls = steps_platform(tmp_path)
    wrong = "wrong-pw-4711"
    room = room_cls(shared_browser.driver, site_url(site), "room-2", {"password": wrong})
    with pytest.raises(RoomRefused) as refused:
        room.join("Carol")
    assert refused.value.reason == WRONG_PASSWORD
    assert fixture_state(shared_browser)["password"] == wrong  # it was typed into the page
    assert wrong not in str(refused.value) and wrong not in repr(refused.value)
    assert wrong not in room.url()
    room.leave()


def test_a_lobby_that_never_opens_is_refused_after_its_timeout(
    shared_browser: Browser, site: http.server.ThreadingHTTPServer, tmp_path: Path
) -> None:
    room_cls = steps_platform(tmp_path, wait_timeout=120, lobby_timeout=2)
    room = room_cls(shared_browser.driver, site_url(site), "room-3", {"lobby_ms": "-1", "password": PASSWORD})
    progress: list[str] = []
    room.on_progress = progress.append
    started = time.monotonic()
    with pytest.raises(RoomRefused) as refused:
        room.join("Dave")
    assert refused.value.reason == LOBBY and "still shown after 2 s" in refused.value.detail
    assert progress == ["waiting to be let in"]
    assert time.monotonic() - started < 30
    room.leave()
