"""A room that cannot be joined: the caller sees and hears why (notice.py, menu.NoticeScreen), then the gateway hangs
up and is ready again. The real Controller with the notifier wired as in the gateway (NoticeScreen over a fake screen
and a fake prompt player), a fake baresip control and a fake clock.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sipmediagw.dispatch import RoomTarget
from sipmediagw.gateway import __main__ as entry
from sipmediagw.gateway import ivr, notice
from sipmediagw.gateway.controller import NOTICE_LIMIT, NOTICE_MIN, NOTICE_TAIL, Controller, Routing
from sipmediagw.gateway.menu import NoticeScreen
from sipmediagw.gateway.menu_screen import Marker
from sipmediagw.gateway.prompts import SPOKEN, prompt_path
from sipmediagw.gateway.room_worker import RoomWorker

from test_controller import FIXED, POOL, FakeControl, FakeRoom, call, ring
from test_menu_session import Clock, FakePlayer, FakeScreen
from test_room_joins import SlowRoom, pump_until, wait_event

REFUSED = "Message: unknown error: net::ERR_CONNECTION_REFUSED\n  (Session info: chrome=120.0.6099.224)"


class TimeoutException(Exception):
    """Named like selenium's: what a driver's WebDriverWait raises when its page never shows the joined state."""


class FailingRoom(FakeRoom):
    """A room whose join raises `error` (what the browser or the driver raised)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: Any = None) -> None:
        self.actions.append(f"join:{display_name}")
        self.targets.append(target)
        raise self.error


class Setup:
    """A gateway whose room cannot be joined: `notified` False wires no notifier (the unit fakes' default)."""

    def __init__(self, room: Any = None, routing: Routing = Routing("gw", fixed=FIXED), notified: bool = True,
                 screen: FakeScreen | None = None, **kwargs: Any) -> None:
        self.clock = Clock()
        self.screen = screen or FakeScreen()
        self.player = FakePlayer()
        self.notifier = NoticeScreen(lambda: self.screen, self.player)
        self.control = FakeControl(closes_on_hangup=False)  # the test sends CALL_CLOSED: the BYEs can be counted
        self.room = room if room is not None else FailingRoom(RuntimeError(REFUSED))
        self.states: list[str] = []
        kwargs.setdefault("room_worker", RoomWorker(threaded=False))
        self.controller = Controller(self.control, self.room, self._changed, routing=routing, clock=self.clock,
                                     notifier=self.notifier if notified else None, **kwargs)

    def _changed(self) -> None:
        c = self.controller
        busy = c.in_call or c.joining or c.in_menu or c.dialling or c.notifying  # the supervisor's in-call
        self.states.append("in-call" if busy else "ready")

    def answer(self, dialled: str = "gw") -> None:
        ring(self.controller, self.control, "c1", dialled)
        self.controller.handle(call("CALL_ESTABLISHED", "c1"))
        self.controller.pump(0.0)  # the next turn of the loop draws the notice

    def wait(self, seconds: float, step: float = 0.2) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            self.controller.pump(0.0)

    @property
    def byes(self) -> int:
        return self.control.commands.count(("hangup", "c1"))

    def closed(self, param: str = "Connection reset by user") -> None:
        self.controller.handle(call("CALL_CLOSED", "c1", param=param))


def texts(view: ivr.MenuView) -> str:
    return " | ".join((view.title, view.prompt, view.error, view.hint))


# -- what the caller is told -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("error, kind", [
    (RuntimeError(REFUSED), notice.SERVER),
    (RuntimeError("Message: unknown error: net::ERR_NAME_NOT_RESOLVED"), notice.SERVER),
    (RuntimeError("Message: unknown error: net::ERR_CERT_AUTHORITY_INVALID"), notice.INSECURE),
    (TimeoutException("Message: timeout: Timed out receiving message from renderer: 29.554"), notice.PAGE),
    (RuntimeError("Message: timeout: page load"), notice.PAGE),
    (TimeoutException("Message: janus: not joined in room 1234\n"), notice.TIMEOUT),
    (RuntimeError("janus: room 1234: No such room"), notice.OTHER),
    (RuntimeError("browser not running"), notice.OTHER),
])
def test_a_technical_error_becomes_a_plain_reason(error: Exception, kind: str) -> None:
    told = notice.join_failed(error, FIXED)
    assert told.category == kind and told.reason == notice.REASONS[kind]
    assert told.meeting == "1234" and told.prompt == (notice.MEETING_UNAVAILABLE,)
    view = told.view()
    assert view.stage == ivr.NOTICE and view.prompt == notice.HEADLINE and view.error == told.reason
    assert "Session info" not in texts(view) and "\n" not in told.detail and len(told.detail) <= notice.MAX_DETAIL


def test_the_code_line_is_chromiums_net_error_or_the_first_line_cut_short() -> None:
    assert notice.detail(RuntimeError(REFUSED)) == "net::ERR_CONNECTION_REFUSED"
    assert notice.detail(RuntimeError("Message: janus: room 1234: No such room\nStacktrace: ...")) \
        == "janus: room 1234: No such room"
    long = notice.detail(RuntimeError("x" * 300))
    assert len(long) == notice.MAX_DETAIL and long.endswith("\u2026")
    assert notice.detail(None) == "" and notice.detail(RuntimeError("")) == "RuntimeError"
    timed_out = notice.join_failed(None, FIXED, timed_out=True)
    assert (timed_out.category, timed_out.detail) == (notice.TIMEOUT, "")


def test_the_prompt_is_recorded_and_the_notice_has_its_own_marker_stage() -> None:
    assert SPOKEN[notice.MEETING_UNAVAILABLE] == "Sorry, this meeting cannot be joined right now. Goodbye."
    assert prompt_path(notice.MEETING_UNAVAILABLE).is_file()
    view = notice.join_failed(RuntimeError(REFUSED), FIXED).view()
    assert Marker.of(view).stage == ivr.NOTICE and Marker.of(view).error  # cell 2 = 5, the error line is shown


def test_every_gateway_gets_the_notice_in_the_real_wiring() -> None:
    assert entry.build.__kwdefaults__["notice"] is entry.join_notice


# -- the call ------------------------------------------------------------------------------------------------------


def test_a_failed_join_shows_the_notice_says_the_prompt_then_hangs_up() -> None:
    s = Setup()
    s.answer()
    assert s.controller.notifying and s.byes == 0
    assert s.player.played == [(notice.MEETING_UNAVAILABLE,)]
    assert len(s.screen.views) == 1
    view = s.screen.views[0]
    assert view.stage == ivr.NOTICE and view.title == "Meeting 1234"
    assert view.prompt == "This meeting cannot be joined right now"
    assert view.error == "The meeting's server did not answer." and "net::ERR_CONNECTION_REFUSED" in view.hint
    assert s.room.actions == ["join:alice", "leave"]  # the half-joined room left before the notice is drawn
    s.wait(NOTICE_LIMIT - 1)  # the prompt still plays: no BYE before NOTICE_LIMIT
    assert s.byes == 0 and s.controller.notifying and s.states[-1] == "in-call"
    s.player.playing = False  # the prompt has been said
    s.wait(NOTICE_TAIL - 0.1, step=0.1)
    assert s.byes == 0  # its last syllable is still on its way to the caller
    s.wait(0.2, step=0.1)
    assert s.byes == 1
    s.wait(3)
    assert s.byes == 1  # once
    s.closed()
    c = s.controller
    assert c.call is None and not c.notifying and s.states[-1] == "ready"
    assert c.last_end_reason == "room join failed: Message: unknown error: net::ERR_CONNECTION_REFUSED"
    assert c.error == c.last_end_reason  # the operator's reason is the technical one
    assert s.player.stops >= 1 and s.room.actions == ["join:alice", "leave", "leave"]  # the notice's page blanked
    assert len(s.screen.views) == 1


def test_a_short_or_missing_prompt_still_leaves_the_screen_up_for_notice_min() -> None:
    s = Setup()
    s.player.play = lambda prompt: False  # type: ignore[method-assign]  # no paplay, or no WAV
    s.answer()
    s.wait(NOTICE_MIN - 0.2)
    assert s.byes == 0 and len(s.screen.views) == 1
    s.wait(0.4)
    assert s.byes == 1


def test_a_prompt_that_never_ends_is_cut_at_notice_limit() -> None:
    s = Setup()
    s.answer()
    s.wait(NOTICE_LIMIT - 0.2)
    assert s.byes == 0
    s.wait(0.4)
    assert s.byes == 1


def test_a_caller_hanging_up_during_the_notice_ends_the_call_at_once_without_a_bye() -> None:
    s = Setup()
    s.answer()
    s.wait(1)
    s.closed("Connection reset by peer")
    c = s.controller
    assert c.call is None and s.states[-1] == "ready" and s.player.stops >= 1
    assert c.last_end_reason == ("room join failed: Message: unknown error: net::ERR_CONNECTION_REFUSED"
                                 " (the caller hung up during the notice)")
    s.player.playing = False
    s.wait(NOTICE_LIMIT)
    assert s.byes == 0 and s.room.actions == ["join:alice", "leave", "leave"]


def test_the_gateway_stopping_during_the_notice_sends_one_bye() -> None:
    s = Setup()
    s.answer()
    s.controller.hang_up("gateway stopping")
    s.player.playing = False
    s.wait(NOTICE_LIMIT)
    assert s.byes == 1
    s.closed()
    assert s.controller.last_end_reason == "gateway stopping"


def test_a_reason_with_a_secret_is_shown_redacted() -> None:
    secret = RuntimeError("jwt=eyJhbGciOi.eyJzdWIi.c2lnbmF0 refused by https://alice:hunter2@meet.example.org/b/x"
                          "?token=s3cr3tvalue&checksum=f00d")
    s = Setup(room=FailingRoom(secret))
    s.answer()
    shown = texts(s.screen.views[0])
    for leaked in ("eyJ", "hunter2", "alice", "s3cr3tvalue", "f00d", "/b/x"):
        assert leaked not in shown, (leaked, shown)
    assert "Code: jwt=*** refused by meet.example.org" in shown  # redacted; a URL is its host only
    assert s.screen.views[0].error == "The meeting could not be opened."
    s.closed()
    reason = s.controller.last_end_reason or ""
    assert reason.startswith("room join failed: jwt=*** refused by https://alice:***@meet.example.org/b/x")
    assert "s3cr3tvalue" not in reason and "hunter2" not in reason  # technical, but redacted: it goes to state.json


def test_a_join_over_its_timeout_gets_the_notice_once_the_browser_is_free() -> None:
    room = SlowRoom()
    s = Setup(room=room, room_worker=RoomWorker(), join_timeout=90)
    s.answer()
    wait_event(room.entered, "the join to start")
    s.clock.now += 90
    s.controller.pump(0.0)  # times out: the join is cancelled, the leave queued behind it
    assert s.controller.notifying and s.player.played == [(notice.MEETING_UNAVAILABLE,)]  # said at once
    pump_until(s.controller, lambda: bool(s.screen.views), "the notice on screen")
    assert room.events[:3] == ["join:alice", "join cancelled", "leave"]  # drawn after the worker let go
    view = s.screen.views[0]
    assert view.error == "Joining the meeting took too long." and "Code" not in view.hint
    s.player.playing = False
    s.wait(NOTICE_MIN)
    assert s.byes == 1
    s.closed()
    assert s.controller.last_end_reason == "room join timed out after 90 s" and s.states[-1] == "ready"


def test_a_notice_that_cannot_be_drawn_is_still_said_and_the_call_ends() -> None:
    s = Setup(screen=FakeScreen(fail=True))
    s.answer()
    assert s.player.played == [(notice.MEETING_UNAVAILABLE,)] and s.controller.notifying
    s.player.playing = False
    s.wait(NOTICE_MIN)
    assert s.byes == 1


def test_a_pool_call_for_a_meeting_gets_the_notice_with_the_meeting_dialled() -> None:
    s = Setup(routing=POOL)
    s.answer("abc-def")
    assert s.screen.views[0].title == "Meeting abc-def"  # as dialled, not the room it maps to (team-abc-def)


def test_without_a_notifier_the_call_is_hung_up_at_once_as_before() -> None:
    s = Setup(notified=False)
    s.answer()
    assert s.byes == 1 and not s.controller.notifying
    assert s.player.played == [] and s.screen.views == []
    s.closed()
    assert s.controller.last_end_reason == "room join failed: Message: unknown error: net::ERR_CONNECTION_REFUSED"
    assert s.room.actions == ["join:alice", "leave"]
