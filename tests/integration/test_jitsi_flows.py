"""The Jitsi Meet driver in a real Chromium against tests/fixtures/pages/jitsi.html (which reproduces upstream
jitsi-meet's DOM facts, see its header): every join flow, the refusals with their reasons, the progress the caller is
shown, the keypad asked for a room password, the tokens, and the toolbar controls."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any, Iterator

import pytest
from selenium.common.exceptions import TimeoutException

from sipmediagw.gateway.browser import Browser
from sipmediagw.jwt import encode_hs256
from sipmediagw.room import AUTH_REQUIRED, LOBBY, NOT_STARTED, WRONG_PASSWORD, RoomRefused, load_room_driver

from test_browser_real import BROWSING, pages_url, shared_browser  # noqa: F401 (fixtures)

APP_SECRET = "fixture-app-secret"  # the secret jitsi.html checks tokens with


class Recorder:
    """The gateway's side of a join: the progress lines shown to the caller, the keypad asks and their answers."""

    def __init__(self, digits: str | None = None) -> None:
        self.progress: list[str] = []
        self.asked: list[tuple[str, float]] = []
        self.digits = digits

    def on_progress(self, text: str) -> None:
        self.progress.append(text)

    def on_ask(self, prompt: str, timeout: float) -> str | None:
        self.asked.append((prompt, timeout))
        return self.digits


def make_room(browser: Browser, base: str, name: str, recorder: Recorder | None = None, ask: bool = True,
              **options: Any) -> Any:
    # from about:blank, as the gateway's browser: a URL differing only in its hash would not reload the page
    browser.driver.get("about:blank")
    room = load_room_driver("jitsi", BROWSING)(browser.driver, base, name, {"join_timeout": 20, **options})
    if recorder is not None:
        room.on_progress = recorder.on_progress
        if ask:
            room.on_ask = recorder.on_ask
    return room


def page(browser: Browser) -> dict[str, Any]:
    return browser.driver.execute_script("return window.fixture")


def refused(room: Any, name: str = "Alice Caller") -> RoomRefused:
    with pytest.raises(RoomRefused) as err:
        room.join(name)
    return err.value


# -- joining -------------------------------------------------------------------------------------------------------
def test_url_config_join_turns_mic_and_camera_on(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    """Prejoin skipped by URL: the page joins muted without tracks (upstream PR #16321); the driver unmutes both
    with the toolbar buttons, so the room gets the gateway's microphone and camera."""
    recorder = Recorder()
    room = make_room(shared_browser, pages_url, "team-room", recorder)
    room.join("Alice Caller")
    seen = page(shared_browser)
    assert seen["joined"] and not seen["prejoinShown"] and seen["name"] == "Alice Caller"
    assert sorted(seen["tracks"]) == ["audio", "video"]
    assert (seen["audioMuted"], seen["videoMuted"]) == (False, False)
    assert seen["search"] == "?lang=en" and seen["dialogs"] == [] and recorder.progress == []


def test_audio_only_join_keeps_the_camera_off(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    make_room(shared_browser, pages_url, "team-room", audio_only=True).join("Alice Caller")
    seen = page(shared_browser)
    assert seen["tracks"] == ["audio"] and seen["videoMuted"] is True and seen["audioMuted"] is False


def test_a_forced_prejoin_screen_gets_the_name_typed(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "prejoin-room")
    room.join('Bob "the caller" & co')
    seen = page(shared_browser)
    assert seen["prejoinShown"] and seen["joined"] and seen["name"] == 'Bob "the caller" & co'
    assert (seen["audioMuted"], seen["videoMuted"]) == (False, False)


def test_the_insecure_room_name_consent_is_accepted(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    make_room(shared_browser, pages_url, "prejoin-unsafe").join("Alice Caller")
    seen = page(shared_browser)
    assert seen["consented"] is True and seen["joined"] is True


def test_a_conference_that_never_answers_fails_within_join_timeout(
        shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    token = encode_hs256({"room": "*", "exp": int(time.time()) + 600}, APP_SECRET)
    room = make_room(shared_browser, pages_url, "stuck-room", jwt=token, join_timeout=2)
    started = time.monotonic()
    with pytest.raises(TimeoutException) as err:
        room.join("Alice Caller")
    took = time.monotonic() - started
    assert 2 <= took < 12, took
    assert token not in str(err.value) and "stuck-room" in str(err.value)


# -- lobby ---------------------------------------------------------------------------------------------------------
def test_lobby_knock_then_admitted(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder()
    make_room(shared_browser, pages_url, "lobby-admit", recorder).join("Alice Caller")
    seen = page(shared_browser)
    assert seen["knockedAs"] == "Alice Caller" and seen["joined"] is True
    assert recorder.progress == ["waiting to be let in"]


def test_lobby_refused(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder()
    error = refused(make_room(shared_browser, pages_url, "lobby-refuse", recorder))
    assert error.reason == LOBBY and "refused" in error.detail
    assert recorder.progress == ["waiting to be let in"] and page(shared_browser)["joined"] is False


def test_lobby_nobody_lets_us_in_within_lobby_timeout(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder()
    room = make_room(shared_browser, pages_url, "lobby-unanswered", recorder, lobby_timeout=2)
    started = time.monotonic()
    error = refused(room)
    took = time.monotonic() - started
    assert error.reason == LOBBY and "within 2 s" in error.detail and 2 <= took < 15, took
    assert recorder.progress == ["waiting to be let in"]


def test_unsafe_lobby_room_consents_before_knocking(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    make_room(shared_browser, pages_url, "lobby-admit-unsafe").join("Alice Caller")
    seen = page(shared_browser)
    assert seen["consented"] is True and seen["knockedAs"] == "Alice Caller" and seen["joined"] is True


# -- room password ---------------------------------------------------------------------------------------------------
def test_password_from_the_option(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder(digits="never asked")
    make_room(shared_browser, pages_url, "locked-Right-Horse-42", recorder, password="Right-Horse-42").join("Alice")
    seen = page(shared_browser)
    assert seen["joined"] is True and seen["passwordAttempts"] == 1 and recorder.asked == []


def test_wrong_password_from_the_option(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    error = refused(make_room(shared_browser, pages_url, "locked-Right-Horse-42", password="Wrong-Horse"))
    assert error.reason == WRONG_PASSWORD and "Wrong-Horse" not in str(error)
    assert page(shared_browser)["passwordAttempts"] == 1


def test_password_typed_on_the_keypad(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder(digits="4242")
    make_room(shared_browser, pages_url, "locked-4242", recorder).join("Alice Caller")
    assert page(shared_browser)["joined"] is True
    assert [prompt for prompt, _ in recorder.asked] == ["Enter the meeting password, then #"]


def test_wrong_password_typed_on_the_keypad(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder(digits="1111")
    error = refused(make_room(shared_browser, pages_url, "locked-4242", recorder))
    assert error.reason == WRONG_PASSWORD and len(recorder.asked) == 1 and "1111" not in str(error)


@pytest.mark.parametrize("ask", [True, False], ids=["caller-gave-none", "no-keypad"])
def test_no_password_available(shared_browser: Browser, pages_url: str, ask: bool) -> None:  # noqa: F811
    recorder = Recorder(digits=None)
    error = refused(make_room(shared_browser, pages_url, "locked-4242", recorder, ask=ask))
    assert (error.reason, error.detail) == (WRONG_PASSWORD, "password required")
    assert len(recorder.asked) == (1 if ask else 0) and page(shared_browser)["passwordAttempts"] == 0


# -- tokens and waiting for the host -------------------------------------------------------------------------------
def test_jwt_required_and_none_given(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    error = refused(make_room(shared_browser, pages_url, "jwt-room"))
    assert error.reason == AUTH_REQUIRED and "login" in error.detail
    assert page(shared_browser)["dialogs"] == ["login"]


def test_jwt_minted_from_app_id_and_secret(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "jwt-Team-Room", app_id="sip-gateway", app_secret=APP_SECRET)
    room.join("Alice Caller")
    seen = page(shared_browser)
    assert seen["joined"] is True and seen["tokenError"] is None
    token = seen["token"]  # the claims the page verified (HS256 under the fixture's secret)
    assert (token["iss"], token["aud"], token["sub"], token["room"]) == ("sip-gateway", "jitsi", "127.0.0.1",
                                                                         "jwt-team-room")
    assert token["context"]["user"]["name"] == "Alice Caller" and token["exp"] > time.time()
    assert seen["jwt"] and seen["jwt"] not in shared_browser.driver.execute_script("return location.hash")


def test_a_ready_jwt_that_the_deployment_refuses(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    forged = encode_hs256({"room": "*", "exp": int(time.time()) + 600}, "not-the-app-secret")
    error = refused(make_room(shared_browser, pages_url, "jwt-room", jwt=forged))
    assert error.reason == AUTH_REQUIRED and "refused the token" in error.detail and forged not in str(error)
    assert page(shared_browser)["tokenError"] == "bad signature"


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    token = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/jwt")
        self.send_header("Content-Length", str(len(self.token)))
        self.end_headers()
        self.wfile.write(self.token)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def token_url() -> Iterator[str]:
    """An operator's token service: answers every GET with a token valid for any room of the fixture."""
    token = encode_hs256({"iss": "operator", "room": "*", "exp": int(time.time()) + 600}, APP_SECRET).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_TokenHandler,), {"token": token}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token?room=jwt-room"
    server.shutdown()
    server.server_close()


def test_jwt_fetched_from_token_url(shared_browser: Browser, pages_url: str, token_url: str) -> None:  # noqa: F811
    make_room(shared_browser, pages_url, "jwt-room", token_url=token_url).join("Alice Caller")
    seen = page(shared_browser)
    assert seen["joined"] is True and seen["token"]["iss"] == "operator"


def test_waiting_for_the_host_then_the_meeting_starts(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder()
    make_room(shared_browser, pages_url, "host-starts", recorder).join("Alice Caller")
    seen = page(shared_browser)
    assert seen["joined"] is True and seen["hostDialogs"] == 1
    assert recorder.progress == ["waiting for the meeting to start"]


def test_the_host_never_comes(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    recorder = Recorder()
    room = make_room(shared_browser, pages_url, "host-room", recorder, moderator_timeout=2)
    started = time.monotonic()
    error = refused(room)
    took = time.monotonic() - started
    assert error.reason == NOT_STARTED and 2 <= took < 15, took
    assert recorder.progress == ["waiting for the meeting to start"]


def test_a_jwt_room_waiting_for_its_host(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    """Token accepted, then the host's wait: the token is no reason to give up early."""
    recorder = Recorder()
    make_room(shared_browser, pages_url, "jwt-host-starts", recorder, app_id="gw", app_secret=APP_SECRET,
              jwt_room="*").join("Alice Caller")
    assert page(shared_browser)["joined"] is True and recorder.progress == ["waiting for the meeting to start"]


# -- in the room -----------------------------------------------------------------------------------------------------
def test_toolbar_microphone_and_camera(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "team-room")
    room.join("Alice Caller")
    room.set_microphone(False)
    room.set_camera(False)
    seen = page(shared_browser)
    assert (seen["audioMuted"], seen["videoMuted"]) == (True, True)
    room.set_microphone(False)  # already off: no click turns it back on
    assert page(shared_browser)["audioMuted"] is True
    room.set_microphone(True)
    room.set_camera(True)
    seen = page(shared_browser)
    assert (seen["audioMuted"], seen["videoMuted"]) == (False, False) and seen["shortcuts"] == []
    assert room.participant_count() == 1
    room.leave()
    assert shared_browser.driver.current_url == "about:blank"
