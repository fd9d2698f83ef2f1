"""BigBlueButton driver: a meeting joined through BBB's signed API, or through a Greenlight room link.

Two ways in, chosen by the options (documented in docs/rooms.md, "BigBlueButton"):

- **API mode** (option ``shared_secret`` given): the room argument is the BBB ``meetingID``. The driver asks the
  server over HTTP (urllib, never through the page) ``getMeetingInfo``; a meeting that does not exist is created
  (``create``) only with ``create: true``, else the join is refused (not found). A meeting that exists but is not
  running yet (nobody in it) is polled until it runs, at most ``start_timeout`` seconds (then: not started); a
  MODERATOR, or a meeting the driver itself created, joins at once (a moderator starts the meeting). The signed
  ``join`` URL (``fullName``, ``meetingID``, ``role``) is then opened in the browser, which BBB redirects to the
  HTML5 client. Checksum (docs/docs/development/api.md, "API Security Model"): hex(SHA(callName + queryString +
  sharedSecret)), SHA-1 by default, SHA-256/384/512 with option ``checksum`` when the server is configured so. The
  join URL's checksum is registered with ``sipmediagw.redaction.add_secret``; no URL of the API is ever put in an
  exception or a log line.
- **Greenlight mode** (no ``shared_secret``): the room argument is a Greenlight room code. Greenlight 3:
  ``/rooms/<code>/join`` (name ``#joinFormName``, access code ``#joinFormCode`` from option ``access_code`` or asked
  from the caller on the keypad, recording consent ``#consentCheck`` ticked when shown, submit); a refused code
  marks ``#joinFormCode`` invalid (wrong password); "the meeting has not started yet" replaces the form until the
  meeting starts and Greenlight redirects on its own (waited for at most ``start_timeout``); an unknown room renders
  the 404 page. Greenlight 2 ``/b/<code>`` (option ``greenlight: 2``) keeps the old name + join button flow.

Both land in the HTML5 client (2.7 / 3.0): join audio with the microphone - 2.7 first offers ``microphoneBtn`` /
``listenOnlyBtn``, 3.0 opens the audio settings modal (``audioSettingsModal``) at once - and confirm with its
``joinEchoTestButton`` (no echo test; the pre-2.7 ``echoYesBtn`` is still confirmed when a server shows it), close
3.0's ``sessionDetailsModal``, then share the camera (``joinVideo``, then the video preview's ``startSharingWebcam``,
until ``leaveVideo`` shows) unless ``audio_only``.

Keypad controls: microphone (``muteMicButton`` / ``unmuteMicButton``), camera (``leaveVideo`` / ``joinVideo`` +
preview), raise hand (``raiseHandBtn`` / ``lowerHandBtn``) and the user list (2.7 ``toggleUserList``, 3.0
``usersListSidebarButton``, or the ``accesskey="U"`` button); BBB has no tile/speaker switch a key could flip.

Upstream facts followed (read, not copied):
- bigbluebutton/bigbluebutton ``bigbluebutton-tests/playwright/core/elements.js`` @ 015ef08f99f9b5a02aee9681468f48ee4f9da872
  (3.0 era) and ``elements.ts`` @ 0092292ac85c80601ab189ae8873d3a4ef524d83; the 2.7-era ``elements.js`` (with
  ``toggleUserList``, ``echoYesBtn``, ``div`` raise-hand) and ``bigbluebutton-html5/imports/ui/components/audio/
  audio-settings/component.jsx`` (``FormWrapper data-test="audioSettingsModal"`` + ``Button data-test=
  "joinEchoTestButton"``), ``video-preview`` (``data-test="startSharingWebcam"``);
- ``docs/docs/development/api.md`` @ 283667b7bbedeb2dfa2549ee5192fe179e861e91 (checksum rule, example, messageKeys
  ``checksumError``), ``docs/docs/data/join.tsx`` @ 063b77a0fcdec1df15116a2683904a6f8c0672ca (``role``);
- bigbluebutton/greenlight @ 15db765b7fab10414df1a838ae8b3501b215cec4: ``app/javascript/components/rooms/room/join/
  JoinCard.jsx``, ``hooks/forms/rooms/useRoomJoinForm.js``, ``components/errors/NotFoundPage.jsx``,
  ``app/assets/locales/en.json``.

UNTESTED AGAINST A REAL BIGBLUEBUTTON/GREENLIGHT SERVER (none is reachable from CI): the checksum is tested against
the API documentation's example, the flows against tests/fixtures/pages/bbb*.html and a small API fixture server.
"""

from __future__ import annotations

import errno
import hashlib
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from typing import Any, Callable, Sequence

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sipmediagw.errors import ValidationError
from sipmediagw.redaction import add_secret, redact
from sipmediagw.room import (AUTH_REQUIRED, NOT_FOUND, NOT_STARTED, PAGE_POLL_S, WRONG_PASSWORD, Option, Room,
                             RoomRefused, check_base_url)

# Greenlight room codes ("abc-def-ghi", "abc-1x2-y3z-4k5"): nothing else can reach the path.
ROOM_CODE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+){0,7}$")
API_PATH = re.compile(r"^(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
JOIN_TIMEOUT = 60.0
START_TIMEOUT = 300.0  # how long a join waits for a meeting that exists but has not started
API_TIMEOUT = 10.0  # one HTTP call to the BBB API
START_POLL = 2.0  # getMeetingInfo while waiting for the meeting to start
MAX_ANSWER = 1 << 20  # an API answer is a few hundred bytes of XML; refuse to parse more
CHECKSUMS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
ROLES = ("VIEWER", "MODERATOR")

# -- Greenlight 3 join card (JoinCard.jsx / useRoomJoinForm.js) and Greenlight 2's form
GL_NAME = "input#joinFormName, input[name='name'], input#join_name, input[placeholder*='name' i]"
GL_CODE = "input#joinFormCode"
GL_CONSENT = "input#consentCheck"
GL_SUBMIT = "form button[type='submit'], button[data-test='joinButton'], button#joinButton"
GL_CODE_REFUSED = "input#joinFormCode.is-invalid"
# -- the HTML5 client (elements.js / elements.ts)
MICROPHONE = "button[data-test='microphoneBtn']"
JOIN_AUDIO = "button[data-test='joinEchoTestButton']"  # the audio settings modal's "Join audio"
ECHO_YES = "button[data-test='echoYesBtn']"
SESSION_DETAILS_CLOSE = ("[data-test='sessionDetailsModal'] button[data-test='closeModal'], "
                         "[data-testid='sessionDetailsModal'] button[data-test='closeModal']")
JOIN_VIDEO = "button[data-test='joinVideo']"
START_WEBCAM = "button[data-test='startSharingWebcam']"
LEAVE_VIDEO = "button[data-test='leaveVideo']"
MUTE = "button[data-test='muteMicButton']"
UNMUTE = "button[data-test='unmuteMicButton']"
JOINED = "button[data-test='leaveMeetingDropdown'], button[data-test='optionsButton']"
LEAVE_MENU = "button[data-test='leaveMeetingDropdown'], button[data-test='optionsButton']"
LEAVE = "[data-test='directLogoutButton'], [data-test='optionsLogoutButton'], [data-test='logout']"
RAISE_HAND = "[data-test='raiseHandBtn']"
LOWER_HAND = "[data-test='lowerHandBtn']"
USER_LIST = ("button[data-test='toggleUserList'], [data-test='usersListSidebarButton'], "
             "button[accesskey='U']")
ACCESS_CODE_PROMPT = "Enter the room's access code"
CONTROL_TIMEOUT = 5.0  # a keypad action waits this long at most for the button it needs (the event loop waits too)


# -- the signed API ---------------------------------------------------------------------------------------------------
def api_query(params: Sequence[tuple[str, str]]) -> str:
    """The query string of an API call, in the given order (the checksum covers it byte for byte): form-encoded,
    spaces as '+', every other reserved character percent-encoded, so a hostile value stays one parameter."""
    return urllib.parse.urlencode(list(params))


def api_checksum(call: str, query: str, secret: str, algorithm: str = "sha1") -> str:
    """hex(SHA(callName + queryString + sharedSecret)), the BBB API checksum."""
    if algorithm not in CHECKSUMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    return CHECKSUMS[algorithm]((call + query + secret).encode("utf-8")).hexdigest()


def signed_api_url(server: str, api_path: str, call: str, params: Sequence[tuple[str, str]], secret: str,
                   algorithm: str = "sha1") -> str:
    """``server + api_path + /call?query&checksum=...``: a signed call URL (a secret: never show it)."""
    query = api_query(params)
    checksum = api_checksum(call, query, secret, algorithm)
    return f"{server}{api_path}/{call}?{query}{'&' if query else ''}checksum={checksum}"


class ApiAnswer:
    """An API answer: SUCCESS or not, its messageKey and its flat child elements (running, meetingID...)."""

    # a plain class, not a dataclass: drivers are loaded from a file without a sys.modules entry, which dataclasses need
    def __init__(self, ok: bool, key: str = "", fields: dict[str, str] | None = None) -> None:
        self.ok = ok
        self.key = key
        self.fields = dict(fields or {})

    def __repr__(self) -> str:
        return f"ApiAnswer(ok={self.ok}, key={self.key!r})"


def parse_api_answer(body: bytes) -> ApiAnswer:
    """`body` (``<response><returncode>...``) as an ApiAnswer; ValueError when it is no API answer."""
    if len(body) > MAX_ANSWER:
        raise ValueError("answer too large")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML ({exc})") from None
    if root.tag != "response":
        raise ValueError(f"unexpected root element {root.tag[:40]!r}")
    fields = {child.tag: (child.text or "").strip() for child in root if len(child) == 0}
    return ApiAnswer(fields.get("returncode") == "SUCCESS", fields.get("messageKey", ""), fields)


def _urlopen(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - http(s) only: check_base_url
        return answer.read(MAX_ANSWER + 1)


class BbbApi:
    """The BBB API of one server, signed with its shared secret. `fetch(url, timeout) -> body` is the HTTP GET
    (urllib by default; unit tests pass a fake)."""

    def __init__(self, server: str, api_path: str, secret: str, algorithm: str = "sha1", timeout: float = API_TIMEOUT,
                 fetch: Callable[[str, float], bytes] | None = None) -> None:
        self.server = server
        self.api_path = api_path
        self._secret = secret
        self.algorithm = algorithm
        self.timeout = timeout
        self._fetch = fetch or _urlopen

    def __repr__(self) -> str:
        return f"BbbApi({self.server + self.api_path!r}, {self.algorithm})"  # never the secret

    def url(self, call: str, params: Sequence[tuple[str, str]]) -> str:
        """The signed URL of `call` (a secret: it authorizes the call)."""
        return signed_api_url(self.server, self.api_path, call, params, self._secret, self.algorithm)

    def call(self, call: str, params: Sequence[tuple[str, str]]) -> ApiAnswer:
        """Make the call; RoomRefused(AUTH_REQUIRED) when the server refuses the checksum, RuntimeError (naming the
        call, never its URL) when the server cannot be asked or answers no API XML."""
        try:
            body = self._fetch(self.url(call, params), self.timeout)
        except urllib.error.HTTPError as exc:
            body = exc.read(MAX_ANSWER + 1) if exc.fp is not None else b""
            if not body.lstrip().startswith(b"<"):
                raise RuntimeError(f"bigbluebutton: API call {call}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # only the kind of failure: an error's text may quote the signed URL
            reason = getattr(exc, "reason", exc)
            code = getattr(reason, "errno", None)
            why = errno.errorcode.get(code, type(reason).__name__) if isinstance(code, int) else type(reason).__name__
            raise RuntimeError(f"bigbluebutton: API call {call} failed: {why}") from None
        try:
            answer = parse_api_answer(body)
        except ValueError as exc:
            raise RuntimeError(f"bigbluebutton: API call {call}: no API answer ({exc})") from None
        if not answer.ok and answer.key == "checksumError":
            raise RoomRefused(AUTH_REQUIRED, "checksum refused")
        return answer


# -- the driver ---------------------------------------------------------------------------------------------------------
class BigBlueButtonRoom(Room):
    """A BigBlueButton meeting: by meetingID through the signed API, or behind a Greenlight room."""

    platform = "bigbluebutton"
    OPTIONS = {
        "greenlight": Option(int, "Greenlight version of the room links (Greenlight mode)", choices=(2, 3)),
        "access_code": Option(str, "the Greenlight room's access code (Greenlight mode)", secret=True),
        "shared_secret": Option(str, "the BBB server's API shared secret: API mode, the room is the meetingID",
                                secret=True),
        "checksum": Option(str, "API checksum algorithm (API mode; default sha1)", choices=tuple(CHECKSUMS)),
        "api_path": Option(str, "path of the API on the server (API mode; default /bigbluebutton/api)"),
        "role": Option(str, "role of the gateway in the meeting (API mode; default VIEWER)", choices=ROLES),
        "create": Option(bool, "create the meeting when it does not exist (API mode; default false)"),
        "start_timeout": Option(float, "seconds to wait for a meeting that has not started (default 300)",
                                minimum=0, maximum=3600),
    }
    API_ONLY = ("checksum", "api_path", "role", "create")
    GREENLIGHT_ONLY = ("greenlight", "access_code")

    def __init__(self, driver, base_url, room, options=None,  # type: ignore[no-untyped-def]
                 fetch: Callable[[str, float], bytes] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(driver, base_url, room, options)
        self.base_url = check_base_url(self.base_url)
        self.timeout = float(self.options.get("join_timeout", JOIN_TIMEOUT))
        self.start_timeout = float(self.options.get("start_timeout", START_TIMEOUT))
        self._sleep = sleep
        self._clock = clock
        secret = self.options.get("shared_secret") or ""
        self.api_mode = bool(secret)
        if self.api_mode:
            add_secret(secret)
            wrong = [name for name in self.GREENLIGHT_ONLY if name in self.options]
            if wrong:
                raise ValidationError(f"bigbluebutton: option {wrong[0]} is for Greenlight rooms, not with "
                                      "shared_secret (API mode)")
            self.meeting_id = self._check_meeting_id(str(room))
            api_path = str(self.options.get("api_path", "/bigbluebutton/api")).rstrip("/")
            if not API_PATH.match(api_path) or "/../" in f"{api_path}/" or "/./" in f"{api_path}/":
                raise ValidationError(f"bigbluebutton: api_path {api_path!r} is not a plain /path")
            self.role = str(self.options.get("role", "VIEWER"))
            self.api = BbbApi(self.base_url, api_path, secret, str(self.options.get("checksum", "sha1")),
                              fetch=fetch)
        else:
            wrong = [name for name in self.API_ONLY if name in self.options]
            if wrong:
                raise ValidationError(f"bigbluebutton: option {wrong[0]} needs shared_secret (API mode)")
            code = str(room).strip().lower()
            if not ROOM_CODE.match(code) or len(code) > 64:
                raise ValidationError(
                    f"bigbluebutton: {room!r} is not a Greenlight room code (letters, digits, dashes like abc-def-ghi)"
                    " - a meetingID needs the option shared_secret")
            self.code = code
            self.greenlight = int(self.options.get("greenlight", 3))
            if self.options.get("access_code"):
                add_secret(str(self.options["access_code"]))

    @staticmethod
    def _check_meeting_id(meeting_id: str) -> str:
        # api.md, "Updated in 2.4": meetingID must be between 2 and 256 characters long and cannot contain commas
        if not 2 <= len(meeting_id) <= 256 or not meeting_id.strip():
            raise ValidationError("bigbluebutton: a meetingID has 2 to 256 characters")
        if "," in meeting_id or CONTROL.search(meeting_id):
            raise ValidationError(f"bigbluebutton: meetingID {meeting_id!r} contains a comma or control characters")
        return meeting_id

    def url(self) -> str:
        """The Greenlight join page of the room; in API mode the unsigned join call (name and checksum are added
        when joining)."""
        if self.api_mode:
            return f"{self.api.server}{self.api.api_path}/join?{api_query([('meetingID', self.meeting_id)])}"
        if self.greenlight == 2:
            return f"{self.base_url}/b/{self.code}"
        return f"{self.base_url}/rooms/{self.code}/join"

    def _visible(self, css: str):  # type: ignore[no-untyped-def]
        for element in self.driver.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed() and element.is_enabled():
                return element
        return False

    def join(self, display_name: str) -> None:
        """Get into the meeting (API or Greenlight), join audio with the microphone, share the camera."""
        if self.api_mode:
            self._join_api(display_name)
        else:
            self._join_greenlight(display_name)
        self._enter_client()

    # -- API mode
    def _meeting_info(self) -> ApiAnswer:
        return self.api.call("getMeetingInfo", [("meetingID", self.meeting_id)])

    def _join_api(self, display_name: str) -> None:
        info = self._meeting_info()
        created = False
        if not info.ok:
            if info.key != "notFound":
                raise RuntimeError(f"bigbluebutton: getMeetingInfo answered {info.key[:60] or 'FAILED'}")
            if not self.options.get("create"):
                raise RoomRefused(NOT_FOUND, "no meeting with this meetingID")
            made = self.api.call("create", [("name", self.meeting_id), ("meetingID", self.meeting_id)])
            if not made.ok:
                raise RuntimeError(f"bigbluebutton: create answered {made.key[:60] or 'FAILED'}")
            created = True
        # A meeting nobody is in is not running yet: a viewer waits for it (Greenlight's "waiting for the
        # moderator"); a moderator, or the gateway that just created it, is the one who starts it.
        if not created and self.role == "VIEWER" and info.fields.get("running") != "true":
            self._wait_until_running()
        params = [("fullName", display_name), ("meetingID", self.meeting_id), ("role", self.role)]
        join_url = self.api.url("join", params)
        add_secret(join_url.rsplit("checksum=", 1)[1])
        try:
            self.driver.get(join_url)
        except WebDriverException as exc:
            raise RuntimeError(f"bigbluebutton: opening the join call failed: {redact(exc.msg or '')[:200]}") from None
        self._check_join_answer()

    def _wait_until_running(self) -> None:
        self.progress("waiting for the meeting to start")
        deadline = self._clock() + self.start_timeout
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise RoomRefused(NOT_STARTED, f"not started within {self.start_timeout:g} s")
            self._sleep(min(START_POLL, remaining))
            self._cancel_point()
            info = self._meeting_info()  # notFound meanwhile (ended, expired): still not started
            if info.ok and info.fields.get("running") == "true":
                return

    def _cancel_point(self) -> None:
        """One cheap WebDriver command: the gateway cancels a join at its next command (Browser.page_action)."""
        if self.driver is not None:
            self.driver.execute_script("return 0")

    def _check_join_answer(self) -> None:
        """A refused join answers XML instead of redirecting to the client: say why."""
        # Chromium shows an XML answer in its XML viewer (an HTML document around the original nodes), so the answer
        # is found by its content type and element names, not by the root element
        key = self.driver.execute_script(
            "if (!/xml/.test(document.contentType || '')) return null;"
            "const code = document.getElementsByTagName('returncode')[0];"
            "if (!code || code.textContent.trim() === 'SUCCESS') return null;"
            "const k = document.getElementsByTagName('messageKey')[0];"
            "return k ? k.textContent.trim() : 'FAILED';")
        if key is None:
            return
        if key == "checksumError":
            raise RoomRefused(AUTH_REQUIRED, "checksum refused")
        if key in ("notFound", "invalidMeetingIdentifier"):
            raise RoomRefused(NOT_FOUND, "no meeting with this meetingID")
        raise RuntimeError(f"bigbluebutton: join answered {str(key)[:60]}")

    # -- Greenlight mode
    def _join_greenlight(self, display_name: str) -> None:
        join_page = self.url()
        self.driver.get(join_page)
        wait = WebDriverWait(self.driver, self.timeout, poll_frequency=PAGE_POLL_S)
        name = wait.until(lambda d: self._visible(GL_NAME) or self._not_found_page(),
                          message="bigbluebutton: no name field on the Greenlight join page")
        if name is True:
            raise RoomRefused(NOT_FOUND, "Greenlight has no such room")
        name.clear()
        name.send_keys(display_name)
        code_field = self._visible(GL_CODE)
        if code_field:
            code = self.options.get("access_code") or self.ask_caller(ACCESS_CODE_PROMPT, 60.0)
            if not code:
                raise RoomRefused(WRONG_PASSWORD, "the room needs an access code")
            add_secret(str(code))
            code_field.clear()
            code_field.send_keys(str(code))
        consent = self._visible(GL_CONSENT)
        if consent and not consent.is_selected():
            consent.click()  # Greenlight refuses the join until the recording notice is acknowledged
        button = self._visible(GL_SUBMIT)
        if button:
            button.click()
        else:
            name.submit()
        self._wait_greenlight_answer(urllib.parse.urlsplit(join_page).path)

    def _not_found_page(self) -> bool:
        # NotFoundPage.jsx: <h1><strong>404</strong></h1>, whatever the language
        return any(h.text.strip() == "404" for h in self.driver.find_elements(By.CSS_SELECTOR, "h1"))

    def _wait_greenlight_answer(self, join_path: str) -> None:
        """Until the browser leaves the join page for the client; refusals and the waiting page on the way."""
        deadline = self._clock() + self.timeout
        waiting = False
        while True:
            if urllib.parse.urlsplit(self.driver.current_url).path.rstrip("/") != join_path.rstrip("/"):
                return  # Greenlight redirected to BBB's join URL
            if self._visible(GL_CODE_REFUSED):
                raise RoomRefused(WRONG_PASSWORD, "access code refused")
            if self._not_found_page():
                raise RoomRefused(NOT_FOUND, "Greenlight has no such room")
            if self._visible("form .is-invalid"):  # the name or the consent refused: no use waiting
                raise RuntimeError("bigbluebutton: Greenlight refused the join form")
            if not waiting and not self.driver.find_elements(By.CSS_SELECTOR, "input#joinFormName") \
                    and self.greenlight == 3:
                # JoinCard.jsx replaces the form by "The meeting has not started yet" and joins on its own later
                waiting = True
                self.progress("waiting for the meeting to start")
                deadline = self._clock() + self.start_timeout
            if self._clock() > deadline:
                if waiting:
                    raise RoomRefused(NOT_STARTED, f"not started within {self.start_timeout:g} s")
                raise RuntimeError("bigbluebutton: Greenlight did not answer the join")
            self._sleep(0.25)

    # -- the HTML5 client
    def _enter_client(self) -> None:
        wait = WebDriverWait(self.driver, self.timeout, poll_frequency=PAGE_POLL_S)

        def audio_joined() -> bool:
            return bool(self._visible(MUTE) or self._visible(UNMUTE))

        # 2.7 asks microphone or listen only first; 3.0 opens the audio settings modal at once.
        first = wait.until(lambda d: self._visible(JOIN_AUDIO) or self._visible(MICROPHONE) or audio_joined(),
                           message="bigbluebutton: no audio dialog")
        if first is not True:
            if first.get_attribute("data-test") == "microphoneBtn":
                first.click()
                first = wait.until(lambda d: self._visible(JOIN_AUDIO) or self._visible(ECHO_YES) or audio_joined(),
                                   message="bigbluebutton: no audio settings after the microphone choice")
            if first is not True:
                first.click()  # "Join audio" (or an older server's echo test "yes")

        def joined_or_confirm_echo() -> bool:
            echo = self._visible(ECHO_YES)
            if echo:
                echo.click()
                return False
            return audio_joined()

        wait.until(lambda d: joined_or_confirm_echo(), message="bigbluebutton: audio did not connect")
        details = self._visible(SESSION_DETAILS_CLOSE)
        if details:
            details.click()  # 3.0's session details modal covers the action bar
        if not self.options.get("audio_only"):  # an audio-only gateway has no camera to share
            wait.until(lambda d: self._visible(JOIN_VIDEO), message="bigbluebutton: no camera button").click()
            wait.until(lambda d: self._visible(START_WEBCAM), message="bigbluebutton: no webcam preview").click()
            wait.until(lambda d: self._visible(LEAVE_VIDEO), message="bigbluebutton: the camera was not shared")
        wait.until(lambda d: self._visible(JOINED), message="bigbluebutton: meeting did not open")

    def leave(self) -> None:
        """Leave via the leave (or options) menu, then about:blank."""
        try:
            menu = self._visible(LEAVE_MENU)
            if menu:
                menu.click()
                item = WebDriverWait(self.driver, 5, poll_frequency=PAGE_POLL_S).until(lambda d: self._visible(LEAVE))
                item.click()
        finally:
            self.driver.get("about:blank")

    def _click(self, css: str, what: str) -> None:
        button = self._visible(css)
        if not button:
            raise RuntimeError(f"bigbluebutton: no {what} button on the page")
        button.click()

    def set_microphone(self, on: bool) -> None:
        """Click the mute/unmute button if the state differs."""
        if self._visible(MUTE if on else UNMUTE):
            return  # already so
        self._click(UNMUTE if on else MUTE, "unmute" if on else "mute")

    def set_camera(self, on: bool) -> None:
        """Stop sharing the webcam, or share it again (share button, then the preview's start button)."""
        if not on:
            if self._visible(LEAVE_VIDEO):
                self._click(LEAVE_VIDEO, "stop camera")
            return
        if self._visible(LEAVE_VIDEO):
            return  # already shared
        self._click(JOIN_VIDEO, "share camera")
        WebDriverWait(self.driver, CONTROL_TIMEOUT, poll_frequency=PAGE_POLL_S).until(
            lambda d: self._visible(START_WEBCAM), message="bigbluebutton: no webcam preview").click()

    def raise_hand(self, up: bool) -> None:
        """Click raise hand (or lower hand)."""
        if self._visible(LOWER_HAND if up else RAISE_HAND):
            return  # already so
        self._click(RAISE_HAND if up else LOWER_HAND, "raise hand" if up else "lower hand")

    def show_participants(self, shown: bool) -> None:
        """Click the user list toggle (the page has one button for both ways)."""
        self._click(USER_LIST, "user list")
