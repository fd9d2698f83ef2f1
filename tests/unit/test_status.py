"""Status rendering and the state a row shows."""

import datetime as dt

from sipmediagw import labels
from sipmediagw.backends import Handle, Observation
from sipmediagw.state import GatewayState, GatewayStatus, parse_state
from sipmediagw.status import (GatewayInfo, HostStatus, describe, gateway_state, human_duration, render_table,
                               room_cell)


LABELS = {labels.GATEWAY: "gw", labels.SLOT: "3", labels.MEDIA: "kernel", labels.ACCOUNT: "sip:gw@h",
          labels.ROOM: "r", labels.PLATFORM: "jitsi"}
STARTED = dt.datetime(2026, 1, 1, 10, 0, 0, 500000, tzinfo=dt.timezone.utc)


def handle(**changes):
    tags = {**LABELS, **changes}
    return Handle("gw", "sipmediagw-gw", {k: v for k, v in tags.items() if v is not None}, None)


def running(status=None, **kw):
    return Observation("running", status=status, node="host1", started=STARTED, **kw)


def test_state_is_the_gateways_own_word_while_it_runs():
    assert gateway_state(running()) == ("starting", None)
    assert gateway_state(running(GatewayStatus("gw", GatewayState.IN_CALL))) == ("in-call", None)
    assert gateway_state(running(GatewayStatus("gw", GatewayState.ERROR, last_error="browser died"))) == \
        ("error", "browser died")


def test_a_stopped_gateway_is_exited_whatever_it_said_last():
    seen = Observation("exited", status=GatewayStatus("gw", GatewayState.READY), detail="exit code 137")
    assert gateway_state(seen) == ("exited", "exit code 137")


def test_describe_reads_labels_uptime_and_node():
    now = dt.datetime(2026, 1, 1, 11, 2, 5, tzinfo=dt.timezone.utc)
    info = describe(handle(), running(), now=now)
    assert (info.name, info.slot, info.media, info.sip_uri, info.platform) == ("gw", 3, "kernel", "sip:gw@h", "jitsi")
    assert info.uptime == 3724.5 and human_duration(info.uptime) == "1h02m"
    assert info.node == "host1" and info.note is None


def test_a_gateway_that_moved_says_so_in_status():
    moved = running(GatewayStatus("gw", GatewayState.READY), detail="moved from worker-1 (node down; ...)")
    info = describe(handle(), moved)
    text = render_table(HostStatus([info], "userspace", 0, 0, backend="swarm"))
    assert "gw: moved from worker-1 (node down; ...)" in text and "host1" in text
    assert "free slots: 0 (swarm: gateways that fit on the nodes)" in text


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


def test_a_pool_gateway_in_a_call_shows_room_caller_and_duration():
    now = dt.datetime(2026, 1, 1, 11, 2, 5, tzinfo=dt.timezone.utc)
    stub = handle(**{labels.ROOM: None, labels.MODE: "pool"})
    idle = describe(stub, running(GatewayStatus("gw", GatewayState.READY, mode="pool",
                                                last_end_reason="unknown meeting 9")), now=now)
    assert (idle.mode, idle.room, idle.fixed_room, idle.caller, idle.call_duration) == ("pool", None, None, None, None)
    assert idle.last_end_reason == "unknown meeting 9" and idle.platform == "jitsi"
    busy = describe(stub, running(GatewayStatus("gw", GatewayState.IN_CALL, mode="pool", room="1234",
                                                call_platform="janus", meeting="1234", caller="Alice",
                                                call_started="2026-01-01T11:00:00+00:00")), now=now)
    assert (busy.room, busy.platform, busy.caller, busy.meeting, busy.call_duration) == (
        "1234", "janus", "Alice", "1234", 125.0)
    assert busy.to_dict()["call_started"] == "2026-01-01T11:00:00+00:00"


def test_an_old_fixed_gateway_without_mode_label_or_call_fields_is_read():
    stub = handle()  # labels of a container made before pool gateways: a room, no mode
    document = parse_state('{"gateway": "gw", "state": "ready", "room": "r", "future_key": 1}')
    info = describe(stub, running(document))
    assert (info.mode, info.room, info.fixed_room, info.state) == ("fixed", "r", "r", "ready")
