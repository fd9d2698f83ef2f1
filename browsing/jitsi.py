"""Jitsi Meet driver (e.g. https://rendez-vous.renater.fr/ROOM).

The pre-join screen is skipped and the display name set through URL hash config overrides, which Jitsi Meet reads
as ``key=<URL-encoded JSON value>``. Joined / participants / hang-up use the page's ``APP.conference`` object, with
the toolbar's hang-up button as a fallback.

Keypad controls: microphone and camera through ``APP.conference.muteAudio/muteVideo``; tile view, raise hand and the
participants pane through Jitsi Meet's documented keyboard shortcuts (W, R, P: jitsi/handbook "Keyboard shortcuts"),
sent as real key presses. The shortcuts toggle: the gateway keeps the hand / pane state it asked for.

UNTESTED AGAINST A REAL JITSI SERVER (none is reachable from CI): the URL building is unit-tested and the page flow is
tested against tests/fixtures/pages/jitsi.html, a small page mimicking the parts of Jitsi Meet used here.
"""

from __future__ import annotations

import json
import urllib.parse

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sipmediagw.room import Option, Room, check_base_url, url_path_segment

JOIN_TIMEOUT = 45.0

# Overrides applied to every join: no pre-join screen, mic and camera on, no "open the app" page.
BASE_CONFIG: dict[str, object] = {
    "config.prejoinConfig.enabled": False,
    "config.prejoinPageEnabled": False,  # name of the same switch before Jitsi Meet 2023
    "config.startWithAudioMuted": False,
    "config.startWithVideoMuted": False,
    "config.disableDeepLinking": True,
}

# Prejoin fallback (if a deployment forces the screen) and hang-up, by Jitsi Meet's test ids.
PREJOIN_NAME = "input[data-testid='prejoin.input'], .prejoin-input-area input"
PREJOIN_JOIN = "[data-testid='prejoin.joinMeeting']"
HANGUP = "[data-testid='toolbar.hangup'], .hangup-button, [aria-label='Leave the meeting']"


def hash_config(display_name: str, extra: dict[str, object] | None = None) -> str:
    """The ``#key=value&...`` fragment: values JSON-encoded then percent-encoded, so no input can add a key."""
    values: dict[str, object] = {**BASE_CONFIG, **(extra or {}), "userInfo.displayName": display_name}
    return "&".join(
        f"{urllib.parse.quote(key, safe='.')}={urllib.parse.quote(json.dumps(value), safe='')}"
        for key, value in values.items()
    )


class JitsiRoom(Room):
    """A Jitsi Meet conference room."""

    platform = "jitsi"
    OPTIONS = {"config": Option(dict, "extra URL config overrides (settings file only)")}

    def __init__(self, driver, base_url, room, options=None):  # type: ignore[no-untyped-def]
        super().__init__(driver, base_url, room, options)
        self.base_url = check_base_url(self.base_url)
        self.segment = url_path_segment(room)
        self.timeout = float(self.options.get("join_timeout", JOIN_TIMEOUT))
        self.display_name = "SIP gateway"

    def url(self) -> str:
        """Room URL with the pre-join screen off and the display name set; an audio-only gateway (option
        ``audio_only``) joins with its camera off and in Jitsi's audio-only mode (it receives no video either)."""
        extra = self.options.get("config")
        config = dict(extra) if isinstance(extra, dict) else {}
        if self.options.get("audio_only"):
            config.update({"config.startWithVideoMuted": True, "config.startAudioOnly": True})
        return f"{self.base_url}/{self.segment}#{hash_config(self.display_name, config or None)}"

    def join(self, display_name: str) -> None:
        """Open the room under `display_name` and wait until the conference is joined."""
        self.display_name = display_name
        self.driver.get(self.url())
        wait = WebDriverWait(self.driver, self.timeout)
        wait.until(lambda d: self._joined() or self._prejoin_shown(),
                   message=f"jitsi: room {self.room} did not load")
        if not self._joined() and self._prejoin_shown():
            name = self.driver.find_element(By.CSS_SELECTOR, PREJOIN_NAME)
            name.clear()
            name.send_keys(display_name)
            self.driver.find_element(By.CSS_SELECTOR, PREJOIN_JOIN).click()
        wait.until(lambda d: self._joined(), message=f"jitsi: not joined in room {self.room}")

    def _joined(self) -> bool:
        return bool(self.driver.execute_script(
            "return !!(window.APP && APP.conference && APP.conference.isJoined && APP.conference.isJoined())"))

    def _prejoin_shown(self) -> bool:
        return any(e.is_displayed() for e in self.driver.find_elements(By.CSS_SELECTOR, PREJOIN_NAME))

    def leave(self) -> None:
        """Hang up (API, else the toolbar button) and go to about:blank."""
        try:
            done = self.driver.execute_script(
                "if (window.APP && APP.conference && APP.conference.hangup) { APP.conference.hangup(false); "
                "return true; } return false;")
            if not done:
                buttons = self.driver.find_elements(By.CSS_SELECTOR, HANGUP)
                if buttons:
                    buttons[0].click()
        finally:
            self.driver.get("about:blank")

    def participant_count(self) -> int | None:
        """Participants including us, from APP.conference.membersCount."""
        count = self.driver.execute_script(
            "return (window.APP && APP.conference && typeof APP.conference.membersCount === 'number') "
            "? APP.conference.membersCount : null")
        return None if count is None else int(count)

    def set_microphone(self, on: bool) -> None:
        """Mute/unmute through APP.conference."""
        self.driver.execute_script("APP.conference.muteAudio(arguments[0])", not on)

    def set_camera(self, on: bool) -> None:
        """Camera on/off through APP.conference."""
        self.driver.execute_script("APP.conference.muteVideo(arguments[0])", not on)

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
