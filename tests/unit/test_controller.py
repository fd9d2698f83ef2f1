"""Controller logic with a fake control connection and a fake room: events -> decisions (join, menu, reject), room
joins/leaves and the state the supervisor writes.

The fake answers `callstat` with the text baresip 1.0.0 prints (measured): its ` local_uri:` line is the To URI, the
address the caller dialled.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from sipmediagw.dispatch import Dispatcher, RoomTarget, UnknownMeeting, parse_rules
from sipmediagw.errors import ValidationError
from sipmediagw.gateway.baresip import DISCONNECTED, BaresipControlError, RegistrationLog
from sipmediagw.gateway.room_worker import RoomWorker
from sipmediagw.gateway.controller import (REGISTRAR_SILENCE, Controller, MenuCall, NoMenu, Routing, caller_display_name, dialled_user,
                                           parse_callstat)

FIXED = RoomTarget("janus", "https://rooms.example.org", "1234")
POOL = Routing(account_user="gw", service_user="meet", dispatcher=Dispatcher.build(
    parse_rules([{"match": r"(?P<code>[a-z]{3}-[a-z]{3})", "platform": "jitsi", "base_url": "https://meet.example.org",
                  "room": "team-{code}"}]), "janus", "https://rooms.example.org"))


def callstat_text(dialled: str, call_id: str) -> str:
    """What baresip 1.0.0 answers to `callstat` for an incoming call (trimmed: the SDP part is longer)."""
    return (f"\n===== Call debug (INCOMING) =====\n local_uri:  <sip:{dialled}@sipmediagw.test;transport=udp>\n"
            f" peer_uri:   <sip:alice@sipmediagw.test>\n af=AF_INET id={call_id}\n direction: Incoming\n"
            "SDP session\n  local attributes:\n    tool='baresip 1.0.0'\n")


class FakeControl:
    """Records commands; `closes_on_hangup` makes a hangup produce the CALL_CLOSED baresip would send."""

    def __init__(self, closes_on_hangup: bool = True, fail: bool = False) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.commands: list[tuple[str, str]] = []
        self.closes_on_hangup = closes_on_hangup
        self.fail = fail
        self.reginfo_data = ""
        self.dialled = "gw"  # what the current call dialled
        self.current = "c1"  # baresip's current call (what callstat describes)

    def _record(self, cmd: str, params: str = "") -> dict[str, Any]:
        self.commands.append((cmd, params))
        if self.fail:
            raise BaresipControlError("connection lost")
        return {"response": True, "ok": True, "data": ""}

    def hangup(self, call_id: str | None = None) -> dict[str, Any]:
        result = self._record("hangup", call_id or "")
        if self.closes_on_hangup:
            self.events.put(call("CALL_CLOSED", call_id or "c1", param="Connection reset by user"))
        return result

    def accept(self) -> dict[str, Any]:
        return self._record("accept")

    def reginfo(self) -> dict[str, Any]:
        self._record("reginfo")
        return {"response": True, "ok": True, "data": self.reginfo_data}

    def callstat(self) -> dict[str, Any]:
        self._record("callstat")
        return {"response": True, "ok": True, "data": callstat_text(self.dialled, self.current)}


class FakeRoom:
    def __init__(self, fail_join: bool = False, fail_leave: bool = False, refuse: str = "") -> None:
        self.actions: list[str] = []
        self.targets: list[RoomTarget] = []
        self.fail_join = fail_join
        self.fail_leave = fail_leave
        self.refuse = refuse  # rooms containing this are refused by the "driver"

    def check(self, target: RoomTarget) -> None:
        if self.refuse and self.refuse in target.room:
            raise ValidationError(f"driver refuses room {target.room!r}")

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: Any = None) -> None:
        self.actions.append(f"join:{display_name}")
        self.targets.append(target)
        if self.fail_join:
            raise RuntimeError("page did not load")

    def leave(self) -> None:
        self.actions.append("leave")
        if self.fail_leave:
            raise RuntimeError("browser gone")


class FakeMenu:
    """Records what the controller tells it; the test drives the MenuCall it got."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[MenuCall] = []
        self.seen: list[str] = []
        self.fail_on = fail_on

    def start(self, menu_call: MenuCall) -> None:
        self.calls.append(menu_call)
        self.seen.append(f"start:{menu_call.dialled}")

    def key(self, key: str) -> None:
        self.seen.append(f"key:{key}")
        if key == self.fail_on:
            raise ValueError("menu bug")

    def poll(self) -> None:
        if not self.seen or self.seen[-1] != "poll":
            self.seen.append("poll")

    def stop(self) -> None:
        self.seen.append("stop")


def call(kind: str, call_id: str, **fields: Any) -> dict[str, Any]:
    base = {"event": True, "type": kind, "class": "call", "accountaor": "sip:gw@example.org",
            "direction": "incoming", "peeruri": "sip:alice@example.org", "id": call_id, "param": ""}
    base.update(fields)
    return base


def make(once: bool = False, routing: Routing = Routing("gw", fixed=FIXED),
         **kwargs: Any) -> tuple[Controller, FakeControl, FakeRoom, list[tuple]]:
    control = kwargs.pop("control", FakeControl())
    room = kwargs.pop("room", FakeRoom())
    changes: list[tuple] = []
    controller: Controller

    def snapshot() -> None:
        changes.append((controller.registered, controller.in_call, controller.caller, controller.done))

    # Joins and leaves run at once on this thread: these tests are about decisions (test_room_joins.py: the thread)
    kwargs.setdefault("room_worker", RoomWorker(threaded=False))
    controller = Controller(control, room, snapshot, once, routing=routing, **kwargs)  # type: ignore[arg-type]
    return controller, control, room, changes


def ring(controller: Controller, control: FakeControl, call_id: str, dialled: str, **fields: Any) -> None:
    """An INVITE to sip:<dialled>@... arrives as CALL_INCOMING (baresip in answermode=manual)."""
    control.dialled, control.current = dialled, call_id
    controller.handle(call("CALL_INCOMING", call_id, **fields))


# -- how the dialled address is read --------------------------------------------------------------------------------


@pytest.mark.parametrize("uri, user", [
    ("<sip:1234@sipmediagw.test;transport=udp>", "1234"),
    ("sips:abc-def@x.org", "abc-def"),
    ("sip:J%C3%B6rg%20x@h", "Jörg x"),
    ("sip:sipmediagw.test", ""),
    ("tel:+331234;phone-context=x", "+331234"),
    ("http://x", None),
])
def test_dialled_user_is_the_decoded_user_part(uri: str, user: str | None) -> None:
    assert dialled_user(uri) == user


def test_callstat_text_gives_the_to_user_and_the_call_id() -> None:
    assert parse_callstat(callstat_text("1234", "2ea0230064cfa4fd")) == ("1234", "2ea0230064cfa4fd")
    assert parse_callstat("\x1b[32m local_uri:  <sip:meet@h>\x1b[;m\n") == ("meet", None)
    assert parse_callstat("no call") == (None, None)


# -- decisions ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialled, action, room", [
    ("1234", "join", "1234"),
    ("abc-def", "join", "team-abc-def"),
    ("gw", "menu", None),
    ("meet", "menu", None),
    ("", "menu", None),
    (None, "menu", None),
    ("..", "reject", None),
])
def test_pool_routing_decides_by_the_dialled_user(dialled: str | None, action: str, room: str | None) -> None:
    decision = POOL.decide(dialled)
    assert decision.action == action
    assert (decision.target.room if decision.target else None) == room
    assert POOL.mode == "pool"


def test_fixed_routing_takes_its_own_calls_and_refuses_other_meetings() -> None:
    fixed = Routing("gw", fixed=FIXED)
    assert fixed.mode == "fixed"
    for dialled in ("gw", "1234", None):
        assert fixed.decide(dialled).target == FIXED
    refused = fixed.decide("1235")
    assert refused.action == "reject" and "1235" in refused.reason
    assert fixed.decide("meet").action == "reject"


def test_pool_call_for_a_meeting_is_answered_then_joins_its_room_and_is_ready_again_after() -> None:
    controller, control, room, _ = make(routing=POOL)
    ring(controller, control, "c1", "abc-def", peerdisplayname="Alice Liddell")
    assert control.commands == [("callstat", ""), ("accept", "")] and room.actions == []
    assert controller.call_id == "c1" and not controller.in_call
    controller.handle(call("CALL_ESTABLISHED", "c1", peerdisplayname="Alice Liddell"))
    assert room.targets == [RoomTarget("jitsi", "https://meet.example.org", "team-abc-def", "abc-def")]
    assert room.actions == ["join:Alice Liddell"] and controller.in_call and controller.calls == 1
    fields = controller.call_fields()
    assert {k: fields[k] for k in ("room", "call_platform", "meeting", "caller", "caller_uri")} == {
        "room": "team-abc-def", "call_platform": "jitsi", "meeting": "abc-def", "caller": "Alice Liddell",
        "caller_uri": "sip:alice@example.org"}
    assert fields["call_started"] and fields["last_end_reason"] is None
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert room.actions == ["join:Alice Liddell", "leave"] and controller.call is None
    call_fields = {k: v for k, v in controller.call_fields().items() if not k.startswith("registration")}
    assert call_fields == {"room": None, "call_platform": None, "meeting": None, "caller": None,
                                        "caller_uri": None, "call_started": None, "call_direction": None,
                                        "last_end_reason": "caller hung up", "joining": None,
                                        "join_progress": None}
    # the default rule: room = the meeting as dialled, on the default platform
    ring(controller, control, "c2", "1234")
    controller.handle(call("CALL_ESTABLISHED", "c2"))
    assert room.targets[-1] == RoomTarget("janus", "https://rooms.example.org", "1234", "1234")


def test_unknown_meeting_is_rejected_before_answering_and_said_why() -> None:
    routing = Routing("gw", dispatcher=Dispatcher(parse_rules([{
        "match": r"\d{4}", "platform": "janus", "base_url": "https://r.example.org"}])))
    controller, control, room, changes = make(routing=routing)
    ring(controller, control, "c1", "99999")
    assert control.commands == [("callstat", ""), ("hangup", "c1")]  # no accept: baresip sends 486 Rejected
    assert controller.call is None and controller.last_end_reason == "unknown meeting 99999" and changes
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by user"))
    assert controller.last_end_reason == "unknown meeting 99999" and room.actions == []


def test_a_room_its_driver_refuses_is_an_unknown_meeting() -> None:
    controller, control, room, _ = make(routing=POOL, room=FakeRoom(refuse="12"))
    ring(controller, control, "c1", "1234")
    assert ("accept", "") not in control.commands and ("hangup", "c1") in control.commands
    assert controller.last_end_reason is not None
    assert controller.last_end_reason.startswith("unknown meeting 1234: driver refuses room")


def test_fixed_gateway_rejects_another_meeting_and_joins_its_own() -> None:
    controller, control, room, _ = make()
    ring(controller, control, "c1", "1235")
    assert ("hangup", "c1") in control.commands and ("accept", "") not in control.commands
    assert "not this gateway's meeting: 1235" in (controller.last_end_reason or "")
    controller.handle(call("CALL_CLOSED", "c1"))
    control.commands.clear()
    ring(controller, control, "c2", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c2"))
    assert control.commands == [("callstat", ""), ("accept", "")] and room.targets == [FIXED]


def test_callstat_about_another_call_is_not_trusted() -> None:
    controller, control, room, _ = make()
    control.dialled, control.current = "9999", "other"
    controller.handle(call("CALL_INCOMING", "c1"))
    assert ("accept", "") in control.commands  # dialled unknown: a fixed gateway takes it, as before pools
    assert controller.call is not None and controller.call.dialled is None


def test_busy_gateway_refuses_a_second_call_and_keeps_the_first() -> None:
    control = FakeControl(closes_on_hangup=False)
    controller, _, room, _ = make(control=control)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.handle(call("CALL_INCOMING", "c2", peeruri="sip:mallory@example.org"))
    controller.handle(call("CALL_ESTABLISHED", "c2", peeruri="sip:mallory@example.org"))
    assert control.commands[-2:] == [("hangup", "c2"), ("hangup", "c2")]
    controller.handle(call("CALL_CLOSED", "c2"))
    assert controller.in_call and controller.call_id == "c1" and room.actions == ["join:alice"]
    assert controller.last_end_reason is None  # a refused intruder is not the end of the call in progress


# -- the keypad menu hook -------------------------------------------------------------------------------------------


def test_service_call_opens_the_menu_which_joins_the_typed_meeting() -> None:
    menu = FakeMenu()
    controller, control, room, _ = make(routing=POOL, menu=menu)
    ring(controller, control, "c1", "meet")
    assert ("accept", "") in control.commands and menu.seen == []
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert menu.seen == ["start:meet"] and controller.in_menu and not controller.in_call
    assert controller.call_fields()["caller"] == "alice" and controller.call_fields()["room"] is None
    controller.handle(call("CALL_DTMF_START", "c1", param="1"))
    controller.pump(0.01)
    assert menu.seen[-2:] == ["key:1", "poll"]
    menu_call = menu.calls[0]
    assert (menu_call.call_id, menu_call.caller, menu_call.dialled, menu_call.active) == ("c1", "alice", "meet", True)
    assert menu_call.dispatcher is POOL.dispatcher
    with pytest.raises(UnknownMeeting, match="unknown meeting"):
        menu_call.resolve("..")
    menu_call.join(menu_call.resolve("1234"))
    assert menu.seen[-1] == "stop" and not menu_call.active
    assert controller.in_call and room.targets[-1].room == "1234" and controller.calls == 1
    controller.handle(call("CALL_DTMF_START", "c1", param="2"))  # in the room: no longer the menu's
    assert "key:2" not in menu.seen
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert room.actions == ["join:alice", "leave"] and menu.seen.count("stop") == 1


def test_menu_hangs_up_with_its_reason_and_the_page_is_cleared() -> None:
    menu = FakeMenu()
    controller, control, room, _ = make(routing=POOL, menu=menu)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    menu.calls[0].hangup("menu timeout")
    assert control.commands[-1] == ("hangup", "c1")
    controller.pump(0.01)  # the CALL_CLOSED baresip sends
    assert controller.call is None and controller.last_end_reason == "menu timeout"
    assert menu.seen[-1] == "stop" and room.actions == ["leave"]


def test_a_failing_menu_hangs_up_its_call() -> None:
    controller, control, _, _ = make(routing=POOL, menu=FakeMenu(fail_on="#"))
    ring(controller, control, "c1", "meet")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.handle(call("CALL_DTMF_START", "c1", param="#"))
    controller.pump(0.01)
    assert controller.call is None and controller.last_end_reason == "keypad menu failed: menu bug"


def test_no_menu_tells_the_caller_then_hangs_up_after_its_delay() -> None:
    now = [100.0]
    shown: list[str] = []
    controller, control, _, _ = make(routing=POOL, menu=NoMenu(show=shown.append, delay=5, clock=lambda: now[0]))
    control.closes_on_hangup = False
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert shown and "sip:MEETING@" in shown[0]
    controller.pump(0.01)
    assert control.commands[-1] != ("hangup", "c1")
    now[0] += 5
    controller.pump(0.01)
    assert control.commands[-1] == ("hangup", "c1")
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by user"))
    assert controller.last_end_reason == NoMenu.REASON


# -- calls, as before pools -----------------------------------------------------------------------------------------


def test_registration_events() -> None:
    controller, _, _, changes = make()
    controller.handle({"event": True, "type": "REGISTER_OK", "param": "200 OK"})
    assert controller.registered and controller.register_reason is None
    controller.handle({"event": True, "type": "REGISTER_FAIL", "param": "403 Forbidden"})
    assert not controller.registered and controller.register_reason == "403 Forbidden"
    controller.handle({"event": True, "type": "REGISTER_OK", "param": "200 OK"})
    controller.handle({"event": True, "type": "REGISTER_OK", "param": "200 OK"})  # re-registration: no change
    assert [c[0] for c in changes] == [True, False, True]
    controller.handle({"event": True, "type": "UNREGISTERING"})
    assert not controller.registered


def test_auto_answered_call_joins_with_display_name_then_leaves_and_is_ready_again() -> None:
    controller, control, room, changes = make()
    controller.handle(call("CALL_ESTABLISHED", "c1", peerdisplayname="Alice Liddell"))
    assert controller.in_call and controller.caller == "Alice Liddell" and controller.call_id == "c1"
    assert controller.caller_uri == "sip:alice@example.org" and controller.calls == 1
    controller.handle(call("CALL_RTCP", "c1"))
    controller.handle(call("CALL_CLOSED", "c1", param="Connection reset by peer"))
    assert room.actions == ["join:Alice Liddell", "leave"]
    assert not controller.in_call and controller.caller is None and not controller.done
    assert changes[-1] == (False, False, None, False)
    control.current = "c2"
    controller.handle(call("CALL_ESTABLISHED", "c2", peeruri="sip:bob@example.org"))
    assert room.actions[-1] == "join:bob" and controller.calls == 2


def test_once_mode_is_done_after_the_call() -> None:
    controller, control, room, _ = make(once=True)
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert not controller.done
    controller.handle(call("CALL_CLOSED", "c1"))
    assert controller.done and room.actions == ["join:alice", "leave"]


def test_outgoing_and_duplicate_established_events_do_not_join_again() -> None:
    controller, _, room, _ = make()
    controller.handle(call("CALL_ESTABLISHED", "o1", direction="outgoing"))
    assert room.actions == [] and controller.call_id is None
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert room.actions == ["join:alice"]


def test_room_join_failure_is_reported_and_the_call_hung_up() -> None:
    control = FakeControl(closes_on_hangup=False)
    controller, _, room, changes = make(control=control, room=FakeRoom(fail_join=True))
    ring(controller, control, "c1", "gw")
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert controller.error is not None and "page did not load" in controller.error
    assert not controller.in_call and changes
    assert control.commands[-1] == ("hangup", "c1")
    assert room.actions == ["join:alice", "leave"]  # best-effort cleanup of a half-loaded room
    controller.handle(call("CALL_CLOSED", "c1"))
    assert controller.call_id is None and room.actions == ["join:alice", "leave"]
    assert controller.last_end_reason == "room join failed: page did not load"


def test_room_leave_failure_is_reported_but_the_gateway_is_free_again() -> None:
    controller, _, _, _ = make(room=FakeRoom(fail_leave=True))
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.handle(call("CALL_CLOSED", "c1"))
    assert controller.error is not None and "browser gone" in controller.error
    assert controller.call_id is None and not controller.in_call


def test_hangup_and_wait_sends_bye_and_waits_for_closed() -> None:
    controller, control, room, _ = make()
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    control.events.put({"event": True, "type": "CALL_RTCP", "id": "c1"})  # noise first
    assert controller.hangup_and_wait(timeout=10, reason="gateway stopping") is True
    assert control.commands[-1] == ("hangup", "c1") and room.actions == ["join:alice", "leave"]
    assert not controller.in_call and controller.last_end_reason == "gateway stopping"
    assert controller.hangup_and_wait(timeout=10) is True  # nothing to hang up
    assert [c for c in control.commands if c[0] == "hangup"] == [("hangup", "c1")]


def test_hangup_and_wait_gives_up_and_still_leaves_the_room() -> None:
    control = FakeControl(closes_on_hangup=False, fail=True)
    controller, _, room, _ = make(control=control)
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert controller.hangup_and_wait(timeout=0.3) is False
    assert room.actions == ["join:alice", "leave"] and controller.call_id is None


def test_lost_control_connection_ends_the_call_and_registration() -> None:
    controller, _, room, _ = make(once=True)
    controller.handle({"event": True, "type": "REGISTER_OK"})
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.handle({"event": True, "type": DISCONNECTED})
    assert controller.control_lost and not controller.registered and not controller.in_call
    assert room.actions == ["join:alice", "leave"] and controller.done
    assert controller.error == "baresip control connection lost"


def test_dtmf_is_passed_to_the_hook_and_a_failing_hook_is_contained() -> None:
    keys: list[str] = []

    def hook(key: str) -> None:
        keys.append(key)
        if key == "#":
            raise ValueError("boom")

    controller, _, _, _ = make(on_dtmf=hook)
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    for key in "12#":
        controller.handle(call("CALL_DTMF_START", "c1", param=key))
        controller.handle(call("CALL_DTMF_END", "c1"))
    assert keys == ["1", "2", "#"] and controller.in_call


def test_sync_registration_reads_reginfo() -> None:
    control = FakeControl()
    controller, _, _, changes = make(control=control)
    control.reginfo_data = "\n--- User Agents (1) ---\n> sip:gw@example.org  \x1b[32mOK \x1b[;m\n"
    assert controller.sync_registration() is True and controller.registered and len(changes) == 1
    control.reginfo_data = "\n--- User Agents (1) ---\n> sip:gw@example.org  \x1b[31mERR\x1b[;m kam Expires 0s\n"
    assert controller.sync_registration() is False
    assert not controller.registered and "ERR" in (controller.register_reason or "")
    control.reginfo_data = "\n--- User Agents (1) ---\n> sip:gw@example.org                \n"  # regint=0
    controller.register_reason = None
    assert controller.sync_registration() is False and controller.register_reason is None


REGINFO_ERR = "\n--- User Agents (1) ---\n> sip:gw@example.org  \x1b[31mERR\x1b[;m kam Expires 0s\n"
REGINFO_OK = "\n--- User Agents (1) ---\n> sip:gw@example.org  \x1b[32mOK \x1b[;m\n"
REGINFO_PENDING = "\n--- User Agents (1) ---\n> sip:gw@example.org                \n"


def test_a_refused_registration_says_the_registrars_answer_from_baresips_log() -> None:
    control = FakeControl()
    log = RegistrationLog()
    controller, _, _, _ = make(control=control, registration_hint=log.last_failure)
    control.reginfo_data = REGINFO_ERR
    controller.sync_registration()  # no log line yet: the generic words
    assert controller.registration == "failed" and "reginfo: ERR" in (controller.register_reason or "")
    log.observe("reg: sip:gw@example.org: 401 Unauthorized (sipmediagw-kamailio)")
    controller.sync_registration()
    assert controller.register_reason == "401 Unauthorized (sipmediagw-kamailio)"
    fields = controller.call_fields()
    assert (fields["registration"], fields["registration_reason"]) == ("failed", "401 Unauthorized (sipmediagw-kamailio)")
    control.reginfo_data = REGINFO_OK
    log.observe("reg: sip:gw@example.org: 200 OK (sipmediagw-kamailio)")
    assert controller.sync_registration() and controller.call_fields()["registration_reason"] is None
    assert log.last_failure() is None


def test_silence_from_the_registrar_is_reported_after_a_few_seconds() -> None:
    control, now = FakeControl(), [100.0]
    controller, _, _, changes = make(control=control, clock=lambda: now[0])
    control.reginfo_data = REGINFO_PENDING
    now[0] += REGISTRAR_SILENCE - 0.5
    controller.sync_registration()
    assert controller.registration == "registering" and controller.register_reason is None
    now[0] += 1.0
    controller.sync_registration()
    assert controller.registration == "failed" and "no answer from the registrar" in (controller.register_reason or "")
    assert changes  # the state file is rewritten at once


def test_a_registration_lost_after_success_is_lost_not_failed() -> None:
    controller, _, _, _ = make()
    controller.handle({"event": True, "type": "REGISTER_OK", "param": "200 OK"})
    assert controller.registration == "registered"
    controller.handle({"event": True, "type": "REGISTER_FAIL", "param": "Connection timed out"})
    assert (controller.registration, controller.register_reason) == ("lost", "Connection timed out")


@pytest.mark.parametrize("line, failure", [
    ("reg: sip:gw@h: 403 Forbidden (kam)", "403 Forbidden (kam)"),
    ("reg: sips:gw@h;transport=tls: Connection refused [111]", "Connection refused [111]"),
    ("reg: sip:gw@h: 200 OK (kam)", None),
    ("ua: sip:gw@h: 401 Unauthorized", None),  # not a reg: line
    ("some reg: sip:x@y: 500 Oops", None),
])
def test_registration_log_reads_baresips_reg_lines(line: str, failure: str | None) -> None:
    log = RegistrationLog()
    log.observe(line)
    assert log.last_failure() == failure


def test_pump_handles_queued_events_in_another_thread_order() -> None:
    controller, control, room, _ = make()
    threading.Thread(target=lambda: control.events.put(call("CALL_ESTABLISHED", "c1"))).start()
    assert controller.pump(10) is not None and room.actions == ["join:alice"]
    assert controller.pump(0.05) is None


@pytest.mark.parametrize(
    "event, name",
    [
        ({"peerdisplayname": "Dr. Who", "peeruri": "sip:who@x"}, "Dr. Who"),
        ({"peerdisplayname": "", "peeruri": "sip:J%C3%B6rg@x;transport=tcp"}, "Jörg"),
        ({"peeruri": "sips:+33123@x"}, "+33123"),
        ({"peeruri": "sip:x.example.org"}, "SIP gateway"),
        ({"peerdisplayname": "evil\nname\x1b[31m" + "x" * 100}, ("evilname[31m" + "x" * 100)[:64]),
        ({}, "SIP gateway"),
    ],
)
def test_caller_display_name(event: dict[str, Any], name: str) -> None:
    assert caller_display_name(event) == name
