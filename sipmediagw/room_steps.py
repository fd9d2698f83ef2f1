"""Operator-defined platforms: ``browsing/<platform>.yaml`` describes a site's join as steps, run by a generated
:class:`~sipmediagw.room.Room` subclass, for a site that has no Python driver.

The file is strict: every key is known, every selector is checked and every ``{placeholder}`` declared when the file
loads, and each mistake is one :class:`~sipmediagw.errors.FileLineError` naming the file and line. Values are
filled from declared placeholders only (``{base_url}``, ``{room}``, ``{name}``, ``{option.NAME}``) by this module's
own small parser: no format-string attribute or index access exists. See docs/examples/platform-example.yaml.

Step semantics (why they are shaped so): a join is a series of waits on the page; ``fail_if`` and
``progress_while`` are *watchers*, active during every wait that follows them, because a platform's answer ("no such
meeting", "waiting for the host") appears at a moment the file cannot know. A refusal ends the join at once with
RoomRefused instead of after a timeout; time spent in a lobby does not count against the wait it interrupts.
"""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import yaml
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    InvalidElementStateException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By

from .errors import ConfigError, FileLineError, ValidationError
from .redaction import add_secret
from .room import (
    COMMON_OPTIONS,
    LOBBY,
    PLATFORM_NAME,
    REFUSALS,
    Option,
    Room,
    RoomRefused,
    check_base_url,
    url_path_segment,
)
from .settings import compose_yaml_file

#: seconds a wait step lasts when the file gives no `timeout` (the option join_timeout overrides it)
DEFAULT_TIMEOUT = 30.0
#: seconds a progress_while condition may last when the file gives no `timeout`
DEFAULT_PROGRESS_TIMEOUT = 300.0
MAX_TIMEOUT = 3600.0
#: seconds a keypad toggle (microphone, camera) waits for its button: one short page action
TOGGLE_TIMEOUT = 5.0
POLL_INTERVAL = 0.2
DEFAULT_DISPLAY_NAME = "SIP gateway"

OPTION_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_OPTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Selenium's send_keys reads Unicode private-use characters U+E000-U+F8FF as keys (Enter, Tab, Ctrl...): a caller's
# display name must type text, never press a key, so these and control characters are dropped from typed values.
_NOT_TYPED = re.compile(r"[\x00-\x1f\x7f\ue000-\uf8ff]")

_STEP_KEYS: dict[str, tuple[set[str], set[str]]] = {  # kind -> (required keys, optional keys)
    "fill": ({"css", "value"}, {"timeout"}),
    "click": ({"css"}, {"timeout"}),
    "click_if_present": ({"css"}, {"timeout"}),
    "wait_for": ({"css"}, {"timeout"}),
    "fail_if": ({"css", "reason"}, {"contains"}),
    "progress_while": ({"css", "text"}, {"timeout", "reason"}),
}
WATCHERS = ("fail_if", "progress_while")
_TOP_REQUIRED = {"platform", "url", "join"}
_TOP_OPTIONAL = {"room_pattern", "options", "leave", "participants", "microphone", "camera"}


# -- templates: "{base_url}/meet/{room}" ---------------------------------------------------------------------------
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclasses.dataclass(frozen=True)
class Template:
    """A value with placeholders, parsed once: literal text and placeholder names, in order."""

    parts: tuple[tuple[bool, str], ...]  # (is_placeholder, text or name)
    line: int

    @property
    def names(self) -> set[str]:
        return {text for is_name, text in self.parts if is_name}

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(values[text] if is_name else text for is_name, text in self.parts)


def parse_template(text: str, allowed: set[str], line: int, path: str) -> Template:
    """`text` as a Template whose placeholders are all in `allowed`; ``{{`` and ``}}`` are literal braces."""
    parts: list[tuple[bool, str]] = []
    at = 0
    for token in _TEMPLATE_TOKEN.finditer(text):
        if token.start() > at:
            parts.append((False, text[at:token.start()]))
        at = token.end()
        if token[0] in ("{{", "}}"):
            parts.append((False, token[0][0]))
        elif token[0] in ("{", "}"):
            raise FileLineError(path, line, f"unbalanced {token[0]!r} in {text!r} (write {{{{ or }}}} for a brace)")
        elif token[1] not in allowed:
            raise FileLineError(path, line, f"unknown placeholder {token[0]} (known here: "
                                f"{', '.join('{' + name + '}' for name in sorted(allowed))})")
        else:
            parts.append((True, token[1]))
    if at < len(text):
        parts.append((False, text[at:]))
    return Template(tuple(parts), line)


# -- CSS selectors, checked when the file loads --------------------------------------------------------------------
# A small recogniser of the selectors querySelectorAll takes (Selectors Level 4, the parts pages use): a typo, a
# jQuery-only pseudo-class (:contains) or a pseudo-element (which matches nothing) is found on the host, at launch,
# not during a caller's join. The browser still has the last word (a selector it rejects is a ConfigError too).
_ESC = r"\\(?:[0-9A-Fa-f]{1,6}\s?|[^\n0-9A-Fa-f])"
_NMSTART = rf"(?:[A-Za-z_]|[^\x00-\x7f]|{_ESC})"
_NMCHAR = rf"(?:[\w-]|[^\x00-\x7f]|{_ESC})"
_IDENT = rf"(?:--|-?{_NMSTART}){_NMCHAR}*"
_STRING = r"(?:\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')"
_SIMPLE = re.compile(
    rf"(?P<type>(?:{_IDENT}|\*)(?:\|(?:{_IDENT}|\*))?)"
    rf"|\#(?P<id>{_NMCHAR}+)"
    rf"|\.(?P<cls>{_IDENT})"
    rf"|\[\s*(?P<attr>{_IDENT})\s*(?:[~|^$*]?=\s*(?:{_IDENT}|{_STRING})\s*(?:[iIsS]\s*)?)?\]"
    rf"|::(?P<element>{_IDENT})"
    rf"|:(?P<pseudo>{_IDENT})(?P<open>\()?")
_COMBINATOR = re.compile(r"\s*([>+~])\s*|\s+")
_NTH = re.compile(r"^\s*(?:odd|even|[+-]?\d*n(?:\s*[+-]\s*\d+)?|[+-]?\d+)(?:\s+of\s+(?P<of>.+))?\s*$",
                  re.IGNORECASE | re.DOTALL)
PSEUDO_CLASSES = frozenset({
    "root", "empty", "first-child", "last-child", "only-child", "first-of-type", "last-of-type", "only-of-type",
    "link", "any-link", "visited", "hover", "active", "focus", "focus-visible", "focus-within", "target", "enabled",
    "disabled", "checked", "indeterminate", "required", "optional", "read-only", "read-write", "placeholder-shown",
    "default", "valid", "invalid", "in-range", "out-of-range", "defined", "scope", "autofill", "modal", "open",
})
_SELECTOR_ARGS = frozenset({"not", "is", "where", "has"})
_NTH_ARGS = frozenset({"nth-child", "nth-last-child", "nth-of-type", "nth-last-of-type"})
_IDENT_ARGS = frozenset({"lang", "dir"})
MAX_SELECTOR = 500


def check_selector(css: str) -> str | None:
    """None when `css` is a selector list querySelectorAll accepts (as far as this recogniser knows), else why not."""
    if not css.strip():
        return "empty selector"
    if len(css) > MAX_SELECTOR:
        return f"selector longer than {MAX_SELECTOR} characters"
    if _CONTROL.search(css):
        return "control characters in the selector"
    try:
        end = _selector_list(css, 0, relative=False)
    except _Bad as bad:
        return str(bad)
    if end != len(css):
        return f"unexpected {css[end]!r} at column {end + 1}"
    return None


class _Bad(Exception):
    pass


def _selector_list(css: str, at: int, relative: bool) -> int:
    """Parse a comma-separated list of complex selectors from `at`; return where it stopped (')' or the end)."""
    while True:
        at = _complex(css, at, relative)
        rest = re.compile(r"\s*,\s*").match(css, at)
        if rest is None:
            return at
        at = rest.end()


def _complex(css: str, at: int, relative: bool) -> int:
    at = re.compile(r"\s*").match(css, at).end()  # type: ignore[union-attr]
    if relative:  # :has(> img)
        lead = re.compile(r"[>+~]\s*").match(css, at)
        if lead:
            at = lead.end()
    at = _compound(css, at)
    while True:
        comb = _COMBINATOR.match(css, at)
        if comb is None or comb.end() == len(css) or css[comb.end()] in ",)":
            # whitespace before ',' / ')' / the end is no combinator; a real one there is an error
            if comb is not None and comb.group(1):
                raise _Bad(f"combinator {comb.group(1)!r} without a selector after it")
            return comb.end() if comb is not None else at
        at = _compound(css, comb.end())


def _compound(css: str, at: int) -> int:
    start = at
    first = True
    while at < len(css):
        simple = _SIMPLE.match(css, at)
        if simple is None:
            break
        if simple["type"] is not None and not first:
            break  # "a.b c": the type selector only opens a compound
        if simple["element"] is not None:
            raise _Bad(f"pseudo-element ::{simple['element']} matches no element (querySelectorAll)")
        at = simple.end()
        pseudo = simple["pseudo"]
        if pseudo is not None:
            name = pseudo.lower()
            if simple["open"]:
                at = _pseudo_arguments(css, at, name)
            elif name not in PSEUDO_CLASSES:
                known = "" if name not in _SELECTOR_ARGS | _NTH_ARGS | _IDENT_ARGS else " without its (arguments)"
                raise _Bad(f"unknown pseudo-class :{pseudo}{known}")
        first = False
    if at == start:
        shown = css[at] if at < len(css) else "the end"
        raise _Bad(f"expected a selector at column {at + 1}, found {shown!r}")
    return at


def _pseudo_arguments(css: str, at: int, name: str) -> int:
    if name in _SELECTOR_ARGS:
        end = _selector_list(css, at, relative=(name == "has"))
    elif name in _NTH_ARGS or name in _IDENT_ARGS:
        close = css.find(")", at)
        if close < 0:
            raise _Bad(f"unclosed :{name}(")
        argument = css[at:close]
        if name in _IDENT_ARGS:
            if not re.fullmatch(rf"\s*{_IDENT}\s*", argument):
                raise _Bad(f":{name}() takes a name, not {argument!r}")
        else:
            nth = _NTH.match(argument)
            if nth is None:
                raise _Bad(f":{name}() takes an+b, odd or even, not {argument!r}")
            if nth["of"]:
                inner = nth["of"]
                if check_selector(inner) is not None:
                    raise _Bad(f":{name}(... of {inner}): {check_selector(inner)}")
        end = close
    else:
        raise _Bad(f"unknown functional pseudo-class :{name}()")
    if end >= len(css) or css[end] != ")":
        raise _Bad(f"unclosed :{name}(")
    return end + 1


# -- the parsed file ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a join or leave (or a page element: participants, microphone, camera), with its file line."""

    kind: str
    css: str
    line: int
    value: Template | None = None  # fill
    timeout: float | None = None  # waits; None = the room's join timeout
    reason: str = ""  # fail_if, progress_while: the refusal
    text: str = ""  # progress_while: what the caller is told
    contains: str = ""  # fail_if: only elements whose text contains this (case-insensitive)


@dataclasses.dataclass(frozen=True)
class StepsSpec:
    """A platform file, checked."""

    path: str
    platform: str
    url: Template
    room_pattern: re.Pattern[str] | None
    room_pattern_line: int
    options: dict[str, Option]
    defaults: dict[str, Any]
    join: tuple[Step, ...]
    leave: tuple[Step, ...]
    participants: Step | None
    microphone: Step | None
    camera: Step | None


def _compose(path: Path) -> yaml.Node | None:
    """The file's YAML node tree, under the settings loader's bounds (size cap, nesting, no anchors or aliases)."""
    return compose_yaml_file(path, "platform file")


class _Parser:
    """Turns the node tree of one file into a StepsSpec; every error names the file and the line."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.platform_expected = path.stem

    def error(self, node: yaml.Node, message: str) -> FileLineError:
        return FileLineError(self.path, node.start_mark.line + 1, message)

    def mapping(self, node: yaml.Node, what: str, required: set[str], optional: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what}: expected a mapping with {', '.join(sorted(required | optional))}")
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key not in required | optional:
                raise self.error(key_node, f"{what}: unknown key {key!r} (known: "
                                 f"{', '.join(sorted(required | optional))})")
            if key in found:
                raise self.error(key_node, f"{what}: {key} given twice")
            found[key] = value_node
        missing = sorted(required - set(found))
        if missing:
            raise self.error(node, f"{what}: missing {', '.join(missing)}")
        return found

    def scalar(self, node: yaml.Node, what: str, kinds: tuple[type, ...]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, f"{what}: expected {' or '.join(k.__name__ for k in kinds)}")
        value = yaml.constructor.SafeConstructor().construct_object(node)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise self.error(node, f"{what}: expected {' or '.join(k.__name__ for k in kinds)}, "
                             f"not {type(value).__name__}")
        return value

    def text(self, node: yaml.Node, what: str, limit: int = 2000) -> str:
        value = self.scalar(node, what, (str,))
        if _CONTROL.search(value) or len(value) > limit:
            raise self.error(node, f"{what}: control characters, or longer than {limit} characters")
        return value

    def selector(self, node: yaml.Node, what: str) -> str:
        css = self.scalar(node, what, (str,))
        problem = check_selector(css)
        if problem is not None:
            raise self.error(node, f"{what}: invalid CSS selector {css!r}: {problem}")
        return css

    def seconds(self, node: yaml.Node, what: str, minimum: float) -> float:
        value = float(self.scalar(node, what, (int, float)))
        if not minimum <= value <= MAX_TIMEOUT:  # also refuses nan and inf
            raise self.error(node, f"{what}: expected seconds between {minimum:g} and {MAX_TIMEOUT:g}, not {value}")
        return value

    def reason(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what, (str,))
        if value not in REFUSALS:
            raise self.error(node, f"{what}: reason must be one of {', '.join(REFUSALS)}, not {value!r}")
        return value

    # -- sections ----------------------------------------------------------------------------------------------
    def parse(self, root: yaml.Node | None) -> StepsSpec:
        if root is None:
            raise FileLineError(self.path, 1, "empty platform file")
        top = self.mapping(root, "platform file", _TOP_REQUIRED, _TOP_OPTIONAL)
        platform = self.scalar(top["platform"], "platform", (str,))
        if platform != self.platform_expected:
            raise self.error(top["platform"], f"platform {platform!r} must equal the file name "
                             f"({self.platform_expected!r})")
        if not PLATFORM_NAME.match(platform):
            raise self.error(top["platform"], f"invalid platform name {platform!r}")
        options, defaults = self.options(top.get("options"))
        names = {"room", "name", *(f"option.{n}" for n in options)}
        url = self.url(top["url"], names, options)
        pattern, pattern_line = None, 0
        if "room_pattern" in top:
            source = self.text(top["room_pattern"], "room_pattern", 500)
            try:
                pattern = re.compile(source)
            except re.error as exc:
                raise self.error(top["room_pattern"], f"room_pattern: invalid regular expression: {exc}") from None
            pattern_line = top["room_pattern"].start_mark.line + 1
        join = self.steps(top["join"], "join", names | {"base_url"}, WATCHERS)
        if not any(step.kind == "wait_for" for step in join):
            raise self.error(top["join"], "join: needs a wait_for step (the sign that the gateway is in the room)")
        leave = self.steps(top["leave"], "leave", names | {"base_url"}, ()) if "leave" in top else ()
        elements = {key: self.element(top[key], key) if key in top else None
                    for key in ("participants", "microphone", "camera")}
        return StepsSpec(self.path, platform, url, pattern, pattern_line, options, defaults, join, leave,
                         elements["participants"], elements["microphone"], elements["camera"])

    def options(self, node: yaml.Node | None) -> tuple[dict[str, Option], dict[str, Any]]:
        if node is None:
            return {}, {}
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, "options: expected a mapping of NAME: {type, secret, help, default}")
        options: dict[str, Option] = {}
        defaults: dict[str, Any] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(name, str) or not _OPTION_NAME.match(name):
                raise self.error(key_node, f"options: invalid option name {name!r} (lowercase letters, digits, _)")
            if name in options:
                raise self.error(key_node, f"options: {name} declared twice")
            if name in COMMON_OPTIONS:
                raise self.error(key_node, f"options: {name} is an option of every platform already")
            what = f"options[{name}]"  # not "NAME:", which redaction masks after a secret-looking name
            fields = self.mapping(value_node, what, {"type"}, {"secret", "help", "default"})
            kind_name = self.scalar(fields["type"], f"{what}.type", (str,))
            if kind_name not in OPTION_TYPES:
                raise self.error(fields["type"], f"{what}.type: one of {', '.join(OPTION_TYPES)}, not {kind_name!r}")
            secret = self.scalar(fields["secret"], f"{what}.secret", (bool,)) if "secret" in fields else False
            if secret and kind_name != "str":
                raise self.error(fields["secret"], f"{what}: a secret option is of type str")
            help_text = self.text(fields["help"], f"{what}.help", 200) if "help" in fields else ""
            option = Option(OPTION_TYPES[kind_name], help_text, secret=secret)
            if "default" in fields:
                if secret:
                    raise self.error(fields["default"], f"{what}: a secret option has no default (a secret is "
                                     "given through the secret path, never written in a platform file)")
                raw = yaml.constructor.SafeConstructor().construct_object(fields["default"], deep=True)
                try:
                    defaults[name] = option.convert(name, raw, self.platform_expected)
                except ValidationError as exc:
                    raise self.error(fields["default"], f"{what}.default: {exc}") from None
            options[name] = option
        return options, defaults

    def url(self, node: yaml.Node, names: set[str], options: dict[str, Option]) -> Template:
        text = self.text(node, "url")
        line = node.start_mark.line + 1
        # The origin is the operator's base_url, never something a room or a name could change.
        if not re.match(r"\{base_url\}(?:[/?#]|$)", text):
            raise self.error(node, "url: must start with {base_url} followed by /, ? or # (or nothing)")
        template = parse_template(text, names | {"base_url"}, line, self.path)
        for name in template.names:
            if name.startswith("option.") and options[name[len("option."):]].secret:
                raise self.error(node, f"url: {{{name}}} is a secret: a URL is logged and shown in errors, "
                                 "type the secret into the page with a fill step")
        return template

    def steps(self, node: yaml.Node, section: str, names: set[str], watchers: tuple[str, ...]) -> tuple[Step, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.error(node, f"{section}: expected a list of steps")
        kinds = [k for k in _STEP_KEYS if k in watchers or k not in WATCHERS]
        steps = []
        for index, item in enumerate(node.value, 1):
            if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
                raise self.error(item, f"{section} step {index}: expected one of {', '.join(kinds)} "
                                 "with its settings, e.g. '- click: {css: \"button.join\"}'")
            key_node, body = item.value[0]
            kind = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if kind not in kinds:
                raise self.error(key_node, f"{section} step {index}: unknown step {kind!r} (known here: "
                                 f"{', '.join(kinds)})")
            steps.append(self.step(kind, body, f"{section} step {index} ({kind})", names))
        return tuple(steps)

    def step(self, kind: str, node: yaml.Node, what: str, names: set[str]) -> Step:
        required, optional = _STEP_KEYS[kind]
        fields = self.mapping(node, what, required, optional)
        line = node.start_mark.line + 1
        values: dict[str, Any] = {"css": self.selector(fields["css"], f"{what}.css")}
        if "value" in fields:
            text = self.text(fields["value"], f"{what}.value")
            values["value"] = parse_template(text, names, fields["value"].start_mark.line + 1, self.path)
        if "timeout" in fields:
            values["timeout"] = self.seconds(fields["timeout"], f"{what}.timeout",
                                             0.0 if kind == "click_if_present" else 0.1)
        elif kind == "click_if_present":
            values["timeout"] = 0.0  # look once: the element is there or it is not
        elif kind == "progress_while":
            values["timeout"] = DEFAULT_PROGRESS_TIMEOUT
        if "reason" in fields:
            values["reason"] = self.reason(fields["reason"], f"{what}.reason")
        elif kind == "progress_while":
            values["reason"] = LOBBY
        if "text" in fields:
            values["text"] = self.text(fields["text"], f"{what}.text", 200)
        if "contains" in fields:
            values["contains"] = self.text(fields["contains"], f"{what}.contains", 200)
        return Step(kind, line=line, **values)

    def element(self, node: yaml.Node, key: str) -> Step:
        fields = self.mapping(node, key, {"css"}, set())
        return Step(key, self.selector(fields["css"], f"{key}.css"), node.start_mark.line + 1)


def parse_platform_file(path: str | Path) -> StepsSpec:
    """Read and check ``<platform>.yaml``; FileLineError (file:line) or ConfigError on any mistake."""
    path = Path(path)
    return _Parser(path).parse(_compose(path))


# -- the Room that runs the steps ----------------------------------------------------------------------------------
# One round trip per poll: for each (css, contains) pair, is an element matching it shown? A selector the browser
# rejects answers its error text instead.
_SHOWN_JS = """
return arguments[0].map(function (probe) {
  var found;
  try { found = document.querySelectorAll(probe[0]); } catch (e) { return String(e.message || e); }
  var want = probe[1].toLowerCase();
  return Array.prototype.some.call(found, function (el) {
    if (!el.getClientRects().length) return false;
    var style = window.getComputedStyle(el);
    if (style.visibility === 'hidden' || style.visibility === 'collapse') return false;
    return !want || (el.textContent || '').toLowerCase().indexOf(want) >= 0;
  });
});
"""


class _Watch:
    """A fail_if / progress_while step being watched, and since when its element is shown."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.shown_since: float | None = None


class StepsRoom(Room):
    """A Room whose join, leave, participant count and keypad toggles are the steps of a platform file."""

    spec: ClassVar[StepsSpec]
    #: injectable for unit tests
    clock: ClassVar[Callable[[], float]] = staticmethod(time.monotonic)
    sleep: ClassVar[Callable[[float], None]] = staticmethod(time.sleep)

    def __init__(self, driver: Any, base_url: str, room: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(driver, base_url, room, options)
        spec = self.spec
        for name, option in spec.options.items():
            if option.secret and name in self.options:
                add_secret(str(self.options[name]))
        self.base_url = check_base_url(self.base_url)
        self.segment = url_path_segment(room)
        if spec.room_pattern is not None and not spec.room_pattern.fullmatch(room):
            raise ValidationError(f"{spec.platform}: room {room!r} does not match room_pattern "
                                  f"{spec.room_pattern.pattern!r} ({spec.path}:{spec.room_pattern_line})")
        self.timeout = float(self.options.get("join_timeout", DEFAULT_TIMEOUT))
        self.display_name = DEFAULT_DISPLAY_NAME
        self._sending = {"microphone": True, "camera": True}  # Room.join's contract: both on after a join
        self._joined = False

    # -- values --------------------------------------------------------------------------------------------------
    def _option_text(self, name: str, line: int) -> str:
        if name in self.options:
            value = self.options[name]
        elif name in self.spec.defaults:
            value = self.spec.defaults[name]
        else:
            how = "--room-secret" if self.spec.options[name].secret else "--room-option"
            raise FileLineError(self.spec.path, line, f"option {name} is not set and has no default (give it "
                                f"with {how})")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def _values(self, templates: list[Template], for_url: bool) -> dict[str, str]:
        """The values of the placeholders `templates` use: percent-encoded (one URL component each) for the URL, as
        typed text (no key codes, no control characters) otherwise. An option that is not set fails here."""
        values: dict[str, str] = {}
        for template in templates:
            for name in template.names - set(values):
                if name.startswith("option."):
                    value = self._option_text(name[len("option."):], template.line)
                elif name == "room":
                    value = self.segment if for_url else self.room
                else:
                    value = self.base_url if name == "base_url" else self.display_name
                if for_url and name != "base_url" and name != "room":
                    value = urllib.parse.quote(value, safe="")
                values[name] = value if for_url else _NOT_TYPED.sub("", value)
        return values

    def _typed(self, steps: tuple[Step, ...]) -> dict[str, str]:
        return self._values([step.value for step in steps if step.value is not None], for_url=False)

    def url(self) -> str:
        """The file's url with the room (one path segment), the display name and options percent-encoded."""
        return self.spec.url.render(self._values([self.spec.url], for_url=True))

    # -- join / leave ------------------------------------------------------------------------------------------
    def join(self, display_name: str) -> None:
        """Open the URL and run the join steps; RoomRefused when a fail_if (or a too long progress_while) says so."""
        self.display_name = display_name
        typed = self._typed(self.spec.join)  # before opening anything: an option that is not set fails now
        self.driver.get(self.url())
        watches: list[_Watch] = []
        for step in self.spec.join:
            self._run(step, watches, typed)
        self._sending = {"microphone": True, "camera": True}
        self._joined = True

    def leave(self) -> None:
        """Run the leave steps (after a completed join only), then go to about:blank whatever happened."""
        joined, self._joined = self._joined, False
        try:
            if joined:  # a refused or broken join has no room to leave: its page may not even have the buttons
                typed = self._typed(self.spec.leave)
                for step in self.spec.leave:
                    self._run(step, [], typed)
        finally:
            self.driver.get("about:blank")

    def participant_count(self) -> int | None:
        """Elements matching the file's participants selector, or None when it has none."""
        element = self.spec.participants
        if element is None:
            return None
        return int(self.driver.execute_script("return document.querySelectorAll(arguments[0]).length", element.css))

    def _toggle(self, which: str, on: bool) -> None:
        """Click the toggle button when the state must change; the gateway keeps the state (joined: on)."""
        element: Step | None = getattr(self.spec, which)
        assert element is not None
        if self._sending[which] == bool(on):
            return
        step = dataclasses.replace(element, kind="click", timeout=TOGGLE_TIMEOUT)
        self._run(step, [], {})
        self._sending[which] = bool(on)

    # -- steps ---------------------------------------------------------------------------------------------------
    def _run(self, step: Step, watches: list[_Watch], typed: Mapping[str, str]) -> None:
        if step.kind in WATCHERS:
            watches.append(_Watch(step))
            self._wait(step, watches, None, 0.0, required=False)  # a refusal already shown ends the join now
            return
        timeout = self.timeout if step.timeout is None else step.timeout
        if step.kind == "wait_for":
            self._wait(step, watches, lambda: True, timeout, required=True)
        elif step.kind == "click":
            self._wait(step, watches, lambda: self._click(step.css), timeout, required=True)
        elif step.kind == "click_if_present":
            self._wait(step, watches, lambda: self._click(step.css), timeout, required=False)
        elif step.kind == "fill":
            assert step.value is not None
            text = step.value.render(typed)
            self._wait(step, watches, lambda: self._fill(step.css, text), timeout, required=True)

    def _wait(self, step: Step, watches: list[_Watch], attempt: Callable[[], bool] | None, timeout: float,
              required: bool) -> bool:
        """Poll until `step`'s element is shown and `attempt()` succeeds, the watchers checked at every poll. The
        wait's own time does not run while a progress_while element is shown (the lobby has its own timeout)."""
        probes = [[w.step.css, w.step.contains] for w in watches]
        if attempt is not None:
            probes.append([step.css, ""])
        left = timeout
        last = self.clock()
        while True:
            shown = self.driver.execute_script(_SHOWN_JS, probes)
            now = self.clock()
            for probe_step, answer in zip([w.step for w in watches] + [step], shown):
                if isinstance(answer, str):
                    raise FileLineError(self.spec.path, probe_step.line, f"the browser rejects the selector "
                                        f"{probe_step.css!r}: {answer}")
            waiting = self._watch(watches, shown[:len(watches)], now)
            if not waiting:
                left -= now - last
            last = now
            if attempt is not None and shown[-1] and attempt():
                return True
            if attempt is None or left <= 0:
                if required:
                    raise TimeoutException(f"{self.spec.platform}: {self.spec.path}:{step.line}: {step.kind} "
                                           f"{step.css!r}: not done after {timeout:g} s")
                return False
            self.sleep(POLL_INTERVAL)

    def _watch(self, watches: list[_Watch], shown: list[bool], now: float) -> bool:
        """Raise RoomRefused for a fail_if shown or a progress_while shown too long; True while one is shown."""
        waiting = False
        for watch, on in zip(watches, shown):
            step = watch.step
            if step.kind == "fail_if":
                if on:
                    raise RoomRefused(step.reason, f"{Path(self.spec.path).name}:{step.line}: {step.css} shown")
                continue
            if not on:
                watch.shown_since = None
                continue
            waiting = True
            if watch.shown_since is None:
                watch.shown_since = now
                self.progress(step.text)
            elif step.timeout is not None and now - watch.shown_since > step.timeout:
                raise RoomRefused(step.reason, f"{Path(self.spec.path).name}:{step.line}: {step.css} still shown "
                                  f"after {step.timeout:g} s")
        return waiting

    def _interactable(self, css: str) -> list[Any]:
        return [e for e in self.driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed() and e.is_enabled()]

    def _click(self, css: str) -> bool:
        """Click the first shown, enabled element; False (poll again) while something covers it or it goes."""
        for element in self._interactable(css):
            try:
                element.click()
                return True
            except (ElementClickInterceptedException, ElementNotInteractableException, StaleElementReferenceException):
                continue
        return False

    def _fill(self, css: str, text: str) -> bool:
        """Type `text` into the first shown, enabled field (its previous content cleared)."""
        for element in self._interactable(css):
            try:
                element.clear()
                element.send_keys(text)
                return True
            except (ElementNotInteractableException, InvalidElementStateException, StaleElementReferenceException):
                continue
        return False


def _set_microphone(self: StepsRoom, on: bool) -> None:
    """Mute or unmute by clicking the file's microphone toggle."""
    self._toggle("microphone", on)


def _set_camera(self: StepsRoom, on: bool) -> None:
    """Turn the camera off or on by clicking the file's camera toggle."""
    self._toggle("camera", on)


def load_steps_platform(path: str | Path) -> type[Room]:
    """The Room subclass described by the platform file `path` (checked as it loads)."""
    spec = parse_platform_file(path)
    namespace: dict[str, Any] = {
        "__doc__": f"Platform {spec.platform!r} described by {spec.path}.",
        "__module__": __name__,
        "platform": spec.platform,
        "OPTIONS": dict(spec.options),
        "spec": spec,
    }
    # Only the toggles the file declares: Room.supports() tells the keypad which keys do something here.
    if spec.microphone is not None:
        namespace["set_microphone"] = _set_microphone
    if spec.camera is not None:
        namespace["set_camera"] = _set_camera
    return type(f"StepsRoom_{spec.platform}", (StepsRoom,), namespace)
