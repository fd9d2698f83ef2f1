"""Status rendering and the state a row shows."""

import datetime as dt
import json

from sipmediagw import labels
from sipmediagw.backends import Handle, Observation
from sipmediagw.state import GatewayState, GatewayStatus, parse_state
from sipmediagw.status import (UNRESPONSIVE_AFTER, GatewayInfo, HostStatus, describe, gateway_state, human_duration,
                               render_table, room_cell)


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
    assert room_cell(row("in-call", mode="fixed", fixed_room="r1", caller="Alice")) == "(joining r1)"  # no room yet


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


def test_registration_problems_show_under_the_table_and_in_json():
    failed = GatewayStatus("gw", GatewayState.STARTING, registration="failed", registration_reason="403 Forbidden (k)")
    lost = GatewayStatus("gw", GatewayState.STARTING, registration="lost", registration_reason="Connection timed out")
    fine = GatewayStatus("gw", GatewayState.READY, registration="registered")
    rows = [describe(handle(), running(failed)), describe(handle(), running(lost)), describe(handle(), running(fine))]
    text = render_table(HostStatus(rows, "userspace", 0, 0))
    assert "gw: registration failed: 403 Forbidden (k)" in text
    assert "gw: registration lost: Connection timed out" in text
    assert text.count("registration") == 2
    assert rows[0].to_dict()["registration_reason"] == "403 Forbidden (k)"


# -- a hung gateway: its state file stops being rewritten ----------------------------------------------------------


def written(state: GatewayState, seconds_ago: float, now: dt.datetime) -> GatewayStatus:
    """A state document as the engine backend reads it back, last written `seconds_ago` before `now`."""
    status = GatewayStatus("gw", state, caller="Alice")
    document = {**status.to_dict(), "updated": (now - dt.timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")}
    parsed = parse_state(json.dumps(document))
    assert parsed is not None
    return parsed


def test_a_gateway_whose_heartbeat_stopped_shows_unresponsive():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    info = describe(handle(), running(written(GatewayState.IN_CALL, 42, now)), now=now, heartbeat=True)
    assert info.state == "unresponsive"
    assert info.note == "unresponsive (no heartbeat for 42 s; its last state: in-call)"
    text = render_table(HostStatus([info], "userspace", 0, 0))
    assert "unresponsive" in text.splitlines()[1] and "gw: unresponsive (no heartbeat for 42 s" in text


def test_a_fresh_heartbeat_a_start_up_and_a_swarm_state_line_are_not_unresponsive():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    fresh = describe(handle(), running(written(GatewayState.READY, UNRESPONSIVE_AFTER - 1, now)), now=now,
                     heartbeat=True)
    assert (fresh.state, fresh.note) == ("ready", None)
    # start-up waits for each component (the browser up to 90 s) without a heartbeat
    starting = describe(handle(), running(written(GatewayState.STARTING, 60, now)), now=now, heartbeat=True)
    assert starting.state == "starting"
    # swarm reads the last state line, logged on change only: no heartbeat to judge by
    swarm = describe(handle(), running(written(GatewayState.READY, 3600, now)), now=now, heartbeat=False)
    assert swarm.state == "ready"
    # a gateway older than the `updated` field is taken at its word
    old = describe(handle(), running(GatewayStatus("gw", GatewayState.READY)), now=now, heartbeat=True)
    assert old.state == "ready"


def test_unresponsive_means_three_missed_heartbeats_well_before_the_healthcheck_gives_up():
    from sipmediagw.gateway.health import STALE_AFTER
    from sipmediagw.gateway.supervisor import HEARTBEAT

    assert 3 * HEARTBEAT <= UNRESPONSIVE_AFTER < STALE_AFTER
