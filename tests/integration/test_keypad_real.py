"""Keypad controls in a call with real parts: the overlay and badge drawn by the gateway's headful Chromium on its
Xvfb room display (read back with x11grab, as baresip sends it), the keys acting on the Jitsi / BigBlueButton fixture
pages, and the Janus driver's microphone and camera toggles measured by a second participant in a real Janus room.

The keys go through incall.InCall and overlay.BrowserControls exactly as in the gateway (only the DTMF event source is
missing: tests/docker/test_keypad.py has it). Everything a test starts is stopped by a fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from sipmediagw.gateway.browser import Browser, BrowserRoomSession
from sipmediagw.gateway.incall import InCall, Timeouts
from sipmediagw.gateway.menu_screen import MenuScreen, decode_marker
from sipmediagw.gateway.ivr import KeypadMenu
from sipmediagw.gateway.mjpeg import MjpegRelay
from sipmediagw.gateway.overlay import BrowserControls, Panel
from sipmediagw.room import load_room_driver
from sipmediagw.testbed.janus import JanusServer
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.tones import level_db, read_mono

from test_browser_real import (BROWSING, CAMERA, ROOM_SIZE, Pulse, Xvfb, caller_display, janus_room,  # noqa: F401
                               observer, pages_url, pulse, room_display, start_browser, start_relay, wait_for)

OFF = Timeouts(alone=0, no_media=0, max_call=0)  # no timer may end these calls


def overlay_state(browser: Browser) -> dict[str, Any]:
    return browser.driver.execute_script(
        "const r = document.getElementById('sipmediagw-overlay');"
        "if (!r) return null;"
        "const panel = document.getElementById('sipmediagw-overlay-panel');"
        "return {badge: r.dataset.badge, panel: r.dataset.panel, text: panel.innerText};")


def share(frame: bytes, box: tuple[int, int, int, int], test: Callable[[tuple[int, int, int]], bool]) -> float:
    """Share of the pixels in `box` (x0, y0, x1, y1) of a ROOM_SIZE RGB frame that pass `test`."""
    x0, y0, x1, y1 = box
    hits = total = 0
    for y in range(y0, y1, 2):
        row = y * ROOM_SIZE[0] * 3
        for x in range(x0, x1, 2):
            i = row + x * 3
            hits += test((frame[i], frame[i + 1], frame[i + 2]))
            total += 1
    return hits / total


def red(p: tuple[int, int, int]) -> bool:
    return p[0] > 180 and p[1] < 60 and p[2] < 60


def green(p: tuple[int, int, int]) -> bool:
    return p[0] < 60 and p[1] > 200 and p[2] < 60


BADGE = (15, 10, 260, 60)  # top left, where "Microphone off" is drawn (1.5vw, 2vh; 4.5vh text)
CENTRE = (440, 335, 840, 385)  # inside the panel (a one-line message: about 100 px high, 640 wide)


@pytest.fixture
def browser(room_display: Xvfb, pulse: Pulse, start_browser: Callable[..., Browser]) -> Browser:  # noqa: F811
    """The gateway's browser (kiosk, 1280x720) on its room display, its microphone a PulseAudio null sink."""
    return start_browser(display=room_display.display, env=pulse.env, camera_url=None)


def test_badge_and_panel_are_on_the_callers_screen_and_the_panel_goes_by_itself(
        room_display: Xvfb, browser: Browser, pages_url: str) -> None:  # noqa: F811
    browser.driver.get(f"{pages_url}/solid.html")
    controls = BrowserControls(lambda: browser.driver, lambda: None, lambda: browser.lock)
    assert controls.draw(["Microphone off"], Panel(message="Microphone off"), 2.0) is True  # new page: created

    def shown() -> bool:
        frame = room_display.grab_rgb(ROOM_SIZE)
        return share(frame, BADGE, red) > 0.3 and share(frame, CENTRE, green) < 0.2

    wait_for(shown, 20, "the red badge and the panel on the display")
    assert overlay_state(browser) == {"badge": "Microphone off", "panel": "info", "text": "Microphone off"}
    # the panel hides itself; the badge stays
    wait_for(lambda: overlay_state(browser)["panel"] == "", 20, "the panel to hide itself")
    frame = room_display.grab_rgb(ROOM_SIZE)
    assert share(frame, CENTRE, green) > 0.95 and share(frame, BADGE, red) > 0.3
    # a page that rebuilds its DOM loses the overlay: the next draw puts it back
    browser.driver.execute_script("document.documentElement.innerHTML = '<body style=\"background:#0f0\"></body>';")
    assert controls.draw(["Microphone off", "Camera off"], None, 0) is True
    assert overlay_state(browser)["badge"] == "Microphone off|Camera off"
    assert controls.draw([], None, 0) is False
    wait_for(lambda: share(room_display.grab_rgb(ROOM_SIZE), BADGE, red) < 0.01, 20, "the badge to go")


def test_the_overlay_draws_over_the_menu_page_despite_its_content_security_policy(
        room_display: Xvfb, browser: Browser) -> None:  # noqa: F811
    """A timeout's notice may come while the caller is in the keypad menu (a local page that forbids inline styles)."""
    screen = MenuScreen(browser.driver, lock=browser.lock)
    screen.show(KeypadMenu(lambda m, p: None, timeout=600).start().view)
    before = wait_for(lambda: (f := room_display.grab_rgb(ROOM_SIZE)) and decode_marker(f, *ROOM_SIZE) and f, 30,
                      "the menu on the display")
    controls = BrowserControls(lambda: browser.driver, lambda: None, lambda: browser.lock)
    controls.draw(["Microphone off"], Panel(message="This call has reached its maximum duration.", kind="end",
                                            tone="end"), 30)
    assert overlay_state(browser)["panel"] == "end"

    def covered() -> bool:
        frame = room_display.grab_rgb(ROOM_SIZE)
        x0, y0, x1, y1 = 300, 300, 980, 420
        changed = sum(frame[i] != before[i] for y in range(y0, y1, 4) for x in range(x0, x1, 4)
                      for i in [(y * ROOM_SIZE[0] + x) * 3])
        return changed / (((x1 - x0) // 4) * ((y1 - y0) // 4)) > 0.1 and share(frame, BADGE, red) > 0.3

    wait_for(covered, 20, "the notice panel and the badge over the menu")
    assert decode_marker(room_display.grab_rgb(ROOM_SIZE), *ROOM_SIZE) is not None  # the menu's band stays readable


def joined_watch(browser: Browser, platform: str, base_url: str, room: str) -> tuple[InCall, BrowserRoomSession]:
    session = BrowserRoomSession(browser, load_room_driver(platform, BROWSING), base_url, room)
    session.join("Alice Caller")
    controls = BrowserControls(lambda: browser.driver, lambda: session.room, lambda: browser.lock)

    class Call:
        in_room = True

        def hangup(self, reason: str) -> None:
            raise AssertionError(f"unexpected hang-up: {reason}")

    watch = InCall(controls, OFF)
    watch.start(Call())
    watch.joined()
    return watch, session


def fixture(browser: Browser) -> dict[str, Any]:
    return browser.driver.execute_script("return window.fixture")


def test_keys_on_the_jitsi_page(browser: Browser, pages_url: str) -> None:  # noqa: F811
    watch, session = joined_watch(browser, "jitsi", pages_url, "room1")
    for key in "12345":
        watch.key(key)
    seen = fixture(browser)
    assert (seen["audioMuted"], seen["videoMuted"], seen["tileView"], seen["handRaised"],
            seen["participantsPane"]) == (True, True, True, True, True)
    assert seen["shortcuts"] == ["w", "r", "p"]  # real (trusted) key presses, as a person's
    assert overlay_state(browser)["badge"] == "Microphone off|Camera off|Hand raised"
    for key in "1245":
        watch.key(key)
    seen = fixture(browser)
    assert (seen["audioMuted"], seen["videoMuted"], seen["handRaised"], seen["participantsPane"]) == (
        False, False, False, False)
    assert overlay_state(browser)["badge"] == ""
    watch.key("#")
    state = overlay_state(browser)
    assert state["panel"] == "help" and "not available here" not in state["text"]
    session.leave()


def test_keys_on_the_bigbluebutton_page(browser: Browser, pages_url: str) -> None:  # noqa: F811
    watch, session = joined_watch(browser, "bigbluebutton", pages_url, "abc-def-ghi")
    wait_for(lambda: fixture(browser)["camera"], 30, "the webcam shared")
    watch.key("1")
    watch.key("2")
    watch.key("4")
    watch.key("5")
    seen = fixture(browser)
    assert (seen["muted"], seen["camera"], seen["hand"], seen["userList"]) == (True, False, True, True)
    watch.key("3")  # BigBlueButton has no tile/speaker key
    state = overlay_state(browser)
    assert state["panel"] == "unavailable" and "not available here" in state["text"]
    watch.key("2")  # share the webcam again: button, then the preview's start
    wait_for(lambda: fixture(browser)["camera"], 30, "the webcam shared again")
    watch.key("1")
    assert fixture(browser)["muted"] is False
    watch.key("#")
    help_text = overlay_state(browser)["text"]
    assert help_text.count("not available here") == 1 and "Tile / speaker view" in help_text
    session.leave()


def test_janus_microphone_and_camera_keys_silence_and_freeze_what_the_room_gets(
        room_display: Xvfb, caller_display: Xvfb, pulse: Pulse, tmp_path: Path,  # noqa: F811
        janus_room: JanusServer, start_relay: Callable[..., MjpegRelay],  # noqa: F811
        start_browser: Callable[..., Browser], observer: Participant) -> None:  # noqa: F811
    """The gateway's page publishes a 1 kHz tone and moving video into a real Janus room; a participant measures: key 1
    -> silence, key 1 -> the tone again; key 2 -> the picture stops changing, key 2 -> it moves again."""
    pulse.play_tone(tmp_path, 1000)
    caller_display.animate((640, 360), [("red", "blue"), ("yellow", "green")])
    relay = start_relay(display=caller_display.display, size=CAMERA)
    browser = start_browser(display=room_display.display, env=pulse.env, camera_url=relay.url,
                            insecure_origins=[janus_room.base_url])
    watch, session = joined_watch(browser, "janus", janus_room.base_url, "1234")
    observer.join()
    observer.wait_remote(1, timeout=60)
    recordings = iter(range(1000))

    def level() -> float:
        wav = observer.record_remote_audio(tmp_path / f"room-{next(recordings)}.wav", 1.5)
        assert wav is not None, "no remote audio track"
        samples, _rate = read_mono(wav)
        return level_db(samples)

    wait_for(lambda: level() > -30, 60, "the room to hear the tone")
    watch.key("1")
    assert overlay_state(browser)["badge"] == "Microphone off"
    wait_for(lambda: level() < -60, 30, "silence in the room after key 1")
    assert level() < -60  # and it stays silent
    watch.key("1")
    wait_for(lambda: level() > -30, 30, "the tone in the room again after key 1")

    assert observer.remote_video_changing(timeout=30)
    watch.key("2")
    assert overlay_state(browser)["badge"] == "Camera off"
    wait_for(lambda: not observer.remote_video_changing(timeout=4), 30, "the picture to stop changing after key 2")
    assert not observer.remote_video_changing(timeout=6)
    watch.key("2")
    assert observer.remote_video_changing(timeout=30), "the picture moves again after key 2"
    assert overlay_state(browser)["badge"] == ""
    session.leave()
