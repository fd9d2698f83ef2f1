"""Page-object base class for conferencing platforms, and the loader of platform drivers from ``browsing/``.

A driver is a module ``browsing/<platform>.py`` defining one subclass of :class:`Room`. The gateway loads it at run
time from the folder mounted read-only into the container, so a site can add a platform without rebuilding the image.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
import math
import inspect
import re
import urllib.parse
from pathlib import Path
from typing import Any, Callable, ClassVar

from .errors import ConfigError, ValidationError

#: seconds between two looks at a page while a driver waits for it. Selenium's WebDriverWait looks every 0.5 s by
#: default: a join's last wait (the room says "joined") then ends up to 0.5 s after the fact, while the caller rings
#: (a look is one script round trip, a few ms of CPU).
PAGE_POLL_S = 0.05

PLATFORM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
DRIVER_SUFFIXES = (".py", ".yaml")  # a driver in Python, or the steps of a platform described in YAML (room_steps)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_base_url(base_url: str, what: str = "base URL") -> str:
    """`base_url` without its trailing slash, if it is an http(s) URL with a host and no query, fragment or user
    info (the one URL check of host and gateway; errors show the URL with any user:password masked)."""
    shown = re.sub(r"//[^/?#]*@", "//***@", base_url)
    expected = f"invalid {what} {shown!r}: expected http(s)://host[:port][/path]"
    try:
        parts = urllib.parse.urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number in 0-65535
    except ValueError as exc:  # urlsplit: 'https://[::1' (unbalanced IPv6 bracket), 'https://h:abc' and the like
        raise ValidationError(f"{expected} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(expected)
    if parts.username is not None or parts.password is not None:
        raise ValidationError(f"the {what} must not contain a user or password")
    if _CONTROL.search(base_url) or any(ch.isspace() for ch in base_url):
        raise ValidationError(f"{expected}: contains whitespace or control characters")
    # a bare '?' or '#' leaves query and fragment empty, yet the room appended to it would land there
    if parts.query or parts.fragment or base_url.endswith(("?", "#")):
        raise ValidationError(f"{expected}: no ?query or #fragment (the room is appended to it)")
    return base_url.rstrip("/")


def url_path_segment(value: str, what: str = "room name") -> str:
    """`value` percent-encoded as ONE path segment; rejects what no encoding makes safe (empty, dots, controls)."""
    if not value or not value.strip():
        raise ValidationError(f"empty {what}")
    if _CONTROL.search(value):
        raise ValidationError(f"{what} {value!r} contains control characters")
    if value.strip(".") == "":
        raise ValidationError(f"{what} {value!r} is a relative path segment")
    if len(value) > 200:
        raise ValidationError(f"{what} is longer than 200 characters")
    return urllib.parse.quote(value, safe="")


# -- what a platform answered when it would not let the gateway in: notice.py tells the caller in these words, the
# -- state file and `status` show the reason and its detail.
NOT_FOUND = "not_found"  # no such meeting / room
NOT_STARTED = "not_started"  # the meeting has not started (waiting for the moderator) within the driver's retries
LOBBY = "lobby"  # the gateway knocked and was refused, or nobody let it in in time
WRONG_PASSWORD = "wrong_password"  # the room's password (option or keypad) was refused, or none was given
AUTH_REQUIRED = "auth_required"  # the platform wants a login or token the gateway does not have
REFUSALS = (NOT_FOUND, NOT_STARTED, LOBBY, WRONG_PASSWORD, AUTH_REQUIRED)


class RoomRefused(Exception):
    """Raised by a driver's join when the platform answered but will not let the gateway in: `reason` is one of
    REFUSALS (what the caller is told), `detail` a short technical line for the state file (never a secret)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REFUSALS:
            raise ValueError(f"unknown refusal {reason!r}")
        self.reason = reason
        self.detail = detail
        # "refused (wrong password): ..." - never "wrong_password: ...", which the log masker reads as a key: value
        words = f"refused ({reason.replace('_', ' ')})"
        super().__init__(f"{words}: {detail}" if detail else words)


@dataclasses.dataclass(frozen=True)
class Option:
    """One driver option (``--room-option KEY=VALUE``, ``room_options:`` in the settings): its type, a one-line
    help, and whether it is a secret (given only through the secret path: ``--room-secret KEY=FILE``, never on a
    command line, in the environment, a label or a log)."""

    kind: type = str  # str, int, float, bool, or dict (settings file only)
    help: str = ""
    secret: bool = False
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def convert(self, name: str, value: Any, platform: str) -> Any:
        """`value` (a string from the command line, or a YAML value) as this option's type; ValidationError
        naming the option (never its value when secret) when it is not one."""
        shown = "" if self.secret else f" {value!r}"
        bad = ValidationError(f"{platform}: option {name}:{shown} is not {_KIND_WORDS.get(self.kind, 'valid')}")
        if self.kind is bool:
            if isinstance(value, bool):
                converted: Any = value
            elif str(value).strip().lower() in ("1", "true", "yes", "on"):
                converted = True
            elif str(value).strip().lower() in ("0", "false", "no", "off"):
                converted = False
            else:
                raise bad
        elif self.kind in (int, float):
            if isinstance(value, bool):
                raise bad
            try:
                converted = self.kind(value)
            except (TypeError, ValueError, OverflowError):
                raise bad from None
            if not math.isfinite(converted):
                raise bad
            if (self.minimum is not None and converted < self.minimum) or (
                    self.maximum is not None and converted > self.maximum):
                raise ValidationError(f"{platform}: option {name}: {converted} is out of range "
                                      f"[{self.minimum}, {self.maximum}]")
        elif self.kind is dict:
            if not isinstance(value, dict):
                raise bad
            converted = dict(value)
        else:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise bad
            converted = str(value)
            if _CONTROL.search(converted) or len(converted) > 4096:
                raise ValidationError(f"{platform}: option {name} has control characters or is too long")
        if self.choices and converted not in self.choices:
            raise ValidationError(f"{platform}: option {name}:{shown} is not one of "
                                  f"{', '.join(map(str, self.choices))}")
        return converted


_KIND_WORDS = {str: "a text", int: "a whole number", float: "a number", bool: "true or false",
               dict: "a mapping (settings file only)"}

#: options every driver takes
COMMON_OPTIONS: dict[str, Option] = {
    "join_timeout": Option(float, "seconds the driver waits for the room at most", minimum=1, maximum=600),
    "audio_only": Option(bool, "join without a camera (set by the gateway for audio-only gateways)"),
}


class Room(abc.ABC):
    """One web-conference room, driven through a Selenium WebDriver.

    `base_url` is the conferencing service (e.g. ``https://rendez-vous.renater.fr``), `room` the room name as the
    user gave it. Subclasses must keep hostile room names inside the URL (encode or reject).
    """

    #: platform name, matching the module file name
    platform: str = ""

    #: the options this driver takes beyond COMMON_OPTIONS (name -> Option); others are refused at launch
    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, driver: Any, base_url: str, room: str, options: dict[str, Any] | None = None) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.room = room
        self.options = self.check_options(options or {})
        #: set by the gateway: show a line of progress to the caller and in `status` (e.g. "waiting to be let in")
        self.on_progress: Callable[[str], None] | None = None
        #: set by the gateway: ask the caller for digits on the keypad (prompt, timeout s) -> the digits typed before
        #: '#', or None when the caller cannot be asked (no keypad menu) or gave up
        self.on_ask: Callable[[str, float], str | None] | None = None

    @classmethod
    def option_specs(cls) -> dict[str, Option]:
        """Every option this driver takes, by name."""
        return {**COMMON_OPTIONS, **cls.OPTIONS}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """`options` converted to their types; ValidationError naming the first unknown or invalid one."""
        specs = cls.option_specs()
        checked = {}
        for name, value in options.items():
            spec = specs.get(name)
            if spec is None:
                raise ValidationError(f"{cls.platform or cls.__name__}: unknown room option {name!r} "
                                      f"(known: {', '.join(sorted(specs))})")
            checked[name] = spec.convert(name, value, cls.platform or cls.__name__)
        return checked

    def progress(self, text: str) -> None:
        """Tell the caller (and `status`) what the join waits for; a no-op when nobody listens."""
        if self.on_progress is not None:
            self.on_progress(text)

    def ask_caller(self, prompt: str, timeout: float = 60.0) -> str | None:
        """Digits the caller types on the keypad after `prompt` (ended by '#'), or None when not possible."""
        if self.on_ask is None:
            return None
        return self.on_ask(prompt, timeout)

    @abc.abstractmethod
    def url(self) -> str:
        """The URL that opens this room."""

    @abc.abstractmethod
    def join(self, display_name: str) -> None:
        """Open the room and enter it under `display_name`, with microphone and camera on."""

    @abc.abstractmethod
    def leave(self) -> None:
        """Leave the room cleanly (hang up), leaving the browser on a blank page."""

    def participant_count(self) -> int | None:
        """Number of participants in the room including the gateway, or None when the page does not tell."""
        return None

    # -- keypad controls (docs/dialplan.md "Keys in a call"): a driver overrides what its platform has; the caller
    # -- sees "not available here" for the others. Each is one short page action (the event loop waits for it).

    def set_microphone(self, on: bool) -> None:
        """Mute or unmute the gateway's microphone in the room."""
        raise NotImplementedError(f"{self.platform}: microphone toggle not supported")

    def set_camera(self, on: bool) -> None:
        """Turn the gateway's camera on or off in the room."""
        raise NotImplementedError(f"{self.platform}: camera toggle not supported")

    def toggle_view(self) -> str | None:
        """Switch between tile (gallery) and speaker view; return the new view's name when the page tells."""
        raise NotImplementedError(f"{self.platform}: view toggle not supported")

    def raise_hand(self, up: bool) -> None:
        """Raise (or lower) the gateway's hand."""
        raise NotImplementedError(f"{self.platform}: raise hand not supported")

    def show_participants(self, shown: bool) -> None:
        """Show (or hide) the page's list of participants."""
        raise NotImplementedError(f"{self.platform}: participant list not supported")

    @classmethod
    def supports(cls, capability: str) -> bool:
        """True when this driver implements `capability` (one of CAPABILITIES), i.e. overrides Room's method."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown room capability {capability!r}")
        return getattr(cls, capability) is not getattr(Room, capability)

    def _set_sent_tracks(self, kind: str, on: bool) -> None:
        """Enable/disable the tracks of `kind` ("audio"/"video") the gateway's getUserMedia gave this page (inject.js):
        a disabled track is sent as silence / black frames, whatever the page does with it. Raise when none exists."""
        count = self.driver.execute_script(
            "const g = window.__sipmediagw; return g && g.setEnabled ? g.setEnabled(arguments[0], arguments[1]) : -1;",
            kind, bool(on))
        if count is None or int(count) < 0:
            raise RuntimeError(f"{self.platform}: the page has no sipmediagw media hook (inject.js not loaded)")
        if int(count) == 0:
            raise RuntimeError(f"{self.platform}: the page took no {kind} track from the gateway")


#: the optional keypad capabilities of a Room, by method name
CAPABILITIES = ("set_microphone", "set_camera", "toggle_view", "raise_hand", "show_participants")


def load_room_driver(platform: str, directory: str | Path) -> type[Room]:
    """Import ``<directory>/<platform>.py`` and return its :class:`Room` subclass, or build one from the steps of
    ``<directory>/<platform>.yaml`` (sipmediagw.room_steps) for a platform an operator described without Python."""
    if not PLATFORM_NAME.match(platform):
        raise ConfigError(f"invalid platform name {platform!r} (lowercase letters, digits, underscore)")
    path = Path(directory) / f"{platform}.py"
    steps_path = Path(directory) / f"{platform}.yaml"
    if steps_path.is_file():
        if path.is_file():  # which one runs would be a guess: the operator must remove one
            raise ConfigError(f"platform {platform!r} is defined twice, by {path} and {steps_path}: remove one")
        from .room_steps import load_steps_platform  # here: room_steps builds on this module

        return load_steps_platform(steps_path)
    if not path.is_file():
        available = sorted({p.stem for suffix in DRIVER_SUFFIXES for p in Path(directory).glob(f"*{suffix}")
                            if not p.stem.startswith("_")})
        raise ConfigError(f"no driver for platform {platform!r} in {directory} (available: {', '.join(available)})")
    spec = importlib.util.spec_from_file_location(f"sipmediagw_browsing_{platform}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Room) and obj is not Room and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise ConfigError(f"{path}: expected exactly one Room subclass, found {len(classes)}")
    return classes[0]


class RoomDrivers:
    """Driver classes by platform, each module loaded once from `directory` (a pool gateway's calls may land on
    different platforms; the first call to each pays the import)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._loaded: dict[str, type[Room]] = {}

    def get(self, platform: str) -> type[Room]:
        """The Room subclass of `platform`; ConfigError when there is no such driver."""
        if platform not in self._loaded:
            self._loaded[platform] = load_room_driver(platform, self.directory)
        return self._loaded[platform]

    def check(self, platform: str, base_url: str, room: str, options: dict[str, Any] | None = None) -> None:
        """Raise ValidationError/ConfigError when the driver refuses this room (e.g. a non-numeric Janus room id):
        drivers validate in their constructor, which touches no browser, so no page is opened for this. A
        constructor failing otherwise (one that needs its browser) is no refusal: that room is checked by joining."""
        cls = self.get(platform)
        cls.check_options(options or {})
        try:
            cls(None, base_url, room, options)
        except (ConfigError, ValidationError):
            raise
        except Exception:
            return
