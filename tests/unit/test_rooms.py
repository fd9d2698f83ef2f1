"""Room drivers: URL building and validation, hostile room names and display names."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmediagw.errors import ValidationError
from sipmediagw.room import check_base_url, load_room_driver, url_path_segment

BROWSING = Path(__file__).resolve().parents[2] / "browsing"
Janus = load_room_driver("janus", BROWSING)
Jitsi = load_room_driver("jitsi", BROWSING)
BBB = load_room_driver("bigbluebutton", BROWSING)
HOSTILE = ["../../admin", "a/b", "x?y=1", "x#frag", "a b", "%2e%2e", "\x00", "a\nb", "", "  ", ".", "..",
           "javascript:alert(1)", "//evil.example/x", "\u202eroom", "r" * 300]


def test_janus_url_and_numeric_room() -> None:
    room = Janus(None, "http://172.17.0.1:8000/", "1234")
    assert room.url() == "http://172.17.0.1:8000/videoroom.html?room=1234"
    demo = Janus(None, "http://h", "1234", {"page": "videoroomtest.html"})
    assert demo.url() == "http://h/videoroomtest.html?room=1234"
    audio_only = Janus(None, "http://h", "1234", {"audio_only": True})  # the test bed's page subscribes to audio only
    assert audio_only.url() == "http://h/videoroom.html?room=1234&audio=only"


@pytest.mark.parametrize("room", HOSTILE + ["12a", "-1", "1.5", "1234 ", "0x10", "1" * 19])
def test_janus_rejects_non_numeric_rooms(room: str) -> None:
    with pytest.raises(ValidationError):
        Janus(None, "http://h", room)


@pytest.mark.parametrize("page", ["../x.html", "a/b.html", "x.html?room=1", "x.js"])
def test_janus_rejects_odd_pages(page: str) -> None:
    with pytest.raises(ValidationError):
        Janus(None, "http://h", "1", {"page": page})


def test_janus_demo_display_name_is_alphanumeric() -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("janus_for_test", BROWSING / "janus.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.demo_display_name("Alice O'Brien <x>") == "AliceOBrienx"
    assert module.demo_display_name("!!!") == "SIPgateway"


def _split(url: str) -> tuple[urllib.parse.SplitResult, dict[str, object]]:
    parts = urllib.parse.urlsplit(url)
    params = {}
    for kv in parts.fragment.split("&"):
        key, _, raw = kv.partition("=")
        assert key not in params, f"duplicate key {key}"
        params[key] = json.loads(urllib.parse.unquote(raw))
    return parts, params


def test_jitsi_url_skips_prejoin_and_sets_the_name() -> None:
    room = Jitsi(None, "https://rendez-vous.renater.fr", "MyRoom")
    room.display_name = "Alice Caller"
    parts, params = _split(room.url())
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == ("https", "rendez-vous.renater.fr", "/MyRoom",
                                                                    "lang=en")
    assert params["config.prejoinConfig.enabled"] is False
    assert params["userInfo.displayName"] == "Alice Caller"


@given(room=st.text(min_size=1, max_size=80).filter(lambda r: r.strip(".").strip() and r.isprintable()),
       name=st.text(max_size=80))
def test_jitsi_hostile_names_stay_in_their_place(room: str, name: str) -> None:
    driver = Jitsi(None, "https://meet.example.org/base", room)
    driver.display_name = name
    parts, params = _split(driver.url())
    assert parts.netloc == "meet.example.org" and parts.query == "lang=en"
    prefix, _, segment = parts.path.rpartition("/")
    assert prefix == "/base"  # exactly one segment added under the base path
    assert urllib.parse.unquote(segment) == room
    assert params["userInfo.displayName"] == name
    assert set(params) == {"config.prejoinConfig.enabled", "config.prejoinPageEnabled",
                           "config.startWithAudioMuted", "config.startWithVideoMuted", "config.disableDeepLinking",
                           "userInfo.displayName"}


@pytest.mark.parametrize("room", ["", "  ", ".", "..", "...", "\x00", "a\nb", "r" * 300])
def test_jitsi_rejects_unencodable_rooms(room: str) -> None:
    with pytest.raises(ValidationError):
        Jitsi(None, "https://meet.example.org", room)


def test_bbb_greenlight_urls() -> None:
    assert BBB(None, "https://bbb.example.org/", "abc-def-ghi").url() == \
        "https://bbb.example.org/rooms/abc-def-ghi/join"
    assert BBB(None, "https://bbb.example.org", "ABC-123-xyz", {"greenlight": 2}).url() == \
        "https://bbb.example.org/b/abc-123-xyz"


@pytest.mark.parametrize("room", HOSTILE + ["abc-", "-abc", "a--b", "abc_def"])
def test_bbb_rejects_non_room_codes(room: str) -> None:
    with pytest.raises(ValidationError):
        BBB(None, "https://bbb.example.org", room)


def test_bbb_rejects_unknown_greenlight_version() -> None:
    with pytest.raises(ValidationError):
        BBB(None, "https://bbb.example.org", "abc-def", {"greenlight": 4})


@pytest.mark.parametrize("base", ["ftp://x", "javascript:alert(1)", "http://", "https://h/?q=1", "https://h/#f",
                                  "https://h/a\nb", "meet.example.org"])
@pytest.mark.parametrize("driver", [Janus, Jitsi, BBB])
def test_every_driver_rejects_bad_base_urls(driver, base: str) -> None:  # type: ignore[no-untyped-def]
    room = {"janus": "1234", "jitsi": "room", "bigbluebutton": "abc-def"}[driver.platform]
    with pytest.raises(ValidationError):
        driver(None, base, room)


def test_url_path_segment_and_base_url_helpers() -> None:
    assert url_path_segment("a/b c?#") == "a%2Fb%20c%3F%23"
    assert check_base_url("https://h:8443/x/") == "https://h:8443/x"
