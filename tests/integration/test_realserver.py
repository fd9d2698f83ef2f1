"""Check a driver against YOUR deployment: a real Chromium with the gateway's camera and microphone hooks joins a
room of the conferencing service given in the environment, and leaves. One command (docs/rooms.md "Checking your
own deployment"):

    SIPMEDIAGW_REAL_URL=https://meet.example.org SIPMEDIAGW_REAL_PLATFORM=jitsi \\
        python3 -m pytest -m realserver tests/integration/test_realserver.py

Optional: SIPMEDIAGW_REAL_ROOM (default: a fresh sipmediagw-check-<random> room), SIPMEDIAGW_REAL_OPTIONS (a JSON
object of the driver's plain options), SIPMEDIAGW_REAL_SECRETS (a JSON object of secret option -> file holding it),
SIPMEDIAGW_REAL_NAME (the display name). Without SIPMEDIAGW_REAL_URL the test is skipped, and the report says so:
no server of any of these platforms is reachable from CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import urllib.parse
from typing import Any, Callable, Iterator

import pytest

from sipmediagw.gateway.browser import Browser, BrowserRoomSession
from sipmediagw.gateway.join_dialogue import JoinDialogue
from sipmediagw.room import load_room_driver
from sipmediagw.room_options import check_against_driver, read_secret_file

from test_browser_real import (BROWSER_PROGRAMS, BROWSING, DISPLAY_PROGRAMS, PULSE_PROGRAMS, ROOM_SIZE, Pulse,
                               Xvfb)

pytestmark = [pytest.mark.integration, pytest.mark.realserver]

URL = os.environ.get("SIPMEDIAGW_REAL_URL", "").strip()


def _json_object(name: str) -> dict[str, Any]:
    text = os.environ.get(name, "").strip()
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise pytest.UsageError(f"{name} must be a JSON object")
    return value


@pytest.fixture
def real_browser(tmp_path_factory: pytest.TempPathFactory, require_programs: Callable[..., None]) -> Iterator[Browser]:
    """The gateway's browser (headful on its own Xvfb, PulseAudio for the microphone); a plain-http deployment is
    whitelisted as a secure origin, as the gateway does for one (getUserMedia needs a secure context)."""
    require_programs(*DISPLAY_PROGRAMS, *PULSE_PROGRAMS, *BROWSER_PROGRAMS)
    parts = urllib.parse.urlsplit(URL)
    insecure = [f"http://{parts.netloc}"] if parts.scheme == "http" else []
    with contextlib.ExitStack() as cleanup:  # a part that fails to start still stops the ones before it
        xvfb = Xvfb(ROOM_SIZE, tmp_path_factory.mktemp("display"))
        cleanup.callback(xvfb.close)
        pulse = Pulse(tmp_path_factory.mktemp("pulse"))
        cleanup.callback(pulse.close)
        browser = Browser(display=xvfb.display, env=pulse.env, camera_url=None, insecure_origins=insecure)
        cleanup.callback(browser.quit)
        browser.start()
        yield browser


@pytest.mark.skipif(not URL, reason="no deployment given: set SIPMEDIAGW_REAL_URL (and SIPMEDIAGW_REAL_PLATFORM, "
                                    "SIPMEDIAGW_REAL_ROOM...) to check a driver against a real server")
def test_the_driver_joins_a_room_of_the_given_deployment_and_leaves(real_browser: Browser) -> None:
    platform = os.environ.get("SIPMEDIAGW_REAL_PLATFORM", "jitsi").strip()
    room = os.environ.get("SIPMEDIAGW_REAL_ROOM", "").strip() or f"sipmediagw-check-{secrets.token_hex(4)}"
    name = os.environ.get("SIPMEDIAGW_REAL_NAME", "").strip() or "SIP gateway check"
    driver_cls = load_room_driver(platform, BROWSING)
    secret_values = {key: read_secret_file(key, path)
                     for key, path in _json_object("SIPMEDIAGW_REAL_SECRETS").items()}
    options = check_against_driver(driver_cls, _json_object("SIPMEDIAGW_REAL_OPTIONS"), secret_values)
    session = BrowserRoomSession(real_browser, driver_cls, URL, room, options)
    dialogue = JoinDialogue()
    try:
        session.join(name, dialogue=dialogue)  # raises RoomRefused / a timeout with the platform's reason
        assert session.room is not None
        with real_browser.page_action() as page:
            hooks = page.execute_script("return window.__sipmediagw ? window.__sipmediagw.enabled() : null")
            audio = page.execute_script("return window.__sipmediagw.setEnabled('audio', true)")
            video = page.execute_script("return window.__sipmediagw.setEnabled('video', true)")
            count = session.room.participant_count()
        print(f"\n{platform} {URL} room {room!r}: joined as {name!r}; the page took {audio} audio and {video} video "
              f"track(s) from the gateway; participants: {count}; last progress: {dialogue.status}")
        assert hooks is not None, "the gateway's media hooks (inject.js) are not in the room's page"
        assert audio >= 1, "the room's page took no microphone track from the gateway"
        assert options.get("audio_only") or video >= 1, "the room's page took no camera track from the gateway"
        assert count is None or count >= 1
    finally:
        session.leave()
    assert real_browser.driver.current_url == "about:blank"
