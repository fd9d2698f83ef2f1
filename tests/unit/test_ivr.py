"""The keypad menu's rules (sipmediagw/gateway/ivr.py), driven with a fake clock: one test per rule, then properties."""

from __future__ import annotations

from typing import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmediagw.gateway import ivr
from sipmediagw.gateway.ivr import GAVE_UP, JOIN, TIMEOUT, KeypadMenu, Outcome, Step


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Resolver:
    """Knows a fixed set of (meeting, platform) pairs and records what it was asked."""

    def __init__(self, known: Iterable[tuple[str, str | None]] = (("1234", None),)) -> None:
        self.known = set(known)
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, meeting: str, platform: str | None) -> bool:
        self.asked.append((meeting, platform))
        return (meeting, platform) in self.known


def menu(platforms: tuple[str, ...] = (), known: Iterable[tuple[str, str | None]] = (("1234", None),),
         **kwargs) -> tuple[KeypadMenu, FakeClock, Resolver]:  # type: ignore[no-untyped-def]
    clock, resolver = FakeClock(), Resolver(known)
    return KeypadMenu(resolver, platforms, clock=clock, **kwargs), clock, resolver


def press(m: KeypadMenu, keys: str) -> Step:
    step = m.tick()
    for key in keys:
        step = m.key(key)
    return step


# -- single platform (or none): straight to the meeting number ---------------------------------------------------
def test_start_asks_for_the_meeting_number() -> None:
    m, _, _ = menu()
    step = m.start()
    assert step.prompt == (ivr.ENTER_MEETING,)
    assert step.outcome is None and not step.interrupt
    assert step.view.stage == ivr.MEETING
    assert step.view.digits == "" and step.view.error == "" and step.view.choices == ()
    assert "meeting number" in step.view.prompt and "#" in step.view.prompt
    assert step.view.hint == "* erase   # confirm"


def test_digits_are_kept_as_typed_and_interrupt_the_prompt() -> None:
    m, _, _ = menu()
    m.start()
    step = m.key("0")
    assert step.view.digits == "0" and step.interrupt and step.prompt == ()
    assert press(m, "42").view.digits == "042"  # a leading zero is a digit like any other


def test_star_erases_the_last_digit() -> None:
    m, _, _ = menu()
    m.start()
    assert press(m, "12*").view.digits == "1"
    assert press(m, "34").view.digits == "134"
    assert press(m, "***").view.digits == ""


def test_star_on_nothing_typed_is_harmless_with_one_platform() -> None:
    m, _, _ = menu()
    m.start()
    step = m.key("*")
    assert step.view.digits == "" and step.view.stage == ivr.MEETING and step.outcome is None
    assert step.view.attempts_left == 3 and step.prompt == ()


def test_star_erases_before_confirming() -> None:
    m, _, resolver = menu()
    m.start()
    press(m, "12*34#")
    assert resolver.asked == [("134", None)]  # 1, 2, erase the 2, 3, 4


def test_hash_confirms_a_known_meeting() -> None:
    m2, _, resolver2 = menu()
    m2.start()
    step = press(m2, "1234#")
    assert resolver2.asked == [("1234", None)]
    assert step.outcome == Outcome(JOIN, "1234", None)
    assert step.prompt == (ivr.JOINING_PROMPT,) and step.interrupt
    assert step.view.stage == ivr.JOINING and "1234" in step.view.prompt
    assert m2.finished and m2.outcome == step.outcome and m2.deadline is None


def test_the_resolvers_answer_is_the_outcomes_target() -> None:
    m = KeypadMenu(lambda meeting, platform: {"room": f"r{meeting}"} if meeting == "5" else None,
                   clock=FakeClock())
    m.start()
    assert press(m, "4#").outcome is None and m.view.error  # None: unknown
    outcome = press(m, "5#").outcome
    assert outcome == Outcome(JOIN, "5", None) and outcome.target == {"room": "r5"}


def test_single_platform_is_passed_to_the_resolver_without_asking() -> None:
    m, _, resolver = menu(("jitsi",), known=[("77", "jitsi")])
    assert m.start().view.stage == ivr.MEETING
    assert press(m, "77#").outcome == Outcome(JOIN, "77", "jitsi")
    assert resolver.asked == [("77", "jitsi")]
    assert m.view.platform == "" and m.view.platform_index == 0  # nothing was chosen: nothing to show


def test_unknown_meeting_says_so_clears_and_asks_again() -> None:
    m, _, _ = menu()
    m.start()
    step = press(m, "999#")
    assert step.outcome is None
    assert step.prompt == (ivr.UNKNOWN_MEETING,)
    assert step.view.stage == ivr.MEETING and step.view.digits == ""
    assert "999" in step.view.error and step.view.attempts_left == 2
    # The error goes away as soon as the caller types again.
    assert m.key("1").view.error == ""
    assert press(m, "*1234#").outcome == Outcome(JOIN, "1234", None)


def test_hash_with_nothing_typed_asks_again_without_using_an_attempt() -> None:
    m, _, resolver = menu()
    m.start()
    step = m.key("#")
    assert step.prompt == (ivr.ENTER_MEETING,) and step.view.error
    assert step.view.attempts_left == 3 and resolver.asked == [] and step.outcome is None


def test_max_attempts_then_it_gives_up() -> None:
    m, _, _ = menu(max_attempts=2)
    m.start()
    assert press(m, "1#").outcome is None
    step = press(m, "2#")
    assert step.outcome == Outcome(GAVE_UP, None, None)
    assert step.prompt == (ivr.UNKNOWN_MEETING, ivr.TOO_MANY_ATTEMPTS, ivr.GOODBYE)
    assert step.view.stage == ivr.ENDED and "Goodbye" in step.view.prompt and "2" in step.view.error
    assert step.view.attempts_left == 0


def test_digits_never_exceed_the_maximum() -> None:
    m, _, _ = menu(max_digits=4)
    m.start()
    step = press(m, "123456")
    assert step.view.digits == "1234" and "4 digits" in step.view.error
    assert m.key("*").view.digits == "123" and m.view.error == ""


def test_other_keys_are_ignored_entirely() -> None:
    m, clock, _ = menu()
    m.start()
    press(m, "12")
    clock.advance(20)
    for key in ("A", "d", "R", "", "12", " ", "!"):
        step = m.key(key)
        assert step.view.digits == "12" and not step.interrupt and step.prompt == ()
    clock.advance(10)  # 30 s since the last VALID key
    assert m.tick().outcome == Outcome(TIMEOUT, None, None)


# -- inactivity timeout ------------------------------------------------------------------------------------------
def test_inactivity_timeout_ends_the_menu() -> None:
    m, clock, _ = menu(timeout=10)
    m.start()
    assert m.deadline == clock.now + 10
    clock.advance(9.9)
    assert m.tick().outcome is None
    clock.advance(0.1)
    step = m.tick()
    assert step.outcome == Outcome(TIMEOUT, None, None)
    assert step.prompt == (ivr.TIMEOUT_PROMPT, ivr.GOODBYE)
    assert step.view.stage == ivr.ENDED and "10 seconds" in step.view.prompt


def test_each_key_restarts_the_inactivity_timer() -> None:
    m, clock, _ = menu()
    m.start()
    assert ivr.DEFAULT_TIMEOUT == 30
    for _ in range(5):
        clock.advance(29)
        assert m.key("1").outcome is None
    assert m.deadline == clock.now + 30
    clock.advance(30)
    assert m.tick().outcome is not None


def test_a_key_after_the_timeout_is_too_late() -> None:
    m, clock, _ = menu(timeout=5)
    m.start()
    clock.advance(6)
    step = m.key("1")
    assert step.outcome == Outcome(TIMEOUT, None, None) and step.view.digits == ""


def test_after_the_end_nothing_changes() -> None:
    m, clock, resolver = menu()
    m.start()
    end = press(m, "1234#")
    clock.advance(1000)
    for step in (m.tick(), m.key("5"), m.key("#"), m.key("*")):
        assert step.view == end.view and step.outcome == end.outcome and step.prompt == () and not step.interrupt
    assert len(resolver.asked) == 1


def test_start_once_and_before_anything_else() -> None:
    m, _, _ = menu()
    with pytest.raises(RuntimeError):
        m.key("1")
    with pytest.raises(RuntimeError):
        m.tick()
    assert m.deadline is None
    m.start()
    with pytest.raises(RuntimeError):
        m.start()


@pytest.mark.parametrize("kwargs", [
    {"platforms": tuple(f"p{i}" for i in range(10))},
    {"platforms": ("jitsi", "jitsi")},
    {"timeout": 0}, {"max_attempts": 0}, {"max_digits": 0},
])
def test_invalid_configuration_is_refused(kwargs) -> None:  # type: ignore[no-untyped-def]
    platforms = kwargs.pop("platforms", ())
    with pytest.raises(ValueError):
        KeypadMenu(Resolver(), platforms, **kwargs)


# -- several platforms: the platform first -------------------------------------------------------------------------
PLATFORMS = ("jitsi", "bigbluebutton", "mine")


def test_several_platforms_ask_for_the_platform_first() -> None:
    m, _, _ = menu(PLATFORMS)
    step = m.start()
    assert step.view.stage == ivr.PLATFORM
    assert step.view.choices == (("1", "Jitsi Meet"), ("2", "BigBlueButton"), ("3", "mine"))
    assert step.prompt == (ivr.CHOOSE_PLATFORM, "press_1", "platform_jitsi", "press_2", "platform_bigbluebutton",
                           "press_3", "platform_mine")


def test_choosing_a_platform_then_the_meeting() -> None:
    m, _, resolver = menu(PLATFORMS, known=[("55", "bigbluebutton")])
    m.start()
    step = m.key("2")
    assert step.view.stage == ivr.MEETING and step.prompt == (ivr.ENTER_MEETING,) and step.interrupt
    assert step.view.platform == "BigBlueButton" and step.view.platform_index == 2 and step.view.choices == ()
    assert "nothing typed: back" in step.view.hint
    assert press(m, "55#").outcome == Outcome(JOIN, "55", "bigbluebutton")
    assert resolver.asked == [("55", "bigbluebutton")]


def test_a_key_that_is_no_choice_asks_again_and_uses_an_attempt() -> None:
    m, _, _ = menu(PLATFORMS)
    m.start()
    for key in ("0", "4"):
        step = m.key(key)
        assert step.view.stage == ivr.PLATFORM and f"no choice {key}" in step.view.error
        assert step.prompt[0] == ivr.INVALID_CHOICE and step.prompt[1] == ivr.CHOOSE_PLATFORM
    assert m.view.attempts_left == 1
    step = m.key("9")
    assert step.outcome == Outcome(GAVE_UP, None, None)
    assert step.prompt == (ivr.INVALID_CHOICE, ivr.TOO_MANY_ATTEMPTS, ivr.GOODBYE)


def test_star_and_hash_mean_nothing_in_the_platform_choice() -> None:
    m, _, resolver = menu(PLATFORMS)
    m.start()
    for key in "*#":
        step = m.key(key)
        assert step.view.stage == ivr.PLATFORM and step.view.error == "" and step.prompt == () and step.interrupt
    assert step.view.attempts_left == 3 and resolver.asked == []


def test_star_with_nothing_typed_goes_back_to_the_platform_choice() -> None:
    m, _, _ = menu(PLATFORMS)
    m.start()
    press(m, "1")
    assert press(m, "7*").view.stage == ivr.MEETING  # erased the 7
    step = m.key("*")
    assert step.view.stage == ivr.PLATFORM and step.view.platform == "" and step.view.platform_index == 0
    assert step.prompt[0] == ivr.CHOOSE_PLATFORM
    assert m.key("3").view.platform == "mine"


def test_unknown_meeting_keeps_the_platform() -> None:
    m, _, _ = menu(PLATFORMS, known=[("1", "jitsi")])
    m.start()
    step = press(m, "21#")
    assert step.view.stage == ivr.MEETING and step.view.platform == "BigBlueButton" and step.prompt == (
        ivr.UNKNOWN_MEETING,)


def test_timeout_and_gave_up_report_the_chosen_platform() -> None:
    m, clock, _ = menu(PLATFORMS)
    m.start()
    m.key("1")
    clock.advance(30)
    assert m.tick().outcome == Outcome(TIMEOUT, None, "jitsi")


def test_labels_can_be_overridden() -> None:
    m, _, _ = menu(("jitsi", "janus"), labels={"jitsi": "Our Jitsi"})
    assert m.start().view.choices == (("1", "Our Jitsi"), ("2", "Janus"))


def test_prompt_ids() -> None:
    assert ivr.press_prompt(3) == "press_3"
    assert ivr.platform_prompt("BigBlueButton") == "platform_bigbluebutton"
    assert ivr.platform_prompt("Jitsi-Meet 2") == "platform_jitsimeet2"


def test_view_as_dict_is_json_ready() -> None:
    import json

    m, _, _ = menu(PLATFORMS)
    data = m.start().view.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["choices"][0] == ["1", "Jitsi Meet"] and data["stage"] == "platform"


# -- properties: any key sequence, any timing ------------------------------------------------------------------------
FIXED_PROMPTS = {ivr.ENTER_MEETING, ivr.CHOOSE_PLATFORM, ivr.INVALID_CHOICE, ivr.UNKNOWN_MEETING, ivr.TOO_MANY_ATTEMPTS,
                 ivr.JOINING_PROMPT, ivr.TIMEOUT_PROMPT, ivr.GOODBYE}
keys = st.sampled_from(list("0123456789*#") + ["A", "D", ""])
events = st.lists(st.one_of(keys, st.floats(min_value=0, max_value=40, allow_nan=False)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(events=events, n_platforms=st.integers(0, 4), max_digits=st.integers(1, 8), max_attempts=st.integers(1, 4))
def test_any_key_sequence_never_crashes_and_keeps_the_invariants(events, n_platforms, max_digits,
                                                                 max_attempts) -> None:  # type: ignore[no-untyped-def]
    platforms = tuple(f"p{i}" for i in range(n_platforms))
    m, clock, resolver = menu(platforms, known=[("12", p) for p in (platforms or (None,))],
                              max_digits=max_digits, max_attempts=max_attempts)
    step = m.start()
    outcomes = []
    for event in events:
        if isinstance(event, float):
            clock.advance(event)
            step = m.tick()
        else:
            step = m.key(event)
        view = step.view
        assert len(view.digits) <= max_digits and view.digits.isdigit() or view.digits == ""
        assert view.stage in ivr.STAGES
        assert 0 <= view.attempts_left <= max_attempts
        assert all(p in FIXED_PROMPTS or p.startswith(("press_", "platform_")) for p in step.prompt)
        if step.outcome is not None:
            outcomes.append(step.outcome)
            assert view.stage in (ivr.JOINING, ivr.ENDED)
            if step.outcome.kind == JOIN:
                assert (step.outcome.meeting, step.outcome.platform) in resolver.known
        if view.stage == ivr.PLATFORM:
            assert len(view.choices) == n_platforms >= 2 and view.digits == ""
    # Once ended, it stays ended with the same outcome.
    assert len(set(outcomes)) <= 1
    assert len(resolver.asked) <= max_attempts


@settings(max_examples=200, deadline=None)
@given(prefix=st.lists(st.sampled_from(list("0123456789*")), max_size=20), n_platforms=st.integers(0, 3))
def test_star_on_nothing_typed_is_harmless(prefix, n_platforms) -> None:  # type: ignore[no-untyped-def]
    platforms = tuple(f"p{i}" for i in range(n_platforms))
    m, _, resolver = menu(platforms)
    m.start()
    if n_platforms > 1:
        m.key("1")
    for key in prefix:
        m.key(key)
    # Erase everything, then once more on empty.
    while m.view.digits:
        m.key("*")
    before = m.view
    if before.stage != ivr.MEETING:
        return
    step = m.key("*")
    assert step.view.digits == "" and step.outcome is None and step.view.error == ""
    assert step.view.attempts_left == before.attempts_left and resolver.asked == []
    assert step.view.stage == (ivr.PLATFORM if n_platforms > 1 else ivr.MEETING)


@settings(max_examples=200, deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_what_is_typed_is_what_is_resolved(digits: str) -> None:
    m, _, resolver = menu(known=[(digits, None)])
    m.start()
    assert press(m, digits + "#").outcome == Outcome(JOIN, digits, None)
    assert resolver.asked == [(digits, None)]
