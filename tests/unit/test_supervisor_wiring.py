"""The entrypoint's wiring (gateway/__main__.py): component order, environments, rendered baresip devices, and bad
input refused before anything starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sipmediagw.dispatch import RoomTarget
from sipmediagw.errors import ConfigError, ValidationError
from sipmediagw.gateway import __main__ as entry
from sipmediagw.gateway.config import GatewayConfig
from sipmediagw.gateway.media import room_grab_source
from sipmediagw.gateway.process import ManagedProcess
from sipmediagw.room import Room, RoomDrivers
from sipmediagw.state import GatewayState, read_state

ROOT = Path(__file__).resolve().parents[2]


class NoRoom(Room):
    platform = "noroom"

    def url(self) -> str:
        return "about:blank"

    def join(self, display_name: str) -> None:
        pass

    def leave(self) -> None:
        pass


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    account = tmp_path / "account"
    account.write_text("<sip:gw1@sip.example.org>;auth_pass=Wiring-Secret-1\n")
    return {
        "SIPMEDIAGW_ROOM": "1234", "SIPMEDIAGW_BASE_URL": "http://172.17.0.1:8000",
        "SIPMEDIAGW_ACCOUNT_FILE": str(account), "SIPMEDIAGW_LOG_DIR": str(tmp_path / "logs"),
        "SIPMEDIAGW_BARESIP_DIR": str(ROOT / "baresip"), "SIPMEDIAGW_BROWSING_DIR": str(ROOT / "browsing"),
        "SIPMEDIAGW_RUN_DIR": str(tmp_path / "run"), "SIPMEDIAGW_NET_INTERFACE": "lo",
    }


@pytest.fixture(autouse=True)
def close_log_handlers():
    yield
    root = logging.getLogger("sipmediagw.gw")
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)


class NoDrivers(RoomDrivers):
    """Every platform is NoRoom: the wiring does not depend on a real driver."""

    def get(self, platform: str) -> type[Room]:
        return NoRoom


def build(config: GatewayConfig) -> tuple[list, object]:
    drivers = NoDrivers(ROOT / "browsing")
    return entry.build(config, drivers, entry.routing_of(config, drivers))


def test_userspace_components_in_start_order_with_their_wiring(env: dict[str, str], tmp_path: Path) -> None:
    config = GatewayConfig.from_env(env)
    components, make_controller = build(config)
    assert [c.name for c, _ in components] == ["xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "camera", "browser"]
    by_name = {c.name: c for c, _ in components}
    assert by_name["xvfb-web"].argv[:4] == ["Xvfb", ":0", "-screen", "0"] and "1280x720x24" in by_name["xvfb-web"].argv
    assert ":1" in by_name["xvfb-sip"].argv
    baresip = by_name["baresip"]
    assert isinstance(baresip, ManagedProcess)
    assert baresip.env["DISPLAY"] == ":1"
    assert baresip.env["PULSE_SERVER"] == f"unix:{tmp_path / 'run' / 'pulse.sock'}"
    rendered = (tmp_path / "run" / "baresip" / "config").read_text()
    settings = dict(line.split(None, 1) for line in rendered.splitlines() if line and not line.startswith("#")
                    and len(line.split(None, 1)) == 2)
    assert settings["audio_player"] == "pulse,from_caller"
    assert settings["audio_source"] == "pulse,to_caller.monitor"
    assert settings["video_source"] == room_grab_source(":0", 15)  # the caller sees the room display
    assert settings["video_display"] == "x11,nil"  # and its video is drawn on the caller display
    accounts = tmp_path / "run" / "baresip" / "accounts"
    assert accounts.stat().st_mode & 0o777 == 0o600
    # baresip answers nothing by itself: the controller reads the dialled address first (callstat), then accepts
    assert accounts.read_text().rstrip().endswith(";answermode=manual")
    assert "from_caller_mic" in (tmp_path / "run" / "gateway.pa").read_text()
    assert getattr(by_name["browser"], "recoverable") is True
    assert not getattr(by_name["camera"], "recoverable", False)


def test_kernel_mode_camera_is_ffmpeg_into_the_v4l2_device(env: dict[str, str], tmp_path: Path) -> None:
    env.update(SIPMEDIAGW_MEDIA="kernel", SIPMEDIAGW_ALSA_CARDS="3,4")
    components, _ = build(GatewayConfig.from_env(env))
    camera = dict((c.name, c) for c, _ in components)["camera"]
    assert camera.argv[0] == "ffmpeg" and camera.argv[-1] == "/dev/video0"
    assert "hw:3,0" in (tmp_path / "run" / "gateway.pa").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SIPMEDIAGW_BASE_URL": ""}, "SIPMEDIAGW_BASE_URL is required"),
        ({"SIPMEDIAGW_PLATFORM": "nosuch"}, "no driver for platform 'nosuch'"),
        ({"SIPMEDIAGW_ROOM": "abc"}, "janus: room id must be a number"),  # the driver refuses the fixed room
        ({"SIPMEDIAGW_ROOM": "", "SIPMEDIAGW_DISPATCH": '[{"match": "9.*", "platform": "nosuch", '
          '"base_url": "https://x"}]'}, "SIPMEDIAGW_DISPATCH rule 1: no driver for platform 'nosuch'"),
        ({"SIPMEDIAGW_BARESIP_DIR": "/nonexistent"}, "cannot read the baresip template"),
    ],
)
def test_bad_input_exits_2_with_the_reason_in_the_state_file_and_nothing_started(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, message: str) -> None:
    started: list[str] = []
    monkeypatch.setattr(ManagedProcess, "start", lambda self: started.append(self.name))
    for key, value in {**env, **change}.items():
        monkeypatch.setenv(key, value)
    assert entry.main([]) == 2
    state = read_state(tmp_path / "logs")
    assert state is not None and state.state is GatewayState.ERROR
    assert message in (state.last_error or "")
    assert started == []
    assert "Wiring-Secret-1" not in (tmp_path / "logs" / "app.log").read_text()


def test_tolerant_probe_waits_out_short_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(entry.time, "monotonic", lambda: now[0])
    alive = [False]
    probe = entry.tolerant(lambda: alive[0], grace=10.0)
    assert probe() is True  # first failure: within grace
    now[0] += 9
    assert probe() is True
    alive[0] = True
    assert probe() is True
    alive[0] = False
    now[0] += 1
    assert probe() is True  # the gap restarted
    now[0] += 10.5
    assert probe() is False


def test_a_pool_gateway_routes_by_its_rules_and_its_drivers_check_rooms_before_answering(env: dict[str, str]) -> None:
    del env["SIPMEDIAGW_ROOM"]
    env["SIPMEDIAGW_DISPATCH"] = '[{"match": "[a-z]{3}-[a-z]{3}-[a-z]{3}", "platform": "bigbluebutton", ' \
                                 '"base_url": "https://bbb.example.org"}]'
    config = GatewayConfig.from_env(env)
    drivers = RoomDrivers(ROOT / "browsing")
    routing = entry.routing_of(config, drivers)  # loads every driver a meeting may need
    assert (routing.mode, routing.account_user, routing.service_user) == ("pool", "gw1", "meet")
    assert routing.decide("abc-def-ghi").target == RoomTarget("bigbluebutton", "https://bbb.example.org",
                                                                "abc-def-ghi", "abc-def-ghi")
    assert routing.decide("gw1").action == "menu" and routing.decide("meet").action == "menu"
    slot = entry.BrowserSlot(config, None, drivers, ":0", lambda: None)  # type: ignore[arg-type]
    target = routing.decide("1234").target
    assert target is not None and target.platform == "janus"
    slot.check(target)  # no browser needed: drivers validate in their constructor
    with pytest.raises(ValidationError, match="room id must be a number"):
        slot.check(RoomTarget("janus", "http://172.17.0.1:8000", "12ab"))


def test_room_drivers_load_each_platform_once(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text("from sipmediagw.room import Room\n\nclass One(Room):\n    platform = 'one'\n"
                                     "    def url(self): return 'about:blank'\n    def join(self, n): pass\n"
                                     "    def leave(self): pass\n")
    drivers = RoomDrivers(tmp_path)
    first = drivers.get("one")
    (tmp_path / "one.py").write_text("broken(")  # not re-imported
    assert drivers.get("one") is first
    with pytest.raises(ConfigError, match="no driver for platform 'two'"):
        drivers.get("two")


def test_room_check_is_a_refusal_only_when_the_driver_says_so(tmp_path: Path) -> None:
    (tmp_path / "picky.py").write_text(
        "from sipmediagw.errors import ValidationError\nfrom sipmediagw.room import Room\n\nclass Picky(Room):\n"
        "    platform = 'picky'\n    def __init__(self, driver, base_url, room, options=None):\n"
        "        super().__init__(driver, base_url, room, options)\n"
        "        if room == 'no':\n            raise ValidationError('picky: no')\n"
        "        if room == 'browser':\n            driver.title  # needs its browser: not a refusal\n"
        "    def url(self): return 'about:blank'\n    def join(self, n): pass\n    def leave(self): pass\n")
    drivers = RoomDrivers(tmp_path)
    drivers.check("picky", "https://x", "yes")
    drivers.check("picky", "https://x", "browser")
    with pytest.raises(ValidationError, match="picky: no"):
        drivers.check("picky", "https://x", "no")


def test_a_pool_gateway_parks_camera_and_browser_and_a_fixed_one_keeps_them_warm(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from sipmediagw.gateway.ondemand import OnDemandComponent
    from sipmediagw.gateway.supervisor import FunctionComponent

    fixed, _ = build(GatewayConfig.from_env(env))
    assert all(not isinstance(c, OnDemandComponent) for c, _ in fixed)
    assert isinstance(dict((c.name, c) for c, _ in fixed)["browser"], FunctionComponent)

    del env["SIPMEDIAGW_ROOM"]
    pool, make_controller = build(GatewayConfig.from_env(env))
    assert [c.name for c, _ in pool] == ["xvfb-web", "xvfb-sip", "pulseaudio", "baresip", "camera", "browser"]
    by_name = {c.name: c for c, _ in pool}
    camera, browser = by_name["camera"], by_name["browser"]
    assert isinstance(camera, OnDemandComponent) and isinstance(browser, OnDemandComponent)
    assert camera.group is browser.group and browser.recoverable and not camera.recoverable
    assert [p.name for p in browser.group.parts] == ["camera", "browser"]  # the page's camera URL exists first
    browser.start()
    browser.wait_ready(1.0)  # parked: nothing started, the gateway is ready without Chromium
    assert browser.group.state == "parked" and browser.alive()

    # the controller gets the slot as its on-demand room side (prepare before the answer, release after the leave)
    class Control:
        def connect(self, timeout: float) -> None:
            pass

    monkeypatch.setattr(entry, "BaresipControl", lambda port: Control())
    controller = make_controller(lambda: None)
    assert controller.on_demand is not None and controller.on_demand.on_demand is browser.group

    drivers = NoDrivers(ROOT / "browsing")
    config = GatewayConfig.from_env(env)
    warm, _ = entry.build(config, drivers, entry.routing_of(config, drivers), park_room_side=False)
    assert all(not isinstance(c, OnDemandComponent) for c, _ in warm)  # a pool gateway kept warm, when asked


def test_the_sandbox_probe_runs_beside_the_start_and_a_failing_probe_means_no_sandbox() -> None:
    from sipmediagw.gateway.sandbox import SandboxCheck

    release = __import__("threading").Event()

    def slow_probe() -> SandboxCheck:
        release.wait(5)
        return SandboxCheck(True, "namespaces allowed")

    probe = entry.SandboxProbe(slow_probe)  # returns at once: the probe runs on its own thread
    release.set()
    assert probe.result() == SandboxCheck(True, "namespaces allowed")

    def broken_probe() -> SandboxCheck:
        raise OSError("no python3")

    refused = entry.SandboxProbe(broken_probe).result()
    assert refused.available is False and "OSError: no python3" in refused.reason


def test_the_browser_asks_a_lazy_sandbox_verdict_only_when_it_starts(env: dict[str, str]) -> None:
    from sipmediagw.gateway.sandbox import SandboxCheck

    asked: list[str] = []

    def verdict() -> SandboxCheck:
        asked.append("asked")
        return SandboxCheck(False, "refused")

    components, _ = build_with_sandbox(GatewayConfig.from_env(env), verdict)
    assert asked == []  # building the components does not wait for the probe
    slot_sandbox = [c for c, _ in components if c.name == "browser"][0]._start.__self__.sandbox
    assert callable(slot_sandbox) and slot_sandbox() is False and asked == ["asked"]


def build_with_sandbox(config: GatewayConfig, sandbox: object) -> tuple[list, object]:
    drivers = NoDrivers(ROOT / "browsing")
    return entry.build(config, drivers, entry.routing_of(config, drivers), sandbox=sandbox)  # type: ignore[arg-type]
