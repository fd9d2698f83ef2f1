"""overlay.BrowserControls and Room's sent-track switch with a fake WebDriver: what reaches the page, under the lock.
(The overlay's pixels on a real display: tests/integration/test_keypad_real.py.)"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import pytest

from sipmediagw.gateway.overlay import OVERLAY_JS, BrowserControls, Panel, overlay_script
from sipmediagw.room import Room


class FakeDriver:
    def __init__(self, answer: Any = True) -> None:
        self.scripts: list[tuple[str, tuple[Any, ...]]] = []
        self.answer = answer

    def execute_script(self, script: str, *args: Any) -> Any:
        self.scripts.append((script, args))
        return self.answer


class Lock:
    def __init__(self) -> None:
        self.held = 0
        self.entered = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.held += 1
        self.entered += 1
        try:
            yield
        finally:
            self.held -= 1


class Page(Room):
    platform = "page"

    def __init__(self, driver: Any, lock: Lock) -> None:
        super().__init__(driver, "https://x.example.org", "r")
        self.lock = lock
        self.calls: list[tuple[str, Any]] = []

    def url(self) -> str:
        return "about:blank"

    def join(self, display_name: str) -> None:
        pass

    def leave(self) -> None:
        pass

    def set_microphone(self, on: bool) -> None:
        assert self.lock.held, "driver actions run under the browser lock"
        self.calls.append(("set_microphone", on))

    def participant_count(self) -> int | None:
        assert self.lock.held
        return 3


def test_draw_sends_badge_panel_and_duration_to_the_overlay_script() -> None:
    driver, lock = FakeDriver(answer=True), Lock()
    controls = BrowserControls(lambda: driver, lambda: None, lock)
    panel = Panel(title="Keypad controls", lines=(("1", "Microphone on / off", "OFF", True),), kind="help")
    assert controls.draw(["Microphone off"], panel, 8.0) is True
    script, (state,) = driver.scripts[-1]
    assert script == overlay_script() and lock.entered == 1
    assert state == {"badge": ["Microphone off"], "ms": 8000, "panel": {
        "title": "Keypad controls", "lines": [["1", "Microphone on / off", "OFF", True]], "message": "",
        "kind": "help", "tone": "info"}}
    controls.draw([], panel, 0)
    assert driver.scripts[-1][1][0]["ms"] == 0  # a panel whose time is up is not drawn
    assert BrowserControls(lambda: None, lambda: None).draw([], None, 0) is False  # no browser: nothing to do


def test_the_script_calls_the_overlay_function_on_its_argument() -> None:
    # overlay.js starts with // comments: a bare `return <newline>` would return nothing and draw nothing
    script = overlay_script()
    assert script.startswith("return (//") and script.endswith("\n)(arguments[0]);")
    assert OVERLAY_JS.read_text().lstrip().startswith("//")


def test_capabilities_and_actions_go_to_the_current_rooms_driver_under_the_lock() -> None:
    driver, lock = FakeDriver(), Lock()
    room = Page(driver, lock)
    current: list[Room | None] = [room]
    controls = BrowserControls(lambda: driver, lambda: current[0], lock)
    assert controls.supports("set_microphone") and not controls.supports("set_camera")
    controls.perform("set_microphone", False)
    assert room.calls == [("set_microphone", False)] and controls.participant_count() == 3
    with pytest.raises(NotImplementedError):
        controls.perform("set_camera", False)  # Room's default: the key says "not available here"
    current[0] = None  # between calls
    assert not controls.supports("set_microphone") and controls.participant_count() is None
    with pytest.raises(NotImplementedError):
        controls.perform("set_microphone", True)


@pytest.mark.parametrize("answer, error", [(2, None), (0, "took no audio track"), (-1, "no sipmediagw media hook"),
                                           (None, "no sipmediagw media hook")])
def test_sent_tracks_switch(answer: Any, error: str | None) -> None:
    driver = FakeDriver(answer=answer)
    room = Page(driver, Lock())
    if error is None:
        room._set_sent_tracks("audio", False)
        assert driver.scripts[-1][1] == ("audio", False)
    else:
        with pytest.raises(RuntimeError, match=error):
            room._set_sent_tracks("audio", True)
