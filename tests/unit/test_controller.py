"""Controller logic with a fake control connection and a fake room: events -> room joins/leaves and state."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from sipmediagw.gateway.baresip import DISCONNECTED, BaresipControlError
from sipmediagw.gateway.controller import Controller, caller_display_name


class FakeControl:
    """Records commands; `closes_on_hangup` makes a hangup produce the CALL_CLOSED baresip would send."""

    def __init__(self, closes_on_hangup: bool = True, fail: bool = False) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.commands: list[tuple[str, str]] = []
        self.closes_on_hangup = closes_on_hangup
        self.fail = fail
        self.reginfo_data = ""

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


class FakeRoom:
    def __init__(self, fail_join: bool = False, fail_leave: bool = False) -> None:
        self.actions: list[str] = []
        self.fail_join = fail_join
        self.fail_leave = fail_leave

    def join(self, display_name: str) -> None:
        self.actions.append(f"join:{display_name}")
        if self.fail_join:
            raise RuntimeError("page did not load")

    def leave(self) -> None:
        self.actions.append("leave")
        if self.fail_leave:
            raise RuntimeError("browser gone")


def call(kind: str, call_id: str, **fields: Any) -> dict[str, Any]:
    base = {"event": True, "type": kind, "class": "call", "accountaor": "sip:gw@example.org",
            "direction": "incoming", "peeruri": "sip:alice@example.org", "id": call_id, "param": ""}
    base.update(fields)
    return base


def make(once: bool = False, **kwargs: Any) -> tuple[Controller, FakeControl, FakeRoom, list[tuple]]:
    control = kwargs.pop("control", FakeControl())
    room = kwargs.pop("room", FakeRoom())
    changes: list[tuple] = []
    controller: Controller

    def snapshot() -> None:
        changes.append((controller.registered, controller.in_call, controller.caller, controller.done))

    controller = Controller(control, room, snapshot, once, **kwargs)  # type: ignore[arg-type]
    return controller, control, room, changes


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
    controller.handle(call("CALL_ESTABLISHED", "c2", peeruri="sip:bob@example.org"))
    assert room.actions[-1] == "join:bob" and controller.calls == 2


def test_once_mode_is_done_after_the_call() -> None:
    controller, _, room, _ = make(once=True)
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert not controller.done
    controller.handle(call("CALL_CLOSED", "c1"))
    assert controller.done and room.actions == ["join:alice", "leave"]


def test_second_concurrent_call_is_hung_up_and_first_call_kept() -> None:
    control = FakeControl(closes_on_hangup=False)
    controller, _, room, _ = make(control=control)
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    controller.handle(call("CALL_INCOMING", "c2", peeruri="sip:mallory@example.org"))
    controller.handle(call("CALL_ESTABLISHED", "c2", peeruri="sip:mallory@example.org"))
    assert control.commands == [("hangup", "c2"), ("hangup", "c2")]
    controller.handle(call("CALL_CLOSED", "c2"))
    assert controller.in_call and controller.call_id == "c1" and room.actions == ["join:alice"]


def test_call_incoming_is_accepted_and_joined_on_established() -> None:
    controller, control, room, _ = make()
    controller.handle(call("CALL_INCOMING", "c1"))
    assert control.commands == [("accept", "")] and room.actions == [] and not controller.in_call
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert room.actions == ["join:alice"] and controller.in_call


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
    controller.handle(call("CALL_ESTABLISHED", "c1"))
    assert controller.error is not None and "page did not load" in controller.error
    assert not controller.in_call and changes
    assert control.commands == [("hangup", "c1")]
    assert room.actions == ["join:alice", "leave"]  # best-effort cleanup of a half-loaded room
    controller.handle(call("CALL_CLOSED", "c1"))
    assert controller.call_id is None and room.actions == ["join:alice", "leave"]


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
    assert controller.hangup_and_wait(timeout=10) is True
    assert control.commands == [("hangup", "c1")] and room.actions == ["join:alice", "leave"]
    assert not controller.in_call
    assert controller.hangup_and_wait(timeout=10) is True  # nothing to hang up
    assert control.commands == [("hangup", "c1")]


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
