"""The keypad menu (IVR) of a call that named no meeting: a pure state machine, fed keys and clock ticks.

A room system's keypad (0-9, ``*``, ``#``) and screen are the caller's only interface, so every answer of the machine
is an explicit value the wiring code acts on (:class:`Step`): what to show (:class:`MenuView`, drawn by
:mod:`.menu_screen`), which prompt to play (prompt ids, played by :mod:`.prompts`) and, once, how it ended
(:class:`Outcome`). Nothing here does I/O or reads the time by itself: the clock is injected, so tests drive it.

Rules (docs/dialplan.md, "Keypad menu"):

* With two or more platforms it first asks for the platform (``1`` = the first, ``2`` = the second...), then for
  the meeting number; with one platform or none it asks for the meeting number at once.
* Digits are kept as typed (at most ``max_digits``); ``*`` erases the last one; ``*`` with nothing typed goes back to
  the platform choice when there is one, and does nothing otherwise; ``#`` confirms.
* The confirmed number goes to the injected resolver: known -> outcome JOIN (carrying the resolver's answer, e.g.
  the room target); unknown -> "unknown meeting", the digits are cleared and it asks again. ``max_attempts``
  rejected entries (unknown meetings and keys that are no platform choice) end the menu with outcome GAVE_UP.
* No valid key for ``timeout`` seconds ends the menu with outcome TIMEOUT.
* Any valid key interrupts the prompt being played. Other keys (A-D, flash...) are ignored altogether.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Literal, Mapping, Sequence

DEFAULT_TIMEOUT = 30.0  # seconds without a key: a person reading the screen and finding the number needs ~10-20 s
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_DIGITS = 12  # Jitsi/BBB/Janus meeting numbers people type are far shorter; it bounds the screen too
MAX_PLATFORMS = 9  # one key each, 1-9

KEYS = frozenset("0123456789*#")

#: stages (MenuView.stage)
PLATFORM = "platform"  # choosing the platform
MEETING = "meeting"  # typing the meeting number
JOINING = "joining"  # finished with a meeting to join
ENDED = "ended"  # finished without one (timeout, gave up)
#: not a stage of the menu: a notice drawn on the menu's screen before the gateway hangs up (notice.py)
NOTICE = "notice"
STAGES = (PLATFORM, MEETING, JOINING, ENDED, NOTICE)

#: outcomes (Outcome.kind)
JOIN = "join"
TIMEOUT = "timeout"
GAVE_UP = "gave_up"
OutcomeKind = Literal["join", "timeout", "gave_up"]

# Prompt ids: one WAV each in sipmediagw/gateway/prompts/ (texts in prompts.py, made by scripts/make-prompts).
ENTER_MEETING = "enter_meeting"
CHOOSE_PLATFORM = "choose_platform"
INVALID_CHOICE = "invalid_choice"
UNKNOWN_MEETING = "unknown_meeting"
TOO_MANY_ATTEMPTS = "too_many_attempts"
JOINING_PROMPT = "joining"
TIMEOUT_PROMPT = "timeout"
GOODBYE = "goodbye"

#: screen labels of the platforms shipped in browsing/ (any other name is shown as it is)
PLATFORM_LABELS = {"janus": "Janus", "jitsi": "Jitsi Meet", "bigbluebutton": "BigBlueButton",
                   "livekit": "LiveKit Meet"}

#: (meeting, platform) -> a true value when the meeting exists (e.g. its room target, kept in Outcome.target), a false
#: one (None, False) when it does not
Resolver = Callable[[str, "str | None"], Any]
Clock = Callable[[], float]


def press_prompt(choice: int) -> str:
    """Prompt id of "Press <choice> for" (choice 1-9)."""
    return f"press_{choice}"


def platform_prompt(platform: str) -> str:
    """Prompt id of a platform's spoken name: ``platform_`` + its lower-case letters and digits."""
    return "platform_" + "".join(c for c in platform.lower() if c.isascii() and c.isalnum())


@dataclasses.dataclass(frozen=True)
class MenuView:
    """What the caller's screen shows; every text is final (the page adds no words of its own)."""

    stage: str
    title: str
    prompt: str
    digits: str = ""
    max_digits: int = DEFAULT_MAX_DIGITS
    error: str = ""
    choices: tuple[tuple[str, str], ...] = ()  # (key, label) of each platform, in the platform stage
    platform: str = ""  # label of the chosen platform ("" when none was chosen)
    platform_index: int = 0  # 1-based index of the chosen platform, 0 when none was chosen
    hint: str = ""
    attempts_left: int = DEFAULT_MAX_ATTEMPTS

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the page's render() receives, marker added by menu_screen)."""
        data = dataclasses.asdict(self)
        data["choices"] = [list(choice) for choice in self.choices]
        return data


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How the menu ended: join `meeting` on `platform` (None when no platforms were configured), or timeout/gave up.

    `target` is what the resolver answered for the meeting joined (e.g. a dispatch.RoomTarget); it does not take part
    in comparisons, so tests and logs compare outcomes by kind, meeting and platform.
    """

    kind: OutcomeKind
    meeting: str | None = None
    platform: str | None = None
    target: Any = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Step:
    """The machine's answer to start(), key() or tick().

    `prompt`: prompt ids to play now, in order, replacing any prompt playing (empty: play nothing new);
    `interrupt`: the caller pressed a key, stop the prompt playing now; `outcome`: set once the menu has ended (and
    on every later step).
    """

    view: MenuView
    prompt: tuple[str, ...] = ()
    interrupt: bool = False
    outcome: Outcome | None = None


class KeypadMenu:
    """Asks for the platform (when there are several) and the meeting number; see the module docstring for the rules.

    `resolver(meeting, platform)` says whether the meeting exists (platform: the chosen name, or None without
    platforms) by a true or false answer; it is called synchronously on ``#`` and what it raises propagates (the
    wiring's resolver turns its own "unknown" exceptions into None). `clock` returns seconds (monotonic).
    """

    def __init__(
        self,
        resolver: Resolver,
        platforms: Sequence[str] = (),
        *,
        clock: Clock = time.monotonic,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_digits: int = DEFAULT_MAX_DIGITS,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if len(platforms) > MAX_PLATFORMS:
            raise ValueError(f"at most {MAX_PLATFORMS} platforms can be offered on the keypad, got {len(platforms)}")
        if len(set(platforms)) != len(platforms):
            raise ValueError(f"platforms listed twice: {list(platforms)}")
        if timeout <= 0 or max_attempts < 1 or max_digits < 1:
            raise ValueError("timeout, max_attempts and max_digits must be positive")
        self.resolver = resolver
        self.platforms = tuple(platforms)
        self.clock = clock
        self.timeout = float(timeout)
        self.max_attempts = max_attempts
        self.max_digits = max_digits
        self.labels = {**PLATFORM_LABELS, **(labels or {})}
        self._started = False
        self._stage = PLATFORM if len(self.platforms) > 1 else MEETING
        self._platform: int | None = 0 if len(self.platforms) == 1 else None  # index into platforms
        self._digits = ""
        self._error = ""
        self._failures = 0
        self._last_activity = 0.0
        self._outcome: Outcome | None = None
        self._ending = ""  # what the screen says once it ended

    # -- public API ----------------------------------------------------------------------------------------------
    def start(self) -> Step:
        """Begin: the inactivity timer starts now; returns the first screen and prompt."""
        if self._started:
            raise RuntimeError("the menu is already started")
        self._started = True
        self._last_activity = self.clock()
        return self._step(self._stage_prompt())

    def key(self, key: str) -> Step:
        """One key from the caller ('0'-'9', '*', '#'; anything else is ignored). A key arriving once the timeout has
        passed ends the menu with TIMEOUT, as tick() would have: the rule does not depend on how often ticks come."""
        self._require_started()
        if self._outcome is not None:
            return self._step()
        if self._expired():
            return self._end_timeout()
        if key not in KEYS:
            return self._step()
        self._last_activity = self.clock()
        step = self._platform_key(key) if self._stage == PLATFORM else self._meeting_key(key)
        return dataclasses.replace(step, interrupt=True)

    def tick(self) -> Step:
        """Let time pass: ends the menu with TIMEOUT once `timeout` seconds passed without a valid key."""
        self._require_started()
        if self._outcome is None and self._expired():
            return self._end_timeout()
        return self._step()

    @property
    def view(self) -> MenuView:
        """The screen as it is now."""
        return self._view()

    @property
    def outcome(self) -> Outcome | None:
        """How the menu ended; None while it runs."""
        return self._outcome

    @property
    def finished(self) -> bool:
        """True once there is an outcome."""
        return self._outcome is not None

    @property
    def deadline(self) -> float | None:
        """Clock time at which the inactivity timeout fires (tick() at or after it); None before start and after the
        end. Lets the wiring sleep exactly until the next thing can happen."""
        if not self._started or self._outcome is not None:
            return None
        return self._last_activity + self.timeout

    # -- stages --------------------------------------------------------------------------------------------------
    def _platform_key(self, key: str) -> Step:
        if not key.isdigit():
            return self._step()  # * and # mean nothing before a platform is chosen
        choice = int(key)
        if 1 <= choice <= len(self.platforms):
            self._platform = choice - 1
            self._stage = MEETING
            self._error = ""
            return self._step((ENTER_MEETING,))
        self._error = f"There is no choice {key}: press 1 to {len(self.platforms)}."
        return self._reject((INVALID_CHOICE, *self._choose_prompt()))

    def _meeting_key(self, key: str) -> Step:
        if key.isdigit():
            if len(self._digits) >= self.max_digits:
                self._error = f"A meeting number has at most {self.max_digits} digits."
            else:
                self._digits += key
                self._error = ""
            return self._step()
        if key == "*":
            if self._digits:
                self._digits = self._digits[:-1]
                self._error = ""
                return self._step()
            if len(self.platforms) > 1:  # nothing to erase: back to the platform choice
                self._stage, self._platform, self._error = PLATFORM, None, ""
                return self._step(self._choose_prompt())
            return self._step()
        # "#"
        if not self._digits:
            self._error = "Type the meeting number first, then press #."
            return self._step((ENTER_MEETING,))
        meeting, platform = self._digits, self._platform_name()
        answer = self.resolver(meeting, platform)
        if answer:
            self._outcome = Outcome(JOIN, meeting, platform, answer)
            self._stage, self._error = JOINING, ""
            return self._step((JOINING_PROMPT,))
        self._digits = ""
        self._error = f"Unknown meeting {meeting}. Please try again."
        return self._reject((UNKNOWN_MEETING,))

    def _reject(self, prompt: tuple[str, ...]) -> Step:
        """A rejected entry: ask again, or give up once max_attempts entries were rejected."""
        self._failures += 1
        if self._failures < self.max_attempts:
            return self._step(prompt)
        self._outcome = Outcome(GAVE_UP, None, self._platform_name())
        self._stage = ENDED
        self._ending = "Too many attempts. Goodbye."
        return self._step((prompt[0], TOO_MANY_ATTEMPTS, GOODBYE))

    def _end_timeout(self) -> Step:
        self._outcome = Outcome(TIMEOUT, None, self._platform_name())
        self._stage = ENDED
        self._error = ""
        self._ending = f"No key was pressed for {self.timeout:g} seconds. Goodbye."
        return self._step((TIMEOUT_PROMPT, GOODBYE))

    # -- helpers -------------------------------------------------------------------------------------------------
    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("start() the menu first")

    def _expired(self) -> bool:
        return self.clock() - self._last_activity >= self.timeout

    def _platform_name(self) -> str | None:
        return self.platforms[self._platform] if self._platform is not None else None

    def _label(self, platform: str) -> str:
        return self.labels.get(platform, platform)

    def _choose_prompt(self) -> tuple[str, ...]:
        prompt = [CHOOSE_PLATFORM]
        for number, platform in enumerate(self.platforms, 1):
            prompt += [press_prompt(number), platform_prompt(platform)]
        return tuple(prompt)

    def _stage_prompt(self) -> tuple[str, ...]:
        return self._choose_prompt() if self._stage == PLATFORM else (ENTER_MEETING,)

    def _step(self, prompt: tuple[str, ...] = ()) -> Step:
        return Step(self._view(), prompt, False, self._outcome)

    def _view(self) -> MenuView:
        platform = self._platform_name()
        common: dict[str, Any] = {
            "title": "Join a meeting",
            "max_digits": self.max_digits,
            "platform": self._label(platform) if platform is not None and len(self.platforms) > 1 else "",
            "platform_index": (self._platform + 1) if self._platform is not None and len(self.platforms) > 1 else 0,
            "attempts_left": max(0, self.max_attempts - self._failures),
        }
        if self._stage == PLATFORM:
            choices = tuple((str(n), self._label(p)) for n, p in enumerate(self.platforms, 1))
            return MenuView(PLATFORM, prompt="Choose the platform", error=self._error, choices=choices,
                            hint="Press the number of your choice", **common)
        if self._stage == MEETING:
            erase = "* erase (nothing typed: back)" if len(self.platforms) > 1 else "* erase"
            return MenuView(MEETING, prompt="Enter the meeting number, then press #", digits=self._digits,
                            error=self._error, hint=f"{erase}   # confirm", **common)
        if self._stage == JOINING:
            assert self._outcome is not None
            return MenuView(JOINING, prompt=f"Joining meeting {self._outcome.meeting}...", digits=self._digits,
                            hint="Please wait", **common)
        return MenuView(ENDED, prompt=self._ending, digits=self._digits, error=self._error, **common)
