"""LiveKit Meet driver (e.g. https://meet.livekit.io): the LiveKit Meet web app in front of a LiveKit server.

Two ways in:
- a Meet room ``BASE/rooms/<room percent-encoded as one segment>``: LiveKit's PreJoin screen (``.lk-prejoin``):
  microphone and camera toggles set (camera off for an audio-only gateway), the name entered in ``input#username``,
  ``button.lk-join-button`` clicked; Meet asks its own ``/api/connection-details`` for a token;
- with the options ``api_key``, ``api_secret`` (secret) and ``livekit_url`` (the LiveKit server's ``wss://`` URL):
  the driver mints the access token itself (HS256 JWT: iss = API key, sub = identity, name, nbf/exp, grant
  ``video: {roomJoin, room, canPublish, canSubscribe, canPublishData}``) and opens Meet's
  ``BASE/custom?liveKitUrl=...&token=...`` page, which has no PreJoin: it connects and turns camera and microphone
  on by itself (an audio-only gateway turns the camera off once connected).

Joined = the control bar's microphone toggle is shown (``.lk-room-container .lk-control-bar
button.lk-button[data-lk-source=microphone]``: ControlBar renders it only once the server's join response granted
publishing), no connection toast (``.lk-toast-connection-state``: Connecting / Disconnected), Meet's debug handle
``window.__lk_room`` (lib/Debug.tsx) in state ``connected``, and the microphone published (its toggle pressed).
Failures: both Meet pages hand livekit-client's ConnectionError to ``console.error`` (the room page also to an
``alert``); a recorder added before the page's scripts keeps its ``reasonName`` and HTTP ``status``: NotAllowed with
401/403 (token refused) -> RoomRefused(AUTH_REQUIRED), NotAllowed with 404 ("requested room does not exist", a
server that does not create rooms on join) -> RoomRefused(NOT_FOUND); any other failure (server unreachable, ...)
-> a TimeoutException at once. The recorder also keeps Meet's alerts from blocking the page (nobody can click OK).

Keypad controls: microphone and camera through the control bar's toggles (``aria-pressed`` tells the state);
participants counted from ``window.__lk_room`` (1 + remote participants). Meet has no participant list, no tile
switch and no raised hand.

Upstream read (facts only, no code copied):
- livekit-examples/meet @ 6da2b8eb649e815b8886a01aeafd7d23c489152b: app/rooms/[roomName]/{page,PageClientImpl}.tsx,
  app/custom/{page,VideoConferenceClientImpl}.tsx, app/api/connection-details/route.ts, lib/Debug.tsx;
- livekit/components-js @ 89db22478a53f1f29d1b9a16422fe1bbd0fa2bc9 (@livekit/components-react 2.9.20, the version
  Meet pins): prefabs/{PreJoin,ControlBar,VideoConference}.tsx, components/controls/{TrackToggle,
  DisconnectButton}.tsx, hooks/useTrackToggle.ts, components/ConnectionStateToast.tsx, core mediaToggle.ts and
  persistent-storage/user-choices.ts (the PreJoin remembers the toggles in localStorage ``lk-user-choices``);
- livekit/client-sdk-js @ a8bfc4cb940292e62eac2762be629e18e0728f87 (v2.18.8): src/api/SignalClient.ts
  (handleConnectionError), src/room/errors.ts, src/room/Room.ts (ConnectionState);
- livekit/server-sdk-js @ 70982538e3d4be2906fa4a004c5365f26d5ba409: AccessToken.ts, grants.ts (the token's claims).

UNTESTED AGAINST A REAL LIVEKIT SERVER (none is reachable from CI): URL building and token claims are unit-tested;
the page flows are tested against tests/fixtures/pages/livekit.html, a small page reproducing the DOM facts above.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sipmediagw.errors import ValidationError
from sipmediagw.jwt import encode_hs256
from sipmediagw.redaction import add_secret
from sipmediagw.room import (AUTH_REQUIRED, NOT_FOUND, PAGE_POLL_S, Option, Room, RoomRefused, check_base_url,
                             url_path_segment)

JOIN_TIMEOUT = 45.0
CONTROL_TIMEOUT = 5.0  # a keypad action waits this long at most for its toggle to follow (the event loop waits too)
LEAVE_TIMEOUT = 10.0
TOKEN_TTL = 600  # seconds: the token only has to open the connection; the server refreshes it for reconnections
CLOCK_SKEW = 60  # nbf this far in the past: a gateway clock slightly ahead of the server's is not refused
TOKEN_OPTIONS = ("api_key", "api_secret", "livekit_url")

PREJOIN = ".lk-prejoin"
NAME_FIELD = ".lk-prejoin input#username"
JOIN_BUTTON = ".lk-prejoin button.lk-join-button"
CONTROL_BAR = ".lk-room-container .lk-control-bar"
SOURCES = {"microphone": "microphone", "camera": "camera"}  # livekit-client Track.Source values


def toggle_selector(scope: str, source: str) -> str:
    """The TrackToggle of `source` ("microphone" / "camera") inside `scope` (PreJoin or control bar)."""
    return f"{scope} button.lk-button[data-lk-source='{SOURCES[source]}']"


# Runs before the page's own scripts (CDP Page.addScriptToEvaluateOnNewDocument, only while a join is under way).
# Meet passes a failed connect's ConnectionError to console.error: keep its reason and status (never its message,
# which is the server's text). alert() would stop the page's scripts until someone clicks OK: keep its text instead.
RECORDER_JS = """
(function () {
  'use strict';
  if (window.__sipmediagwLivekit) { return; }
  const seen = { errors: [], alerts: [] };
  Object.defineProperty(window, '__sipmediagwLivekit', { value: seen });
  const error = console.error;
  console.error = function () {
    for (const arg of arguments) {
      if (arg && typeof arg === 'object' && arg.name === 'ConnectionError' && seen.errors.length < 20) {
        seen.errors.push({ reason: String(arg.reasonName || ''), status: Number(arg.status) || 0 });
      }
    }
    return error.apply(this, arguments);
  };
  window.alert = function (message) {
    if (seen.alerts.length < 20) { seen.alerts.push(String(message).slice(0, 200)); }
  };
})();
"""

# One round trip per poll: what the page shows now.
STATE_JS = """
const seen = window.__sipmediagwLivekit || { errors: [], alerts: [] };
const bar = document.querySelector(arguments[0]);
const mic = bar && bar.querySelector("button.lk-button[data-lk-source='microphone']");
const room = window.__lk_room;
return {
  bar: !!mic,
  toast: !!document.querySelector('.lk-toast-connection-state'),
  roomState: room && typeof room.state === 'string' ? room.state : null,
  micOn: mic ? mic.getAttribute('aria-pressed') === 'true' : null,
  errors: seen.errors.slice(),
};
"""

# React keeps the input's value in its own state: set it through the native setter and fire 'input', as typing
# would (send_keys cannot type every name: chromedriver refuses characters outside the BMP).
SET_NAME_JS = """
const field = arguments[0];
Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(field, arguments[1]);
field.dispatchEvent(new Event('input', { bubbles: true }));
return field.value;
"""

LEAVE_JS = """
const done = arguments[arguments.length - 1];
const room = window.__lk_room;
if (room && typeof room.disconnect === 'function') {
  Promise.resolve(room.disconnect()).then(function () { done('room'); }, function () { done('failed'); });
  return;
}
const button = document.querySelector(arguments[0]);
if (button) { button.click(); done('button'); return; }
done('none');
"""


def check_livekit_url(url: str) -> str:
    """`url` (the LiveKit server, ws:// or wss://) without a trailing slash; ValidationError otherwise (the rest is
    the one base-URL check of the project, applied to its http(s) form)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("ws", "wss"):
        raise ValidationError("livekit: option livekit_url must be the server's wss:// (or ws://) URL")
    checked = check_base_url(("http" if scheme.lower() == "ws" else "https") + "://" + rest, "livekit_url")
    return scheme.lower() + "://" + checked.partition("://")[2]


def access_token(api_key: str, api_secret: str, room: str, identity: str, name: str, now: float | None = None,
                 ttl: int = TOKEN_TTL) -> str:
    """A LiveKit access token letting `identity` (shown as `name`) join `room`, publish and subscribe (the claims
    livekit-server-sdk's AccessToken writes); masked in logs once minted."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "name": name,
        "nbf": issued - CLOCK_SKEW,
        "exp": issued + ttl,
        "video": {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True,
                  "canPublishData": True},
    }
    return encode_hs256(claims, api_secret)


def participant_identity(name: str) -> str:
    """A unique identity for a display name (LiveKit disconnects the older of two participants with one identity):
    the name plus a random suffix, as Meet's connection-details does."""
    return f"{name[:64]}__{secrets.token_hex(3)}"


def classify(errors: list[dict[str, Any]]) -> RoomRefused | None:
    """The refusal behind the ConnectionErrors a page recorded, or None when none of them is a refusal."""
    for error in errors:
        if error.get("reason") != "NotAllowed":
            continue
        status = int(error.get("status") or 0)
        if status == 404:
            return RoomRefused(NOT_FOUND, "LiveKit: the room does not exist (HTTP 404)")
        return RoomRefused(AUTH_REQUIRED, f"LiveKit refused the access token (HTTP {status or '?'})")
    return None


class LiveKitRoom(Room):
    """A LiveKit room, opened through the LiveKit Meet web app (PreJoin, or a token the gateway mints)."""

    platform = "livekit"
    OPTIONS = {
        "api_key": Option(str, "LiveKit API key: with api_secret and livekit_url the gateway mints its own token"),
        "api_secret": Option(str, "LiveKit API secret that signs the gateway's access token", secret=True),
        "livekit_url": Option(str, "the LiveKit server's wss:// URL (given to Meet's /custom page)"),
    }

    def __init__(self, driver, base_url, room, options=None):  # type: ignore[no-untyped-def]
        super().__init__(driver, base_url, room, options)
        self.base_url = check_base_url(self.base_url)
        self.segment = url_path_segment(room)
        self.timeout = float(self.options.get("join_timeout", JOIN_TIMEOUT))
        self.audio_only = bool(self.options.get("audio_only", False))
        given = [name for name in TOKEN_OPTIONS if self.options.get(name)]
        if given and len(given) != len(TOKEN_OPTIONS):
            missing = [name for name in TOKEN_OPTIONS if name not in given]
            raise ValidationError(f"livekit: options {', '.join(TOKEN_OPTIONS)} go together (missing: "
                                  f"{', '.join(missing)})")
        self.custom = bool(given)
        if self.custom:
            add_secret(str(self.options["api_secret"]))
            self.livekit_url = check_livekit_url(str(self.options["livekit_url"]))
        self.display_name = "SIP gateway"
        self._recorder: str | None = None

    def url(self) -> str:
        """The Meet room (PreJoin), or with a minted token Meet's /custom page (its URL carries the token)."""
        if not self.custom:
            return f"{self.base_url}/rooms/{self.segment}"
        token = access_token(str(self.options["api_key"]), str(self.options["api_secret"]), self.room,
                             participant_identity(self.display_name), self.display_name)
        query = urllib.parse.urlencode({"liveKitUrl": self.livekit_url, "token": token})
        return f"{self.base_url}/custom?{query}"

    # -- join -----------------------------------------------------------------------------------------------------
    def join(self, display_name: str) -> None:
        """Open the room under `display_name` (PreJoin, or the token page) and wait until connected and heard."""
        self.display_name = display_name or "SIP gateway"  # the PreJoin refuses an empty name
        self._record_page_errors()
        try:
            self.driver.get(self.url())
            wait = self._wait(self.timeout)
            if not self.custom:
                self._prejoin(self.display_name, wait)
            self.progress("connecting to the LiveKit room")
            wait.until(self._connected, message=f"livekit: not connected to room {self.room!r}")
            if self.audio_only:
                self._set_toggle(CONTROL_BAR, "camera", False, wait)
        finally:
            self._stop_recording()

    def _prejoin(self, display_name: str, wait: WebDriverWait) -> None:
        """Toggles first (the PreJoin remembers the last call's), then the name, then join."""
        wait.until(lambda d: self._shown(NAME_FIELD) and self._shown(toggle_selector(PREJOIN, "camera")),
                   message=f"livekit: no PreJoin screen for room {self.room!r}")
        self._set_toggle(PREJOIN, "microphone", True, wait)
        self._set_toggle(PREJOIN, "camera", not self.audio_only, wait)
        field = self.driver.find_element(By.CSS_SELECTOR, NAME_FIELD)
        self.driver.execute_script(SET_NAME_JS, field, display_name)
        button = wait.until(lambda d: self._shown(JOIN_BUTTON, enabled=True),
                            message="livekit: the join button stays disabled")
        button.click()

    def _connected(self, driver: Any) -> bool:
        """True once in the room and heard; raises when the page gave up (RoomRefused, or TimeoutException)."""
        state = driver.execute_script(STATE_JS, CONTROL_BAR) or {}
        connected = bool(state.get("bar")) and not state.get("toast") and state.get("roomState") in (None, "connected")
        if connected:
            return bool(state.get("micOn"))  # connected and the caller's voice published
        errors = state.get("errors") or []
        # a failed attempt counts once the page gave up (livekit-client may try another region first)
        if errors and state.get("roomState") in (None, "disconnected"):
            refusal = classify(errors)
            if refusal is not None:
                raise refusal
            reasons = ", ".join(sorted({str(e.get("reason") or "error") for e in errors}))
            raise TimeoutException(f"livekit: room {self.room!r} not connected: the page reports {reasons}")
        return False

    def _record_page_errors(self) -> None:
        """Have the recorder run in the documents opened from now on (removed again once the join is over)."""
        if self._recorder is None and hasattr(self.driver, "execute_cdp_cmd"):
            answer = self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER_JS})
            self._recorder = (answer or {}).get("identifier")

    def _stop_recording(self) -> None:
        """The joined page keeps its recorder; later pages of this browser (the next call, the menu) get none."""
        if self._recorder is not None:
            identifier, self._recorder = self._recorder, None
            try:
                self.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": identifier})
            except Exception:  # noqa: BLE001 - a browser gone meanwhile has no scripts left to remove
                pass

    # -- page helpers ---------------------------------------------------------------------------------------------
    def _wait(self, timeout: float) -> WebDriverWait:
        """A wait that retries when React replaced an element between two commands."""
        return WebDriverWait(self.driver, timeout, poll_frequency=PAGE_POLL_S,
                             ignored_exceptions=(StaleElementReferenceException,))

    def _shown(self, css: str, enabled: bool = False) -> Any:
        """The first displayed element matching `css` (and enabled, when asked), or False."""
        for element in self.driver.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed() and (not enabled or element.is_enabled()):
                return element
        return False

    def _pressed(self, css: str) -> bool | None:
        """Whether the toggle `css` is pressed (aria-pressed), None when the page shows none."""
        button = self._shown(css)
        return None if not button else button.get_attribute("aria-pressed") == "true"

    def _set_toggle(self, scope: str, source: str, on: bool, wait: WebDriverWait) -> None:
        """Press the TrackToggle of `source` in `scope` (once) until its aria-pressed says `on`."""
        css = toggle_selector(scope, source)
        wait.until(lambda d: self._pressed(css) is not None, message=f"livekit: the page shows no {source} toggle")
        clicked = False

        def settled(driver: Any) -> bool:
            nonlocal clicked
            if self._pressed(css) == on:
                return True
            if not clicked:
                # disabled while a change is pending (useTrackToggle): pressed once it is enabled again
                button = self._shown(css, enabled=True)
                if button:
                    button.click()
                    clicked = True
            return False

        wait.until(settled, message=f"livekit: the {source} did not turn {'on' if on else 'off'}")

    # -- in the room ----------------------------------------------------------------------------------------------
    def leave(self) -> None:
        """Disconnect from the room (the participant leaves at once, no ghost), then go to about:blank."""
        try:
            self._stop_recording()
            self.driver.set_script_timeout(LEAVE_TIMEOUT)
            self.driver.execute_async_script(LEAVE_JS, f"{CONTROL_BAR} button.lk-disconnect-button")
        finally:
            self.driver.get("about:blank")

    def participant_count(self) -> int | None:
        """1 (us) + the remote participants of Meet's room object, or None when the page does not expose it."""
        count = self.driver.execute_script(
            "const room = window.__lk_room; return room && room.remoteParticipants "
            "&& typeof room.remoteParticipants.size === 'number' ? room.remoteParticipants.size : null;")
        return None if count is None else 1 + int(count)

    def set_microphone(self, on: bool) -> None:
        """Mute/unmute through the control bar's microphone toggle."""
        self._set_toggle(CONTROL_BAR, "microphone", on, self._wait(CONTROL_TIMEOUT))

    def set_camera(self, on: bool) -> None:
        """Camera on/off through the control bar's camera toggle (an audio-only gateway has no camera)."""
        if on and self.audio_only:
            raise RuntimeError("livekit: an audio-only gateway has no camera")
        self._set_toggle(CONTROL_BAR, "camera", on, self._wait(CONTROL_TIMEOUT))
