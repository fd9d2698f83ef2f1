"""The keypad menu wired in: the controller's Menu (controller.py) driving ivr.KeypadMenu with the call's DTMF keys,
showing menu_screen.MenuScreen on the room display and playing prompts.PromptPlayer's prompts to the caller.

It never blocks the event loop for long: the menu page is a local file (its first show loads it, later views are one
execute_script), a prompt is a paplay started in the background, and the waits (the "joining" prompt before the room
page takes over the display, the "goodbye" before the BYE) are deadlines checked by poll(), not sleeps. The room
join itself (MenuCall.join) is the controller's, as for a dialled meeting.

The same screen and player tell a caller why their meeting cannot be joined (:class:`NoticeScreen`, the controller's
Notifier, for every gateway): the one place where the gateway itself shows a view and says a prompt.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Protocol, Sequence

from ..dispatch import RoomTarget, UnknownMeeting
from . import ivr
from .controller import MenuCall
from .ivr import KeypadMenu, MenuView, Step
from .logs import get_logger
from .notice import Notice

JOIN_DELAY = 1.5  # s between "Joining meeting 1234..." and the room's page: the screen is seen, "joining" (1.2 s) said
GOODBYE_LIMIT = 10.0  # s at most waiting for the goodbye prompt before the BYE (it lasts about 3 s)
GOODBYE_MIN = 2.0  # s the last screen ("... Goodbye.") stays at least, also when no prompt could be played

#: the call's end reason (state file, status) for each way the menu ends without a room
END_REASONS = {ivr.TIMEOUT: "keypad menu: no key pressed for {timeout:g} s",
               ivr.GAVE_UP: "keypad menu: too many attempts"}


class Screen(Protocol):
    """menu_screen.MenuScreen: shows a view on the room display."""

    def show(self, view: MenuView) -> None: ...


class Player(Protocol):
    """prompts.PromptPlayer: plays prompt ids to the caller, one at a time."""

    @property
    def playing(self) -> bool: ...

    def play(self, prompt: str | Sequence[str]) -> bool: ...

    def stop(self) -> None: ...


class KeypadMenuSession:
    """controller.Menu: one KeypadMenu per call. With several platforms among the dispatch rules (2 to
    ivr.MAX_PLATFORMS), the caller first chooses one; the meeting typed is resolved by the pool's rules (of that
    platform) and checked by its driver, as a dialled meeting is."""

    def __init__(
        self,
        screen: Callable[[], Screen],
        player: Player,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = ivr.DEFAULT_TIMEOUT,
        join_delay: float = JOIN_DELAY,
        goodbye_limit: float = GOODBYE_LIMIT,
        goodbye_min: float = GOODBYE_MIN,
        log: logging.Logger | None = None,
    ) -> None:
        self.make_screen = screen
        self.player = player
        self.clock = clock
        self.timeout = timeout
        self.join_delay = join_delay
        self.goodbye_limit = goodbye_limit
        self.goodbye_min = goodbye_min
        self._log = log or get_logger("menu")
        self.call: MenuCall | None = None
        self.menu: KeypadMenu | None = None
        self.screen: Screen | None = None
        self.shown: MenuView | None = None  # the view last drawn
        self._join: tuple[float, RoomTarget] | None = None  # (when, where) once a meeting was chosen
        self._hangup: tuple[float, float, str] | None = None  # (earliest, latest, reason) once the menu gave up

    # -- controller.Menu ----------------------------------------------------------------------------------------
    def start(self, call: MenuCall) -> None:
        """Show the first screen and say the first prompt."""
        self.stop()
        self.call = call
        self.menu = KeypadMenu(lambda meeting, platform: self._resolve(call, meeting, platform),
                               self.offered_platforms(call), clock=self.clock, timeout=self.timeout)
        self.screen = self.make_screen()
        self._log.info("keypad menu for %s (platforms offered: %s)", call.caller_uri,
                       ", ".join(self.menu.platforms) or "none")
        self._apply(self.menu.start())

    def key(self, key: str) -> None:
        """A DTMF key: to the menu, unless it already ended."""
        if self.menu is None or self.call is None or self.menu.finished:
            return
        self._apply(self.menu.key(key))

    def poll(self) -> None:
        """Join once the "joining" screen had its moment, hang up after the goodbye, else let the menu's time pass."""
        call, menu = self.call, self.menu
        if call is None or menu is None or not call.active:
            return
        now = self.clock()
        if self._join is not None:
            when, target = self._join
            if now >= when:
                self._join = None
                self._log.info("keypad menu: joining %s (%s)", target.room, target.platform)
                call.join(target)  # stops this menu first (controller.join_from_menu)
            return
        if self._hangup is not None:
            earliest, latest, reason = self._hangup
            if now >= latest or (now >= earliest and not self.player.playing):
                self._hangup = None
                call.hangup(reason)
            return
        self._apply(menu.tick())

    def stop(self) -> None:
        """The call left the menu: silence the prompt. The page is left to what comes next (the room's join or the
        controller's leave replaces it), so the caller never sees a blank screen in between."""
        self.player.stop()
        self.call = self.menu = self.screen = None
        self.shown = None
        self._join = self._hangup = None

    # -- helpers ------------------------------------------------------------------------------------------------
    def offered_platforms(self, call: MenuCall) -> list[str]:
        """The platforms the caller chooses from: those of the dispatch rules, when there are 2 to 9 of them."""
        platforms = call.dispatcher.platforms() if call.dispatcher is not None else []
        if len(platforms) > ivr.MAX_PLATFORMS:
            self._log.warning("%d platforms: more than the keypad offers (%d); the rules alone decide",
                              len(platforms), ivr.MAX_PLATFORMS)
            return []
        return platforms if len(platforms) > 1 else []

    def _resolve(self, call: MenuCall, meeting: str, platform: str | None) -> Any:
        try:
            return call.resolve(meeting, platform)
        except UnknownMeeting as exc:
            self._log.info("keypad menu: %s", exc)
            return None

    def _apply(self, step: Step) -> None:
        """Draw the view when it changed, play/stop prompts, act on the outcome (once)."""
        if step.prompt:
            self.player.play(step.prompt)
        elif step.interrupt:
            self.player.stop()
        if step.view != self.shown and self.screen is not None:
            self.screen.show(step.view)
            self.shown = step.view
        outcome = step.outcome
        if outcome is None or self._join is not None or self._hangup is not None:
            return
        now = self.clock()
        if outcome.kind == ivr.JOIN:
            self._log.info("keypad menu: meeting %s chosen (%s)", outcome.meeting, outcome.platform or "rules")
            self._join = (now + self.join_delay, outcome.target)
        else:
            reason = END_REASONS[outcome.kind].format(timeout=self.timeout)
            self._log.info("%s", reason)
            self._hangup = (now + self.goodbye_min, now + self.goodbye_limit, reason)


class NoticeScreen:
    """controller.Notifier: a notice (notice.py) drawn with the keypad menu's screen (menu.html in the gateway's
    browser, stage ``notice``) and its prompt played with the menu's player. The controller decides when to hang up."""

    def __init__(self, screen: Callable[[], Screen], player: Player, *, log: logging.Logger | None = None) -> None:
        self.make_screen = screen
        self.player = player
        self._log = log or get_logger("menu")
        self.shown: MenuView | None = None  # the view last drawn

    def say(self, notice: Notice) -> bool:
        """Start the notice's prompt; False when it could not be played."""
        return self.player.play(notice.prompt)

    def show(self, notice: Notice) -> None:
        """Draw the notice on the room display (loads the menu page over whatever the browser shows)."""
        view = notice.view()
        self.make_screen().show(view)
        self.shown = view
        self._log.info("notice shown: %s %s", view.prompt, view.error)

    @property
    def speaking(self) -> bool:
        """True while the prompt plays."""
        return self.player.playing

    def stop(self) -> None:
        """Silence the prompt (the page is blanked by the controller's leave)."""
        self.player.stop()
        self.shown = None
