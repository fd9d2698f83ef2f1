"""Jitsi Meet driver (e.g. https://rendez-vous.renater.fr/ROOM).

Follows upstream jitsi/jitsi-meet as read at these commits (files named by path):
- URL hash config overrides ``#config.key=<URL-encoded JSON>`` and their whitelist:
  react/features/base/config/functions.any.ts (setConfigFromURLParams, getWhitelistedJSON; 000c370c64a0),
  configWhitelist.ts (02a8f1a4665d). Since jitsi-meet PR #16321 (Aug 2025) a page opened outside an iframe with
  ``config.prejoinConfig.enabled=false`` starts WITHOUT local tracks (disableInitialGUM), muted: the driver then turns
  the microphone and camera on with the toolbar buttons.
- Page objects of upstream's e2e tests (tests/pageobjects/): PreJoinScreen.ts + PreMeetingScreen.ts (1c8216eb59e8:
  ``#premeeting-name-input``, ``[data-testid="prejoin.joinMeeting"]``), LobbyScreen.ts (1c8216eb59e8:
  ``.lobby-screen``, ``lobby.nameField``, ``lobby.knockButton``), Notifications.ts (1c8216eb59e8:
  ``lobby.joinRejectedMessage``, ``dialog.tokenAuthFailed``), PasswordDialog.ts (10f7c81ef674:
  ``input[name="lockKey"]``) + BaseDialog.ts (1c8216eb59e8: ``#modal-dialog-ok-button``),
  WaitingForModeratorDialog.ts (274ab3e27fcb: ``[aria-label="Log-in"]``), Toolbar.ts (032a4ab7c19a: aria-labels
  "Mute microphone"/"Unmute microphone", "Stop camera"/"Start camera", "Leave the meeting"), and
  tests/helpers/Participant.ts (0465a9fdda28: joined = ``APP.conference.isJoined()``, as upstream's own tests check).
- react/features/prejoin/components/web/Prejoin.tsx (074bb82b2cc4) + base/premeeting/components/web/
  UnsafeRoomWarning.tsx (1962ae51c8eb) and base/ui/components/web/Checkbox.tsx (12bde0607925): for a guessable
  room name the join button stays disabled until the "I understand the risks" checkbox is ticked.
- react/features/lobby/components/web/LobbyScreen.tsx (1a3b3af79a12), react/features/authentication/components/web/
  WaitForOwnerDialog.tsx (1c8216eb59e8) and LoginDialog.tsx (06b67dcf4480: ``input[name="username"]``),
  react/features/room-lock/components/PasswordRequiredPrompt.web.tsx (1c8216eb59e8: a wrong password closes the
  dialog and a new one opens).
- Token authentication: jitsi/lib-jitsi-meet doc/tokens.md (0186f97e1ba2): ``?jwt=<token>`` in the room URL; claims
  iss (app id), aud, sub (tenant or domain), room, exp, context.user.name; HS256 with the app secret.

Joining: the URL skips the pre-join screen and sets the display name; where a deployment forces the screen, the name
is typed there. The driver then answers what the page shows until the conference is joined: the insecure-room-name
consent, the lobby (knocks and waits, ``lobby_timeout``), the room password (option ``password`` or the caller's
keypad), waiting for the host (``moderator_timeout``), a login or a refused token (AUTH_REQUIRED).

Keypad controls: microphone and camera through the toolbar buttons (by aria-label, as upstream's page objects find
them); tile view, raise hand and the participants pane through Jitsi Meet's documented keyboard shortcuts (W, R, P:
jitsi/handbook "Keyboard shortcuts"), sent as real key presses. The shortcuts toggle: the gateway keeps the hand /
pane state it asked for.

UNTESTED AGAINST A REAL JITSI SERVER (none is reachable from CI): the URL and token building are unit-tested and
every flow is tested against tests/fixtures/pages/jitsi.html, a small page reproducing the upstream DOM facts above.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains

from sipmediagw.errors import ValidationError
from sipmediagw.jwt import encode_hs256
from sipmediagw.redaction import add_secret
from sipmediagw.room import (AUTH_REQUIRED, LOBBY, NOT_STARTED, WRONG_PASSWORD, Option, Room, RoomRefused,
                             check_base_url, url_path_segment)

JOIN_TIMEOUT = 45.0
LOBBY_TIMEOUT = 300.0
MODERATOR_TIMEOUT = 300.0
PASSWORD_ASK_TIMEOUT = 60.0  # the caller types the room password on the keypad within this
TOKEN_LIFETIME = 6 * 3600  # the token is checked when connecting/joining; a long call must be able to reconnect
TOKEN_FETCH_TIMEOUT = 10.0
TOKEN_MAX_BYTES = 16384
POLL = 0.25  # seconds between two looks at the page
TOGGLE_TIMEOUT = 5.0  # an unmute asks for the device (getUserMedia): give it a moment to flip the button

# The page's language, by the ``lang`` query parameter (the first of upstream's language detectors,
# react/features/base/i18n/languageDetector.web.ts @15796d51df13): the toolbar and host-wait buttons are found by
# their English aria-labels, as upstream's page objects find them, whatever the deployment's default language.
UI_LANGUAGE = "en"

JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")

# Overrides applied to every join: no pre-join screen, mic and camera on, no "open the app" page. All are in
# upstream's configWhitelist (others would be dropped silently by getWhitelistedJSON).
BASE_CONFIG: dict[str, object] = {
    "config.prejoinConfig.enabled": False,
    "config.prejoinPageEnabled": False,  # name of the same switch before Jitsi Meet 2023
    "config.startWithAudioMuted": False,
    "config.startWithVideoMuted": False,
    "config.disableDeepLinking": True,
}

# Toolbar buttons by aria-label (tests/pageobjects/Toolbar.ts): the label says what a click does.
MIC_MUTE, MIC_UNMUTE = "Mute microphone", "Unmute microphone"
CAMERA_STOP, CAMERA_START = "Stop camera", "Start camera"
HANGUP = "Leave the meeting"

# One look at the page: what it shows now. Visible = has a layout box (hidden screens stay in the DOM).
_PROBE = r"""
const q = s => document.querySelector(s);
const shown = el => !!el && !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
const anyShown = s => Array.prototype.some.call(document.querySelectorAll(s), shown);
let joined = false;
try { joined = !!(window.APP && APP.conference && APP.conference.isJoined && APP.conference.isJoined()); }
catch (e) { joined = false; }
return {
  joined: joined,
  prejoin: shown(q('#premeeting-name-input')) || anyShown('[data-testid="prejoin.joinMeeting"]'),
  lobby: anyShown('.lobby-screen'),
  knock: anyShown('[data-testid="lobby.knockButton"]'),
  lobbyRejected: !!q('[data-testid="lobby.joinRejectedMessage"]'),
  password: anyShown('input[name="lockKey"]'),
  login: anyShown('input[name="username"]'),
  tokenFailed: !!q('[data-testid="dialog.tokenAuthFailed"]'),
  waitingForHost: !!q('[aria-label="Log-in"]')
};
"""

# Fill a pre-meeting name field (prejoin or lobby) the way React sees it: the native value setter, then an input
# event (a plain .value= is overwritten by React's controlled input on its next render).
_SET_NAME = r"""
const field = arguments[0] && document.querySelector(arguments[0]);
if (!field) return false;
if (field.value === arguments[1]) return true;
const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
setter.call(field, arguments[1]);
field.dispatchEvent(new Event('input', {bubbles: true}));
return field.value === arguments[1];
"""

# The insecure-room-name consent: upstream keeps the join/knock button disabled until its checkbox (a base/ui
# Checkbox: <label><div><input type=checkbox></div><div>text</div></label>, no test id) is ticked. Language-independent:
# tick the unticked labelled checkbox of the pre-meeting screen while its button is disabled.
_CONSENT = r"""
const button = document.querySelector(arguments[0]);
const disabled = b => !!b && (b.disabled || b.getAttribute('aria-disabled') === 'true');
if (!disabled(button)) return false;
const screen = button.closest('.premeeting-screen, .lobby-screen, [data-testid="prejoin.screen"]') || document;
const box = Array.prototype.find.call(screen.querySelectorAll('label input[type="checkbox"]'), b => !b.checked)
  || Array.prototype.find.call(document.querySelectorAll('label input[type="checkbox"]'), b => !b.checked);
if (!box) return false;
box.click();
return true;
"""

_CLICK = r"""
const el = document.querySelector(arguments[0]);
if (!el || el.disabled || el.getAttribute('aria-disabled') === 'true') return false;
el.click();
return true;
"""

# The password dialog: type into a field we have not used yet (a wrong password closes the dialog and upstream opens
# a new one: an unused field is a new ask), submit with the dialog's OK button. Returns "new", "used" or "none".
_PASSWORD_FIELD = r"""
const field = Array.prototype.find.call(document.querySelectorAll('input[name="lockKey"]'),
  el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length));
if (!field) return 'none';
return field.__sipmediagwUsed ? 'used' : 'new';
"""
_PASSWORD_SUBMIT = r"""
const field = Array.prototype.find.call(document.querySelectorAll('input[name="lockKey"]'),
  el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length));
if (!field) return false;
field.__sipmediagwUsed = true;
const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
setter.call(field, arguments[0]);
field.dispatchEvent(new Event('input', {bubbles: true}));
const ok = document.querySelector('#modal-dialog-ok-button');
if (!ok) return false;
ok.click();
return true;
"""


def hash_config(display_name: str, extra: dict[str, object] | None = None) -> str:
    """The ``#key=value&...`` fragment: values JSON-encoded then percent-encoded, so no input can add a key."""
    values: dict[str, object] = {**BASE_CONFIG, **(extra or {}), "userInfo.displayName": display_name}
    return "&".join(
        f"{urllib.parse.quote(key, safe='.')}={urllib.parse.quote(json.dumps(value), safe='')}"
        for key, value in values.items()
    )


def token_claims(*, app_id: str, audience: str, subject: str, room: str, display_name: str, now: float,
                 lifetime: int) -> dict[str, Any]:
    """The claims prosody's token authentication checks (lib-jitsi-meet doc/tokens.md): iss = the app id, aud, sub =
    tenant or domain, room, exp; the display name in context.user.name (shown to the room, not checked)."""
    return {"aud": audience, "iss": app_id, "sub": subject, "room": room, "exp": int(now) + int(lifetime),
            "context": {"user": {"name": display_name}}}


def fetch_token(url: str, timeout: float = TOKEN_FETCH_TIMEOUT) -> str:
    """The token an operator URL answers to a GET (its body); RoomRefused(AUTH_REQUIRED) naming only the host."""
    host = urllib.parse.urlsplit(url).hostname or "?"
    request = urllib.request.Request(url, headers={"Accept": "application/jwt, text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (scheme checked at launch)
            body = answer.read(TOKEN_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise RoomRefused(AUTH_REQUIRED, f"token_url on {host} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RoomRefused(AUTH_REQUIRED, f"token_url on {host} unreachable ({type(reason).__name__})") from None
    token = body.decode("ascii", "replace").strip()
    if len(body) > TOKEN_MAX_BYTES or not JWT_SHAPE.match(token):
        raise RoomRefused(AUTH_REQUIRED, f"token_url on {host} answered no token")
    add_secret(token)
    return token


class JitsiRoom(Room):
    """A Jitsi Meet conference room."""

    platform = "jitsi"
    OPTIONS = {
        "config": Option(dict, "extra URL config overrides (settings file only)"),
        "password": Option(str, "the room password (else the caller is asked on the keypad)", secret=True),
        "jwt": Option(str, "a ready token for the deployment's token authentication", secret=True),
        "app_id": Option(str, "application id (iss) to mint a token with app_secret"),
        "app_secret": Option(str, "shared secret to sign a minted token (HS256)", secret=True),
        "token_url": Option(str, "an operator URL whose GET answer is the token"),
        "jwt_audience": Option(str, "aud of a minted token (default jitsi)"),
        "jwt_subject": Option(str, "sub of a minted token (default: the tenant in the base URL, else its host)"),
        "jwt_room": Option(str, "room claim of a minted token (default: the room name in lower case; * for all)"),
        "jwt_lifetime": Option(int, "seconds a minted token is valid", minimum=60, maximum=7 * 24 * 3600),
        "lobby_timeout": Option(float, "seconds to wait in the lobby to be let in", minimum=1, maximum=3600),
        "moderator_timeout": Option(float, "seconds to wait for the meeting to start (the host)", minimum=1,
                                    maximum=3600),
    }

    #: how a token is fetched from token_url (replaced in unit tests)
    token_fetcher: Callable[[str], str] = staticmethod(fetch_token)

    def __init__(self, driver, base_url, room, options=None):  # type: ignore[no-untyped-def]
        super().__init__(driver, base_url, room, options)
        self.base_url = check_base_url(self.base_url)
        self.segment = url_path_segment(room)
        self.timeout = float(self.options.get("join_timeout", JOIN_TIMEOUT))
        self.lobby_timeout = float(self.options.get("lobby_timeout", LOBBY_TIMEOUT))
        self.moderator_timeout = float(self.options.get("moderator_timeout", MODERATOR_TIMEOUT))
        self.display_name = "SIP gateway"
        self.clock: Callable[[], float] = time.time  # token times (tests pin it)
        self._check_token_options()
        for key in ("password", "jwt", "app_secret"):
            if self.options.get(key):
                add_secret(str(self.options[key]))
        self._token: str | None = None

    def _check_token_options(self) -> None:
        given = [k for k in ("jwt", "app_secret", "token_url") if self.options.get(k)]
        if len(given) > 1:
            raise ValidationError(f"jitsi: options {' and '.join(given)} are exclusive: give one way to get a token")
        if bool(self.options.get("app_id")) != bool(self.options.get("app_secret")):
            raise ValidationError("jitsi: options app_id and app_secret go together")
        if self.options.get("jwt") and not JWT_SHAPE.match(str(self.options["jwt"])):
            raise ValidationError("jitsi: option jwt is not a JSON Web Token")
        url = self.options.get("token_url")
        if url:
            parts = urllib.parse.urlsplit(str(url))
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
                raise ValidationError("jitsi: option token_url must be an http(s) URL without user info")

    # -- URL and token ---------------------------------------------------------------------------------------------

    def token(self) -> str | None:
        """The token for ``?jwt=``: the option jwt, else one minted with app_id/app_secret, else one fetched from
        token_url (once per join), else None."""
        if self._token is not None:
            return self._token
        if self.options.get("jwt"):
            self._token = str(self.options["jwt"])
        elif self.options.get("app_secret"):
            self._token = encode_hs256(token_claims(
                app_id=str(self.options["app_id"]), audience=str(self.options.get("jwt_audience") or "jitsi"),
                subject=self._token_subject(), room=str(self.options.get("jwt_room") or self.room.lower()),
                display_name=self.display_name, now=self.clock(),
                lifetime=int(self.options.get("jwt_lifetime", TOKEN_LIFETIME))), str(self.options["app_secret"]))
        elif self.options.get("token_url"):
            self._token = type(self).token_fetcher(str(self.options["token_url"]))
        return self._token

    def _token_subject(self) -> str:
        """sub: the tenant (the base URL's last path segment, for TENANT/ROOM deployments), else the domain."""
        if self.options.get("jwt_subject"):
            return str(self.options["jwt_subject"])
        parts = urllib.parse.urlsplit(self.base_url)
        tenant = urllib.parse.unquote(parts.path.rstrip("/").rpartition("/")[2])
        return (tenant or parts.hostname or "").lower()

    def url(self) -> str:
        """Room URL (``?lang=en``, ``&jwt=`` when there is a token) with the pre-join screen off and the display name
        set; an audio-only gateway (option ``audio_only``) joins with its camera off and in Jitsi's audio-only mode."""
        extra = self.options.get("config")
        config = dict(extra) if isinstance(extra, dict) else {}
        if self.options.get("audio_only"):
            config.update({"config.startWithVideoMuted": True, "config.startAudioOnly": True})
        query = {"lang": UI_LANGUAGE}
        token = self.token()
        if token:
            query["jwt"] = token
        return (f"{self.base_url}/{self.segment}?{urllib.parse.urlencode(query)}"
                f"#{hash_config(self.display_name, config or None)}")

    # -- joining ---------------------------------------------------------------------------------------------------

    def join(self, display_name: str) -> None:
        """Open the room under `display_name` and answer what the page asks until the conference is joined; raise
        RoomRefused when the room will not let the gateway in, TimeoutException when the page never gets there."""
        self.display_name = display_name
        self._token = None  # a minted token carries the display name
        self.driver.get(self.url())
        _JoinFlow(self).run()
        self._media_on()

    def _probe(self) -> dict[str, Any]:
        return dict(self.driver.execute_script(_PROBE) or {})

    def _media_on(self) -> None:
        """Joined muted without tracks (prejoin skipped by URL, upstream PR #16321): turn mic and camera on."""
        self._toggle(MIC_MUTE, MIC_UNMUTE, True, required=False)
        if not self.options.get("audio_only"):
            self._toggle(CAMERA_STOP, CAMERA_START, True, required=False)

    def _toggle(self, on_label: str, off_label: str, on: bool, required: bool = True) -> None:
        """Click the toolbar button that brings the device to `on` (if it is not there yet) and wait for the
        button to flip. `on_label` is the label shown while the device is on (its click turns it off)."""
        current = self.driver.execute_script(
            "if (document.querySelector(arguments[0])) return 'on';"
            "if (document.querySelector(arguments[1])) return 'off'; return null;",
            f'[aria-label="{on_label}"]', f'[aria-label="{off_label}"]')
        if current is None:
            if required:
                raise RuntimeError(f"jitsi: no '{on_label}' / '{off_label}' button on the page")
            return
        if (current == "on") == on:
            return
        self.driver.execute_script(_CLICK, f'[aria-label="{off_label if on else on_label}"]')
        wanted = f'[aria-label="{on_label if on else off_label}"]'
        deadline = time.monotonic() + TOGGLE_TIMEOUT
        while not self.driver.execute_script("return !!document.querySelector(arguments[0])", wanted):
            if time.monotonic() > deadline:
                raise RuntimeError(f"jitsi: the '{off_label if on else on_label}' button did not take effect")
            time.sleep(POLL)

    def leave(self) -> None:
        """Hang up (the toolbar's button, else the API) and go to about:blank."""
        try:
            if not self.driver.execute_script(_CLICK, f'[aria-label="{HANGUP}"]'):
                self.driver.execute_script(
                    "if (window.APP && APP.conference && APP.conference.hangup) APP.conference.hangup(false);")
        finally:
            self.driver.get("about:blank")

    def participant_count(self) -> int | None:
        """Participants including us, from APP.conference.membersCount."""
        count = self.driver.execute_script(
            "return (window.APP && APP.conference && typeof APP.conference.membersCount === 'number') "
            "? APP.conference.membersCount : null")
        return None if count is None else int(count)

    # -- keypad controls -------------------------------------------------------------------------------------------

    def set_microphone(self, on: bool) -> None:
        """Mute/unmute with the toolbar's microphone button."""
        self._toggle(MIC_MUTE, MIC_UNMUTE, on)

    def set_camera(self, on: bool) -> None:
        """Camera on/off with the toolbar's camera button."""
        self._toggle(CAMERA_STOP, CAMERA_START, on)

    def _shortcut(self, key: str) -> None:
        """Press one of Jitsi Meet's keyboard shortcuts (they are ignored while a text field has the focus)."""
        self.driver.execute_script("if (document.activeElement && document.activeElement.blur) "
                                   "document.activeElement.blur();")
        ActionChains(self.driver).send_keys(key).perform()

    def toggle_view(self) -> str | None:
        """W: tile view <-> speaker view (the page does not say which one is on)."""
        self._shortcut("w")
        return None

    def raise_hand(self, up: bool) -> None:
        """R toggles the hand (the caller's keypad keeps which way it last went)."""
        self._shortcut("r")

    def show_participants(self, shown: bool) -> None:
        """P toggles the participants pane."""
        self._shortcut("p")


class _JoinFlow:
    """One join's answers to the page, polled until joined. Each wait has its own bound: the page itself
    `join_timeout` (counted again after a lobby / host wait / keypad ask ends), the lobby `lobby_timeout`, waiting for
    the host `moderator_timeout`."""

    def __init__(self, room: JitsiRoom) -> None:
        self.room = room
        self.driver = room.driver
        self.page_deadline = time.monotonic() + room.timeout
        self.lobby_deadline: float | None = None  # set when we knock
        self.host_deadline: float | None = None  # set when the page first says it waits for the host
        self.prejoin_clicked_at: float | None = None
        self.password_tries = 0

    def run(self) -> None:
        while True:
            seen = self.room._probe()
            now = time.monotonic()
            if seen.get("joined"):
                return
            self._refusals(seen)
            if seen.get("password"):
                self._password()
            elif seen.get("lobby"):
                self._lobby(seen, now)
            elif seen.get("waitingForHost"):
                self._waiting_for_host(now)
            elif seen.get("prejoin"):
                self._prejoin(now)
            self._check_deadlines(seen, now)
            time.sleep(POLL)

    def _refusals(self, seen: dict[str, Any]) -> None:
        if seen.get("lobbyRejected"):
            raise RoomRefused(LOBBY, "a moderator refused the gateway")
        if seen.get("tokenFailed"):
            raise RoomRefused(AUTH_REQUIRED, "the deployment refused the token")
        if seen.get("login"):
            detail = "the deployment asks for a login" if self.room.token() is None else \
                "the deployment refused the token and asks for a login"
            raise RoomRefused(AUTH_REQUIRED, detail)

    def _check_deadlines(self, seen: dict[str, Any], now: float) -> None:
        if self.lobby_deadline is not None and seen.get("lobby"):
            self._restart_page_wait()  # the page's own bound counts again once we are let in
            if now > self.lobby_deadline:
                raise RoomRefused(LOBBY, f"not let in within {self.room.lobby_timeout:g} s")
            return
        if self.host_deadline is not None and seen.get("waitingForHost"):
            self._restart_page_wait()
            if now > self.host_deadline:
                raise RoomRefused(NOT_STARTED, f"the host did not start the meeting within "
                                               f"{self.room.moderator_timeout:g} s")
            return
        if now > self.page_deadline:
            raise TimeoutException(f"jitsi: not joined in room {self.room.room}")

    def _restart_page_wait(self) -> None:
        self.page_deadline = time.monotonic() + self.room.timeout

    def _prejoin(self, now: float) -> None:
        """The pre-join screen (a deployment that forces it): the name, the consent if asked, then join."""
        if self.prejoin_clicked_at is not None and now - self.prejoin_clicked_at < 5.0:
            return  # joining is under way (upstream shows the screen until the conference is joined)
        self.driver.execute_script(_SET_NAME, "#premeeting-name-input", self.room.display_name)
        join = '[data-testid="prejoin.joinMeeting"]'
        self.driver.execute_script(_CONSENT, join)
        if self.driver.execute_script(_CLICK, join):
            self.prejoin_clicked_at = now

    def _lobby(self, seen: dict[str, Any], now: float) -> None:
        """The lobby: knock once (name and consent first) and wait to be let in."""
        if not seen.get("knock"):
            return  # knocking: the button is gone while we wait
        knock = '[data-testid="lobby.knockButton"]'
        self.driver.execute_script(_SET_NAME, '[data-testid="lobby.nameField"]', self.room.display_name)
        self.driver.execute_script(_CONSENT, knock)
        if self.driver.execute_script(_CLICK, knock) and self.lobby_deadline is None:
            self.lobby_deadline = now + self.room.lobby_timeout
            self.room.progress("waiting to be let in")

    def _waiting_for_host(self, now: float) -> None:
        if self.host_deadline is None:
            self.host_deadline = now + self.room.moderator_timeout
            self.room.progress("waiting for the meeting to start")

    def _password(self) -> None:
        """The room-lock dialog: the option's password, else the caller's digits; a second ask means refused."""
        if self.driver.execute_script(_PASSWORD_FIELD) != "new":
            return  # the dialog we answered is closing
        if self.password_tries:
            raise RoomRefused(WRONG_PASSWORD, "the room refused the password")
        password = self.room.options.get("password")
        if not password:
            password = self.room.ask_caller("Enter the meeting password, then #", PASSWORD_ASK_TIMEOUT)
            self._restart_page_wait()  # the caller's typing is no page time
            if not password:
                raise RoomRefused(WRONG_PASSWORD, "password required")
            add_secret(password)
        self.password_tries += 1
        self.driver.execute_script(_PASSWORD_SUBMIT, str(password))
