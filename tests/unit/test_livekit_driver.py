"""LiveKit Meet driver (browsing/livekit.py): URLs, hostile room names, the access token's claims, option checks and
how a failed connect is told to the caller. The page flows are in tests/integration/test_livekit_flows.py."""

from __future__ import annotations

import importlib.util
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from selenium.common.exceptions import TimeoutException

from sipmediagw.errors import ValidationError
from sipmediagw.jwt import decode_hs256
from sipmediagw.redaction import redact
from sipmediagw.room import AUTH_REQUIRED, NOT_FOUND, RoomDrivers, RoomRefused, load_room_driver

BROWSING = Path(__file__).resolve().parents[2] / "browsing"
LiveKit = load_room_driver("livekit", BROWSING)
_spec = importlib.util.spec_from_file_location("livekit_for_test", BROWSING / "livekit.py")
livekit = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(livekit)  # type: ignore[union-attr]

SECRET = "unit-test-api-secret-0123456789abcdef"
TOKEN = {"api_key": "APIunitkey", "api_secret": SECRET, "livekit_url": "wss://lk.example.org"}
HOSTILE = ["", "  ", ".", "..", "a\nb", "\x00", "r" * 300]


def custom_query(url: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(url)
    assert (parts.path, parts.fragment) == ("/custom", "")
    query = urllib.parse.parse_qs(parts.query, strict_parsing=True)
    assert all(len(values) == 1 for values in query.values()), query
    return {key: values[0] for key, values in query.items()}


def test_meet_room_url_is_one_segment_under_rooms() -> None:
    assert LiveKit(None, "https://meet.livekit.io/", "my-room").url() == "https://meet.livekit.io/rooms/my-room"
    assert LiveKit(None, "https://h/base", "a b/../c?d#e").url() == "https://h/base/rooms/a%20b%2F..%2Fc%3Fd%23e"


@given(room=st.text(min_size=1, max_size=80).filter(lambda r: r.strip(".").strip() and r.isprintable()))
def test_hostile_room_names_stay_in_their_segment(room: str) -> None:
    parts = urllib.parse.urlsplit(LiveKit(None, "https://meet.example.org/base", room).url())
    assert (parts.netloc, parts.query, parts.fragment) == ("meet.example.org", "", "")
    prefix, _, segment = parts.path.rpartition("/")
    assert prefix == "/base/rooms"
    assert urllib.parse.unquote(segment) == room


@pytest.mark.parametrize("room", HOSTILE)
def test_rooms_no_encoding_makes_safe_are_refused(room: str) -> None:
    with pytest.raises(ValidationError):
        LiveKit(None, "https://h", room)
    with pytest.raises(ValidationError):  # also when the room only goes into the token
        LiveKit(None, "https://h", room, TOKEN)


@pytest.mark.parametrize("base", ["ftp://h", "https://h/?x=1", "https://h/#f", "https://u:p@h", "h"])
def test_bad_base_urls_are_refused(base: str) -> None:
    with pytest.raises(ValidationError):
        LiveKit(None, base, "r")


def test_custom_url_carries_server_and_a_token_for_this_room_and_name() -> None:
    room = LiveKit(None, "https://meet.example.org", "Café & co/../x?y#z", TOKEN)
    room.display_name = 'Ålice "O\'Brien" & <b>co</b>'
    before = int(time.time())
    query = custom_query(room.url())
    assert set(query) == {"liveKitUrl", "token"}
    assert query["liveKitUrl"] == "wss://lk.example.org"
    claims = decode_hs256(query["token"], SECRET)  # signed with the API secret (HS256)
    assert claims["iss"] == "APIunitkey"
    assert claims["name"] == room.display_name
    assert claims["sub"].startswith(room.display_name + "__")
    assert claims["video"] == {"roomJoin": True, "room": "Café & co/../x?y#z", "canPublish": True,
                               "canSubscribe": True, "canPublishData": True}
    assert claims["nbf"] <= before <= claims["exp"] - livekit.TOKEN_TTL + 5
    assert set(claims) == {"iss", "sub", "name", "nbf", "exp", "video"}


def test_token_claims_at_a_given_time() -> None:
    token = livekit.access_token("K", SECRET, "r1", "gw__abc", "Gateway", now=1_000_000, ttl=300)
    assert decode_hs256(token, SECRET) == {
        "iss": "K", "sub": "gw__abc", "name": "Gateway", "nbf": 1_000_000 - livekit.CLOCK_SKEW,
        "exp": 1_000_300, "video": {"roomJoin": True, "room": "r1", "canPublish": True, "canSubscribe": True,
                                    "canPublishData": True}}
    with pytest.raises(ValueError):
        decode_hs256(token, "another-secret")


def test_each_join_gets_its_own_identity() -> None:
    # LiveKit disconnects the older of two participants with one identity: two gateways with one name must differ.
    room = LiveKit(None, "https://h", "r", TOKEN)
    subs = {decode_hs256(custom_query(room.url())["token"], SECRET)["sub"] for _ in range(5)}
    assert len(subs) == 5


def test_minted_token_and_api_secret_are_masked_in_logs() -> None:
    room = LiveKit(None, "https://h", "r", TOKEN)
    url = room.url()
    token = custom_query(url)["token"]
    assert token not in redact(f"opening {url}")
    assert SECRET not in redact(f"secret is {SECRET} here")


def test_api_secret_is_a_secret_option() -> None:
    specs = LiveKit.option_specs()
    assert specs["api_secret"].secret is True
    assert specs["api_key"].secret is False and specs["livekit_url"].secret is False


@pytest.mark.parametrize("missing", ["api_key", "api_secret", "livekit_url"])
def test_token_options_go_together(missing: str) -> None:
    options = {k: v for k, v in TOKEN.items() if k != missing}
    with pytest.raises(ValidationError, match=missing) as caught:
        LiveKit(None, "https://h", "r", options)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("url", ["https://lk.example.org", "lk.example.org", "wss://", "wss://u:p@lk.example.org",
                                 "wss://lk.example.org/?x=1", "wss://lk.example.org/#f", "wss://lk example.org"])
def test_bad_livekit_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        LiveKit(None, "https://h", "r", {**TOKEN, "livekit_url": url})


def test_livekit_url_keeps_its_scheme_and_path() -> None:
    assert livekit.check_livekit_url("WSS://lk.example.org/sub/") == "wss://lk.example.org/sub"
    assert livekit.check_livekit_url("ws://127.0.0.1:7880") == "ws://127.0.0.1:7880"


def test_unknown_option_and_hostile_room_refused_before_any_browser_work() -> None:
    drivers = RoomDrivers(BROWSING)
    with pytest.raises(ValidationError):
        drivers.check("livekit", "https://h", "r", {"token": "x"})
    with pytest.raises(ValidationError):
        drivers.check("livekit", "https://h", "..")
    drivers.check("livekit", "https://h", "r", TOKEN)


def test_keypad_capabilities() -> None:
    assert LiveKit.supports("set_microphone") and LiveKit.supports("set_camera")
    # Meet has no participant list, tile switch or raised hand
    assert not LiveKit.supports("show_participants")
    assert not LiveKit.supports("toggle_view") and not LiveKit.supports("raise_hand")


def test_audio_only_gateway_cannot_turn_a_camera_on() -> None:
    room = LiveKit(None, "https://h", "r", {"audio_only": True})
    with pytest.raises(RuntimeError, match="no camera"):
        room.set_camera(True)


@pytest.mark.parametrize("status, reason", [(401, AUTH_REQUIRED), (403, AUTH_REQUIRED), (404, NOT_FOUND),
                                            (0, AUTH_REQUIRED)])
def test_not_allowed_is_a_refusal(status: int, reason: str) -> None:
    refusal = livekit.classify([{"reason": "ServerUnreachable", "status": 0}, {"reason": "NotAllowed",
                                                                              "status": status}])
    assert isinstance(refusal, RoomRefused) and refusal.reason == reason


def test_other_connect_failures_are_no_refusal() -> None:
    assert livekit.classify([{"reason": "ServerUnreachable", "status": 0}, {"reason": "InternalError"}]) is None


class FakePage:
    """What the driver's state script reads, as a fake WebDriver answers it."""

    def __init__(self, **state: Any) -> None:
        self.state = {"bar": False, "toast": True, "roomState": "connecting", "micOn": None,
                      "errors": [], **state}

    def execute_script(self, script: str, *args: Any) -> dict[str, Any]:
        return self.state


def connected(**state: Any) -> bool:
    room = LiveKit(None, "https://h", "r")
    return room._connected(FakePage(**state))


def test_connected_only_with_control_bar_no_toast_room_connected_and_microphone_on() -> None:
    assert connected(bar=True, toast=False, roomState="connected", micOn=True)
    assert connected(bar=True, toast=False, roomState=None, micOn=True)  # a page without Meet's debug handle
    assert not connected(bar=True, toast=False, roomState="connected", micOn=False)  # not heard yet
    assert not connected(bar=True, toast=True, roomState="connected", micOn=True)
    assert not connected(bar=True, toast=False, roomState="reconnecting", micOn=True)
    assert not connected(bar=False, toast=False, roomState="connected")


def test_refused_token_raises_auth_required_without_secrets() -> None:
    with pytest.raises(RoomRefused) as caught:
        connected(roomState="disconnected", errors=[{"reason": "NotAllowed", "status": 401}])
    assert caught.value.reason == AUTH_REQUIRED
    assert SECRET not in str(caught.value)


def test_unreachable_server_is_a_timeout_at_once() -> None:
    with pytest.raises(TimeoutException, match="ServerUnreachable"):
        connected(roomState="disconnected", errors=[{"reason": "ServerUnreachable", "status": 0}])


def test_an_error_while_still_trying_waits() -> None:
    # livekit-client may try another region after a failed attempt: only a page that gave up decides
    assert not connected(roomState="connecting", errors=[{"reason": "NotAllowed", "status": 401}])
