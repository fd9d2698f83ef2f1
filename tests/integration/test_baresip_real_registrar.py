"""Real baresip registering at the test-bed's real Kamailio: REGISTER_OK / REGISTER_FAIL drive the controller."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from sipmediagw.gateway.baresip import RegistrationLog
from sipmediagw.gateway.controller import Controller
from sipmediagw.gateway.logs import strip_ansi
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port_range

from test_baresip_real import FIXED, LOOPBACK, WAIT, RecordingRoom, spawn  # noqa: F401 (fixture)

PASSWORD = "gw-Secret-42"


@pytest.fixture
def registrar(tmp_path: Path, require_programs: Callable[..., None]):  # type: ignore[no-untyped-def]
    require_programs("kamailio", "kamcmd")
    with Kamailio(domain=LOOPBACK, listen=[LOOPBACK], port=free_port_range(LOOPBACK), workdir=tmp_path / "kamailio",
                  users={"gw": PASSWORD}) as kamailio:
        yield kamailio


def account(password: str, port: int) -> str:
    return (f'<sip:gw@{LOOPBACK}>;auth_pass={password};outbound="sip:{LOOPBACK}:{port};transport=udp";'
            "regint=60")


def pump_until(controller: Controller, condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gateway not {what} within {WAIT}s"
        controller.pump(0.2)


def test_register_ok_makes_the_gateway_registered_and_reginfo_agrees(spawn, registrar) -> None:  # type: ignore
    gateway = spawn("gw", account(PASSWORD, registrar.port))
    controller = Controller(gateway.control, RecordingRoom(), lambda: None,  # type: ignore[arg-type]
                            routing=FIXED)
    pump_until(controller, lambda: controller.registered or controller.sync_registration(), "registered")
    assert registrar.registered("gw")
    assert controller.sync_registration() is True  # the reginfo text of a registered account is understood
    assert PASSWORD not in gateway.log_path.read_text(errors="replace")


def test_register_fail_is_reported_with_its_reason(spawn, registrar) -> None:  # type: ignore
    gateway = spawn("gw", account("wrong-password", registrar.port))
    registration_log = RegistrationLog()  # in the gateway it watches baresip's output; here its log file
    controller = Controller(gateway.control, RecordingRoom(), lambda: None,  # type: ignore[arg-type]
                            routing=FIXED, registration_hint=registration_log.last_failure)

    # the first REGISTER_FAIL happens before we connect: reginfo says ERR, baresip's log line says why
    def failure_known() -> bool:
        for line in gateway.log_path.read_text(errors="replace").splitlines():
            registration_log.observe(strip_ansi(line))
        controller.sync_registration()
        return (controller.register_reason or "").startswith("401")

    pump_until(controller, failure_known, "told the registration failed")
    assert not controller.registered and not registrar.registered("gw")
    assert controller.registration == "failed"
    assert controller.register_reason.startswith("401 Unauthorized")
