"""baresip events -> gateway actions: registration state, one call bridged into the room at a time.

The supervisor pumps :attr:`BaresipControl.events` into :meth:`Controller.handle` from one thread (its main loop) and
maps the controller's attributes to the state file whenever ``on_change`` fires. Event names and fields are those of
baresip 1.0.0's ctrl_tcp (docs/baresip.md). Stdlib only: this module runs inside the gateway container.
"""

from __future__ import annotations

import logging
import queue
import re
import time
import urllib.parse
from typing import Any, Callable, Protocol

from .baresip import DISCONNECTED, BaresipControl, BaresipControlError
from .logs import get_logger, strip_ansi

DEFAULT_DISPLAY_NAME = "SIP gateway"
_MAX_NAME = 64
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class RoomSession(Protocol):
    """What the controller needs from the browser side: enter the room under a name, and leave it."""

    def join(self, display_name: str) -> None:
        """Enter the room as `display_name` with microphone and camera on; raise on failure."""

    def leave(self) -> None:
        """Leave the room, leaving the browser ready for the next call."""


def caller_display_name(event: dict[str, Any], default: str = DEFAULT_DISPLAY_NAME) -> str:
    """The name to show in the room: the caller's SIP display name, else the user part of its URI, else `default`."""
    name = str(event.get("peerdisplayname") or "").strip()
    if not name:
        uri = str(event.get("peeruri") or event.get("param") or "")
        match = re.match(r"^(?:sips?|tel):([^@;>]+)@", uri)
        name = urllib.parse.unquote(match[1]) if match else ""
    name = _CONTROL_CHARS.sub("", name).strip()[:_MAX_NAME]
    return name or default


class Controller:
    """Turns baresip events into room joins/leaves and registration state (one call per gateway).

    Not thread-safe by design: call :meth:`handle`, :meth:`pump` and :meth:`hangup_and_wait` from one thread.
    """

    def __init__(
        self,
        control: BaresipControl,
        room: RoomSession,
        on_change: Callable[[], None],
        once: bool = False,
        *,
        default_display_name: str = DEFAULT_DISPLAY_NAME,
        on_dtmf: Callable[[str], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.control = control
        self.room = room
        self.on_change = on_change
        self.once = once
        self.default_display_name = default_display_name
        self.on_dtmf = on_dtmf
        self._log = log or get_logger("controller")
        self.registered = False
        self.register_reason: str | None = None  # why the last registration failed
        self.in_call = False  # the call is answered AND the browser is in the room
        self.caller: str | None = None  # display name used in the room
        self.caller_uri: str | None = None
        self.call_id: str | None = None  # the call this gateway owns (set from answer until CALL_CLOSED)
        self.calls = 0  # calls bridged into the room since start
        self.done = False  # once mode: the call is over, the gateway should exit
        self.error: str | None = None  # last failure (room join/leave, lost control connection)
        self.control_lost = False

    # event pump ---------------------------------------------------------------------------------------------

    def pump(self, timeout: float) -> dict[str, Any] | None:
        """Handle the next event if one arrives within `timeout` seconds; return it (None if there was none)."""
        try:
            event = self.control.events.get(timeout=timeout)
        except queue.Empty:
            return None
        self.handle(event)
        return event

    def handle(self, event: dict[str, Any]) -> None:
        """Act on one baresip event; unknown events are ignored."""
        kind = str(event.get("type", ""))
        handler = self._HANDLERS.get(kind)
        if handler is None:
            if kind not in ("CALL_RTCP", "CALL_LOCAL_SDP", "CALL_REMOTE_SDP", "CALL_RTPESTAB"):
                self._log.debug("event %s ignored", kind)
            return
        handler(self, event)

    # registration -------------------------------------------------------------------------------------------

    def _on_register_ok(self, event: dict[str, Any]) -> None:
        changed = not self.registered or self.register_reason is not None
        self.registered, self.register_reason = True, None
        if changed:
            self._log.info("registered %s (%s)", event.get("accountaor", ""), event.get("param", ""))
            self.on_change()

    def _on_register_fail(self, event: dict[str, Any]) -> None:
        reason = str(event.get("param") or "registration failed")
        self._log.warning("registration of %s failed: %s", event.get("accountaor", ""), reason)
        self.registered, self.register_reason = False, reason
        self.on_change()

    def _on_unregistering(self, event: dict[str, Any]) -> None:
        if self.registered:
            self.registered = False
            self.on_change()

    def sync_registration(self) -> bool:
        """Ask baresip (``reginfo``) whether the account is registered; call it right after connecting.

        baresip registers at start-up, before the supervisor connects, so that first REGISTER_OK/REGISTER_FAIL
        event is never seen. reginfo shows ``OK`` or ``ERR`` per account (without the SIP status code).
        """
        try:
            data = strip_ansi(str(self.control.reginfo().get("data", "")))
        except BaresipControlError as exc:
            self._log.warning("reginfo failed: %s", exc)
            return self.registered
        lines = [line for line in data.splitlines() if "sip" in line]
        registered = any(re.search(r"\bOK\b", line) for line in lines)
        failed = not registered and any(re.search(r"\bERR\b", line) for line in lines)
        changed = registered != self.registered
        self.registered = registered
        if registered and self.register_reason is not None:
            self.register_reason, changed = None, True
        elif failed and self.register_reason is None:
            self.register_reason, changed = "registration failed (reginfo: ERR, see the baresip log)", True
        if changed:
            self.on_change()
        return registered

    # calls --------------------------------------------------------------------------------------------------

    def _reject(self, call_id: str, why: str) -> None:
        self._log.warning("rejecting call %s: %s", call_id, why)
        try:
            self.control.hangup(call_id)
        except BaresipControlError as exc:
            self._log.warning("could not hang up call %s: %s", call_id, exc)

    def _on_call_incoming(self, event: dict[str, Any]) -> None:
        call_id = str(event.get("id") or "")
        if self.call_id is not None and call_id != self.call_id:
            self._reject(call_id, f"busy with call {self.call_id} (one call per gateway)")
            return
        # Only seen when the account overrides answermode: answer it; the room is joined on CALL_ESTABLISHED.
        self.call_id = call_id or None
        try:
            self.control.accept()
        except BaresipControlError as exc:
            self._log.warning("could not answer call %s: %s", call_id, exc)

    def _on_call_established(self, event: dict[str, Any]) -> None:
        if event.get("direction", "incoming") != "incoming":
            self._log.info("outgoing call established to %s (not bridged)", event.get("peeruri", ""))
            return
        call_id = str(event.get("id") or "")
        if self.call_id is not None and call_id != self.call_id:
            self._reject(call_id, f"busy with call {self.call_id} (one call per gateway)")
            return
        if self.in_call:
            return  # duplicate event for the call already bridged
        self.call_id = call_id or None
        self.caller = caller_display_name(event, self.default_display_name)
        self.caller_uri = str(event.get("peeruri") or "") or None
        self._log.info("call %s from %s answered; joining the room as %r", call_id, self.caller_uri, self.caller)
        try:
            self.room.join(self.caller)
        except Exception as exc:  # whatever the browser raised, the caller must not stay half-bridged
            self.error = f"room join failed: {exc}"
            self._log.error("%s; hanging up call %s", self.error, call_id)
            self._leave_room()
            self.on_change()
            self._reject(call_id, "the room could not be joined")
            return
        self.in_call = True
        self.calls += 1
        self.error = None
        self.on_change()

    def _on_call_closed(self, event: dict[str, Any]) -> None:
        call_id = str(event.get("id") or "")
        if self.call_id is None or (call_id and call_id != self.call_id):
            self._log.info("call %s closed (%s)", call_id or "?", event.get("param", ""))
            return
        self._log.info("call %s closed: %s", call_id, event.get("param", ""))
        self._end_call()

    def _end_call(self) -> None:
        """The owned call is over: leave the room if we were in it, then ready again (or done in once mode)."""
        if self.in_call:
            self._leave_room()
        self.in_call = False
        self.call_id = None
        self.caller = None
        self.caller_uri = None
        if self.once:
            self.done = True
        self.on_change()

    def _leave_room(self) -> None:
        try:
            self.room.leave()
        except Exception as exc:  # the browser may be gone; the supervisor decides what to do with error
            self.error = f"room leave failed: {exc}"
            self._log.error(self.error)

    def _on_dtmf(self, event: dict[str, Any]) -> None:
        key = str(event.get("param") or "")
        self._log.info("DTMF %r from %s", key, event.get("peeruri", ""))
        if self.on_dtmf is not None and key:
            try:
                self.on_dtmf(key)
            except Exception as exc:  # an in-call control must never break the event loop
                self._log.error("DTMF hook failed on %r: %s", key, exc)

    def _on_disconnected(self, event: dict[str, Any]) -> None:
        # baresip quit or died: its call and registration are gone with it.
        self.control_lost = True
        self.registered = False
        self.error = "baresip control connection lost"
        if self.call_id is not None:
            self._end_call()
        else:
            self.on_change()

    _HANDLERS: dict[str, Callable[["Controller", dict[str, Any]], None]] = {
        "REGISTER_OK": _on_register_ok,
        "REGISTER_FAIL": _on_register_fail,
        "UNREGISTERING": _on_unregistering,
        "CALL_INCOMING": _on_call_incoming,
        "CALL_ESTABLISHED": _on_call_established,
        "CALL_CLOSED": _on_call_closed,
        "CALL_DTMF_START": _on_dtmf,
        DISCONNECTED: _on_disconnected,
    }

    # shutdown -----------------------------------------------------------------------------------------------

    def hangup_and_wait(self, timeout: float) -> bool:
        """Send BYE for the current call and handle events until its CALL_CLOSED (True) or `timeout` (False).

        On timeout the room is left anyway, so a stopping gateway never stays in the room.
        """
        if self.call_id is None:
            return True
        call_id = self.call_id
        self._log.info("hanging up call %s", call_id)
        try:
            self.control.hangup(call_id)
        except BaresipControlError as exc:
            self._log.warning("hangup of call %s failed: %s", call_id, exc)
        deadline = time.monotonic() + timeout
        while self.call_id == call_id:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._log.warning("no CALL_CLOSED for call %s within %gs", call_id, timeout)
                self._end_call()
                return False
            self.pump(min(remaining, 0.5))
        return True
