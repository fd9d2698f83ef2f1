"""The supervisor serves the request socket (`sipmediagw dial`) from its main loop: opened once the controller exists,
polled every turn, closed first on stop; an outgoing call not answered yet counts as in-call. Fakes from
test_supervisor.py."""

from __future__ import annotations

import signal
from pathlib import Path
import logging
from typing import Any, Callable

from sipmediagw.gateway.logs import get_logger
from sipmediagw.gateway.supervisor import Supervisor
from sipmediagw.state import GatewayState, GatewayStatus, read_state

from test_supervisor import FakeController, names


class FakeRequests:
    def __init__(self, events: list[str], fail_open: bool = False) -> None:
        self.events = events
        self.fail_open = fail_open
        self.polls = 0
        self.controller: Any = None
        self.gateway_state: Callable[[], GatewayState] | None = None

    def open(self, controller: Any, gateway_state: Callable[[], GatewayState]) -> None:
        self.events.append("requests open")
        if self.fail_open:
            raise OSError("Address already in use")
        self.controller, self.gateway_state = controller, gateway_state

    def poll(self) -> None:
        self.polls += 1

    def close(self, reason: str = "gateway stopping") -> None:
        self.events.append(f"requests close: {reason}")


def run(tmp_path: Path, script: Callable[[FakeController, Supervisor, FakeRequests], None],
        fail_open: bool = False) -> tuple[int, list[str], FakeRequests]:
    events: list[str] = []
    requests = FakeRequests(events, fail_open)
    components = names("xvfb-web", "baresip", "browser")
    for component in components:
        component.events = events
    holder: dict[str, Supervisor] = {}

    def make_controller(on_change: Callable[[], None]) -> FakeController:
        events.append("controller")
        return FakeController(events, on_change, lambda ctl: script(ctl, holder["s"], requests))

    holder["s"] = Supervisor(status=GatewayStatus(gateway="gw-test"), log_dir=tmp_path,
                             components=[(c, 5.0) for c in components], make_controller=make_controller,
                             poll_interval=0.01, install_signals=False, requests=requests)
    return holder["s"].run(), events, requests


def test_requests_are_served_from_the_loop_and_closed_before_the_hangup(tmp_path: Path) -> None:
    seen: list[Any] = []

    def script(ctl: FakeController, sup: Supervisor, requests: FakeRequests) -> None:
        if ctl.turns == 2:
            ctl.dialling, ctl.call_id, ctl.caller = True, "", "boardroom"  # dialled: no id from baresip yet
            ctl.on_change()
        elif ctl.turns == 4:
            assert requests.gateway_state is not None
            seen.append((read_state(tmp_path).state, requests.gateway_state()))
            sup.request_stop(signal.SIGTERM)

    code, events, requests = run(tmp_path, script)
    assert code == 0
    assert events.index("controller") < events.index("requests open")  # served once a controller exists
    assert requests.controller is not None and requests.polls >= 3  # every turn of the loop
    # a dialled call not answered yet is a call: in-call, and the stop hangs it up (its id is still "")
    assert seen == [(GatewayState.IN_CALL, GatewayState.IN_CALL)]
    assert events.index("requests close: gateway stopping") < events.index("hangup") < events.index("stop browser")


def test_a_request_socket_that_cannot_open_does_not_stop_the_gateway(tmp_path: Path) -> None:
    served: list[GatewayState] = []
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]

    def script(ctl: FakeController, sup: Supervisor, requests: FakeRequests) -> None:
        served.append(read_state(tmp_path).state)
        if ctl.turns == 2:
            sup.request_stop(signal.SIGTERM)

    logger = get_logger("supervisor")  # (other tests' setup_logging may stop propagation: no caplog)
    logger.addHandler(handler)
    try:
        code, events, _requests = run(tmp_path, script, fail_open=True)
    finally:
        logger.removeHandler(handler)
    assert code == 0 and "requests open" in events and served[-1] is GatewayState.READY
    assert "request socket not available: Address already in use" in said
