"""The keypad controls' browser side: what the caller sees drawn over the room page, and the room's capabilities.

:class:`BrowserControls` implements incall.RoomControls for the gateway's Chromium: the overlay (overlay.js: a
persistent badge with the call's state and a panel that hides itself) is drawn over whatever page the room display
shows, and the keypad's actions go to the current room's driver (sipmediagw.room.Room's optional capabilities).

Every method is one short WebDriver round trip under the browser's lock (the supervisor's loop waits for it): the
overlay is local DOM work, a driver's action one click or script. A page whose JavaScript hangs would still block
WebDriver; nothing here waits on the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from ..room import Room

OVERLAY_JS = Path(__file__).with_name("overlay.js")


@dataclasses.dataclass(frozen=True)
class Panel:
    """The overlay's centre panel: a title, key lines ``(key, label, note, available)`` and/or a message.

    `kind` says what it is for machines (the overlay's ``data-panel``): ``help``, ``info``, ``end``;
    `tone` ``end`` draws it red-framed (the call is about to end)."""

    title: str = ""
    lines: tuple[tuple[str, str, str, bool], ...] = ()
    message: str = ""
    kind: str = "info"
    tone: str = "info"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for overlay.js."""
        return {"title": self.title, "lines": [list(line) for line in self.lines], "message": self.message,
                "kind": self.kind, "tone": self.tone}


def overlay_script() -> str:
    """overlay.js as the body execute_script runs (its function applied to the first argument)."""
    # (parenthesised: the file starts with // comments, and `return` followed by a line break returns nothing)
    return "return (" + OVERLAY_JS.read_text(encoding="utf-8").strip().rstrip(";") + "\n)(arguments[0]);"


class BrowserControls:
    """incall.RoomControls over a Selenium driver: `driver()` gives the current WebDriver (None: no browser), `room()`
    the Room driver object of the call (None: not in a room), `lock()` the lock to hold while driving the page."""

    def __init__(self, driver: Callable[[], Any], room: Callable[[], Room | None],
                 lock: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> None:
        self._driver = driver
        self._room = room
        self._lock = lock
        self._script = overlay_script()

    def supports(self, capability: str) -> bool:
        """True when the room's driver implements `capability` (room.CAPABILITIES)."""
        room = self._room()
        return room is not None and type(room).supports(capability)

    def perform(self, capability: str, *args: Any) -> Any:
        """Call the room driver's `capability` method; NotImplementedError when it has none (or no room is open)."""
        room = self._room()
        if room is None:
            raise NotImplementedError("not in a room")
        with self._lock():
            return getattr(room, capability)(*args)

    def participant_count(self) -> int | None:
        """Participants in the room including the gateway (None: the page does not tell, or no room)."""
        room = self._room()
        if room is None:
            return None
        with self._lock():
            return room.participant_count()

    def draw(self, badge: Sequence[str], panel: Panel | None, seconds: float) -> bool:
        """Draw the badge lines and `panel` (hidden after `seconds`; None or <= 0: no panel) over the page shown.
        Returns True when the overlay was (re)created, i.e. the page was new to it."""
        driver = self._driver()
        if driver is None:
            return False
        state = {"badge": list(badge), "panel": panel.as_dict() if panel else None,
                 "ms": int(seconds * 1000) if panel is not None and seconds > 0 else 0}
        with self._lock():
            return bool(driver.execute_script(self._script, state))
