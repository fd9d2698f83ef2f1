"""The gateway's side of a join that waits and asks, in a real Chromium: BrowserRoomSession wires the driver's
progress and keypad questions to a JoinDialogue (what the controller feeds keys to and the state file shows) and
draws them over the room's page, the video the caller receives. Against the Jitsi fixture page (test_jitsi_flows.py
covers the driver's flows themselves)."""

from __future__ import annotations

import threading
from typing import Iterator

import pytest

from sipmediagw.gateway.browser import Browser, BrowserRoomSession
from sipmediagw.gateway.join_dialogue import JoinDialogue
from sipmediagw.room import load_room_driver

from test_browser_real import BROWSING, pages_url, shared_browser, wait_for  # noqa: F401 (fixtures)

PANEL = "return (document.getElementById('sipmediagw-overlay-panel') || {}).textContent || ''"
SHOWN = "const p = document.getElementById('sipmediagw-overlay-panel'); return !!p && p.style.display !== 'none'"


@pytest.fixture
def typist() -> Iterator[list[threading.Thread]]:
    """Threads standing in for the caller's keypad (the controller's loop): joined at the end of the test."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(30)


def type_when_asked(browser: Browser, dialogue: JoinDialogue, keys: str, threads: list[threading.Thread],
                    seen: list[str]) -> None:
    """Once the join asks: note what the caller's screen shows (the page's overlay panel; the join waits for keys
    meanwhile, so this thread may talk to the browser), then type `keys` (as the controller hands DTMF over)."""
    def keypad() -> None:
        wait_for(lambda: dialogue.asking, 30, "the join's question")
        seen.append(browser.driver.execute_script(PANEL))
        for key in keys:
            assert dialogue.take_key(key)

    thread = threading.Thread(target=keypad, daemon=True)
    thread.start()
    threads.append(thread)


def test_a_password_asked_on_the_callers_screen_and_typed_on_the_keypad(
        shared_browser: Browser, pages_url: str, typist: list[threading.Thread]) -> None:  # noqa: F811
    shared_browser.driver.get("about:blank")
    session = BrowserRoomSession(shared_browser, load_room_driver("jitsi", BROWSING), pages_url, "locked-4242",
                                 {"join_timeout": 20})
    dialogue, seen = JoinDialogue(), []
    type_when_asked(shared_browser, dialogue, "9*4242#", typist, seen)  # '*' starts again
    session.join("Alice Caller", dialogue=dialogue)
    fixture = shared_browser.driver.execute_script("return window.fixture")
    assert fixture["joined"] is True and fixture["passwordAttempts"] == 1
    assert len(seen) == 1 and "Joining the meeting" in seen[0] and "Enter the meeting password" in seen[0]
    assert "keypad" in seen[0]  # how to answer, before any digit
    assert dialogue.status is None and not dialogue.asking  # answered: nothing waits any more
    assert not shared_browser.driver.execute_script(SHOWN)  # joined: the caller sees the room, no panel over it
    session.leave()


def test_the_lobby_wait_is_on_the_callers_screen_and_in_the_state(
        shared_browser: Browser, pages_url: str, typist: list[threading.Thread]) -> None:  # noqa: F811
    shared_browser.driver.get("about:blank")
    session = BrowserRoomSession(shared_browser, load_room_driver("jitsi", BROWSING), pages_url, "lobby-admit",
                                 {"join_timeout": 20})
    dialogue, seen = JoinDialogue(), []

    def watch() -> None:  # what `status` and the caller's screen show while the join waits in the lobby
        wait_for(lambda: dialogue.status == "waiting to be let in", 30, "the lobby's progress line")
        seen.append(shared_browser.driver.execute_script(PANEL))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    typist.append(watcher)
    session.join("Alice Caller", dialogue=dialogue)
    watcher.join(30)
    assert seen and "Waiting to be let in" in seen[0]
    assert not shared_browser.driver.execute_script(SHOWN)  # admitted: the panel is gone
    session.leave()
