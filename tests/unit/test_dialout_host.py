"""Outgoing calls in the controller (`sipmediagw dial`): baresip 1.0.0's events for a dialled call, as measured
(`dial` answers without an id; CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED carry direction "outgoing" and the id;
a refusal closes the call with the SIP status as param), and what the requester is told. Fakes from
test_controller.py."""

from __future__ import annotations

from typing import Any

import pytest

from sipmediagw.dispatch import RoomTarget
from sipmediagw.gateway.controller import DIAL_CLOSE_GRACE, Controller, Routing
from sipmediagw.gateway.room_worker import RoomWorker
from sipmediagw.sipuri import sip_status, status_meaning

from test_controller import FIXED, POOL, FakeControl, FakeRoom, call, ring

URI = "sip:boardroom@pbx.example.org"


class DialControl(FakeControl):
    """FakeControl that also dials; `dial_ok=False` is baresip refusing the command."""

    def __init__(self, dial_ok: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dial_ok = dial_ok

    def dial(self, uri: str) -> dict[str, Any]:
        result = self._record("dial", uri)
        return {**result, "ok": self.dial_ok, "data": "" if self.dial_ok else "invalid uri"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outgoing(kind: str, call_id: str | None, **fields: Any) -> dict[str, Any]:
    """An event of the outgoing call, as baresip sends it (peeruri with the account's transport appended)."""
    return call(kind, call_id, direction="outgoing", peeruri=f"{URI};transport=udp", **fields)


def make(routing: Routing = POOL, **kwargs: Any) -> tuple[Controller, DialControl, FakeRoom, Clock, list[dict]]:
    control = kwargs.pop("control", DialControl())
    room = kwargs.pop("room", FakeRoom())
    clock = Clock()
    kwargs.setdefault("room_worker", RoomWorker(threaded=False))  # joins at once: these tests are about the dial
    controller = Controller(control, room, lambda: None, routing=routing, clock=clock, **kwargs)  # type: ignore
    controller.registered = True
    return controller, control, room, clock, []


def dial(controller: Controller, reports: list[dict], meeting: str | None = "1234", timeout: float = 30) -> None:
    controller.dial(URI, meeting, reports.append, timeout=timeout)


def finals(reports: list[dict]) -> list[dict]:
    return [r for r in reports if "ok" in r]


def test_an_answered_call_joins_its_room_under_the_callees_name_and_reports_each_step() -> None:
    controller, control, room, _clock, reports = make()
    dial(controller, reports)
    assert control.commands == [("dial", URI)]
    assert controller.dialling and not controller.in_call and controller.call_id == ""
    # the state file shows whom it calls from the start (status: in-call, room "(dialling)")
    fields = controller.call_fields()
    assert (fields["caller"], fields["caller_uri"], fields["call_direction"], fields["room"], fields["call_started"],
            fields["meeting"]) == ("boardroom", URI, "outgoing", None, None, "1234")
    controller.handle(outgoing("CALL_LOCAL_SDP", None, param="offer"))  # the first event has no id
    controller.handle(outgoing("CALL_RINGING", "o1"))
    assert controller.call_id == "o1"
    controller.handle(outgoing("CALL_ESTABLISHED", "o1", peerdisplayname="Board Room"))
    assert room.actions == ["join:Board Room"] and controller.in_call and not controller.dialling
    assert room.targets == [RoomTarget("janus", "https://rooms.example.org", "1234", "1234")]
    assert [r.get("progress") for r in reports if "progress" in r] == ["dialling", "ringing", "answered"]
    assert finals(reports) == [{"ok": True, "uri": URI, "callee": "Board Room", "room": "1234", "platform": "janus",
                                "call_id": "o1"}]
    assert controller.call_fields()["room"] == "1234" and controller.calls == 1
    assert ("accept", "") not in control.commands and ("callstat", "") not in control.commands
    controller.handle(outgoing("CALL_CLOSED", "o1", param="Connection reset by peer"))
    assert room.actions == ["join:Board Room", "leave"] and controller.call is None
    assert controller.last_end_reason == "callee hung up" and controller.call_fields()["call_direction"] is None
    assert len(finals(reports)) == 1  # nothing more after the final answer


@pytest.mark.parametrize("param, reason, status", [
    ("486 Busy Here", "486 Busy Here (busy)", "486 Busy Here"),
    ("486 Rejected", "486 Rejected (busy)", "486 Rejected"),  # baresip 1.0.0 declining by hangup
    ("603 Decline", "603 Decline (declined)", "603 Decline"),
    ("404 Not Found", "404 Not Found (not found)", "404 Not Found"),
    ("480 Temporarily Unavailable", "480 Temporarily Unavailable (unavailable)", "480 Temporarily Unavailable"),
    ("Connection refused", "Connection refused", None),  # baresip's own reason: no SIP status
])
def test_a_refused_call_reports_the_sip_status_and_the_gateway_is_free(param: str, reason: str,
                                                                       status: str | None) -> None:
    controller, _control, room, _clock, reports = make()
    dial(controller, reports)
    controller.handle(outgoing("CALL_RINGING", "o1"))
    controller.handle(outgoing("CALL_CLOSED", "o1", param=param))
    assert controller.call is None and not controller.dialling and room.actions == []
    expected = f"call to {URI} failed: {reason}"
    assert controller.last_end_reason == expected
    assert finals(reports) == [{"ok": False, "kind": "failed", "message": expected, "sip_status": status, "uri": URI}]


def test_a_call_closed_before_any_other_event_still_is_ours() -> None:
    controller, _control, _room, _clock, reports = make()
    dial(controller, reports)
    controller.handle(outgoing("CALL_CLOSED", "o9", param="404 Not Found"))  # fails at once: its first id
    assert controller.call is None and finals(reports)[0]["sip_status"] == "404 Not Found"


def test_no_answer_in_time_cancels_the_call_and_says_so() -> None:
    control = DialControl(closes_on_hangup=False)
    controller, _control, _room, clock, reports = make(control=control)
    dial(controller, reports, timeout=20)
    controller.handle(outgoing("CALL_RINGING", "o1"))
    clock.now += 19.9
    controller.pump(0)
    assert ("hangup", "o1") not in control.commands
    clock.now += 0.2
    controller.pump(0)
    assert control.commands[-1] == ("hangup", "o1")  # baresip cancels the INVITE
    controller.pump(0)
    assert control.commands.count(("hangup", "o1")) == 1  # once
    controller.handle(outgoing("CALL_CLOSED", "o1", param="Connection reset by user"))
    assert controller.call is None
    assert finals(reports) == [{"ok": False, "kind": "failed", "sip_status": None, "uri": URI,
                                "message": f"no answer from {URI} within 20 s"}]


def test_a_cancelled_call_baresip_never_closes_is_ended_after_a_grace_period() -> None:
    control = DialControl(closes_on_hangup=False)
    controller, _control, _room, clock, reports = make(control=control)
    dial(controller, reports, timeout=5)
    clock.now += 5
    controller.pump(0)
    clock.now += DIAL_CLOSE_GRACE
    controller.pump(0)
    assert controller.call is None and finals(reports)[0]["message"] == f"no answer from {URI} within 5 s"


def test_a_room_that_cannot_be_joined_hangs_up_and_reports_after_the_call_is_over() -> None:
    controller, control, room, _clock, reports = make(room=FakeRoom(fail_join=True))
    dial(controller, reports)
    controller.handle(outgoing("CALL_ESTABLISHED", "o1"))
    assert control.commands[-1] == ("hangup", "o1") and finals(reports) == []  # not ready yet: the call is up
    # FakeControl's hangup queued the CALL_CLOSED baresip sends
    controller.pump(0)
    assert controller.call is None
    [final] = finals(reports)
    assert (final["kind"], final["message"]) == ("failed", "room join failed: page did not load")


@pytest.mark.parametrize("routing, meeting, needle", [
    (POOL, None, "a pool gateway joins the room it is given: name the room (-r ROOM)"),
    (Routing("gw", fixed=FIXED), "999", "this gateway is fixed in room 1234: it cannot join 999"),
    (POOL, "abc-xyz-", "unknown meeting"),
])
def test_a_room_it_cannot_join_is_refused_before_dialling(routing: Routing, meeting: str | None,
                                                          needle: str) -> None:
    controller, control, _room, _clock, reports = make(routing, room=FakeRoom(refuse="abc-xyz-"))
    dial(controller, reports, meeting)
    assert control.commands == [] and controller.call is None
    [final] = reports
    assert (final["ok"], final["kind"]) == (False, "invalid") and needle in final["message"]


def test_a_fixed_gateway_dials_into_its_own_room_by_default() -> None:
    controller, _control, room, _clock, reports = make(Routing("gw", fixed=FIXED))
    dial(controller, reports, None)
    controller.handle(outgoing("CALL_ESTABLISHED", "o1"))
    assert room.targets == [FIXED] and finals(reports)[0]["room"] == "1234"


def test_a_pool_gateway_uses_its_dispatch_rules() -> None:
    controller, _control, room, _clock, reports = make()
    dial(controller, reports, "abc-def")
    controller.handle(outgoing("CALL_ESTABLISHED", "o1"))
    assert room.targets == [RoomTarget("jitsi", "https://meet.example.org", "team-abc-def", "abc-def")]


def test_dial_is_refused_while_busy_unregistered_or_when_baresip_refuses() -> None:
    controller, control, _room, _clock, reports = make()
    ring(controller, control, "c1", "1234")  # an incoming call taken
    dial(controller, reports)
    assert reports[-1]["kind"] == "unavailable" and "in a call with sip:alice@example.org" in reports[-1]["message"]
    controller, control, _room, _clock, reports = make()
    controller.registered = False
    dial(controller, reports)
    assert reports[-1] == {"ok": False, "kind": "unavailable", "sip_status": None,
                           "message": "the gateway is not registered at its SIP registrar"}
    controller, control, _room, _clock, reports = make(control=DialControl(dial_ok=False))
    dial(controller, reports)
    assert reports[-1]["kind"] == "failed" and controller.call is None
    controller, control, _room, _clock, reports = make(control=DialControl(fail=True))
    dial(controller, reports)
    assert reports[-1]["kind"] == "unavailable" and controller.call is None


def test_an_incoming_call_while_dialling_is_refused_and_the_dial_goes_on() -> None:
    controller, control, room, _clock, reports = make()
    dial(controller, reports)
    controller.handle(outgoing("CALL_RINGING", "o1"))
    control.closes_on_hangup = False
    controller.handle(call("CALL_INCOMING", "c2"))
    assert control.commands[-1] == ("hangup", "c2") and controller.call_id == "o1" and controller.dialling
    controller.handle(outgoing("CALL_ESTABLISHED", "o1"))
    assert controller.in_call and finals(reports)[0]["ok"] is True


def test_hangup_and_wait_follows_the_call_while_it_learns_its_id() -> None:
    """Stopping while dialling: the call's id arrives with its CALL_CLOSED; the wait must not lose it."""
    control = DialControl(closes_on_hangup=False)
    controller, _control, _room, _clock, reports = make(control=control)
    dial(controller, reports)
    control.events.put(outgoing("CALL_CLOSED", "o1", param="Connection reset by user"))
    assert controller.hangup_and_wait(2, reason="gateway stopping") is True
    assert controller.call is None and controller.last_end_reason == "gateway stopping"
    assert finals(reports)[0]["message"] == "gateway stopping"


def test_an_outgoing_call_that_is_not_ours_is_left_alone() -> None:
    controller, control, room, _clock, _reports = make()
    controller.handle(outgoing("CALL_ESTABLISHED", "x1"))
    controller.handle(outgoing("CALL_CLOSED", "x1", param="Connection reset by peer"))
    assert room.actions == [] and controller.call is None and control.commands == []


def test_sip_status_helpers() -> None:
    assert sip_status("486 Busy Here") == "486 Busy Here" and sip_status("603") == "603"
    assert sip_status("Connection reset by peer") is None and sip_status(None) is None
    assert status_meaning("603 Decline") == "declined" and status_meaning("499 Odd") is None
