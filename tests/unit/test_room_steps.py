"""Platforms described in YAML (sipmediagw/room_steps.py): the strict schema (each mistake one file:line error),
placeholders, hostile rooms and names, secret options, and how load_room_driver finds .yaml platforms."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from sipmediagw.errors import ConfigError, FileLineError, ValidationError
from sipmediagw.redaction import redact
from sipmediagw.room import Room, RoomDrivers, load_room_driver
from sipmediagw.room_steps import StepsRoom, check_selector, parse_platform_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "platform-example.yaml"
BROWSING = REPO / "browsing"

GOOD = """\
platform: site
url: "{base_url}/meet/{room}?n={name}&lang={option.lang}"
room_pattern: "^[a-z0-9-]{3,64}$"
options:
  lang: {type: str, default: en}
  level: {type: int, default: 3}
  password: {type: str, secret: true}
join:
  - fill: {css: "#name", value: "{name}"}
  - fill: {css: "#pw", value: "{option.password}"}
  - click: {css: "button.join", timeout: 10}
  - fail_if: {css: ".not-found", reason: not_found}
  - progress_while: {css: ".lobby", text: "waiting to be let in", timeout: 300}
  - wait_for: {css: ".in-meeting", timeout: 60}
leave:
  - click_if_present: {css: "button.leave"}
participants: {css: ".participant"}
microphone: {css: "button.mic"}
"""


def write(tmp_path: Path, text: str, platform: str = "site") -> Path:
    path = tmp_path / f"{platform}.yaml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, platform: str = "site") -> type[Room]:
    write(tmp_path, text, platform)
    return load_room_driver(platform, tmp_path)


def replaced(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


# -- loading -------------------------------------------------------------------------------------------------------
def test_a_yaml_platform_loads_as_a_room_class(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    assert issubclass(cls, StepsRoom) and issubclass(cls, Room) and cls.platform == "site"
    assert set(cls.OPTIONS) == {"lang", "level", "password"} and cls.OPTIONS["password"].secret
    # only the declared keypad toggles are capabilities
    assert cls.supports("set_microphone") and not cls.supports("set_camera")
    assert not cls.supports("toggle_view")
    room = cls(None, "https://meet.example.org/base/", "team-42")
    assert room.url() == "https://meet.example.org/base/meet/team-42?n=SIP%20gateway&lang=en"


def test_the_documented_example_is_a_valid_platform_file(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "mysite.yaml")
    cls = load_room_driver("mysite", tmp_path)
    assert cls.supports("set_microphone") and cls.supports("set_camera")
    assert cls(None, "https://x.example", "abc-1").url() == "https://x.example/meet/abc-1?lang=en"


def test_py_and_yaml_of_the_same_name_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    (tmp_path / "site.py").write_text("raise SystemExit('must not be imported')\n")
    with pytest.raises(ConfigError, match=r"defined twice, by .*site\.py and .*site\.yaml"):
        load_room_driver("site", tmp_path)


def test_no_driver_lists_yaml_platforms_too(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    (tmp_path / "other.py").write_text("")
    with pytest.raises(ConfigError, match=r"no driver for platform 'teams' .*\(available: other, site\)"):
        load_room_driver("teams", tmp_path)


def test_shipped_python_drivers_still_load() -> None:
    assert load_room_driver("janus", BROWSING).platform == "janus"


# -- schema errors: one line naming the file and the line -------------------------------------------------------------
SCHEMA_ERRORS = [
    # (what, text, line, message fragment)
    ("unknown top key", GOOD + "colour: red\n", 19, "unknown key 'colour'"),
    ("unknown step key", replaced('timeout: 10}', 'timout: 10}'), 11, "unknown key 'timout'"),
    ("unknown step", replaced("  - click:", "  - tap:"), 11, "unknown step 'tap'"),
    ("step with two kinds", replaced('  - click: {css: "button.join", timeout: 10}',
                                     '  - click: {css: "button.join"}\n    wait_for: {css: "x"}'), 11,
     "expected one of"),
    ("missing css", replaced('wait_for: {css: ".in-meeting", timeout: 60}', 'wait_for: {timeout: 60}'), 14,
     "missing css"),
    ("bad selector", replaced('"button.join"', '"button.join:contains(Join)"'), 11,
     "invalid CSS selector 'button.join:contains(Join)': unknown functional pseudo-class :contains()"),
    ("pseudo-element", replaced('".participant"', '".participant::before"'), 17, "pseudo-element"),
    ("unknown reason", replaced("reason: not_found", "reason: gone"), 12, "reason must be one of"),
    ("platform is not the file name", replaced("platform: site", "platform: other"), 1, "must equal the file name"),
    ("attribute access", replaced('value: "{name}"', 'value: "{name.__class__}"'), 9,
     "unknown placeholder {name.__class__}"),
    ("index access", replaced('value: "{name}"', 'value: "{name[0]}"'), 9, "unknown placeholder {name[0]}"),
    ("positional", replaced('value: "{name}"', 'value: "{0}"'), 9, "unknown placeholder {0}"),
    ("empty", replaced('value: "{name}"', 'value: "{}"'), 9, "unknown placeholder {}"),
    ("unbalanced", replaced('value: "{name}"', 'value: "{name"'), 9, "unbalanced '{'"),
    ("undeclared option", replaced("{option.lang}", "{option.langue}"), 2, "unknown placeholder {option.langue}"),
    ("secret in the URL", replaced("{option.lang}", "{option.password}"), 2, "is a secret"),
    ("URL not from base_url", replaced('url: "{base_url}/meet', 'url: "https://evil.example/{base_url}/meet'), 2,
     "must start with {base_url}"),
    ("URL host from a placeholder", replaced('url: "{base_url}/meet', 'url: "{base_url}{room}/meet'), 2,
     "must start with {base_url}"),
    ("secret with a default", replaced("password: {type: str, secret: true}",
                                       "password: {type: str, secret: true, default: hunter2}"), 7,
     "a secret option has no default"),
    ("secret not text", replaced("password: {type: str, secret: true}", "password: {type: int, secret: true}"), 7,
     "a secret option is of type str"),
    ("option type", replaced("lang: {type: str, default: en}", "lang: {type: string}"), 5, "type: one of"),
    ("bad default", replaced("level: {type: int, default: 3}", "level: {type: int, default: many}"), 6,
     "is not a whole number"),
    ("common option", replaced("  lang: {type: str, default: en}", "  join_timeout: {type: int}"), 5,
     "an option of every platform"),
    ("join without wait_for", replaced('  - wait_for: {css: ".in-meeting", timeout: 60}\n', ""), 9,
     "needs a wait_for"),
    ("watcher in leave", replaced('  - click_if_present: {css: "button.leave"}',
                                  '  - fail_if: {css: ".x", reason: lobby}'), 16, "unknown step 'fail_if'"),
    ("timeout as text", replaced("timeout: 10}", 'timeout: "10"}'), 11, "expected int or float, not str"),
    ("timeout as bool", replaced("timeout: 10}", "timeout: yes}"), 11, "expected int or float, not bool"),
    ("timeout too long", replaced("timeout: 10}", "timeout: 99999}"), 11, "expected seconds between"),
    ("duplicate key", replaced("participants:", "microphone: {css: x}\nparticipants:"), 19, "microphone given twice"),
    ("bad regular expression", replaced('"^[a-z0-9-]{3,64}$"', '"^[a-z"'), 3, "invalid regular expression"),
    ("invalid YAML", replaced("join:\n", "join: [\n"), 9, "invalid YAML"),
    ("alias", replaced('  - click_if_present: {css: "button.leave"}',
                       '  - &leave {click_if_present: {css: "button.leave"}}\n  - *leave'), 16,
     "anchors and aliases"),
]


@pytest.mark.parametrize("text, line, fragment", [case[1:] for case in SCHEMA_ERRORS],
                         ids=[case[0] for case in SCHEMA_ERRORS])
def test_schema_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileLineError) as err:
        load_room_driver("site", tmp_path)
    assert (err.value.path, err.value.line) == (str(path), line), str(err.value)
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: ") and "\n" not in str(err.value)


def test_a_secret_default_never_shows_in_the_error(tmp_path: Path) -> None:
    write(tmp_path, replaced("password: {type: str, secret: true}",
                             "password: {type: str, secret: true, default: hunter-2-secret}"))
    with pytest.raises(FileLineError) as err:
        load_room_driver("site", tmp_path)
    assert "hunter-2-secret" not in str(err.value)


def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    write(tmp_path, GOOD + "#" * (300 * 1024) + "\n")
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        load_room_driver("site", tmp_path)


def test_deep_nesting_is_one_error(tmp_path: Path) -> None:
    write(tmp_path, GOOD + "x: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(ConfigError):
        load_room_driver("site", tmp_path)


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "# nothing\n")
    with pytest.raises(FileLineError, match="empty platform file"):
        load_room_driver("site", tmp_path)


@pytest.mark.parametrize("css", ["#name", "button.join", "input[data-testid='prejoin.input'], .prejoin input",
                                 "div > a + b ~ c", "a:not(.x, .y)", "li:nth-child(2n+1)", "div:has(> img)",
                                 '[aria-label="Leave the meeting"]', "button:not([disabled])", "*"])
def test_selectors_pages_use_are_accepted(css: str) -> None:
    assert check_selector(css) is None


@pytest.mark.parametrize("css", ["", " ", "a >", "a,,b", ".a*", "div{color:red}", "a[", "a::after",
                                 "a:contains(x)", "a:nth-child(x)", "a:bogus", "x\ny"])
def test_broken_selectors_are_refused(css: str) -> None:
    assert check_selector(css) is not None


# -- placeholders ----------------------------------------------------------------------------------------------------
def test_placeholders_fill_only_what_is_declared_and_braces_escape(tmp_path: Path) -> None:
    cls = load(tmp_path, replaced('value: "{name}"', 'value: "{{name}} is {name} in {room} ({option.level})"'))
    room = cls(None, "https://x.example", "abc-1", {"level": "7", "password": "pw-1"})
    room.display_name = "Zoë {room}"
    typed = room._typed(cls.spec.join)
    assert cls.spec.join[0].value.render(typed) == "{name} is Zoë {room} in abc-1 (7)"


def test_typed_values_cannot_press_keys(tmp_path: Path) -> None:
    """Selenium reads U+E000-U+F8FF as keys (U+E007 Enter): a display name types text only."""
    cls = load(tmp_path, GOOD)
    room = cls(None, "https://x.example", "abc-1", {"password": "p\ue007wd"})
    room.display_name = "Eve\ue007\ue004\x7f\tX"
    typed = room._typed(cls.spec.join)
    assert typed["name"] == "EveX" and typed["option.password"] == "pwd"


def test_the_display_name_is_one_url_component(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    room = cls(None, "https://x.example", "abc-1")
    room.display_name = "a&lang=fr#x /?"
    query = urllib.parse.urlsplit(room.url()).query
    assert urllib.parse.parse_qs(query) == {"n": ["a&lang=fr#x /?"], "lang": ["en"]}


HOSTILE_ROOMS = ["a/b", "../x", "x?y#z", "%2e%2e", "a b&c=d", "Café & co/../x?y#z", "..%2f", "a\\b", "{room}"]


@pytest.mark.parametrize("room", HOSTILE_ROOMS)
def test_hostile_room_names_stay_in_one_path_segment(tmp_path: Path, room: str) -> None:
    cls = load(tmp_path, replaced('room_pattern: "^[a-z0-9-]{3,64}$"\n', ""))
    url = cls(None, "https://x.example/base", room).url()
    parts = urllib.parse.urlsplit(url)
    assert parts.netloc == "x.example" and parts.query.startswith("n=") and not parts.fragment
    prefix, segment = parts.path.rsplit("/", 1)
    assert prefix == "/base/meet"
    assert urllib.parse.unquote(segment) == room


@pytest.mark.parametrize("room", ["", "..", ".", "a\nb", "x" * 201])
def test_room_names_no_encoding_makes_safe_are_refused(tmp_path: Path, room: str) -> None:
    cls = load(tmp_path, replaced('room_pattern: "^[a-z0-9-]{3,64}$"\n', ""))
    with pytest.raises(ValidationError):
        cls(None, "https://x.example", room)


def test_room_pattern_is_checked_at_launch(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    drivers = RoomDrivers(tmp_path)
    drivers.check("site", "https://x.example", "team-42")
    with pytest.raises(ValidationError, match=r"does not match room_pattern .*site\.yaml:3"):
        drivers.check("site", "https://x.example", "Team 42")


def test_base_url_is_checked(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    with pytest.raises(ValidationError):
        cls(None, "javascript:alert(1)", "team-42")


# -- options and secrets ---------------------------------------------------------------------------------------------
def test_undeclared_and_mistyped_options_are_refused(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    with pytest.raises(ValidationError, match="unknown room option 'colour'"):
        cls(None, "https://x.example", "team-42", {"colour": "red"})
    with pytest.raises(ValidationError, match="level: 'x' is not a whole number"):
        cls(None, "https://x.example", "team-42", {"level": "x"})


def test_a_secret_option_is_masked_everywhere_once_the_room_has_it(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    secret = "correct-horse-77"
    cls(None, "https://x.example", "team-42", {"password": secret})
    assert secret not in redact(f"typing {secret} into #pw")


def test_a_bad_secret_value_is_not_shown(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    with pytest.raises(ValidationError) as err:
        cls(None, "https://x.example", "team-42", {"password": "bad\x01secret-value"})
    assert "secret-value" not in str(err.value)


class FakeDriver:
    """Records the pages opened; a join that fails before opening one never calls it."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def get(self, url: str) -> None:
        self.opened.append(url)

    def execute_script(self, script: str, *args: Any) -> Any:
        raise AssertionError("no page action expected")


def test_an_option_a_step_needs_fails_the_join_before_any_page_opens(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    driver = FakeDriver()
    room = cls(driver, "https://x.example", "team-42")  # the launch check passes no options: no error here
    with pytest.raises(FileLineError, match=r"site\.yaml:10: option password is not set and has no default \(give it with --room-secret\)"):
        room.join("Alice")
    assert driver.opened == []


def test_leave_without_a_join_only_blanks_the_page(tmp_path: Path) -> None:
    cls = load(tmp_path, GOOD)
    driver = FakeDriver()
    cls(driver, "https://x.example", "team-42").leave()
    assert driver.opened == ["about:blank"]


def test_parse_platform_file_reads_steps_in_order(tmp_path: Path) -> None:
    spec = parse_platform_file(write(tmp_path, GOOD))
    assert [step.kind for step in spec.join] == ["fill", "fill", "click", "fail_if", "progress_while", "wait_for"]
    assert spec.join[4].reason == "lobby" and spec.join[4].timeout == 300
    assert [step.line for step in spec.join] == [9, 10, 11, 12, 13, 14]
    assert spec.leave[0].timeout == 0  # click_if_present looks once unless told to wait
