"""DTMF into the keypad menu with real baresip 1.0.0 on loopback: the gateway's baresip (our template, answermode
manual) driven by the real Controller and the real menu wiring (menu.py; only the screen and the prompt player are
fakes here: tests/integration/test_menu_real.py and tests/docker/test_keypad.py have the real ones).

Keys arrive two ways, and both must work: RFC 4733 telephone-events (a baresip caller's ``sndcode``) and SIP INFO
``application/dtmf-relay`` (the test bed's InfoCaller: baresip 1.0.0 cannot send INFO). Measured here: baresip reports
both as the same CALL_DTMF_START event with the key as its param; a ``Signal=10`` (some devices' ``*``) arrives as
``1``, because baresip 1.0.0 keeps the first character of the Signal only.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Sequence

from sipmediagw.dispatch import Dispatcher, RoomTarget, parse_rules
from sipmediagw.gateway.controller import Controller, Routing
from sipmediagw.gateway.ivr import MenuView
from sipmediagw.gateway.menu import KeypadMenuSession
from sipmediagw.testbed.infocaller import InfoCaller

from test_baresip_real import LOOPBACK, WAIT, Baresip, pump_until, spawn  # noqa: F401 (fixture)

#: a pool gateway `gw` whose four-digit meetings are rooms (no platform choice: one platform)
POOL = Routing("gw", dispatcher=Dispatcher.build(
    parse_rules([{"match": "[0-9]{4}", "platform": "janus", "base_url": "http://127.0.0.1"}]), "janus", ""))


class Screen:
    def __init__(self) -> None:
        self.views: list[MenuView] = []

    def show(self, view: MenuView) -> None:
        self.views.append(view)


class Player:
    playing = False

    def play(self, prompt: str | Sequence[str]) -> bool:
        return True

    def stop(self) -> None:
        pass


class Room:
    def __init__(self) -> None:
        self.joined: list[RoomTarget] = []

    def check(self, target: RoomTarget) -> None:
        pass

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: Any = None) -> None:
        self.joined.append(target)

    def leave(self) -> None:
        pass


def gateway_with_menu(spawn: Any) -> tuple[Baresip, Controller, Screen, Room]:  # noqa: F811
    # ausine (the rig's "room" sound) runs at 48 kHz only: let baresip resample for a G.711 caller
    gateway = spawn("gw", f"<sip:gw@{LOOPBACK}>;regint=0", settings={"ausrc_srate": "48000", "auplay_srate": "48000"})
    screen, room = Screen(), Room()
    menu = KeypadMenuSession(lambda: screen, Player(), join_delay=0.1)
    controller = Controller(gateway.control, room, lambda: None, routing=POOL, menu=menu)  # type: ignore[arg-type]
    return gateway, controller, screen, room


def test_rfc4733_keys_from_a_baresip_caller_pick_the_room(spawn: Any) -> None:  # noqa: F811
    gateway, controller, screen, room = gateway_with_menu(spawn)
    alice = spawn("alice", f"<sip:alice@{LOOPBACK}>;regint=0")
    assert alice.control.dial(gateway.uri)["ok"] is True
    pump_until(controller, lambda: controller.in_menu, "in the menu", gateway)
    for key in "125*34":
        assert alice.control.command("sndcode", key)["ok"] is True  # telephone-event press + release
    pump_until(controller, lambda: bool(screen.views) and screen.views[-1].digits == "1234", "1234 typed", gateway)
    alice.control.command("sndcode", "#")
    pump_until(controller, lambda: controller.in_call, "in the room", gateway)
    assert [t.room for t in room.joined] == ["1234"]


def test_sip_info_keys_pick_the_room_and_arrive_as_the_same_event(spawn: Any) -> None:  # noqa: F811
    gateway, controller, screen, room = gateway_with_menu(spawn)
    with InfoCaller(user="bob", domain=LOOPBACK, ip=LOOPBACK, proxy=f"{LOOPBACK}:{gateway.sip_port}") as bob:
        answered = []

        def dial() -> None:
            answered.append(bob.dial(f"sip:gw@{LOOPBACK}:{gateway.sip_port}", timeout=WAIT))

        import threading

        dialling = threading.Thread(target=dial)  # the INVITE waits for the controller's accept
        dialling.start()
        pump_until(controller, lambda: controller.in_menu, "in the menu", gateway)
        dialling.join(WAIT)
        assert answered and answered[0].status == 200
        seen: list[str] = []
        original = controller.handle

        def handle(event: dict[str, Any]) -> None:
            if event.get("type", "").startswith("CALL_DTMF"):
                seen.append(f"{event['type']}:{event.get('param') or ''}")
            original(event)

        controller.handle = handle  # type: ignore[method-assign]
        for key in ("1", "2", "3", "10"):  # 10: some devices' "*" -- baresip 1.0.0 keeps its first character
            assert bob.info(key).status == 200
        pump_until(controller, lambda: len([s for s in seen if s.startswith("CALL_DTMF_START")]) == 4,
                   "four keys", gateway)
        assert [s for s in seen if s.startswith("CALL_DTMF_START")] == [
            "CALL_DTMF_START:1", "CALL_DTMF_START:2", "CALL_DTMF_START:3", "CALL_DTMF_START:1"]
        assert screen.views[-1].digits == "1231"
        for key in "****1235#":
            bob.info(key)
        pump_until(controller, lambda: controller.in_call, "in the room", gateway)
        assert [t.room for t in room.joined] == ["1235"]
        deadline = time.monotonic() + WAIT
        while not any(s == "CALL_DTMF_END:" for s in seen) and time.monotonic() < deadline:
            controller.pump(0.2)
        assert "CALL_DTMF_END:" in seen  # (one END after a burst of INFOs: baresip restarts its timer per INFO)
