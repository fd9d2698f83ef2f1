"""Dispatch rules (sipmediagw/dispatch.py): validation naming the key at fault, resolution in order with the default
last, the JSON hop into the container, and hostile meetings that must never leave their one URL path segment."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmediagw.dispatch import (Dispatcher, RoomTarget, Rule, RuleError, UnknownMeeting, parse_rule, parse_rules,
                                 rules_from_json, rules_to_json)
from sipmediagw.errors import ConfigError, ValidationError
from sipmediagw.room import url_path_segment

RULES = [
    {"match": r"(?P<code>[a-z]{3}-[a-z]{3}-[a-z]{3})", "platform": "bigbluebutton",
     "base_url": "https://bbb.example.org/", "room": "{code}"},
    {"match": r"9(?P<id>\d{3})", "platform": "jitsi", "base_url": "https://meet.example.org/sub", "room": "conf-{id}"},
    {"match": r"\d{4}", "platform": "janus", "base_url": "http://172.17.0.1:8000"},
]


def dispatcher(default: bool = True) -> Dispatcher:
    return Dispatcher.build(parse_rules(RULES), "jitsi", "https://default.example.org" if default else "")


@pytest.mark.parametrize("meeting, target", [
    ("abc-def-ghi", RoomTarget("bigbluebutton", "https://bbb.example.org", "abc-def-ghi", "abc-def-ghi")),
    ("9123", RoomTarget("jitsi", "https://meet.example.org/sub", "conf-123", "9123")),  # first match wins
    ("1234", RoomTarget("janus", "http://172.17.0.1:8000", "1234", "1234")),  # room defaults to {meeting}
    ("Team Room", RoomTarget("jitsi", "https://default.example.org", "Team Room", "Team Room")),  # the default rule
])
def test_rules_are_tried_in_order_then_the_default(meeting: str, target: RoomTarget) -> None:
    assert dispatcher().resolve(meeting) == target


def test_the_match_is_on_the_whole_meeting_and_without_default_an_unknown_meeting_is_refused() -> None:
    rules_only = dispatcher(default=False)
    assert rules_only.default is None and rules_only.platforms() == ["bigbluebutton", "jitsi", "janus"]
    with pytest.raises(UnknownMeeting, match="unknown meeting 12345"):
        rules_only.resolve("12345")  # \d{4} must not match a prefix
    with pytest.raises(UnknownMeeting, match="unknown meeting xabc-def-ghi"):
        rules_only.resolve("xabc-def-ghi")
    assert dispatcher().platforms() == ["bigbluebutton", "jitsi", "janus"]


def test_a_platform_choice_limits_the_rules_tried() -> None:
    assert dispatcher().resolve("9123", "janus").room == "9123"  # \d{4} of janus, not jitsi's 9(?P<id>...)
    assert dispatcher().resolve("9123", "jitsi").room == "conf-123"
    assert dispatcher().resolve("Team", "jitsi").base_url == "https://default.example.org"  # the default is jitsi
    with pytest.raises(UnknownMeeting):
        dispatcher().resolve("Team", "janus")


@pytest.mark.parametrize("rule, key, message", [
    ({"platform": "jitsi", "base_url": "https://x"}, "match", "match is required"),
    ({"match": "(", "platform": "jitsi", "base_url": "https://x"}, "match", "invalid regular expression"),
    ({"match": "a", "platform": "Zoom!", "base_url": "https://x"}, "platform", "invalid name 'Zoom!'"),
    ({"match": "a", "platform": "jitsi", "base_url": "ftp://x"}, "base_url", "invalid base URL"),
    ({"match": "a", "platform": "jitsi", "base_url": "https://x/?q=1"}, "base_url", "invalid base URL"),
    ({"match": "a", "platform": "jitsi", "base_url": "https://x", "room": "{nope}"}, "room",
     "unknown field {nope} in '{nope}' (known: {meeting})"),
    ({"match": "(?P<id>a)", "platform": "jitsi", "base_url": "https://x", "room": "{meeting.upper}"}, "room",
     "unknown field {meeting.upper}"),
    ({"match": "a", "platform": "jitsi", "base_url": "https://x", "room": "{meeting!r}"}, "room", "no conversion"),
    ({"match": "a", "platform": "jitsi", "base_url": "https://x", "room": "{meeting"}, "room", "invalid template"),
    ({"match": "a", "platform": "jitsi", "base_url": "https://x", "room": "  "}, "room", "empty"),
    ({"match": "a", "platform": "jitsi", "base_url": "https://x", "rooms": "x"}, "rooms", "unknown key 'rooms'"),
    ({"match": ["a"], "platform": "jitsi", "base_url": "https://x"}, "match", "expected text"),
    ("just text", None, "a rule is a mapping"),
])
def test_a_bad_rule_names_the_key_at_fault(rule: object, key: str | None, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(rule, "here")
    assert caught.value.key == key and message in caught.value.message
    assert isinstance(caught.value, ConfigError)  # exit code 2 at the CLI


def test_named_groups_are_template_fields_and_the_error_names_the_rule() -> None:
    assert parse_rule({"match": "(?P<x>.)", "platform": "a", "base_url": "https://h", "room": "r-{x}-{meeting}"}).room
    with pytest.raises(RuleError, match=re.escape("dispatch rule 2: platform: invalid name")):
        parse_rules([RULES[0], {"match": "a", "platform": "", "base_url": "https://h"}])
    with pytest.raises(ConfigError, match="expected a list of rules"):
        parse_rules({"match": "a"})


def test_rules_travel_to_the_container_as_json_unchanged() -> None:
    rules = parse_rules(RULES)
    text = rules_to_json(rules)
    assert rules_from_json(text) == rules
    assert rules_from_json("") == () and rules_from_json("[]") == ()
    with pytest.raises(ConfigError, match="SIPMEDIAGW_DISPATCH: invalid JSON"):
        rules_from_json("[{")
    with pytest.raises(ConfigError, match="SIPMEDIAGW_DISPATCH rule 1: base_url"):
        rules_from_json('[{"match": "a", "platform": "a", "base_url": "nope"}]')


def test_platform_check_names_the_rule_source() -> None:
    rules = (Rule("a", "jitsi", "https://x", source="/etc/sipmediagw.yaml:7"),)

    def known(platform: str) -> None:
        if platform != "janus":
            raise ConfigError(f"unknown platform {platform!r}")

    with pytest.raises(ConfigError, match=re.escape("/etc/sipmediagw.yaml:7: unknown platform 'jitsi'")):
        Dispatcher(rules).check_platforms(known)
    Dispatcher.build((), "janus", "https://x").check_platforms(known)


@pytest.mark.parametrize("meeting", ["", "   ", "..", ".", "a\x00b", "line\nbreak", "x" * 201])
def test_meetings_that_cannot_name_a_room_are_unknown(meeting: str) -> None:
    with pytest.raises(UnknownMeeting):
        dispatcher().resolve(meeting)


HOSTILE = st.one_of(
    st.text(min_size=1, max_size=60),
    st.lists(st.sampled_from(["..", ".", "/", "%2F", "%2e%2e", "?", "#", "&", "\\", "@", ":", "x", "1", " ", "{}",
                              "{meeting}", "\u202e", "é"]), min_size=1, max_size=12).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(meeting=HOSTILE)
def test_a_hostile_meeting_stays_one_path_segment_of_the_room_url(meeting: str) -> None:
    """Whatever is dialled: either no room, or a room that url_path_segment keeps inside ONE segment of the base URL
    (no new path level, query or fragment; it decodes back to exactly the room)."""
    rules = parse_rules([{"match": r"(?P<all>.*)", "platform": "jitsi", "base_url": "https://meet.example.org/base",
                          "room": "pre-{all}"}])
    for candidate in (Dispatcher.build((), "jitsi", "https://meet.example.org/base"), Dispatcher(rules)):
        try:
            target = candidate.resolve(meeting)
        except UnknownMeeting:
            continue
        segment = url_path_segment(target.room)
        url = urllib.parse.urlsplit(f"{target.base_url}/{segment}")
        assert (url.scheme, url.netloc, url.query, url.fragment) == ("https", "meet.example.org", "", "")
        assert url.path.split("/")[:-1] == ["", "base"] and url.path.split("/")[-1] == segment
        assert urllib.parse.unquote(segment) == target.room
        assert target.meeting == meeting


@settings(max_examples=200, deadline=None)
@given(meeting=HOSTILE)
def test_resolve_only_ever_raises_unknown_meeting(meeting: str) -> None:
    try:
        dispatcher().resolve(meeting)
    except UnknownMeeting:
        pass
    except ValidationError as exc:  # pragma: no cover - the property fails here
        pytest.fail(f"{meeting!r}: {exc.__class__.__name__} instead of UnknownMeeting")
