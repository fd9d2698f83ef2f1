"""BigBlueButton driver, joining through a Greenlight room link.

Flow: Greenlight's join page (name field + join button) -> BBB's HTML5 client -> audio dialog: join with the
microphone (not listen-only), skip the echo test -> share the camera (start it in the preview dialog).
Greenlight 3 room URLs are ``/rooms/<code>/join`` (default), Greenlight 2 ``/b/<code>`` (option ``greenlight: 2``).
Elements are found by BBB's ``data-test`` attributes, with the join page's fields tried in both Greenlight versions.

Keypad controls: microphone (mute/unmute buttons), camera (leave video / share webcam again), raise hand (raise /
lower hand buttons) and the user list (its toggle), all by BBB's ``data-test`` names; BBB has no tile/speaker switch
a key could flip.

UNTESTED AGAINST A REAL BIGBLUEBUTTON/GREENLIGHT SERVER (none is reachable from CI): the URL building is unit-tested
and the page flow is tested against tests/fixtures/pages/bbb.html, a small page mimicking the DOM used here.
"""

from __future__ import annotations

import re

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sipmediagw.errors import ValidationError
from sipmediagw.room import Option, Room, check_base_url

# Greenlight room codes ("abc-def-ghi", "abc-1x2-y3z-4k5"): nothing else can reach the path.
ROOM_CODE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+){0,7}$")
JOIN_TIMEOUT = 60.0

NAME_FIELD = "input#joinFormName, input[name='name'], input#join_name, input[placeholder*='name' i]"
JOIN_BUTTON = "button[data-test='joinButton'], button#joinButton, button[type='submit']"
MICROPHONE = "button[data-test='microphoneBtn'], button[aria-label='Microphone']"
ECHO_YES = "button[data-test='echoYesBtn']"
JOIN_VIDEO = "button[data-test='joinVideo']"
START_WEBCAM = "button[data-test='startSharingWebcam']"
JOINED = "[data-test='leaveMeetingDropdown'], button[data-test='optionsButton'], #layout"
LEAVE_MENU = "button[data-test='leaveMeetingDropdown'], button[data-test='optionsButton']"
LEAVE = "[data-test='logout'], [data-test='directLogoutButton']"
MUTE = "button[data-test='muteMicButton']"
UNMUTE = "button[data-test='unmuteMicButton']"
LEAVE_VIDEO = "button[data-test='leaveVideo']"
RAISE_HAND = "[data-test='raiseHandBtn']"
LOWER_HAND = "[data-test='lowerHandBtn']"
USER_LIST = "button[data-test='toggleUserList']"
CONTROL_TIMEOUT = 5.0  # a keypad action waits this long at most for the button it needs (the event loop waits too)


class BigBlueButtonRoom(Room):
    """A BigBlueButton meeting behind a Greenlight room."""

    platform = "bigbluebutton"
    OPTIONS = {"greenlight": Option(int, "Greenlight version of the room links", choices=(2, 3))}

    def __init__(self, driver, base_url, room, options=None):  # type: ignore[no-untyped-def]
        super().__init__(driver, base_url, room, options)
        self.base_url = check_base_url(self.base_url)
        code = str(room).strip().lower()
        if not ROOM_CODE.match(code) or len(code) > 64:
            raise ValidationError(
                f"bigbluebutton: {room!r} is not a Greenlight room code (letters, digits, dashes like abc-def-ghi)")
        self.code = code
        self.greenlight = int(self.options.get("greenlight", 3))
        if self.greenlight not in (2, 3):
            raise ValidationError(f"bigbluebutton: greenlight version must be 2 or 3, not {self.greenlight}")
        self.timeout = float(self.options.get("join_timeout", JOIN_TIMEOUT))

    def url(self) -> str:
        """The Greenlight join page of the room."""
        if self.greenlight == 2:
            return f"{self.base_url}/b/{self.code}"
        return f"{self.base_url}/rooms/{self.code}/join"

    def _visible(self, css: str):  # type: ignore[no-untyped-def]
        for element in self.driver.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed() and element.is_enabled():
                return element
        return False

    def join(self, display_name: str) -> None:
        """Enter the name, join, take the microphone (no listen-only, no echo test), share the camera."""
        self.driver.get(self.url())
        wait = WebDriverWait(self.driver, self.timeout)
        name = wait.until(lambda d: self._visible(NAME_FIELD), message="bigbluebutton: no name field on join page")
        name.clear()
        name.send_keys(display_name)
        button = self._visible(JOIN_BUTTON)
        if button:
            button.click()
        else:
            name.submit()
        wait.until(lambda d: self._visible(MICROPHONE), message="bigbluebutton: no audio dialog").click()
        # The echo test is optional (deployments may skip it): confirm it when it comes before the camera button.
        next_step = wait.until(lambda d: self._visible(ECHO_YES) or self._visible(JOIN_VIDEO),
                               message="bigbluebutton: audio did not connect")
        if next_step.get_attribute("data-test") == "echoYesBtn":
            next_step.click()
        if not self.options.get("audio_only"):  # an audio-only gateway has no camera to share
            wait.until(lambda d: self._visible(JOIN_VIDEO), message="bigbluebutton: no camera button").click()
            wait.until(lambda d: self._visible(START_WEBCAM), message="bigbluebutton: no webcam preview").click()
        wait.until(lambda d: self._visible(JOINED), message="bigbluebutton: meeting did not open")

    def leave(self) -> None:
        """Leave via the options/leave menu, then about:blank."""
        try:
            menu = self._visible(LEAVE_MENU)
            if menu:
                menu.click()
                item = WebDriverWait(self.driver, 5).until(lambda d: self._visible(LEAVE))
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
        WebDriverWait(self.driver, CONTROL_TIMEOUT).until(
            lambda d: self._visible(START_WEBCAM), message="bigbluebutton: no webcam preview").click()

    def raise_hand(self, up: bool) -> None:
        """Click raise hand (or lower hand)."""
        if self._visible(LOWER_HAND if up else RAISE_HAND):
            return  # already so
        self._click(RAISE_HAND if up else LOWER_HAND, "raise hand" if up else "lower hand")

    def show_participants(self, shown: bool) -> None:
        """Click the user list toggle (the page has one button for both ways)."""
        self._click(USER_LIST, "user list")
