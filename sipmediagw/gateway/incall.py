"""Keypad controls in the room and the call's timeouts: the controller's CallWatch (docs/dialplan.md "Keys in a call",
"Timeouts").

A room system's keypad and screen are the caller's whole interface, so every key's effect and every reason the call
ends is drawn on the room display (the video the caller receives) through :class:`RoomControls` (overlay.py in the
gateway). Nothing here reads the time by itself or touches a browser: the clock and the controls are injected, so
unit tests drive it with fakes.

Timeouts (each 0 = off):

* **alone**: the room's page says the gateway is the only participant (Room.participant_count() <= 1) for `alone`
  seconds in a row; the page is asked every ``participant_interval`` seconds (one short WebDriver call);
* **no media**: nothing from the caller for `no_media` seconds. baresip 1.0.0 reports media to ctrl_tcp in two
  events only: CALL_RTPESTAB (a stream's first RTP packet) and CALL_RTCP (each RTCP sender report of the caller,
  about every 5 s per stream, whose ``rtcp_stats.rx.sent`` counts the RTP packets received from it). Media counts
  as flowing while that counter grows. A caller that never sent RTP ends `no_media` after the answer; one that sends
  RTP but no RTCP cannot be judged from events: baresip's own ``rtp_timeout`` (rendered as `no_media` +
  :data:`BACKSTOP_MARGIN`, see :func:`rtp_timeout_backstop`) ends it, without the notice (baresip sends the BYE);
* **max call**: `max_call` seconds after the answer.

When one fires, the reason is shown on the caller's screen for ``notice_seconds``, then the call is hung up with that
reason (the state file's ``last_end_reason``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Callable, Protocol, Sequence

from .logs import get_logger
from .overlay import Panel

DEFAULT_ALONE_TIMEOUT = 300.0  # a caller may dial in before the others arrive: 5 minutes alone
DEFAULT_NO_MEDIA_TIMEOUT = 60.0  # baresip's rtp_timeout of the config template before this setting existed
DEFAULT_MAX_CALL_DURATION = 14400.0  # 4 h: longer than any meeting, short of a room system forgotten overnight
BACKSTOP_MARGIN = 20.0  # s: baresip's rtp_timeout comes after ours (RTCP every ~5 s + the notice shown)

# actions
MICROPHONE = "microphone"
CAMERA = "camera"
VIEW = "view"
HAND = "hand"
PARTICIPANTS = "participants"
LEAVE = "leave"
HELP = "help"


@dataclasses.dataclass(frozen=True)
class KeyBinding:
    """One keypad key in a call: the action, its label on the help panel, the Room capability it needs."""

    key: str
    action: str
    label: str
    capability: str | None = None


#: the in-call key map (docs/dialplan.md "Keys in a call"); keys not listed (6-9, *) do nothing
KEY_MAP: tuple[KeyBinding, ...] = (
    KeyBinding("1", MICROPHONE, "Microphone on / off", "set_microphone"),
    KeyBinding("2", CAMERA, "Camera on / off", "set_camera"),
    KeyBinding("3", VIEW, "Tile / speaker view", "toggle_view"),
    KeyBinding("4", HAND, "Raise / lower hand", "raise_hand"),
    KeyBinding("5", PARTICIPANTS, "Show / hide participants", "show_participants"),
    KeyBinding("0", LEAVE, "Leave the meeting"),
    KeyBinding("#", HELP, "Show these keys"),
)
_BY_KEY = {binding.key: binding for binding in KEY_MAP}
NOT_AVAILABLE = "not available here"


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """The call's timeouts in seconds; 0 turns one off."""

    alone: float = DEFAULT_ALONE_TIMEOUT
    no_media: float = DEFAULT_NO_MEDIA_TIMEOUT
    max_call: float = DEFAULT_MAX_CALL_DURATION

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ValueError(f"timeout {field.name} must be a number of seconds >= 0, got {value!r}")


def rtp_timeout_backstop(no_media: float) -> int:
    """baresip's ``rtp_timeout`` (whole seconds; 0 = off) behind a `no_media` timeout: later than ours, so the
    caller is told first whenever the events let us judge, and still ending a call baresip alone can judge."""
    return 0 if no_media <= 0 else int(math.ceil(no_media + BACKSTOP_MARGIN))


def _duration(seconds: float) -> str:
    """`seconds` for people: 45 seconds, 5 minutes, 4 hours, 90 minutes."""
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours > 1 else ''}"
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"{seconds:g} seconds"


class CallHandle(Protocol):
    """What the watch needs of its call (controller.WatchedCall)."""

    @property
    def in_room(self) -> bool: ...

    def hangup(self, reason: str) -> None: ...


class RoomControls(Protocol):
    """The browser side (overlay.BrowserControls): the room driver's capabilities and the overlay."""

    def supports(self, capability: str) -> bool:
        """True when the current room's driver implements `capability`."""

    def perform(self, capability: str, *args: Any) -> Any:
        """Call the driver's capability; NotImplementedError when it lacks it."""

    def participant_count(self) -> int | None:
        """Participants including the gateway; None when the page does not tell."""

    def draw(self, badge: Sequence[str], panel: Panel | None, seconds: float) -> bool:
        """Draw the badge lines and the panel (hidden after `seconds`) over the page shown."""


class InCall:
    """controller.CallWatch: the keypad's in-call keys (KEY_MAP) and the call's timeouts, for one call at a time."""

    def __init__(
        self,
        controls: RoomControls,
        timeouts: Timeouts = Timeouts(),
        *,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
        help_seconds: float = 8.0,
        info_seconds: float = 3.0,
        hint_seconds: float = 6.0,
        notice_seconds: float = 4.0,
        leave_seconds: float = 2.0,
        participant_interval: float = 2.0,
        redraw_interval: float = 5.0,
    ) -> None:
        self.controls = controls
        self.timeouts = timeouts
        self.clock = clock
        self._log = log or get_logger("incall")
        self.help_seconds = help_seconds
        self.info_seconds = info_seconds
        self.hint_seconds = hint_seconds
        self.notice_seconds = notice_seconds
        self.leave_seconds = leave_seconds
        self.participant_interval = participant_interval
        self.redraw_interval = redraw_interval
        self._reset()

    def _reset(self) -> None:
        self.call: CallHandle | None = None
        self.started_at = 0.0
        self.last_media = 0.0
        self.rtp_started = False  # CALL_RTPESTAB seen: the caller sent RTP
        self.rtcp_seen = False  # CALL_RTCP with stats seen: the caller's RTCP tells us whether RTP still comes
        self._received: dict[str, int] = {}  # stream ("audio"/"video") -> rtcp_stats.rx.sent last seen
        self.in_room = False
        self.alone_since: float | None = None
        self.participants: int | None = None  # last count the page gave
        self._next_count = 0.0
        self._next_redraw = 0.0
        self.microphone = True  # the room is joined with microphone and camera on
        self.camera = True
        self.hand = False
        self.participants_shown = False
        self.panel: Panel | None = None
        self._panel_until = 0.0
        self.ending: tuple[float, str] | None = None  # (hang-up time, reason) once a reason to end was found

    # -- CallWatch ----------------------------------------------------------------------------------------------
    def start(self, call: CallHandle) -> None:
        """A call is answered: the max-duration and no-media timers start now."""
        self._reset()
        self.call = call
        self.started_at = self.last_media = self.clock()

    def joined(self) -> None:
        """The call is in its room: keys work from now on; the caller is told how to see them."""
        if self.call is None:
            return
        now = self.clock()
        self.in_room = True
        self.alone_since = None
        self._next_count = now
        self._show(Panel(message="Press # for the keypad controls", kind="hint"), self.hint_seconds)

    def key(self, key: str) -> None:
        """A DTMF key in the room (KEY_MAP); other keys, and keys once the call is ending, do nothing."""
        if self.call is None or not self.in_room or self.ending is not None:
            return
        binding = _BY_KEY.get(key)
        if binding is None:
            self._log.info("key %r: no in-call action", key)
            return
        self._log.info("key %r: %s", key, binding.action)
        if binding.action == HELP:
            self._show(self.help_panel(), self.help_seconds)
        elif binding.action == LEAVE:
            self._end("caller left with the keypad (key 0)", "Leaving the meeting. Goodbye.", self.leave_seconds)
        else:
            self._toggle(binding)

    def media(self, event: dict[str, Any]) -> None:
        """CALL_RTPESTAB / CALL_RTCP of the call: evidence that the caller's media arrives."""
        if self.call is None:
            return
        kind = event.get("type")
        if kind == "CALL_RTPESTAB":
            self.rtp_started = True
            self.last_media = self.clock()
            return
        if kind != "CALL_RTCP":
            return
        stats = event.get("rtcp_stats")
        received = stats.get("rx", {}).get("sent") if isinstance(stats, dict) else None
        if not isinstance(received, int) or isinstance(received, bool):
            return
        if not self.rtcp_seen:
            self._log.info("the caller sends RTCP: no-media timeout judged by its reports")
        self.rtcp_seen = True
        stream = str(event.get("param") or "")
        before = self._received.get(stream)
        self._received[stream] = received
        if received > (before if before is not None else 0):
            self.rtp_started = True
            self.last_media = self.clock()

    def poll(self) -> None:
        """Timeouts, the participant count, the overlay's upkeep; hangs up once an ending's notice was shown."""
        if self.call is None:
            return
        now = self.clock()
        if self.ending is not None:
            deadline, reason = self.ending
            if now >= deadline:
                call, self.call = self.call, None  # once: the controller's CALL_CLOSED then stops us
                call.hangup(reason)
            return
        if self._check_timeouts(now):
            return
        if self.in_room and now >= self._next_redraw:
            self._next_redraw = now + self.redraw_interval
            if self.badge() or self.panel is not None:
                self._draw()  # a page that rebuilt its DOM (or navigated) gets the overlay back

    def stop(self) -> None:
        """The call is over."""
        self._reset()

    # -- what the caller sees -----------------------------------------------------------------------------------
    def badge(self) -> list[str]:
        """The persistent state lines (empty: nothing unusual)."""
        if not self.in_room:
            return []
        return ([] if self.microphone else ["Microphone off"]) + ([] if self.camera else ["Camera off"]) + \
            (["Hand raised"] if self.hand else [])

    def help_panel(self) -> Panel:
        """The keys, each with its state or "not available here"."""
        lines = []
        for binding in KEY_MAP:
            available = binding.capability is None or self._supports(binding.capability)
            note = self._state_note(binding.action) if available else NOT_AVAILABLE
            lines.append((binding.key, binding.label, note, available))
        return Panel(title="Keypad controls", lines=tuple(lines), kind="help")

    def _state_note(self, action: str) -> str:
        return {MICROPHONE: "on" if self.microphone else "OFF", CAMERA: "on" if self.camera else "OFF",
                HAND: "raised" if self.hand else "", PARTICIPANTS: "shown" if self.participants_shown else ""
                }.get(action, "")

    # -- keys ---------------------------------------------------------------------------------------------------
    def _supports(self, capability: str) -> bool:
        try:
            return bool(self.controls.supports(capability))
        except Exception as exc:
            self._log.warning("cannot tell whether the room supports %s: %s", capability, exc)
            return False

    def _toggle(self, binding: KeyBinding) -> None:
        assert binding.capability is not None
        unavailable = Panel(lines=((binding.key, binding.label, NOT_AVAILABLE, False),), kind="unavailable")
        if not self._supports(binding.capability):
            self._show(unavailable, self.info_seconds)
            return
        args: tuple[Any, ...] = {
            MICROPHONE: (not self.microphone,), CAMERA: (not self.camera,), HAND: (not self.hand,),
            PARTICIPANTS: (not self.participants_shown,), VIEW: (),
        }[binding.action]
        try:
            result = self.controls.perform(binding.capability, *args)
        except NotImplementedError:
            self._show(unavailable, self.info_seconds)
            return
        except Exception as exc:  # a page that changed under us: tell the caller, keep the call
            self._log.warning("key %s (%s) failed: %s", binding.key, binding.action, exc)
            self._show(Panel(lines=((binding.key, binding.label, "failed", False),), kind="failed"), self.info_seconds)
            return
        if binding.action == MICROPHONE:
            self.microphone = not self.microphone
            message = "Microphone on" if self.microphone else "Microphone off"
        elif binding.action == CAMERA:
            self.camera = not self.camera
            message = "Camera on" if self.camera else "Camera off"
        elif binding.action == HAND:
            self.hand = not self.hand
            message = "Hand raised" if self.hand else "Hand lowered"
        elif binding.action == PARTICIPANTS:
            self.participants_shown = not self.participants_shown
            message = "Participants shown" if self.participants_shown else "Participants hidden"
        else:
            message = f"View: {result}" if isinstance(result, str) and result else "View switched"
        self._log.info("%s", message)
        self._show(Panel(message=message, kind=binding.action), self.info_seconds)

    # -- timeouts -----------------------------------------------------------------------------------------------
    def _check_timeouts(self, now: float) -> bool:
        """End the call if a timeout is due (True)."""
        limits = self.timeouts
        if limits.max_call > 0 and now - self.started_at >= limits.max_call:
            self._end(f"maximum call duration reached ({limits.max_call:g} s)",
                      f"This call has reached its maximum duration ({_duration(limits.max_call)}). It ends now.")
            return True
        if limits.no_media > 0 and now - self.last_media >= limits.no_media \
                and (self.rtcp_seen or not self.rtp_started):
            self._end(f"no media from the caller for {limits.no_media:g} s",
                      f"Nothing was received from you for {_duration(limits.no_media)}. The call ends now.")
            return True
        if not self.in_room or limits.alone <= 0:
            return False
        if now >= self._next_count:
            self._next_count = now + self.participant_interval
            try:
                self.participants = self.controls.participant_count()
            except Exception as exc:  # unknown is not alone
                self._log.warning("participant count failed: %s", exc)
                self.participants = None
            if self.participants is not None and self.participants <= 1:
                if self.alone_since is None:
                    self._log.info("alone in the room")
                    self.alone_since = now
            else:
                self.alone_since = None
        if self.alone_since is not None and now - self.alone_since >= limits.alone:
            self._end(f"alone in the room for {limits.alone:g} s",
                      f"Nobody else has been in the meeting for {_duration(limits.alone)}. The call ends now.")
            return True
        return False

    def _end(self, reason: str, text: str, seconds: float | None = None) -> None:
        """Tell the caller why the call ends, and hang up once they had `seconds` to read it (poll)."""
        seconds = self.notice_seconds if seconds is None else seconds
        self._log.info("ending the call: %s", reason)
        self.ending = (self.clock() + seconds, reason)
        self._show(Panel(message=text, kind="end", tone="end"), seconds + 5.0)  # stays until the BYE

    # -- overlay ------------------------------------------------------------------------------------------------
    def _show(self, panel: Panel, seconds: float) -> None:
        self.panel, self._panel_until = panel, self.clock() + seconds
        self._draw()

    def _draw(self) -> None:
        remaining = self._panel_until - self.clock()
        if remaining <= 0:
            self.panel = None
        try:
            self.controls.draw(self.badge(), self.panel, remaining if self.panel is not None else 0.0)
        except Exception as exc:  # the overlay is a courtesy: a failing page must not end the call
            self._log.warning("overlay not drawn: %s", exc)
