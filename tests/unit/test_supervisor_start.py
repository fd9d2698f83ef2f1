"""The supervisor's start-up in waves (start_together: independent components started at once, then waited for) and
the health file it keeps beside the state file for the HEALTHCHECK's shell (health.SHELL_CHECK)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from sipmediagw.gateway.health import HEALTH_FILE_NAME, SHELL_CHECK
from sipmediagw.gateway.supervisor import Supervisor
from sipmediagw.state import GatewayState, GatewayStatus

from test_supervisor import FakeComponent, FakeController, names


class Recorded(FakeComponent):
    """A FakeComponent whose readiness waits are in the journal too."""

    def wait_ready(self, timeout: float) -> None:
        self.events.append(f"ready {self.name}")
        super().wait_ready(timeout)


def supervisor(tmp_path: Path, components: list, together: tuple = (), stop_after: int = 1) -> tuple[Supervisor, list]:
    events: list[str] = []
    for c in components:
        c.events = events

    def script(ctl: FakeController) -> None:
        if ctl.turns >= stop_after:
            sup.request_stop(signal.SIGTERM)

    sup = Supervisor(status=GatewayStatus(gateway="gw-test"), log_dir=tmp_path,
                     components=[(c, 5.0) for c in components],
                     make_controller=lambda on_change: FakeController(events, on_change, script),
                     poll_interval=0.01, install_signals=False, start_together=together)
    return sup, events


def test_a_group_starts_together_then_is_waited_for_and_the_rest_one_by_one(tmp_path: Path) -> None:
    parts = [Recorded(n, []) for n in ("xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "camera", "browser")]
    sup, events = supervisor(tmp_path, parts, together=(("xvfb-web", "xvfb-sip", "pulseaudio", "baresip"),))
    assert [[c.name for c, _ in wave] for wave in sup.start_waves()] == [
        ["xvfb-web", "xvfb-sip", "pulseaudio", "baresip"], ["camera"], ["browser"]]
    assert sup.run() == 0
    assert events[:12] == [
        "start xvfb-web", "start xvfb-sip", "start pulseaudio", "start baresip",
        "ready xvfb-web", "ready xvfb-sip", "ready pulseaudio", "ready baresip",
        "start camera", "ready camera", "start browser", "ready browser",
    ]


def test_without_groups_each_component_is_ready_before_the_next_starts(tmp_path: Path) -> None:
    parts = [Recorded(n, []) for n in ("xvfb-web", "baresip", "browser")]
    sup, events = supervisor(tmp_path, parts)
    assert sup.run() == 0
    assert events[:6] == ["start xvfb-web", "ready xvfb-web", "start baresip", "ready baresip", "start browser",
                          "ready browser"]


def test_a_failure_in_a_wave_stops_it_and_nothing_after_it_starts(tmp_path: Path) -> None:
    parts = [Recorded(n, []) for n in ("xvfb-web", "pulseaudio", "baresip", "browser")]
    parts[1].fail_start = True
    sup, events = supervisor(tmp_path, parts, together=(("xvfb-web", "pulseaudio", "baresip"),))
    assert sup.run() == 1
    assert "start baresip" not in events and "start browser" not in events
    assert "stop xvfb-web" in events


def test_the_health_file_follows_the_state_and_the_shell_check_reads_it(tmp_path: Path) -> None:
    verdicts: list[tuple[int, str]] = []

    def check() -> None:
        result = subprocess.run(["sh", "-c", SHELL_CHECK], env={**os.environ, "SIPMEDIAGW_LOG_DIR": str(tmp_path)},
                                capture_output=True, text=True)
        verdicts.append((result.returncode, result.stdout.strip()))

    events: list[str] = []

    def script(ctl: FakeController) -> None:
        check()
        sup.request_stop(signal.SIGTERM)

    sup = Supervisor(status=GatewayStatus(gateway="gw-test"), log_dir=tmp_path,
                     components=[(c, 5.0) for c in names("xvfb-web", "baresip")],
                     make_controller=lambda on_change: FakeController(events, on_change, script),
                     poll_interval=0.01, install_signals=False)
    assert sup.run() == 0
    check()
    assert verdicts == [(0, f"state {GatewayState.READY.value}"), (1, f"state {GatewayState.EXITED.value}")]
    assert (tmp_path / HEALTH_FILE_NAME).read_text().split()[1] == GatewayState.EXITED.value


def test_the_loop_turns_slower_while_no_call_is_owned(tmp_path: Path) -> None:
    timeouts: list[float] = []
    events: list[str] = []

    class Timed(FakeController):
        def pump(self, timeout: float) -> None:
            timeouts.append(timeout)
            return super().pump(0)

    def script(ctl: FakeController) -> None:
        if ctl.turns == 2:
            ctl.start_call("Alice")
        elif ctl.turns == 4:
            sup.request_stop(signal.SIGTERM)

    sup = Supervisor(status=GatewayStatus(gateway="gw-test"), log_dir=tmp_path,
                     components=[(c, 5.0) for c in names("baresip")],
                     make_controller=lambda on_change: Timed(events, on_change, script),
                     poll_interval=0.01, idle_poll_interval=0.02, install_signals=False)
    assert sup.run() == 0
    assert timeouts == [0.02, 0.02, 0.01, 0.01]  # idle, idle (the call starts in turn 2), in call, in call
