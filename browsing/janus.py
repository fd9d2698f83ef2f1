"""Janus VideoRoom driver: joins a numeric VideoRoom through a Janus demo site.

Two page flavours are understood, told apart by their DOM:
- ``videoroom.html`` (default): the test bed's room page (sipmediagw/testbed/assets), ``?room=N``, ``#username`` +
  ``#register``, state in ``window.sipmediagw``;
- ``videoroomtest.html``: the upstream janus-demos VideoRoom demo (``#start``, then ``#username`` + ``#register``),
  which accepts alphanumeric display names only. Choose it with the option ``page: videoroomtest.html``.

Keypad controls: microphone and camera (the published tracks are disabled: the room gets silence / black frames);
no view, hand or participant list (the pages have none).
"""

from __future__ import annotations

import re
import urllib.parse

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sipmediagw.errors import ValidationError
from sipmediagw.room import PAGE_POLL_S, Option, Room, check_base_url

ROOM_ID = re.compile(r"^[0-9]{1,18}$")  # VideoRoom ids are unsigned 64-bit integers
PAGE = re.compile(r"^[A-Za-z0-9_-]+\.html$")
JOIN_TIMEOUT = 30.0
LEAVE_TIMEOUT = 10.0


def demo_display_name(name: str) -> str:
    """The upstream demo refuses non-alphanumeric names: keep letters and digits only."""
    return re.sub(r"[^A-Za-z0-9]", "", name)[:64] or "SIPgateway"


class JanusRoom(Room):
    """A Janus VideoRoom opened through a demo page (numeric room id)."""

    platform = "janus"
    OPTIONS = {"page": Option(str, "the demo page: videoroom.html (test bed) or videoroomtest.html (upstream demo)")}

    def __init__(self, driver, base_url, room, options=None):  # type: ignore[no-untyped-def]
        super().__init__(driver, base_url, room, options)
        if not ROOM_ID.match(str(room)):
            raise ValidationError(f"janus: room id must be a number (VideoRoom id), got {room!r}")
        self.page = str(self.options.get("page", "videoroom.html"))
        if not PAGE.match(self.page):
            raise ValidationError(f"janus: invalid page name {self.page!r}")
        self.base_url = check_base_url(self.base_url)
        self.timeout = float(self.options.get("join_timeout", JOIN_TIMEOUT))

    def url(self) -> str:
        """The demo page with ``?room=<id>``; an audio-only gateway adds ``audio=only`` (the test bed's page then
        subscribes to the room's audio alone: nobody watches its video; the upstream demo ignores it)."""
        query = {"room": int(self.room), **({"audio": "only"} if self.options.get("audio_only") else {})}
        return f"{self.base_url}/{self.page}?{urllib.parse.urlencode(query)}"

    def _is_upstream_demo(self) -> bool:
        return bool(self.driver.find_elements(By.ID, "start"))

    def join(self, display_name: str) -> None:
        """Open the page, enter the name, join and wait until Janus confirms we publish in the room."""
        self.driver.get(self.url())
        wait = WebDriverWait(self.driver, self.timeout, poll_frequency=PAGE_POLL_S)
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        if self._is_upstream_demo():
            self._join_upstream(display_name, wait)
        else:
            self._join_testbed(display_name, wait)

    def _join_testbed(self, display_name: str, wait: WebDriverWait) -> None:
        wait.until(lambda d: d.execute_script("return !!window.sipmediagw"))
        name = self.driver.find_element(By.ID, "username")
        name.clear()
        name.send_keys(display_name)
        self.driver.find_element(By.ID, "register").click()
        wait.until(self._testbed_joined, message=f"janus: not joined in room {self.room}")

    def _testbed_joined(self, driver) -> bool:  # type: ignore[no-untyped-def]
        # Joined means our PeerConnection is up (``publishing``), as with the upstream demo below: the room's
        # "joined" answer comes before the offer, and a call answered then is not heard for another 0.5-1 s.
        state = driver.execute_script("return window.sipmediagw && window.sipmediagw.state")
        if state and state.get("error"):
            raise RuntimeError(f"janus: room {self.room}: {state['error']}")
        return bool(state and state.get("joined") and state.get("publishing"))

    def _join_upstream(self, display_name: str, wait: WebDriverWait) -> None:
        self.driver.find_element(By.ID, "start").click()
        wait.until(lambda d: d.find_element(By.ID, "username").is_displayed())
        name = self.driver.find_element(By.ID, "username")
        name.clear()
        name.send_keys(demo_display_name(display_name))
        self.driver.find_element(By.ID, "register").click()
        # The demo sets `myid` (a page global) on "joined", then publishes: joined means our PeerConnection is up
        # (the demo's `webrtcState(true)`: the room gets our media), not only the room's answer.
        wait.until(lambda d: d.execute_script(
            "return typeof myid !== 'undefined' && myid !== null && typeof sfutest !== 'undefined' && !!sfutest"
            " && !!sfutest.webrtcStuff && !!sfutest.webrtcStuff.pc"
            " && ['connected', 'completed'].indexOf(sfutest.webrtcStuff.pc.iceConnectionState) >= 0"),
            message=f"janus: not joined in room {self.room}")

    def leave(self) -> None:
        """Destroy the Janus session (else we stay a ghost publisher for a minute), then go to about:blank."""
        self.driver.set_script_timeout(LEAVE_TIMEOUT)
        try:
            self.driver.execute_async_script(
                """
                const done = arguments[arguments.length - 1];
                if (window.sipmediagw && window.sipmediagw.leave) { window.sipmediagw.leave(done); return; }
                if (typeof janus !== 'undefined' && janus) {
                  // notifyDestroyed false: the demo reloads the page on 'destroyed'
                  janus.destroy({cleanupHandles: true, notifyDestroyed: false, success: done, error: done});
                  return;
                }
                done();
                """
            )
        finally:
            self.driver.get("about:blank")

    def participant_count(self) -> int | None:
        """1 (us) + the remote publishers the page shows."""
        count = self.driver.execute_script(
            """
            if (window.sipmediagw && window.sipmediagw.remoteCount) return window.sipmediagw.remoteCount();
            if (typeof feeds !== 'undefined') return feeds.filter(function (f) { return !!f; }).length;
            return null;
            """
        )
        return None if count is None else 1 + int(count)

    # Keypad controls: the VideoRoom pages have no mute buttons of their own, so the gateway disables the tracks it
    # publishes (silence / black frames reach the room). No tile view, hand or participant list on these pages.
    def set_microphone(self, on: bool) -> None:
        """Send silence (off) or the caller's voice (on) to the room."""
        self._set_sent_tracks("audio", on)

    def set_camera(self, on: bool) -> None:
        """Send black frames (off) or the caller's video (on) to the room."""
        self._set_sent_tracks("video", on)
