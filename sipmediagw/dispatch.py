"""Dispatch rules: which room (platform, base URL, room name) a dialled meeting joins on a pool gateway.

A rule is ``{match: REGEX, platform: NAME, base_url: URL, room: TEMPLATE}``: the regular expression must match the
whole meeting (``re.fullmatch``); the room template is a ``str.format`` template over ``{meeting}`` and the
expression's named groups. Rules are tried in order; the ``platform`` + ``base_url`` settings form the default rule
tried last (room = the meeting as dialled). No rule: the meeting is unknown.

Used on both sides: the host validates the ``dispatch`` setting at launch and hands the rules to the container as
JSON (``SIPMEDIAGW_DISPATCH``); the gateway parses them again and resolves each call's meeting. Stdlib only: this
module runs inside the container too.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import ConfigError, ValidationError
from .room import PLATFORM_NAME, check_base_url, url_path_segment

#: the setting, the environment variable the container reads
SETTING = "dispatch"
ENV_VAR = "SIPMEDIAGW_DISPATCH"
KEYS = ("match", "platform", "base_url", "room")
DEFAULT_TEMPLATE = "{meeting}"
MAX_MEETING = 200  # the dialled user part; longer is no meeting anyone types
#: the service user (dialled to reach the keypad menu): a plain SIP user part
SERVICE_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RuleError(ConfigError):
    """A dispatch rule is invalid; `key` names the offending key (None: the rule as a whole)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        self.message = message
        super().__init__(message)


class UnknownMeeting(ValidationError):
    """No rule gives a room for this meeting (or the room it gives is not a safe room name)."""


@dataclasses.dataclass(frozen=True)
class RoomTarget:
    """Where one call goes: the platform driver, the service's base URL and the room; `meeting` as dialled."""

    platform: str
    base_url: str
    room: str
    meeting: str | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """One validated dispatch rule; `source` says where it was written (file:line, variable) for error messages."""

    match: str
    platform: str
    base_url: str
    room: str = DEFAULT_TEMPLATE
    source: str = dataclasses.field(default="", compare=False)

    @property
    def pattern(self) -> re.Pattern[str]:
        """The compiled expression (re caches compilations)."""
        return re.compile(self.match)

    def to_dict(self) -> dict[str, str]:
        """The rule as the setting / SIPMEDIAGW_DISPATCH write it."""
        return {"match": self.match, "platform": self.platform, "base_url": self.base_url, "room": self.room}

    def apply(self, meeting: str) -> RoomTarget | None:
        """The target when this rule matches the whole `meeting`, else None."""
        found = self.pattern.fullmatch(meeting)
        if found is None:
            return None
        fields = {name: value or "" for name, value in found.groupdict().items()}
        fields["meeting"] = meeting
        return RoomTarget(self.platform, self.base_url, self.room.format_map(fields), meeting)


def _text(data: Mapping[str, Any], key: str, required: bool) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise RuleError(f"{key} is required (a rule is {{match, platform, base_url, room}})", key)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RuleError(f"{key}: expected text, got {type(value).__name__}", key)
    return str(value)


def _check_template(template: str, groups: Iterable[str]) -> None:
    known = ["meeting", *groups]
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise RuleError(f"room: invalid template {template!r}: {exc}", "room") from None
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in known:
            raise RuleError(f"room: unknown field {{{field}}} in {template!r} (known: "
                            f"{', '.join('{' + k + '}' for k in known)})", "room")
        if spec or conversion:
            raise RuleError(f"room: {{{field}}} takes no conversion or format spec in {template!r}", "room")
    if not template.strip():
        raise RuleError("room: the template is empty", "room")


def parse_rule(data: Any, source: str = "") -> Rule:
    """Validate one rule (a mapping); RuleError names the key at fault. The platform is only checked for its
    syntax here: whether a driver exists depends on the browsing folder (:meth:`Dispatcher.check_platforms`)."""
    if not isinstance(data, Mapping):
        raise RuleError(f"a rule is a mapping {{match, platform, base_url, room}}, got {type(data).__name__}")
    unknown = [str(key) for key in data if key not in KEYS]
    if unknown:
        raise RuleError(f"unknown key {unknown[0]!r} (known: {', '.join(KEYS)})", unknown[0])
    match = _text(data, "match", True)
    platform = _text(data, "platform", True)
    base_url = _text(data, "base_url", True)
    room = _text(data, "room", False) or DEFAULT_TEMPLATE
    assert match is not None and platform is not None and base_url is not None
    try:
        pattern = re.compile(match)
    except re.error as exc:
        raise RuleError(f"match: invalid regular expression {match!r}: {exc}", "match") from None
    if not PLATFORM_NAME.fullmatch(platform):
        raise RuleError(f"platform: invalid name {platform!r} (lowercase letters, digits, '_')", "platform")
    try:
        base_url = check_base_url(base_url)
    except ValidationError as exc:
        raise RuleError(f"base_url: {exc}", "base_url") from None
    _check_template(room, pattern.groupindex)
    return Rule(match, platform, base_url, room, source)


def parse_rules(items: Any, source: str = SETTING, sources: Sequence[str] | None = None) -> tuple[Rule, ...]:
    """Validate a list of rules; an error names `source` and the rule's number (or its entry in `sources`)."""
    if items is None or items == "":
        return ()
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{source}: expected a list of rules {{match, platform, base_url, room}}, "
                          f"got {type(items).__name__}")
    rules = []
    for index, item in enumerate(items):
        where = sources[index] if sources is not None else f"{source} rule {index + 1}"
        try:
            rules.append(parse_rule(item, where))
        except RuleError as exc:
            raise RuleError(f"{where}: {exc.message}", exc.key) from None
    return tuple(rules)


def rules_to_json(rules: Sequence[Rule]) -> str:
    """The rules as SIPMEDIAGW_DISPATCH carries them (compact JSON, no secrets: a base URL holds no credentials)."""
    return json.dumps([rule.to_dict() for rule in rules], separators=(",", ":"), ensure_ascii=False)


def rules_from_json(text: str, source: str = ENV_VAR) -> tuple[Rule, ...]:
    """Parse and validate SIPMEDIAGW_DISPATCH."""
    if not text.strip():
        return ()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: invalid JSON: {exc}") from None
    return parse_rules(items, source)


def check_meeting(meeting: str) -> str:
    """`meeting` if it can name a meeting at all (not empty, no control characters, at most 200 characters)."""
    if not isinstance(meeting, str) or not meeting.strip():
        raise UnknownMeeting("no meeting given")
    if _CONTROL.search(meeting):
        raise UnknownMeeting(f"unknown meeting {meeting!r}: control characters")
    if len(meeting) > MAX_MEETING:
        raise UnknownMeeting(f"unknown meeting {meeting[:20]!r}...: longer than {MAX_MEETING} characters")
    return meeting


class Dispatcher:
    """Ordered rules, then the default rule (platform + base_url settings), resolving meetings to rooms."""

    def __init__(self, rules: Sequence[Rule] = (), default: Rule | None = None) -> None:
        self.rules = tuple(rules)
        self.default = default

    @classmethod
    def build(cls, rules: Sequence[Rule], platform: str, base_url: str) -> "Dispatcher":
        """The dispatcher of the settings: `rules`, then `platform` + `base_url` as the default (none if no URL)."""
        default = None
        if base_url:
            default = Rule(".+", platform, check_base_url(base_url), DEFAULT_TEMPLATE,
                           "settings platform + base_url")
            if not PLATFORM_NAME.fullmatch(platform):
                raise ConfigError(f"invalid platform name {platform!r}")
        return cls(rules, default)

    @property
    def all_rules(self) -> tuple[Rule, ...]:
        """The rules in the order they are tried, the default last."""
        return self.rules + ((self.default,) if self.default else ())

    def platforms(self) -> list[str]:
        """Every platform a meeting can land on (each needs a driver)."""
        return list(dict.fromkeys(rule.platform for rule in self.all_rules))

    def check_platforms(self, check: Callable[[str], object]) -> None:
        """Run `check(platform)` (raises ConfigError for a missing driver) for each rule; the error names the rule."""
        for rule in self.all_rules:
            try:
                check(rule.platform)
            except ConfigError as exc:
                raise ConfigError(f"{rule.source}: {exc}" if rule.source else str(exc)) from None

    def resolve(self, meeting: str, platform: str | None = None) -> RoomTarget:
        """The room of `meeting` (by the rules of `platform` only, when given: a keypad menu's platform choice);
        UnknownMeeting when no rule matches or the room would not be one safe URL segment."""
        check_meeting(meeting)
        for rule in self.all_rules:
            if platform is not None and rule.platform != platform:
                continue
            target = rule.apply(meeting)
            if target is None:
                continue
            try:
                url_path_segment(target.room, "room")
            except ValidationError as exc:
                raise UnknownMeeting(f"unknown meeting {meeting}: {exc}") from None
            return target
        raise UnknownMeeting(f"unknown meeting {meeting}")
