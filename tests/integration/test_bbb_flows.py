"""The BigBlueButton driver in a real Chromium: the signed API (against a small BBB API stand-in that checks checksums
the way BBB does and redirects ``join`` to the client fixture page) and Greenlight 3 rooms (fixture pages
tests/fixtures/pages/bbb.html -> bbb-client.html), including every refusal the caller is told about.

No BigBlueButton server is reachable here: the stand-ins reproduce the upstream facts named in the fixture pages'
headers and in browsing/bigbluebutton.py. Everything a test starts is stopped by a fixture.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
import urllib.parse
from typing import Any, Iterator

import pytest

from sipmediagw.gateway.browser import Browser
from sipmediagw.redaction import forget_secrets
from sipmediagw.room import (AUTH_REQUIRED, NOT_FOUND, NOT_STARTED, WRONG_PASSWORD, RoomRefused,
                             load_room_driver)

from test_browser_real import BROWSING, pages_url, shared_browser, wait_for  # noqa: F401

BBB = load_room_driver("bigbluebutton", BROWSING)
SECRET = "itest-shared-secret-8c1d2e"
HASHES = {40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}  # BBB tells the algorithm by the checksum's length


class FakeBbbApi:
    """The API side of a BBB server: getMeetingInfo / create / join, each checksum verified as BBB's ApiController
    does (the query string without its ``&checksum=`` part, the call name before it, the secret after it)."""

    def __init__(self, client_url: str, secret: str = SECRET, algorithms: tuple[str, ...] = tuple(HASHES.values())):
        self.client_url = client_url
        self.secret = secret
        self.algorithms = algorithms
        self.meetings: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.refuse_join = False
        self.lock = threading.Lock()

    def add(self, meeting_id: str, running: bool = True, running_after_polls: int | None = None) -> None:
        self.meetings[meeting_id] = {"running": running, "polls": running_after_polls}

    def call_names(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.calls]

    def answer(self, call: str, raw_query: str) -> tuple[int, dict[str, str], bytes]:
        checksum = dict(urllib.parse.parse_qsl(raw_query)).get("checksum", "")
        signed = raw_query.replace(f"&checksum={checksum}", "").replace(f"checksum={checksum}", "")
        algorithm = HASHES.get(len(checksum))
        expected = hashlib.new(algorithm, f"{call}{signed}{self.secret}".encode()).hexdigest() if algorithm else None
        if algorithm not in self.algorithms or checksum != expected or (call == "join" and self.refuse_join):
            return self.xml("FAILED", "<messageKey>checksumError</messageKey>"
                                      "<message>You did not pass the checksum security check</message>")
        params = dict(urllib.parse.parse_qsl(signed, keep_blank_values=True))
        with self.lock:
            self.calls.append((call, params))
        meeting = self.meetings.get(params.get("meetingID", ""))
        if call == "create":
            self.add(params["meetingID"], running=False)
            return self.xml("SUCCESS", f"<meetingID>{params['meetingID']}</meetingID>")
        if meeting is None:
            return self.xml("FAILED", "<messageKey>notFound</messageKey>"
                                      "<message>We could not find a meeting with that meeting ID</message>")
        if call == "getMeetingInfo":
            if meeting["polls"] is not None:
                meeting["running"] = meeting["polls"] <= 0
                meeting["polls"] -= 1
            return self.xml("SUCCESS", f"<running>{'true' if meeting['running'] else 'false'}</running>")
        if call == "join":
            meeting["running"] = True
            target = urllib.parse.urlencode({"fullName": params["fullName"], "meetingID": params["meetingID"],
                                             "role": params.get("role", ""), "client": "3.0"})
            return 302, {"Location": f"{self.client_url}?{target}"}, b""
        return self.xml("FAILED", "<messageKey>unsupportedRequest</messageKey>")

    @staticmethod
    def xml(code: str, rest: str) -> tuple[int, dict[str, str], bytes]:
        body = f"<response><returncode>{code}</returncode>{rest}</response>".encode()
        return 200, {"Content-Type": "text/xml"}, body


@pytest.fixture
def bbb_api(pages_url: str) -> Iterator[tuple[FakeBbbApi, str]]:  # noqa: F811
    """(the API stand-in, its server URL); the API lives under /bigbluebutton/api."""
    api = FakeBbbApi(f"{pages_url}/bbb-client.html")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path, _, query = self.path.partition("?")
            if not path.startswith("/bigbluebutton/api/"):
                self.send_error(404)
                return
            status, headers, body = api.answer(path.rsplit("/", 1)[1], query)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # type: ignore[no-untyped-def]  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    yield
    forget_secrets()


def make_room(browser: Browser, base: str, room: str, options: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    made = BBB(browser.driver, base, room, {"join_timeout": 30, **(options or {})})
    made.progress_seen = []
    made.on_progress = made.progress_seen.append
    return made


def client_state(browser: Browser) -> dict[str, Any]:
    return browser.driver.execute_script("return window.fixture || null")


def refusal(room, name: str = "SIP Gateway") -> RoomRefused:  # type: ignore[no-untyped-def]
    with pytest.raises(RoomRefused) as refused:
        room.join(name)
    for secret in (SECRET, "4321", "0000"):
        assert secret not in str(refused.value) and secret not in repr(refused.value)
    assert "checksum=" not in str(refused.value)
    return refused.value


# -- API mode ----------------------------------------------------------------------------------------------------------
def test_api_join_of_a_running_meeting_with_microphone_and_camera(
        shared_browser: Browser, bbb_api: tuple[FakeBbbApi, str]) -> None:  # noqa: F811
    api, base = bbb_api
    meeting = "Math 101 & co/../x?y#z"
    api.add(meeting, running=True)
    name = 'Ålice "O\'Brien" & <b>co</b>#role=MODERATOR'
    room = make_room(shared_browser, base, meeting, {"shared_secret": SECRET})
    room.join(name)
    seen = client_state(shared_browser)
    assert (seen["name"], seen["meetingID"], seen["role"]) == (name, meeting, "VIEWER")
    assert seen["audio"] == "microphone" and seen["camera"] is True  # "Join audio", then the preview's start
    assert seen["sessionDetailsClosed"] is True  # 3.0's modal, else the camera button was covered
    assert api.call_names() == ["getMeetingInfo", "join"] and room.progress_seen == []
    room.leave()
    assert shared_browser.driver.current_url == "about:blank"


def test_api_creates_a_missing_meeting_only_when_allowed(
        shared_browser: Browser, bbb_api: tuple[FakeBbbApi, str]) -> None:  # noqa: F811
    api, base = bbb_api
    refused = refusal(make_room(shared_browser, base, "weekly-sync", {"shared_secret": SECRET}))
    assert refused.reason == NOT_FOUND and api.call_names() == ["getMeetingInfo"]
    room = make_room(shared_browser, base, "weekly-sync", {"shared_secret": SECRET, "create": True,
                                                           "role": "MODERATOR", "checksum": "sha256"})
    room.join("Gateway")
    assert api.call_names() == ["getMeetingInfo", "getMeetingInfo", "create", "join"]
    assert api.calls[2][1] == {"name": "weekly-sync", "meetingID": "weekly-sync"}
    assert client_state(shared_browser)["role"] == "MODERATOR" and room.progress_seen == []
    room.leave()


def test_api_viewer_waits_for_the_meeting_to_start(
        shared_browser: Browser, bbb_api: tuple[FakeBbbApi, str]) -> None:  # noqa: F811
    api, base = bbb_api
    api.add("lecture", running=False, running_after_polls=1)  # the first poll of the wait sees it running
    room = make_room(shared_browser, base, "lecture", {"shared_secret": SECRET, "start_timeout": 30})
    room.join("Gateway")
    assert room.progress_seen == ["waiting for the meeting to start"]
    assert api.call_names() == ["getMeetingInfo", "getMeetingInfo", "join"]
    assert client_state(shared_browser)["camera"] is True
    room.leave()


def test_api_meeting_that_never_starts_is_not_started(
        shared_browser: Browser, bbb_api: tuple[FakeBbbApi, str]) -> None:  # noqa: F811
    api, base = bbb_api
    api.add("lecture", running=False)
    started = time.monotonic()
    refused = refusal(make_room(shared_browser, base, "lecture", {"shared_secret": SECRET, "start_timeout": 1}))
    assert refused.reason == NOT_STARTED and time.monotonic() - started < 15
    assert "join" not in api.call_names()


def test_api_refused_checksum_is_auth_required(
        shared_browser: Browser, bbb_api: tuple[FakeBbbApi, str]) -> None:  # noqa: F811
    api, base = bbb_api
    api.add("m1")
    refused = refusal(make_room(shared_browser, base, "m1", {"shared_secret": "not-the-servers-secret"}))
    assert (refused.reason, refused.detail) == (AUTH_REQUIRED, "checksum refused")
    api.algorithms = ("sha512",)  # a server configured for SHA-512 only refuses the default SHA-1...
    assert refusal(make_room(shared_browser, base, "m1", {"shared_secret": SECRET})).reason == AUTH_REQUIRED
    api.meetings.clear()  # ...and accepts SHA-512: its answer is "not found", not a checksum error
    refused = refusal(make_room(shared_browser, base, "m1", {"shared_secret": SECRET, "checksum": "sha512"}))
    assert refused.reason == NOT_FOUND
    assert api.call_names() == ["getMeetingInfo"]


def test_api_join_call_refused_in_the_browser_is_auth_required(
        shared_browser: Browser, bbb_api: tuple[FakeBbbApi, str]) -> None:  # noqa: F811
    api, base = bbb_api
    api.add("m1")
    api.refuse_join = True  # the join URL answers XML (checksumError) instead of redirecting to the client
    refused = refusal(make_room(shared_browser, base, "m1", {"shared_secret": SECRET}))
    assert (refused.reason, refused.detail) == (AUTH_REQUIRED, "checksum refused")
    assert api.call_names() == ["getMeetingInfo"]


def test_api_audio_only_joins_without_a_camera(
        shared_browser: Browser, bbb_api: tuple[FakeBbbApi, str]) -> None:  # noqa: F811
    api, base = bbb_api
    api.add("m1")
    room = make_room(shared_browser, base, "m1", {"shared_secret": SECRET, "audio_only": True})
    room.join("Phone")
    seen = client_state(shared_browser)
    assert seen["audio"] == "microphone" and seen["camera"] is False
    assert shared_browser.driver.execute_script(
        "return document.querySelector('#preview').classList.contains('hidden')")  # the preview never opened
    room.leave()


# -- Greenlight 3 ------------------------------------------------------------------------------------------------------
def test_greenlight_access_code_and_recording_consent_then_the_27_client(
        shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "acc-rec-old", {"access_code": "4321"})
    room.join("Bob Caller")
    seen = client_state(shared_browser)
    # bbb.html goes on to the client only with the code 4321 and the consent ticked
    assert (seen["path"], seen["name"], seen["client"]) == ("/rooms/acc-rec-old/join", "Bob Caller", "2.7")
    assert seen["audio"] == "microphone" and seen["camera"] is True
    # the keypad controls with 2.7's names (div hand buttons, toggleUserList)
    room.set_microphone(False)
    room.raise_hand(True)
    room.show_participants(True)
    room.set_camera(False)
    seen = client_state(shared_browser)
    assert (seen["muted"], seen["hand"], seen["userList"], seen["camera"]) == (True, True, True, False)
    room.leave()


def test_greenlight_wrong_access_code(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    refused = refusal(make_room(shared_browser, pages_url, "acc-def-ghi", {"access_code": "0000"}))
    assert (refused.reason, refused.detail) == (WRONG_PASSWORD, "access code refused")


def test_greenlight_asks_the_caller_for_a_missing_access_code(
        shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "acc-def-ghi")
    asked: list[str] = []
    room.on_ask = lambda prompt, timeout: asked.append(prompt) or "4321"
    room.join("Caller")
    assert asked == ["Enter the room's access code"] and client_state(shared_browser)["camera"] is True
    room.leave()
    nobody = make_room(shared_browser, pages_url, "acc-def-ghi")  # no keypad: cannot ask
    assert refusal(nobody).reason == WRONG_PASSWORD


def test_greenlight_unknown_room_is_not_found(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    assert refusal(make_room(shared_browser, pages_url, "nfd-abc-def")).reason == NOT_FOUND


def test_greenlight_waits_for_the_meeting_to_start(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "wai-st2-abc", {"start_timeout": 30})
    room.join("Caller")
    assert room.progress_seen == ["waiting for the meeting to start"]
    assert client_state(shared_browser)["camera"] is True
    room.leave()
    never = make_room(shared_browser, pages_url, "wai-abc-def", {"start_timeout": 1})
    assert refusal(never).reason == NOT_STARTED
    assert never.progress_seen == ["waiting for the meeting to start"]


def test_greenlight_audio_only(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "abc-def-ghi", {"audio_only": True})
    room.join("Phone")
    seen = client_state(shared_browser)
    assert seen["audio"] == "microphone" and seen["camera"] is False and seen["client"] == "3.0"
    room.leave()


def test_greenlight_refused_form_fails_at_once(shared_browser: Browser, pages_url: str) -> None:  # noqa: F811
    room = make_room(shared_browser, pages_url, "abc-def-ghi", {"join_timeout": 60})
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="refused the join form"):
        room.join("")  # Greenlight requires a name
    assert time.monotonic() - started < 30  # not the whole join timeout
