"""In-call keypad controls and call timeouts (gateway/incall.py) with a fake clock and fake room controls, alone and
behind the real Controller (the CallWatch hooks: which events reach the watch, and when)."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from sipmediagw.gateway import incall
from sipmediagw.gateway.controller import Controller, Routing, WatchedCall
from sipmediagw.gateway.incall import InCall, Timeouts, rtp_timeout_backstop
from sipmediagw.gateway.overlay import Panel
from sipmediagw.gateway.room_worker import RoomWorker
from sipmediagw.room import CAPABILITIES, load_room_driver
from test_controller import FIXED, POOL, FakeControl, FakeRoom, call, ring

from pathlib import Path

BROWSING = Path(__file__).resolve().parents[2] / "browsing"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeControls:
    """Records actions and what the overlay was asked to draw; `capabilities` is what the "driver" implements."""

    def __init__(self, capabilities: Sequence[str] = CAPABILITIES, count: int | None = 2,
                 fail: str = "", not_implemented: str = "") -> None:
        self.capabilities = set(capabilities)
        self.count = count
        self.fail = fail
        self.not_implemented = not_implemented
        self.performed: list[tuple[Any, ...]] = []
        self.drawn: list[tuple[list[str], Panel | None, float]] = []
        self.counted = 0

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def perform(self, capability: str, *args: Any) -> Any:
        self.performed.append((capability, *args))
        if capability == self.fail:
            raise RuntimeError("button gone")
        if capability == self.not_implemented:
            raise NotImplementedError(capability)
        return "tile" if capability == "toggle_view" else None

    def participant_count(self) -> int | None:
        self.counted += 1
        return self.count

    def draw(self, badge: Sequence[str], panel: Panel | None, seconds: float) -> bool:
        self.drawn.append((list(badge), panel, seconds))
        return False

    @property
    def last(self) -> tuple[list[str], Panel | None, float]:
        return self.drawn[-1]


class FakeCall:
    def __init__(self) -> None:
        self.in_room = True
        self.hung_up: list[str] = []

    def hangup(self, reason: str) -> None:
        self.hung_up.append(reason)


def watch(timeouts: Timeouts = Timeouts(alone=0, no_media=0, max_call=0), **kwargs: Any
          ) -> tuple[InCall, FakeControls, FakeCall, Clock]:
    clock = Clock()
    controls = kwargs.pop("controls", FakeControls())
    w = InCall(controls, timeouts, clock=clock, **kwargs)
    c = FakeCall()
    w.start(c)
    return w, controls, c, clock


def in_room(**kwargs: Any) -> tuple[InCall, FakeControls, FakeCall, Clock]:
    w, controls, c, clock = watch(**kwargs)
    w.joined()
    return w, controls, c, clock


# -- keys ---------------------------------------------------------------------------------------------------------


def test_the_key_map_is_the_documented_one() -> None:
    assert [(k.key, k.action) for k in incall.KEY_MAP] == [
        ("1", "microphone"), ("2", "camera"), ("3", "view"), ("4", "hand"), ("5", "participants"), ("0", "leave"),
        ("#", "help")]
    assert {k.capability for k in incall.KEY_MAP} - {None} == set(CAPABILITIES)


def test_joining_tells_the_caller_where_the_keys_are() -> None:
    w, controls, _, _ = in_room()
    badge, panel, seconds = controls.last
    assert badge == [] and panel is not None and "Press #" in panel.message and seconds == w.hint_seconds


def test_microphone_key_toggles_and_the_state_stays_on_screen() -> None:
    w, controls, _, clock = in_room()
    w.key("1")
    assert controls.performed == [("set_microphone", False)]
    badge, panel, _ = controls.last
    assert badge == ["Microphone off"] and panel is not None and panel.message == "Microphone off"
    w.key("2")
    assert controls.performed[-1] == ("set_camera", False)
    assert controls.last[0] == ["Microphone off", "Camera off"]
    # the panel goes, the badge stays: the periodic redraw repeats it without a panel
    clock.now += w.redraw_interval + w.info_seconds
    w.poll()
    assert controls.last == (["Microphone off", "Camera off"], None, 0.0)
    w.key("1")
    w.key("2")
    assert controls.performed[-2:] == [("set_microphone", True), ("set_camera", True)]
    assert controls.last[0] == [] and controls.last[1] is not None and controls.last[1].message == "Camera on"


def test_view_hand_and_participants_keys() -> None:
    w, controls, _, _ = in_room()
    w.key("3")
    assert controls.performed[-1] == ("toggle_view",) and controls.last[1].message == "View: tile"
    w.key("4")
    assert controls.performed[-1] == ("raise_hand", True) and controls.last[0] == ["Hand raised"]
    w.key("4")
    assert controls.performed[-1] == ("raise_hand", False) and controls.last[1].message == "Hand lowered"
    w.key("5")
    w.key("5")
    assert controls.performed[-2:] == [("show_participants", True), ("show_participants", False)]


def test_a_key_the_driver_lacks_says_not_available_here_and_does_nothing() -> None:
    w, controls, _, _ = in_room(controls=FakeControls(capabilities=["set_microphone", "set_camera"]))
    for key in "345":
        w.key(key)
        panel = controls.last[1]
        assert panel is not None and panel.kind == "unavailable" and panel.lines[0][:3] == (
            key, incall._BY_KEY[key].label, "not available here")
    assert controls.performed == []


def test_a_driver_raising_not_implemented_is_not_available_either_and_a_failure_keeps_the_state() -> None:
    w, controls, _, _ = in_room(controls=FakeControls(not_implemented="set_camera", fail="set_microphone"))
    w.key("2")
    assert controls.last[1].kind == "unavailable" and w.camera
    w.key("1")
    assert controls.last[1].kind == "failed" and w.microphone and controls.last[0] == []


def test_help_lists_every_key_with_its_state_or_not_available() -> None:
    w, controls, _, _ = in_room(controls=FakeControls(capabilities=["set_microphone"]))
    w.key("1")
    w.key("#")
    panel = controls.last[1]
    assert panel is not None and panel.kind == "help" and controls.last[2] == w.help_seconds
    lines = {line[0]: line for line in panel.lines}
    assert [line[0] for line in panel.lines] == ["1", "2", "3", "4", "5", "0", "#"]
    assert lines["1"][2:] == ("OFF", True)
    assert lines["2"][2:] == ("not available here", False) and lines["0"][3] and lines["#"][3]


def test_keys_before_the_room_and_unknown_keys_do_nothing() -> None:
    w, controls, _, _ = watch()
    w.key("1")  # still in the keypad menu
    assert controls.performed == [] and controls.drawn == []
    w.joined()
    drawn = len(controls.drawn)
    for key in "6789*AD":
        w.key(key)
    assert controls.performed == [] and len(controls.drawn) == drawn


def test_zero_leaves_after_saying_goodbye() -> None:
    w, controls, c, clock = in_room()
    w.key("0")
    assert controls.last[1].kind == "end" and "Goodbye" in controls.last[1].message and c.hung_up == []
    w.key("1")  # ending: keys are ignored
    assert controls.performed == []
    clock.now += w.leave_seconds - 0.1
    w.poll()
    assert c.hung_up == []
    clock.now += 0.1
    w.poll()
    w.poll()
    assert c.hung_up == ["caller left with the keypad (key 0)"]


# -- timeouts -----------------------------------------------------------------------------------------------------


def run(w: InCall, clock: Clock, seconds: float, step: float = 0.2) -> None:
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + step)
        w.poll()


def test_alone_in_the_room_for_n_seconds_shows_why_then_hangs_up() -> None:
    controls = FakeControls(count=2)
    w, _, c, clock = in_room(timeouts=Timeouts(alone=30, no_media=0, max_call=0), controls=controls)
    run(w, clock, 60)
    assert c.hung_up == [] and controls.counted >= 25  # every participant_interval
    controls.count = 1
    run(w, clock, 27)  # (the page is asked every participant_interval: up to 2 s late)
    assert c.hung_up == [] and w.ending is None
    controls.count = 3  # someone came back: the count starts over
    run(w, clock, 5)
    controls.count = 1
    run(w, clock, 28)
    assert w.ending is None
    run(w, clock, 2 + w.participant_interval)
    assert c.hung_up == [] and w.ending is not None
    assert controls.last[1].kind == "end" and "Nobody else" in controls.last[1].message
    run(w, clock, w.notice_seconds)
    assert c.hung_up == ["alone in the room for 30 s"]


def test_a_room_that_does_not_count_never_counts_as_alone_and_the_menu_is_not_a_room() -> None:
    w, controls, c, clock = watch(timeouts=Timeouts(alone=5, no_media=0, max_call=0),
                                  controls=FakeControls(count=1))
    run(w, clock, 30)  # in the keypad menu: nobody to be alone with
    assert c.hung_up == [] and controls.counted == 0
    w2, _, c2, clock2 = in_room(timeouts=Timeouts(alone=5, no_media=0, max_call=0),
                                controls=FakeControls(count=None))
    run(w2, clock2, 60)
    assert c2.hung_up == []


def rtcp(received: int, stream: str = "audio") -> dict[str, Any]:
    """A CALL_RTCP event as baresip 1.0.0 sends it (rtcp_stats of the stream's last sender report)."""
    return call("CALL_RTCP", "c1", param=stream,
                rtcp_stats={"tx": {"sent": 500, "lost": 0, "jit": 1}, "rx": {"sent": received, "lost": 0, "jit": 2},
                            "rtt": 3})


def test_a_caller_that_never_sent_media_is_hung_up_after_no_media_seconds() -> None:
    w, controls, c, clock = in_room(timeouts=Timeouts(alone=0, no_media=20, max_call=0))
    run(w, clock, 19.8)
    assert w.ending is None
    run(w, clock, 0.5 + w.notice_seconds)
    assert c.hung_up == ["no media from the caller for 20 s"]


def test_media_keeps_the_call_while_the_callers_rtcp_says_rtp_arrives() -> None:
    w, controls, c, clock = in_room(timeouts=Timeouts(alone=0, no_media=20, max_call=0))
    w.media(call("CALL_RTPESTAB", "c1", param="audio"))
    received = 0
    for _ in range(20):  # 100 s of sender reports every 5 s, with packets each time
        run(w, clock, 5)
        received += 250
        w.media(rtcp(received))
        w.media(rtcp(received // 2, "video"))
    assert w.ending is None
    for _ in range(3):  # the caller went silent but its RTCP still comes: counts stand still
        run(w, clock, 5)
        w.media(rtcp(received))
    assert w.ending is None  # 15 s
    run(w, clock, 5.5 + w.notice_seconds)
    assert c.hung_up == ["no media from the caller for 20 s"]
    assert any(p is not None and p.kind == "end" and "Nothing was received from you for 20 seconds" in p.message
               for _b, p, _s in controls.drawn)


def test_rtp_without_rtcp_is_left_to_barsips_rtp_timeout() -> None:
    w, _, c, clock = in_room(timeouts=Timeouts(alone=0, no_media=20, max_call=0))
    w.media(call("CALL_RTPESTAB", "c1", param="audio"))  # RTP came; the caller sends no RTCP
    run(w, clock, 120)
    assert c.hung_up == [] and w.ending is None
    assert rtp_timeout_backstop(20) == 40 and rtp_timeout_backstop(0) == 0 and rtp_timeout_backstop(7.5) == 28


def test_the_maximum_call_duration_counts_from_the_answer_menu_included() -> None:
    w, controls, c, clock = watch(timeouts=Timeouts(alone=0, no_media=0, max_call=3600))
    run(w, clock, 600, step=5)
    w.joined()
    run(w, clock, 2995, step=5)
    assert w.ending is None
    run(w, clock, 5)
    assert "maximum duration (1 hour)" in controls.last[1].message
    run(w, clock, w.notice_seconds)
    assert c.hung_up == ["maximum call duration reached (3600 s)"]


def test_timeouts_are_validated() -> None:
    with pytest.raises(ValueError, match="alone"):
        Timeouts(alone=-1)
    with pytest.raises(ValueError, match="max_call"):
        Timeouts(max_call=float("nan"))
    assert Timeouts() == Timeouts(300, 60, 14400)


def test_a_broken_overlay_never_breaks_the_keys() -> None:
    class Broken(FakeControls):
        def draw(self, badge: Sequence[str], panel: Panel | None, seconds: float) -> bool:
            raise RuntimeError("no such window")

    w, controls, _, _ = in_room(controls=Broken())
    w.key("1")
    assert controls.performed == [("set_microphone", False)] and not w.microphone


# -- the drivers' capabilities ------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform, capabilities", [
    ("janus", {"set_microphone", "set_camera"}),
    ("jitsi", set(CAPABILITIES)),
    ("bigbluebutton", {"set_microphone", "set_camera", "raise_hand", "show_participants"}),
])
def test_what_each_driver_supports(platform: str, capabilities: set[str]) -> None:
    driver = load_room_driver(platform, BROWSING)
    assert {c for c in CAPABILITIES if driver.supports(c)} == capabilities
    with pytest.raises(ValueError):
        driver.supports("dance")


# -- behind the controller ----------------------------------------------------------------------------------------


class RecordingWatch:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.calls: list[WatchedCall] = []

    def start(self, c: WatchedCall) -> None:
        self.calls.append(c)
        self.seen.append(f"start:{c.call_id}")

    def joined(self) -> None:
        self.seen.append("joined")

    def key(self, key: str) -> None:
        self.seen.append(f"key:{key}")

    def media(self, event: dict[str, Any]) -> None:
        self.seen.append(f"media:{event['type']}")

    def poll(self) -> None:
        if self.seen[-1] != "poll":
            self.seen.append("poll")

    def stop(self) -> None:
        self.seen.append("stop")


def controller(routing: Routing, **kwargs: Any) -> tuple[Controller, FakeControl, FakeRoom, RecordingWatch]:
    control, room, w = FakeControl(), FakeRoom(), RecordingWatch()
    return Controller(control, room, lambda: None, routing=routing, watch=w, room_worker=RoomWorker(threaded=False),  # type: ignore[arg-type]
                      **kwargs), control, room, w


def test_the_watch_follows_a_dialled_call_from_its_room_to_its_end() -> None:
    ctl, control, room, w = controller(POOL)
    ring(ctl, control, "c1", "1234")
    ctl.handle(call("CALL_RTPESTAB", "c1", param="audio"))  # before the answer: no watch yet
    assert w.seen == []
    ctl.handle(call("CALL_ESTABLISHED", "c1"))
    assert w.seen == ["start:c1", "joined"] and w.calls[0].in_room and w.calls[0].target.room == "1234"
    ctl.handle(call("CALL_DTMF_START", "c1", param="1"))
    ctl.handle(call("CALL_RTCP", "c1", param="audio", rtcp_stats={"rx": {"sent": 5}}))
    ctl.handle(call("CALL_RTCP", "other", param="audio"))  # another call's: not ours
    ctl.pump(0.01)
    assert w.seen[2:] == ["key:1", "media:CALL_RTCP", "poll"]
    w.calls[0].hangup("alone in the room for 30 s")
    assert control.commands[-1] == ("hangup", "c1")
    ctl.pump(0.01)  # CALL_CLOSED
    assert w.seen[-1] == "stop" and ctl.last_end_reason == "alone in the room for 30 s"
    assert room.actions == ["join:alice", "leave"] and not w.calls[0].active
    ctl.pump(0.01)
    assert w.seen[-1] == "stop"  # no poll once the call is over


def test_the_watch_starts_with_a_menu_call_and_keys_stay_the_menus_until_the_room() -> None:
    from test_controller import FakeMenu

    menu = FakeMenu()
    ctl, control, _, w = controller(POOL, menu=menu)
    ring(ctl, control, "c1", "meet")
    ctl.handle(call("CALL_ESTABLISHED", "c1"))
    assert w.seen == ["start:c1"] and not w.calls[0].in_room and w.calls[0].target is None
    ctl.handle(call("CALL_DTMF_START", "c1", param="1"))
    assert menu.seen[-1] == "key:1" and "key:1" not in w.seen
    menu.calls[0].join(menu.calls[0].resolve("1234"))
    assert w.seen[-1] == "joined" and w.seen.count("start:c1") == 1
    ctl.handle(call("CALL_DTMF_START", "c1", param="1"))
    assert w.seen[-1] == "key:1"


def test_barsips_own_rtp_timeout_is_named_as_such() -> None:
    ctl, control, _, _ = controller(Routing("gw", fixed=FIXED))
    ring(ctl, control, "c1", "gw")
    ctl.handle(call("CALL_ESTABLISHED", "c1"))
    ctl.handle(call("CALL_CLOSED", "c1", param="rtp stream error"))
    assert ctl.last_end_reason == "no RTP from the caller (baresip rtp_timeout)"


def test_a_failing_watch_never_breaks_the_call() -> None:
    class Failing(RecordingWatch):
        def key(self, key: str) -> None:
            raise RuntimeError("overlay bug")

    control, room = FakeControl(), FakeRoom()
    ctl = Controller(control, room, lambda: None, routing=Routing("gw", fixed=FIXED), watch=Failing(),  # type: ignore[arg-type]
                     room_worker=RoomWorker(threaded=False))
    ring(ctl, control, "c1", "gw")
    ctl.handle(call("CALL_ESTABLISHED", "c1"))
    ctl.handle(call("CALL_DTMF_START", "c1", param="1"))
    assert ctl.in_call and ("hangup", "c1") not in control.commands


def test_the_real_watch_behind_the_controller_hangs_up_an_empty_room() -> None:
    clock = Clock()
    controls = FakeControls(count=1)
    control, room = FakeControl(), FakeRoom()
    ctl = Controller(control, room, lambda: None, routing=Routing("gw", fixed=FIXED),  # type: ignore[arg-type]
                     watch=InCall(controls, Timeouts(alone=10, no_media=0, max_call=0), clock=clock),
                     room_worker=RoomWorker(threaded=False))
    ring(ctl, control, "c1", "gw")
    ctl.handle(call("CALL_ESTABLISHED", "c1"))
    for _ in range(80):
        clock.now += 0.2
        ctl.pump(0.0)
    assert ctl.call is None and ctl.last_end_reason == "alone in the room for 10 s"
    assert any(p is not None and p.kind == "end" for _b, p, _s in controls.drawn)
