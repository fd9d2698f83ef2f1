"""The keypad menu wired in (gateway/menu.py) behind the real Controller: DTMF events -> KeypadMenu -> screen, prompts,
and the call's way out (the room typed, or a hang-up with the reason). Fake screen, player and clock."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from sipmediagw.dispatch import Dispatcher, parse_rules
from sipmediagw.gateway import ivr
from sipmediagw.gateway.controller import Controller, Routing
from sipmediagw.gateway.ivr import MenuView
from sipmediagw.gateway.menu import GOODBYE_LIMIT, KeypadMenuSession
from sipmediagw.gateway.room_worker import RoomWorker
from test_controller import FakeControl, FakeRoom, call, ring

#: one platform: four-digit meetings are Janus rooms, nothing else is known
ONE_PLATFORM = Routing(account_user="gw", service_user="meet", dispatcher=Dispatcher.build(
    parse_rules([{"match": "[0-9]{4}", "platform": "janus", "base_url": "https://rooms.example.org"}]), "janus", ""))
TWO_PLATFORMS = Routing(account_user="gw", service_user="meet", dispatcher=Dispatcher.build(
    parse_rules([{"match": "[0-9]{3}", "platform": "jitsi", "base_url": "https://meet.example.org",
                  "room": "conf-{meeting}"}]), "janus", "https://rooms.example.org"))


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class FakeScreen:
    def __init__(self, fail: bool = False) -> None:
        self.views: list[MenuView] = []
        self.fail = fail

    def show(self, view: MenuView) -> None:
        if self.fail:
            raise RuntimeError("menu page did not render")
        self.views.append(view)


class FakePlayer:
    def __init__(self) -> None:
        self.played: list[tuple[str, ...]] = []
        self.stops = 0
        self.playing = False

    def play(self, prompt: str | Sequence[str]) -> bool:
        self.played.append((prompt,) if isinstance(prompt, str) else tuple(prompt))
        self.playing = True
        return True

    def stop(self) -> None:
        self.stops += 1
        self.playing = False


class Setup:
    def __init__(self, routing: Routing = ONE_PLATFORM, screen: FakeScreen | None = None, **kwargs: Any) -> None:
        self.clock = Clock()
        self.screen = screen or FakeScreen()
        self.screens_made = 0
        self.player = FakePlayer()

        def make_screen() -> FakeScreen:
            self.screens_made += 1
            return self.screen

        self.menu = KeypadMenuSession(make_screen, self.player, clock=self.clock, **kwargs)
        self.control, self.room = FakeControl(), FakeRoom()
        self.controller = Controller(self.control, self.room, lambda: None, routing=routing,  # type: ignore[arg-type]
                                     menu=self.menu, clock=self.clock, room_worker=RoomWorker(threaded=False))

    def answer(self, dialled: str = "meet") -> None:
        ring(self.controller, self.control, "c1", dialled)
        self.controller.handle(call("CALL_ESTABLISHED", "c1"))

    def keys(self, keys: str) -> None:
        for key in keys:
            self.controller.handle(call("CALL_DTMF_START", "c1", param=key))
            self.controller.handle(call("CALL_DTMF_END", "c1"))

    def wait(self, seconds: float, step: float = 0.2) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            self.controller.pump(0.0)


def test_a_service_call_shows_the_menu_says_the_prompt_and_joins_the_typed_meeting() -> None:
    s = Setup()
    s.answer()
    assert s.screens_made == 1 and s.screen.views[-1].stage == ivr.MEETING  # one platform: no choice to make
    assert s.player.played == [(ivr.ENTER_MEETING,)]
    s.keys("125*34")  # * erases the 5
    assert s.screen.views[-1].digits == "1234" and s.player.stops >= 1  # the first key silenced the prompt
    s.keys("#")
    assert s.screen.views[-1].stage == ivr.JOINING and s.player.played[-1] == (ivr.JOINING_PROMPT,)
    assert s.room.targets == []  # the "joining" screen is seen first
    s.wait(s.menu.join_delay)
    assert [t.room for t in s.room.targets] == ["1234"] and s.controller.in_call
    assert s.room.actions == ["join:alice"]
    views = len(s.screen.views)
    s.keys("1")  # in the room: the menu is gone
    assert len(s.screen.views) == views and s.menu.call is None


def test_the_screen_is_drawn_only_when_the_view_changes() -> None:
    s = Setup()
    s.answer()
    s.wait(5)  # ticks without keys: same view, no WebDriver call
    assert len(s.screen.views) == 1
    s.keys("A")  # not a menu key
    assert len(s.screen.views) == 1


def test_an_unknown_meeting_is_said_and_shown_then_asked_again() -> None:
    s = Setup()
    s.answer()
    s.keys("99#")
    view = s.screen.views[-1]
    assert view.stage == ivr.MEETING and view.error.startswith("Unknown meeting 99") and view.digits == ""
    assert s.player.played[-1] == (ivr.UNKNOWN_MEETING,) and s.controller.in_menu


def test_a_meeting_refused_by_its_driver_is_unknown() -> None:
    s = Setup()
    s.room.refuse = "6666"
    s.answer()
    s.keys("6666#")
    assert "Unknown meeting 6666" in s.screen.views[-1].error and s.room.targets == []


def test_no_key_for_the_timeout_says_goodbye_then_hangs_up_with_the_reason() -> None:
    s = Setup(timeout=10)
    s.control.closes_on_hangup = False
    s.answer()
    s.wait(10)
    assert s.screen.views[-1].stage == ivr.ENDED
    assert s.player.played[-1] == (ivr.TIMEOUT_PROMPT, ivr.GOODBYE)
    s.wait(s.menu.goodbye_min + 1)
    assert ("hangup", "c1") not in s.control.commands  # the goodbye is still playing
    s.player.playing = False
    s.wait(0.2)
    assert s.control.commands[-1] == ("hangup", "c1")
    s.controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by user"))
    assert s.controller.last_end_reason == "keypad menu: no key pressed for 10 s"
    assert s.room.actions == ["leave"]  # the menu page is cleared by the controller's leave


def test_too_many_attempts_hang_up_even_if_the_goodbye_never_ends() -> None:
    s = Setup()
    s.control.closes_on_hangup = False
    s.answer()
    s.keys("1#22#333#")
    assert s.screen.views[-1].stage == ivr.ENDED
    assert s.player.played[-1][-2:] == (ivr.TOO_MANY_ATTEMPTS, ivr.GOODBYE)
    s.keys("4")  # ended: keys do nothing
    s.wait(GOODBYE_LIMIT - 0.5)
    assert ("hangup", "c1") not in s.control.commands
    s.wait(0.5)
    assert s.control.commands[-1] == ("hangup", "c1")
    s.controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by user"))
    assert s.controller.last_end_reason == "keypad menu: too many attempts"


def test_several_platforms_are_offered_first_and_the_choice_picks_the_rules() -> None:
    s = Setup(routing=TWO_PLATFORMS)
    s.answer("gw")  # the gateway's own address opens the menu too
    first = s.screen.views[-1]
    assert first.stage == ivr.PLATFORM and first.choices == (("1", "Jitsi Meet"), ("2", "Janus"))
    assert s.player.played[-1][0] == ivr.CHOOSE_PLATFORM
    s.keys("1123#")
    s.wait(s.menu.join_delay)
    target = s.room.targets[-1]
    assert (target.platform, target.room) == ("jitsi", "conf-123")


def test_the_platform_chosen_limits_the_rules() -> None:
    s = Setup(routing=TWO_PLATFORMS)
    s.answer()
    s.keys("2123#")  # Janus: its default rule takes 123 as room 123
    s.wait(s.menu.join_delay)
    assert (s.room.targets[-1].platform, s.room.targets[-1].room) == ("janus", "123")


def test_a_caller_hanging_up_in_the_menu_silences_it() -> None:
    s = Setup()
    s.answer()
    s.controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert s.player.stops >= 1 and s.menu.call is None and s.controller.last_end_reason == "caller hung up"


def test_a_menu_page_that_cannot_be_shown_hangs_up() -> None:
    s = Setup(screen=FakeScreen(fail=True))
    s.answer()
    s.controller.pump(0.0)
    assert s.controller.call is None
    assert s.controller.last_end_reason == "keypad menu failed: menu page did not render"


@pytest.mark.parametrize("count, offered", [(1, []), (2, ["p0", "p1"]), (9, [f"p{i}" for i in range(9)]), (10, [])])
def test_platforms_offered(count: int, offered: list[str]) -> None:
    rules = [{"match": f"{i}", "platform": f"p{i}", "base_url": "https://x.example.org"} for i in range(count)]
    routing = Routing(account_user="gw", dispatcher=Dispatcher.build(parse_rules(rules), "p0", ""))
    s = Setup(routing=routing)
    s.answer()
    assert s.menu.menu is not None and list(s.menu.menu.platforms) == offered
