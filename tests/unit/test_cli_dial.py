"""`sipmediagw dial` and `launch --audio-only` through Click's CliRunner, with test_cli.py's in-memory Docker fake
grown an exec API: the CLI reaches the gateway only by docker exec of the request client, whose JSON lines the fake
plays back as the real client would print them."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from sipmediagw import labels
from sipmediagw.cli import EXIT_CODES, cli, cli_reference
from sipmediagw.errors import DialFailed, GatewayNotReady
from sipmediagw.state import GatewayState, GatewayStatus, write_state

from test_cli import FakeDocker, env, invoke  # noqa: F401 (fixture)

URI = "sip:boardroom@pbx.example.org"
CLIENT = ["python3", "-m", "sipmediagw.gateway.request_socket"]


def line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


class ExecDocker(FakeDocker):
    """FakeDocker with docker-py's low-level exec API; `output` is what the exec'd command writes, as
    (stdout, stderr) chunks, and `exit_code` its status."""

    def __init__(self) -> None:
        super().__init__()
        self.execs: list[tuple[str, list[str]]] = []
        self.output: list[tuple[bytes | None, bytes | None]] = []
        self.exit_code = 0

    def exec_create(self, container: str, cmd: list[str], stdout: bool = True, stderr: bool = True) -> dict:
        assert self.containers_by_id[container].status == "running"
        self.execs.append((container, cmd))
        return {"Id": f"exec{len(self.execs)}"}

    def exec_start(self, exec_id: str, stream: bool = False, demux: bool = False) -> Iterator:
        assert stream and demux
        return iter(self.output)

    def exec_inspect(self, exec_id: str) -> dict:
        return {"ExitCode": self.exit_code}

    def answer(self, *messages: dict[str, Any], split: bool = False) -> None:
        """The request client's stdout: one JSON line per message (with `split`, cut across chunks)."""
        data = b"".join(line(m) for m in messages)
        self.output = [(data[i:i + 7], None) for i in range(0, len(data), 7)] if split else [(data, None)]
        self.exit_code = 0 if messages and messages[-1].get("ok") else 1


def launched(fake: ExecDocker, *args: str) -> ExecDocker:
    result = invoke(fake, "launch", *args)
    assert result.exit_code == 0, result.output
    return fake


def no_docker() -> Any:
    raise AssertionError("the engine must not be asked")


def test_dial_runs_the_request_client_through_docker_exec_and_reports_the_answered_call(env) -> None:
    fake = launched(ExecDocker(), "-g", "p")  # a pool gateway
    fake.answer({"progress": "dialling", "uri": URI, "room": "1234", "platform": "janus"}, {"progress": "ringing"},
                {"progress": "waiting"}, {"progress": "answered", "uri": URI, "room": "1234"},
                {"ok": True, "uri": URI, "callee": "Board Room", "room": "1234", "platform": "janus",
                 "call_id": "o1"}, split=True)
    result = invoke(fake, "dial", "p", URI, "-r", "1234", "--timeout", "45")
    assert result.exit_code == 0, result.output
    [(container, argv)] = fake.execs
    assert container == fake.gateways()[0].id
    assert argv == CLIENT + ["dial", "--timeout", "45", "--room", "1234", "--", URI]  # no shell: the URI is one arg
    assert result.stdout == f"gateway p called {URI}: answered by Board Room, in room 1234 (janus)\n"
    assert result.stderr.splitlines() == [
        f"[sipmediagw] p: dialling {URI} for room 1234", "[sipmediagw] p: ringing",
        "[sipmediagw] p: answered, joining room 1234"]  # heartbeats are not shown


def test_dial_json(env) -> None:
    fake = launched(ExecDocker(), "-g", "p")
    fake.answer({"ok": True, "uri": URI, "callee": "boardroom", "room": "1234", "platform": "janus", "call_id": "o1"})
    result = invoke(fake, "dial", "p", URI, "-r", "1234", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "gateway": "p", "uri": URI, "callee": "boardroom",
                                         "room": "1234", "platform": "janus", "call_id": "o1"}


@pytest.mark.parametrize("status, meaning", [("486 Busy Here", "busy"), ("603 Decline", "declined"),
                                             ("404 Not Found", "not found"), ("408 Request Timeout", "no answer")])
def test_a_failed_call_prints_the_sip_status_and_exits_8(env, status: str, meaning: str) -> None:
    fake = launched(ExecDocker(), "-g", "p")
    message = f"call to {URI} failed: {status} ({meaning})"
    fake.answer({"progress": "dialling"}, {"ok": False, "kind": "failed", "message": message, "sip_status": status,
                                           "uri": URI})
    result = invoke(fake, "dial", "p", URI, "-r", "1234")
    assert result.exit_code == DialFailed.exit_code == 8
    assert result.stderr.splitlines()[-1] == f"Error: {message}; gateway p is ready again"
    assert result.stdout == ""
    as_json = invoke(fake, "dial", "p", URI, "-r", "1234", "--json")
    assert as_json.exit_code == 8 and json.loads(as_json.stdout)["sip_status"] == status


def test_a_fixed_gateway_dials_into_its_own_room(env) -> None:
    fake = launched(ExecDocker(), "-g", "f", "-r", "room1")
    fake.answer({"ok": True, "uri": URI, "callee": "boardroom", "room": "room1", "platform": "janus"})
    assert invoke(fake, "dial", "f", URI).exit_code == 0
    assert "--room" not in fake.execs[-1][1]
    assert invoke(fake, "dial", "f", URI, "-r", "room1").exit_code == 0
    other = invoke(fake, "dial", "f", URI, "-r", "room2")
    assert other.exit_code == 2 and "f is fixed in room room1: leave -r out" in other.stderr
    assert len(fake.execs) == 2


@pytest.mark.parametrize("args, needle", [
    (["p", "boardroom@pbx.example.org"], "Error: invalid SIP URI 'boardroom@pbx.example.org' (add the scheme)"),
    (["p", "sip:board room@pbx"], "Error: invalid SIP URI"),
    (["p", "sip:a@b?Subject=x"], "Error: invalid SIP URI"),
    (["p", URI, "-r", "a/b"], "Error: invalid room name"),
    (["bad name", URI], "Error: invalid gateway name"),
])
def test_bad_input_is_one_line_exit_2_before_the_engine_is_asked(env, args: list[str], needle: str) -> None:
    result = CliRunner().invoke(cli, ["dial", *args], obj={"docker_factory": no_docker}, prog_name="sipmediagw")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(needle) and len(result.stderr.splitlines()) == 1


def test_a_pool_gateway_needs_a_room_and_the_timeout_is_bounded(env) -> None:
    fake = launched(ExecDocker(), "-g", "p")
    result = invoke(fake, "dial", "p", URI)
    assert result.exit_code == 2 and result.stderr == \
        "Error: p is a pool gateway: name the room it joins with -r ROOM\n"
    assert invoke(fake, "dial", "p", URI, "-r", "1", "--timeout", "0").exit_code == 2
    assert fake.execs == []


def test_unknown_or_stopped_gateways(env) -> None:
    fake = launched(ExecDocker(), "-g", "p")
    missing = invoke(fake, "dial", "q", URI, "-r", "1")
    assert missing.exit_code == 4 and "no gateway named 'q'" in missing.stderr
    fake.gateways()[0].status = "exited"
    stopped = invoke(fake, "dial", "p", URI, "-r", "1")
    assert stopped.exit_code == GatewayNotReady.exit_code == 9 and "is not running (exited)" in stopped.stderr


@pytest.mark.parametrize("answer, code, needle", [
    ({"ok": False, "kind": "unavailable", "message": "the gateway is in a call, not ready to dial"}, 9,
     "Error: gateway p cannot dial now: the gateway is in a call, not ready to dial"),
    ({"ok": False, "kind": "unavailable", "message": "the gateway does not accept requests at /tmp/x: is it still "
      "starting?"}, 9, "Error: gateway p cannot dial now: the gateway does not accept requests"),
    ({"ok": False, "kind": "invalid", "message": "unknown meeting 9999"}, 2, "Error: p: unknown meeting 9999"),
])
def test_what_the_gateway_refuses_maps_to_exit_codes(env, answer: dict, code: int, needle: str) -> None:
    fake = launched(ExecDocker(), "-g", "p")
    fake.answer(answer)
    result = invoke(fake, "dial", "p", URI, "-r", "9999")
    assert result.exit_code == code and result.stderr.startswith(needle)


def test_an_image_without_the_request_client_is_explained(env) -> None:
    fake = launched(ExecDocker(), "-g", "p")
    fake.output = [(None, b"/usr/bin/python3: No module named sipmediagw.gateway.request_socket\n")]
    fake.exit_code = 1
    result = invoke(fake, "dial", "p", URI, "-r", "1")
    assert result.exit_code == 9
    assert "gave no answer to the dial request (exit code 1): /usr/bin/python3: No module named" in result.stderr
    assert "rebuild it and launch the gateway again" in result.stderr


def test_launch_audio_only_sets_env_and_label_and_status_shows_it(env) -> None:
    fake = launched(ExecDocker(), "-g", "a", "--audio-only")
    launched(fake, "-g", "v")
    by_name = {c.labels[labels.GATEWAY]: c for c in fake.gateways()}
    assert by_name["a"].labels[labels.AUDIO_ONLY] == "true"
    assert by_name["a"].attrs["Config"]["Env"]["SIPMEDIAGW_AUDIO_ONLY"] == "1"
    assert by_name["v"].labels[labels.AUDIO_ONLY] == "false"
    assert by_name["v"].attrs["Config"]["Env"]["SIPMEDIAGW_AUDIO_ONLY"] == "0"
    gateways = {g["name"]: g for g in json.loads(invoke(fake, "status", "--json").stdout)["gateways"]}
    assert (gateways["a"]["audio_only"], gateways["v"]["audio_only"]) == (True, False)
    rows = {row.split()[0]: row.split() for row in invoke(fake, "status").stdout.splitlines()[1:3]}
    assert (rows["a"][2], rows["v"][2]) == ("pool/audio-only", "pool")


def test_launch_audio_only_from_the_settings_file(env) -> None:
    (env / "sipmediagw.yaml").write_text((env / "sipmediagw.yaml").read_text() + "audio_only: true\n")
    fake = launched(ExecDocker(), "-g", "a")
    assert fake.gateways()[0].labels[labels.AUDIO_ONLY] == "true"
    fake = launched(ExecDocker(), "-g", "b", "--with-video")  # the flag wins over the file
    assert fake.gateways()[0].labels[labels.AUDIO_ONLY] == "false"


def test_status_shows_a_dialling_gateway_and_the_dialled_party(env) -> None:
    fake = launched(ExecDocker(), "-g", "p")
    write_state(env / "logs" / "p", GatewayStatus("p", GatewayState.IN_CALL, mode="pool", meeting="1234",
                                                  caller="boardroom", caller_uri=URI, call_direction="outgoing"))
    [gw] = json.loads(invoke(fake, "status", "--json").stdout)["gateways"]
    assert (gw["state"], gw["room"], gw["caller"], gw["direction"], gw["call_started"]) == (
        "in-call", None, "boardroom", "outgoing", None)
    row = invoke(fake, "status").stdout.splitlines()[1].split()
    assert row[:5] == ["p", "in-call", "pool", "(dialling)", "boardroom"]


def test_dial_help_and_the_exit_code_table() -> None:
    result = CliRunner().invoke(cli, ["dial", "-h"])
    assert result.exit_code == 0 and "sipmediagw dial " in result.output.split("Example:")[1]
    codes = dict(EXIT_CODES)
    assert "486 Busy Here" in codes[8] and "ready again" in codes[8] and "not registered" in codes[9]
    reference = cli_reference()
    assert "| 8 | `dial`: the call did not come about" in reference and "## sipmediagw dial" in reference
