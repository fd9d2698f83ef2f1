"""The LiveKit Meet driver (browsing/livekit.py) in a real Chromium against tests/fixtures/pages/livekit.html and a
small server standing in for Meet (its /api/connection-details mints the room's tokens) and for the LiveKit server
(its /rtc/v1/validate checks each token's signature and claims, as a real server would refuse a bad one).

Flows: PreJoin with a hostile room and name (the toggles a previous call left off are turned on again), the
gateway's own token on /custom, audio-only on both pages, a refused token (both pages), a room the server does not
have, an unreachable server, the keypad's microphone and camera, participants, leave.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from typing import Any, Iterator

import pytest

from sipmediagw.gateway.browser import Browser, BrowserRoomSession
from sipmediagw.jwt import decode_hs256, encode_hs256
from sipmediagw.room import AUTH_REQUIRED, NOT_FOUND, RoomRefused, load_room_driver
from sipmediagw.testbed.network import free_port
from selenium.common.exceptions import TimeoutException

from test_browser_real import BROWSING, PAGES, shared_browser, wait_for  # noqa: F401 (fixture)

API_KEY = "APIfixturekey"
API_SECRET = "fixture-livekit-api-secret-0123456789"
HOSTILE_ROOM = "Café & co/../x?y#z"
HOSTILE_NAME = 'Ålice "O\'Brien" & <b>co</b>#x=1 \U0001F600'  # an emoji: outside what chromedriver can type
MISSING_ROOM = "no-such-room"  # the stand-in server answers 404 "requested room does not exist" for it

LiveKit = load_room_driver("livekit", BROWSING)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Meet's pages and connection-details, and the LiveKit server's validate endpoint (plus a leave record)."""

    server: "LiveKitSite"  # type: ignore[assignment]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if parts.path.startswith("/rooms/") or parts.path == "/custom":
            self._send(200, (PAGES / "livekit.html").read_bytes(), "text/html; charset=utf-8")
        elif parts.path == "/api/connection-details":
            self._connection_details(query)
        elif parts.path == "/rtc/v1/validate":
            self._validate(query.get("access_token", ""))
        elif parts.path == "/fixture/leave":
            self.server.left.append(query.get("identity", ""))
            self._send(200, b"ok", "text/plain")
        elif parts.path == "/blank.html":
            self._send(200, b"<!DOCTYPE html><title>blank</title>", "text/html")
        else:
            self._send(404, b"not found", "text/plain")

    def _connection_details(self, query: dict[str, str]) -> None:
        # as Meet's route.ts: identity = name + random postfix, a 5 min token for this room
        now = int(time.time())
        name = query["participantName"]
        claims = {"name": name, "video": {"room": query["roomName"], "roomJoin": True, "canPublish": True,
                                          "canPublishData": True, "canSubscribe": True},
                  "iss": API_KEY, "exp": now + 300, "nbf": 0, "sub": f"{name}__ab12"}
        body = {"serverUrl": self.server.ws_url, "roomName": query["roomName"], "participantName": name,
                "participantToken": encode_hs256(claims, self.server.meet_secret)}
        self._send(200, json.dumps(body).encode(), "application/json")

    def _validate(self, token: str) -> None:
        try:
            claims = decode_hs256(token, API_SECRET)
        except ValueError:
            self._send(401, b"invalid token: signature invalid", "text/plain")
            return
        now = time.time()
        grant = claims.get("video") or {}
        if claims.get("iss") != API_KEY or not claims.get("nbf", 0) <= now < claims.get("exp", 0) \
                or grant.get("roomJoin") is not True or not claims.get("sub"):
            self._send(401, b"invalid token: claims refused", "text/plain")
            return
        if grant.get("room") == MISSING_ROOM:
            self._send(404, b"requested room does not exist", "text/plain")
            return
        self.server.joins.append(claims)
        self._send(200, json.dumps({"identity": claims["sub"], "name": claims.get("name", ""),
                                    "room": grant.get("room")}).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]  # noqa: A002
        pass


class LiveKitSite(http.server.ThreadingHTTPServer):
    """The stand-in server and what it saw."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.ws_url = f"ws://127.0.0.1:{self.server_address[1]}"
        self.reset()

    def reset(self) -> None:
        self.meet_secret = API_SECRET  # the secret Meet's connection-details signs with
        self.joins: list[dict[str, Any]] = []
        self.left: list[str] = []


@pytest.fixture(scope="module")
def livekit_server() -> Iterator[LiveKitSite]:
    server = LiveKitSite()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(livekit_server: LiveKitSite, shared_browser: Browser) -> Iterator[LiveKitSite]:  # noqa: F811
    """The server with a clean record, and the browser with no PreJoin choices remembered, for each test; the
    browser is left on about:blank."""
    livekit_server.reset()
    shared_browser.driver.get(f"{livekit_server.url}/blank.html")
    shared_browser.driver.execute_script("localStorage.clear()")
    yield livekit_server
    livekit_server.reset()
    shared_browser.driver.get("about:blank")


def token_options(site: LiveKitSite, **extra: Any) -> dict[str, Any]:
    return {"api_key": API_KEY, "api_secret": API_SECRET, "livekit_url": site.ws_url, "join_timeout": 30, **extra}


def page(browser: Browser) -> dict[str, Any]:
    return browser.driver.execute_script("return window.fixture")


def tracks(browser: Browser) -> dict[str, Any]:
    return browser.driver.execute_script("return window.fixture.trackStates()")


def test_prejoin_join_with_name_microphone_and_camera_then_participants_and_leave(
    shared_browser: Browser, site: LiveKitSite  # noqa: F811
) -> None:
    """A hostile room and name through the PreJoin; the toggles a previous call left off are turned on again."""
    driver = shared_browser.driver
    driver.execute_script("localStorage.setItem('lk-user-choices', JSON.stringify("
                          "{videoEnabled: false, audioEnabled: false, username: 'someone before'}))")
    session = BrowserRoomSession(shared_browser, LiveKit, site.url, HOSTILE_ROOM, {"join_timeout": 30})
    session.join(HOSTILE_NAME)
    state = page(shared_browser)
    assert state["mode"] == "rooms"
    assert state["prejoinChoices"] == {"videoEnabled": True, "audioEnabled": True, "username": HOSTILE_NAME}
    assert state["room"] == HOSTILE_ROOM  # one path segment, decoded back intact, into the token's grant
    assert state["name"] == HOSTILE_NAME
    assert sorted(state["tracks"]) == ["audio", "video"]  # taken from the gateway's getUserMedia
    assert state["published"] == {"microphone": True, "camera": True}
    assert [claims["video"]["room"] for claims in site.joins] == [HOSTILE_ROOM]
    assert state["errors"] == []
    room = session.room
    assert room is not None
    assert room.participant_count() == 1
    driver.execute_script("window.fixture.addRemote('bob')")
    assert room.participant_count() == 2
    session.leave()
    assert driver.current_url == "about:blank"
    assert site.left == [site.joins[0]["sub"]]  # disconnected from the room before the page went away


def test_custom_page_with_the_gateways_own_token(shared_browser: Browser, site: LiveKitSite) -> None:  # noqa: F811
    room = LiveKit(shared_browser.driver, site.url, HOSTILE_ROOM, token_options(site))
    progress: list[str] = []
    room.on_progress = progress.append
    room.join(HOSTILE_NAME)
    state = page(shared_browser)
    assert state["mode"] == "custom"
    assert state["connects"] == [{"url": site.ws_url}]
    assert state["room"] == HOSTILE_ROOM and state["name"] == HOSTILE_NAME
    assert sorted(state["tracks"]) == ["audio", "video"]
    assert state["published"] == {"microphone": True, "camera": True}
    [claims] = site.joins  # the token the stand-in server accepted
    assert claims["iss"] == API_KEY and claims["name"] == HOSTILE_NAME
    assert claims["sub"].startswith(HOSTILE_NAME + "__")
    assert claims["video"] == {"roomJoin": True, "room": HOSTILE_ROOM, "canPublish": True, "canSubscribe": True,
                               "canPublishData": True}
    assert progress == ["connecting to the LiveKit room"]
    room.leave()
    assert site.left == [claims["sub"]]
    # the error recorder was only for the join: a page opened later does not get it
    shared_browser.driver.get(f"{site.url}/blank.html")
    assert shared_browser.driver.execute_script("return typeof window.__sipmediagwLivekit") == "undefined"


def test_audio_only_through_the_prejoin(shared_browser: Browser, site: LiveKitSite) -> None:  # noqa: F811
    room = LiveKit(shared_browser.driver, site.url, "room-1", {"audio_only": True, "join_timeout": 30})
    room.join("Audio Caller")
    state = page(shared_browser)
    assert state["prejoinChoices"]["videoEnabled"] is False and state["prejoinChoices"]["audioEnabled"] is True
    assert state["tracks"] == ["audio"]
    assert state["published"] == {"microphone": True, "camera": False}
    with pytest.raises(RuntimeError, match="no camera"):
        room.set_camera(True)
    room.leave()


def test_audio_only_on_the_custom_page_turns_the_camera_off(
    shared_browser: Browser, site: LiveKitSite  # noqa: F811
) -> None:
    """/custom turns camera and microphone on by itself: an audio-only gateway turns the camera off once in."""
    room = LiveKit(shared_browser.driver, site.url, "room-1", token_options(site, audio_only=True))
    room.join("Audio Caller")
    state = page(shared_browser)
    assert state["published"] == {"microphone": True, "camera": False}
    assert tracks(shared_browser)["camera"] is None  # the camera track was stopped
    assert tracks(shared_browser)["microphone"]["readyState"] == "live"
    room.leave()


def test_refused_token_on_the_custom_page_is_auth_required(
    shared_browser: Browser, site: LiveKitSite  # noqa: F811
) -> None:
    wrong = "not-the-servers-secret-0123456789"
    room = LiveKit(shared_browser.driver, site.url, "room-1", {**token_options(site), "api_secret": wrong})
    started = time.monotonic()
    with pytest.raises(RoomRefused) as refused:
        room.join("Bob")
    assert refused.value.reason == AUTH_REQUIRED
    assert time.monotonic() - started < 20  # told at once, not after the join timeout
    assert wrong not in str(refused.value) and "eyJ" not in str(refused.value)  # no secret, no token
    assert page(shared_browser)["errors"] == [{"reason": "NotAllowed", "status": 401}]
    assert site.joins == []
    room.leave()
    assert shared_browser.driver.current_url == "about:blank"


def test_refused_token_on_the_room_page_is_auth_required_and_its_alert_does_not_block(
    shared_browser: Browser, site: LiveKitSite  # noqa: F811
) -> None:
    site.meet_secret = "a-meet-deployment-with-the-wrong-secret"
    room = LiveKit(shared_browser.driver, site.url, "room-1", {"join_timeout": 30})
    with pytest.raises(RoomRefused) as refused:
        room.join("Bob")
    assert refused.value.reason == AUTH_REQUIRED
    # Meet's alert was kept, not left open (the page and the driver's next commands go on)
    alerts = shared_browser.driver.execute_script("return window.__sipmediagwLivekit.alerts")
    assert len(alerts) == 1 and alerts[0].startswith("Encountered an unexpected error"), alerts
    room.leave()


def test_room_the_server_does_not_have_is_not_found(shared_browser: Browser, site: LiveKitSite) -> None:  # noqa: F811
    room = LiveKit(shared_browser.driver, site.url, MISSING_ROOM, token_options(site))
    with pytest.raises(RoomRefused) as refused:
        room.join("Bob")
    assert refused.value.reason == NOT_FOUND
    room.leave()


def test_unreachable_livekit_server_is_a_timeout_at_once(
    shared_browser: Browser, site: LiveKitSite  # noqa: F811
) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"
    room = LiveKit(shared_browser.driver, site.url, "room-1", {**token_options(site), "livekit_url": closed,
                                                                "join_timeout": 60})
    started = time.monotonic()
    with pytest.raises(TimeoutException, match="ServerUnreachable"):
        room.join("Bob")
    assert time.monotonic() - started < 30
    room.leave()


def test_keypad_microphone_and_camera_through_the_control_bar(
    shared_browser: Browser, site: LiveKitSite  # noqa: F811
) -> None:
    room = LiveKit(shared_browser.driver, site.url, "room-1", token_options(site))
    room.join("Keypad Caller")
    room.set_microphone(False)
    assert page(shared_browser)["published"]["microphone"] is False
    assert tracks(shared_browser)["microphone"]["enabled"] is False  # the room hears silence
    room.set_microphone(False)  # already off: no second press (it would turn it on again)
    assert page(shared_browser)["published"]["microphone"] is False
    room.set_microphone(True)
    assert tracks(shared_browser)["microphone"]["enabled"] is True
    room.set_camera(False)
    assert page(shared_browser)["published"]["camera"] is False and tracks(shared_browser)["camera"] is None
    room.set_camera(True)
    wait_for(lambda: (tracks(shared_browser)["camera"] or {}).get("readyState") == "live", 10, "the camera back")
    assert page(shared_browser)["published"] == {"microphone": True, "camera": True}
    room.leave()
