"""The backend seam without an engine: selection, swarm reading (tasks, logs, nodes), state lines, constraints."""

from __future__ import annotations

import docker.errors
import pytest

from sipmediagw import claims, labels
from sipmediagw.backends import select_backend
from sipmediagw.backends.engine import EngineBackend, is_local_engine, parse_docker_time
from sipmediagw.backends.swarm import SecretClaims, SwarmBackend, _split_details, node_capacity
from sipmediagw.errors import ConfigError, DockerUnavailable
from sipmediagw.settings import Settings, check_constraint, env_values
from sipmediagw.state import GatewayState, GatewayStatus, last_state_in_log, state_line_payload

GiB = 1024**3


class FakeSwarmApi:
    """Just the manager endpoints the swarm backend reads."""

    def __init__(self, manager=True):
        self.manager = manager
        self.secrets_by_name: dict[str, dict] = {}
        self.task_list: list[dict] = []
        self.node_list: list[dict] = []
        self.service_list: list[dict] = []
        self.log_lines: list[bytes] = []
        self.api = self
        self.base_url = "http://10.0.0.9:2375"

    def info(self):
        return {"Name": "mgr", "Swarm": {"ControlAvailable": self.manager}}

    def create_secret(self, name, data, labels=None):
        if name in self.secrets_by_name:
            raise docker.errors.APIError("exists", response=type("R", (), {"status_code": 409})())
        self.secrets_by_name[name] = {"ID": f"s{len(self.secrets_by_name)}", "CreatedAt": "2026-12-01T06:00:00.5Z",
                                      "Spec": {"Name": name, "Labels": labels}}
        return {"ID": self.secrets_by_name[name]["ID"]}

    def secrets(self, filters):
        found = list(self.secrets_by_name.values())
        if "name" in filters:
            found = [s for s in found if filters["name"] in s["Spec"]["Name"]]
        if "label" in filters:
            found = [s for s in found if filters["label"] in s["Spec"]["Labels"]]
        return found

    def remove_secret(self, secret_id):
        for name, secret in list(self.secrets_by_name.items()):
            if secret["ID"] == secret_id:
                del self.secrets_by_name[name]
                return
        raise docker.errors.NotFound("no such secret")

    def services(self, filters):
        return [s for s in self.service_list if filters.get("name") in (None, s["Spec"]["Name"])]

    def inspect_service(self, service_id):
        return {"ID": service_id}

    def tasks(self, filters):
        return self.task_list

    def nodes(self):
        return self.node_list

    def service_logs(self, service_id, **kw):
        assert kw["details"] is True
        return iter(self.log_lines)


def node(node_id, hostname, role="worker", state="ready", cpus=2, memory=4 * GiB):
    return {"ID": node_id, "Spec": {"Role": role, "Availability": "active"},
            "Status": {"State": state, "Addr": f"10.0.0.{node_id[-1]}"},
            "Description": {"Hostname": hostname, "Resources": {"NanoCPUs": cpus * 10**9, "MemoryBytes": memory}}}


def task(task_id, node_id, state, desired="running", created="2026-12-01T06:00:00Z", err=None, cpus=0.5):
    return {"ID": task_id, "NodeID": node_id, "DesiredState": desired, "CreatedAt": created,
            "Status": {"State": state, "Err": err, "Timestamp": created},
            "Spec": {"Resources": {"Reservations": {"NanoCPUs": int(cpus * 10**9), "MemoryBytes": GiB // 2}}}}


def log_line(task_id, message):
    return (f"com.docker.swarm.node.id=n1,com.docker.swarm.service.id=svc,com.docker.swarm.task.id={task_id} "
            f"{message}\n").encode()


def test_auto_picks_swarm_on_a_manager_and_the_engine_elsewhere():
    assert select_backend(FakeSwarmApi(manager=True)).kind == "swarm"
    assert select_backend(FakeSwarmApi(manager=False)).kind == "engine"
    assert select_backend(FakeSwarmApi(manager=True), "engine").kind == "engine"
    with pytest.raises(DockerUnavailable, match="not a swarm manager"):
        select_backend(FakeSwarmApi(manager=False), "swarm")


def test_only_the_local_socket_counts_as_the_local_engine():
    assert is_local_engine(type("C", (), {"api": type("A", (), {"base_url": "http+docker://localhost"})()})())
    assert not is_local_engine(FakeSwarmApi())  # tcp://
    assert not is_local_engine(type("C", (), {"api": type("A", (), {"base_url": "http+docker://ssh"})()})())


def test_secret_claims_are_unique_by_name_and_read_back_with_their_labels():
    api = FakeSwarmApi()
    store = SecretClaims(api)
    made = claims.take(store, claims.ACCOUNT, "sip:gw1@h", "a", payload=b"<sip:gw1@h>;auth_pass=x\n")
    assert made is not None and made.kind == claims.ACCOUNT and made.value == "sip:gw1@h"
    api.service_list = [{"ID": "svc", "Spec": {"Name": "sipmediagw-a", "Labels": {}}}]  # its gateway came
    assert claims.take(store, claims.ACCOUNT, "sip:gw1@h:5060", "b") is None  # same account, same secret name
    api.service_list = []  # the gateway is gone and the claim (made at 06:00:00) is old: it is taken back
    assert claims.take(store, claims.ACCOUNT, "sip:gw1@h", "b").gateway == "b"
    [listed] = store.list()
    assert (listed.gateway, listed.created) == ("b", parse_docker_time("2026-12-01T06:00:00.5Z").timestamp())
    store.remove(listed.id)
    store.remove(listed.id)  # already gone: fine
    assert store.list() == []


def test_a_swarm_gateway_is_read_from_its_current_tasks_log_and_a_move_is_explained():
    api = FakeSwarmApi()
    api.node_list = [node("n1", "worker-1", state="down"), node("n2", "worker-2")]
    api.task_list = [task("t1", "n1", "running", desired="shutdown", created="2026-12-01T06:00:00Z"),
                     task("t2", "n2", "running", created="2026-12-01T06:01:00Z")]
    old = GatewayStatus("gw", GatewayState.IN_CALL)
    new = GatewayStatus("gw", GatewayState.READY, sip_uri="sip:gw1@h")
    api.log_lines = [log_line("t1", f"[t] state: {state_line_payload(old)}"),
                     log_line("t2", "[t] supervisor: gateway ready"),
                     log_line("t2", f"[t] state: {state_line_payload(new)}"),
                     log_line("t1", "[t] supervisor: a late line of the old task")]
    seen = SwarmBackend(api).observe(SwarmBackend._handle({"ID": "svc", "Spec": {"Name": "sipmediagw-gw",
                                                                                 "Labels": {labels.GATEWAY: "gw"}}}))
    assert seen.runtime == "running" and seen.node == "worker-2"
    assert seen.status.state is GatewayState.READY and seen.status.sip_uri == "sip:gw1@h"
    assert seen.detail.startswith("moved from worker-1 (node down; previous task running")


def test_a_task_that_failed_for_good_is_exited_with_its_error():
    api = FakeSwarmApi()
    api.node_list = [node("n1", "worker-1")]
    api.task_list = [task("t1", "n1", "failed", desired="shutdown", err="task: non-zero exit (2)")]
    seen = SwarmBackend(api).observe(SwarmBackend._handle({"ID": "svc", "Spec": {"Name": "x", "Labels": {}}}))
    assert (seen.runtime, seen.detail) == ("exited", "task failed: task: non-zero exit (2)")


def test_node_capacity_counts_reservations_of_running_tasks():
    api = FakeSwarmApi()
    api.node_list = [node("n1", "mgr", role="manager"), node("n2", "worker-1"), node("n3", "worker-2", state="down")]
    api.task_list = [task("t1", "n2", "running"), task("t2", "n2", "running")]
    by_host = {n.hostname: n for n in node_capacity(api, 0.5, GiB // 2)}
    assert (by_host["mgr"].fits, by_host["worker-1"].fits, by_host["worker-2"].fits) == (4, 2, 0)
    assert by_host["worker-1"].reserved_cpus == 1.0 and by_host["worker-1"].reserved_memory == GiB


def test_state_lines_round_trip_and_the_newest_wins():
    first = GatewayStatus("gw", GatewayState.STARTING)
    second = GatewayStatus("gw", GatewayState.IN_CALL, caller="Alice")
    lines = [f"[2026] state: {state_line_payload(first)}", "[2026] baresip: noise", "[2026] state: {broken",
             f"[2026] state: {state_line_payload(second)}", "[2026] browser: later noise"]
    found = last_state_in_log(lines)
    assert found.state is GatewayState.IN_CALL and found.caller == "Alice"
    assert last_state_in_log(["no state here"]) is None


def test_service_log_details_are_split_from_the_message():
    assert _split_details("com.docker.swarm.node.id=a,com.docker.swarm.service.id=b,com.docker.swarm.task.id=c "
                          "[t] x: y") == ("c", "[t] x: y")
    assert _split_details("[t] plain") == ("", "[t] plain")


@pytest.mark.parametrize("text, expected", [
    ("node.labels.sipmediagw==yes", "node.labels.sipmediagw==yes"),
    ("node.role != manager", "node.role!=manager"),
    ("engine.labels.zone==a", "engine.labels.zone==a"),
])
def test_constraints_are_checked_and_normalised(text, expected):
    assert check_constraint(text) == expected


@pytest.mark.parametrize("bad", ["node.role", "role==manager", "node.labels.x == a b", "==x", "node.x=="])
def test_bad_constraints_are_refused(bad):
    with pytest.raises(ValueError, match="invalid placement constraint"):
        check_constraint(bad)


def test_backend_and_constraints_settings_from_the_environment():
    values = env_values({"SIPMEDIAGW_BACKEND": "swarm",
                         "SIPMEDIAGW_CONSTRAINTS": "node.labels.sipmediagw==yes,node.role!=manager"})
    assert Settings(**values).constraints == ("node.labels.sipmediagw==yes", "node.role!=manager")
    with pytest.raises(ConfigError, match="backend must be one of auto, engine, swarm"):
        Settings(backend="k8s")
    with pytest.raises(ConfigError, match="SIPMEDIAGW_CONSTRAINTS"):
        env_values({"SIPMEDIAGW_CONSTRAINTS": "role==manager"})


def test_the_engine_backend_lists_no_claim_as_a_gateway():
    from test_cli import FakeDocker

    fake = FakeDocker()
    engine = EngineBackend(fake)
    store = engine.claims("sipmediagw:latest")
    assert claims.take(store, claims.ACCOUNT, "sip:a@h", "gw") is not None
    assert engine.list() == [] and [c.value for c in store.list()] == ["sip:a@h"]
    assert store.gateway_presence("gw") == claims.ABSENT
