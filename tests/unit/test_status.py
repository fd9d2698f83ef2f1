"""Status rendering and the state a row shows."""

import datetime as dt

from sipmediagw import labels
from sipmediagw.state import GatewayState, GatewayStatus, write_state
from sipmediagw.status import GatewayInfo, HostStatus, describe, gateway_state, human_duration, render_table


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
    row = GatewayInfo("gw1", "ready", "room", "janus", "sip:gw1@h", 0, "userspace", "c", 65.0, 12.5, 300 * 1024**2)
    text = render_table(HostStatus([row], "userspace", 3, 2))
    header, line, free = text.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "ROOM"] and "SIP URI" in header and "MEMORY" in header
    assert line.split()[:5] == ["gw1", "ready", "room", "janus", "sip:gw1@h"] and "1m05s" in line and "12.5" in line
    assert free == "free slots: 3 (userspace)   free accounts: 2"
    assert "(no gateway)" in render_table(HostStatus([], "userspace", 0, 0))
