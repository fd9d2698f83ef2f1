"""Status rendering and the state a row shows."""

import datetime as dt

from sipmediagw import labels
from sipmediagw.state import GatewayState, GatewayStatus, write_state
from sipmediagw.status import (GatewayInfo, HostStatus, describe, gateway_state, human_duration, render_table,
                               room_cell)


class Stub:
    def __init__(self, status, folder, started="2026-01-01T10:00:00.5Z"):
        self.status, self.name = status, "sipmediagw-gw"
        self.labels = {labels.GATEWAY: "gw", labels.LOGS: str(folder), labels.SLOT: "3", labels.MEDIA: "kernel",
                       labels.ACCOUNT: "sip:gw@h", labels.ROOM: "r", labels.PLATFORM: "jitsi"}
        self.attrs = {"State": {"StartedAt": started}}


def test_state_comes_from_the_state_file_while_running(tmp_path):
    assert gateway_state(Stub("running", tmp_path), tmp_path) == ("starting", None)
    write_state(tmp_path, GatewayStatus("gw", GatewayState.IN_CALL))
    assert gateway_state(Stub("running", tmp_path), tmp_path) == ("in-call", None)
    write_state(tmp_path, GatewayStatus("gw", GatewayState.ERROR, last_error="browser died"))
    assert gateway_state(Stub("running", tmp_path), tmp_path) == ("error", "browser died")


def test_a_stopped_container_is_exited_whatever_its_file_says(tmp_path):
    write_state(tmp_path, GatewayStatus("gw", GatewayState.READY))
    assert gateway_state(Stub("exited", tmp_path), tmp_path)[0] == "exited"


def test_describe_reads_labels_and_uptime(tmp_path):
    now = dt.datetime(2026, 1, 1, 11, 2, 5, tzinfo=dt.timezone.utc)
    info = describe(Stub("running", tmp_path), now=now, with_stats=False)
    assert (info.name, info.slot, info.media, info.sip_uri, info.platform) == ("gw", 3, "kernel", "sip:gw@h", "jitsi")
    assert info.uptime == 3724.5 and human_duration(info.uptime) == "1h02m"


def test_table_has_docker_ps_columns_and_free_counts():
    row = GatewayInfo("gw1", "in-call", "room", "janus", "sip:gw1@h", 0, "userspace", "c", 65.0, 12.5, 300 * 1024**2,
                      mode="pool", caller="Alice", call_duration=125)
    text = render_table(HostStatus([row], "userspace", 3, 2))
    header, line, free = text.splitlines()
    assert header.split()[:6] == ["NAME", "STATE", "MODE", "ROOM", "CALLER", "CALL"]
    assert "SIP URI" in header and "MEMORY" in header
    assert line.split()[:8] == ["gw1", "in-call", "pool", "room", "Alice", "2m05s", "janus", "sip:gw1@h"]
    assert "1m05s" in line and "12.5" in line
    assert free == "free slots: 3 (userspace)   free accounts: 2"
    assert "(no gateway)" in render_table(HostStatus([], "userspace", 0, 0))


def test_room_cell_says_where_the_gateway_is_now():
    def row(state="ready", **kw):
        return GatewayInfo("g", state, kw.pop("room", None), "janus", "sip:g@h", 0, "userspace", "c", None, None,
                           None, **kw)

    assert room_cell(row(mode="pool")) == "-"
    assert room_cell(row(mode="fixed", fixed_room="r1", room="r1")) == "(r1)"  # idle: the room it will join
    assert room_cell(row("in-call", mode="fixed", fixed_room="r1", room="r1")) == "r1"
    assert room_cell(row("in-call", mode="pool", room="1234")) == "1234"
    assert room_cell(row("in-call", mode="pool", caller="Alice")) == "(keypad menu)"


def test_a_pool_gateway_in_a_call_shows_room_caller_and_duration(tmp_path):
    now = dt.datetime(2026, 1, 1, 11, 2, 5, tzinfo=dt.timezone.utc)
    stub = Stub("running", tmp_path)
    del stub.labels[labels.ROOM]
    stub.labels[labels.MODE] = "pool"
    write_state(tmp_path, GatewayStatus("gw", GatewayState.READY, mode="pool", last_end_reason="unknown meeting 9"))
    idle = describe(stub, now=now, with_stats=False)
    assert (idle.mode, idle.room, idle.fixed_room, idle.caller, idle.call_duration) == ("pool", None, None, None, None)
    assert idle.last_end_reason == "unknown meeting 9" and idle.platform == "jitsi"
    write_state(tmp_path, GatewayStatus("gw", GatewayState.IN_CALL, mode="pool", room="1234", call_platform="janus",
                                        meeting="1234", caller="Alice", call_started="2026-01-01T11:00:00+00:00"))
    busy = describe(stub, now=now, with_stats=False)
    assert (busy.room, busy.platform, busy.caller, busy.meeting, busy.call_duration) == (
        "1234", "janus", "Alice", "1234", 125.0)
    assert busy.to_dict()["call_started"] == "2026-01-01T11:00:00+00:00"


def test_an_old_fixed_gateway_without_mode_label_or_call_fields_is_read(tmp_path):
    stub = Stub("running", tmp_path)  # labels of a container made before pool gateways: a room, no mode
    (tmp_path / "state.json").write_text('{"gateway": "gw", "state": "ready", "room": "r", "future_key": 1}')
    info = describe(stub, with_stats=False)
    assert (info.mode, info.room, info.fixed_room, info.state) == ("fixed", "r", "r", "ready")
