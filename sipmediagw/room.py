"""Page-object base class for conferencing platforms, and the loader of platform drivers from ``browsing/``.

A driver is a module ``browsing/<platform>.py`` defining one subclass of :class:`Room`. The gateway loads it at run
time from the folder mounted read-only into the container, so a site can add a platform without rebuilding the image.
"""

from __future__ import annotations

import abc
import importlib.util
import inspect
import re
import urllib.parse
from pathlib import Path
from typing import Any

from .errors import ConfigError, ValidationError

PLATFORM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
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


class Room(abc.ABC):
    """One web-conference room, driven through a Selenium WebDriver.

    `base_url` is the conferencing service (e.g. ``https://rendez-vous.renater.fr``), `room` the room name as the
    user gave it. Subclasses must keep hostile room names inside the URL (encode or reject).
    """

    #: platform name, matching the module file name
    platform: str = ""

    def __init__(self, driver: Any, base_url: str, room: str, options: dict[str, Any] | None = None) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.room = room
        self.options = dict(options or {})

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
    """Import ``<directory>/<platform>.py`` and return its :class:`Room` subclass."""
    if not PLATFORM_NAME.match(platform):
        raise ConfigError(f"invalid platform name {platform!r} (lowercase letters, digits, underscore)")
    path = Path(directory) / f"{platform}.py"
    if not path.is_file():
        available = sorted(p.stem for p in Path(directory).glob("*.py") if not p.stem.startswith("_"))
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

    def check(self, platform: str, base_url: str, room: str) -> None:
        """Raise ValidationError/ConfigError when the driver refuses this room (e.g. a non-numeric Janus room id):
        drivers validate in their constructor, which touches no browser, so no page is opened for this. A
        constructor failing otherwise (one that needs its browser) is no refusal: that room is checked by joining."""
        cls = self.get(platform)
        try:
            cls(None, base_url, room)
        except ConfigError:
            raise
        except Exception:
            return
