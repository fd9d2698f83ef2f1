"""The request socket (gateway/request_socket.py): JSON-line protocol over a real unix socket, the non-blocking server
the supervisor's loop polls, the handler of its commands, and the client `sipmediagw dial` runs in the container."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from sipmediagw.gateway import request_socket as rs
from sipmediagw.state import GatewayState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serve_until(server: rs.RequestServer, done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll the server (as the supervisor's loop does) until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached"
        server.poll()
        time.sleep(0.005)


class ClientThread(threading.Thread):
    """exchange() in a thread: the server side is polled by the test."""

    def __init__(self, path: Path, request: Any, raw: bytes | None = None) -> None:
        super().__init__(daemon=True)
        self.path, self.request, self.raw = path, request, raw
        self.messages: list[dict[str, Any]] = []
        self.error: Exception | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            if self.raw is not None:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(5)
                    sock.connect(str(self.path))
                    sock.sendall(self.raw)
                    data = b""
                    while chunk := sock.recv(4096):
                        data += chunk
                self.messages = [json.loads(line) for line in data.decode().splitlines()]
            else:
                self.messages = list(rs.exchange(self.path, self.request, read_timeout=5))
        except Exception as exc:
            self.error = exc
        finally:
            self.finished.set()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "run" / rs.SOCKET_NAME


def test_a_request_gets_its_progress_lines_then_one_final_answer(path: Path) -> None:
    kept: list[rs.Reply] = []

    def handle(request: dict[str, Any], reply: rs.Reply) -> None:
        assert request == {"command": "dial", "uri": "sip:a@b"}
        reply.send(rs.progress("dialling"))
        kept.append(reply)  # answered later, like a dial

    server = rs.RequestServer(path, handle)
    server.open()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_ISSOCK(path.stat().st_mode)
    client = ClientThread(path, {"command": "dial", "uri": "sip:a@b"})
    client.start()
    serve_until(server, lambda: bool(kept))
    kept[0].send(rs.progress("ringing"))
    kept[0].send(rs.success(room="1234"))
    kept[0].send(rs.progress("too late"))  # after the final line: dropped
    serve_until(server, client.finished.is_set)
    assert client.error is None
    assert client.messages == [{"progress": "dialling"}, {"progress": "ringing"}, {"ok": True, "room": "1234"}]
    server.poll()
    assert server._waiting == []  # noqa: SLF001 (answered requests are forgotten)
    server.close()
    assert not path.exists()


def test_a_stale_socket_file_is_replaced(path: Path) -> None:
    path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays: what a killed supervisor leaves
    server = rs.RequestServer(path, lambda request, reply: reply.send(rs.success()))
    server.open()
    client = ClientThread(path, {"command": "status"})
    client.start()
    serve_until(server, client.finished.is_set)
    assert client.messages == [{"ok": True}]
    server.close()


@pytest.mark.parametrize("raw, message", [
    (b"not json\n", "the request is not one line of JSON"),
    (b'["dial"]\n', 'the request must be an object with a "command"'),
    (b'{"uri": "sip:a@b"}\n', 'the request must be an object with a "command"'),
    (b"{" + b" " * rs.MAX_REQUEST + b"\n", f"request longer than {rs.MAX_REQUEST} bytes"),
])
def test_malformed_requests_are_refused_without_reaching_the_handler(path: Path, raw: bytes, message: str) -> None:
    handled: list[Any] = []
    server = rs.RequestServer(path, lambda request, reply: handled.append(request))
    server.open()
    client = ClientThread(path, None, raw=raw)
    client.start()
    serve_until(server, client.finished.is_set)
    assert client.messages == [rs.failure("invalid", message)] and handled == []
    server.close()


def test_a_silent_client_is_dropped_and_a_waiting_one_gets_heartbeats(path: Path) -> None:
    clock = Clock()
    kept: list[rs.Reply] = []
    server = rs.RequestServer(path, lambda request, reply: kept.append(reply), clock=clock)
    server.open()
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.settimeout(5)
    silent.connect(str(path))
    client = ClientThread(path, {"command": "dial"})
    client.start()
    serve_until(server, lambda: bool(kept))
    clock.now += rs.IDLE_TIMEOUT + 1  # the silent one is over its time; the waiting one is not due a heartbeat
    server.poll()
    assert json.loads(silent.recv(4096)) == rs.failure("invalid", f"no request line within {rs.IDLE_TIMEOUT:g} s")
    silent.close()
    clock.now += rs.HEARTBEAT
    server.poll()
    kept[0].send(rs.failure("failed", "486 Busy Here", "486 Busy Here"))
    serve_until(server, client.finished.is_set)
    assert client.messages == [{"progress": "waiting"}, rs.failure("failed", "486 Busy Here", "486 Busy Here")]
    server.close()


def test_close_answers_waiting_requests_unavailable(path: Path) -> None:
    kept: list[rs.Reply] = []
    server = rs.RequestServer(path, lambda request, reply: kept.append(reply))
    server.open()
    client = ClientThread(path, {"command": "dial"})
    client.start()
    serve_until(server, lambda: bool(kept))
    server.close("gateway stopping")
    assert client.finished.wait(5)
    assert client.messages == [rs.failure("unavailable", "gateway stopping")]
    server.close()  # idempotent


def test_a_client_that_goes_away_does_not_stop_the_request(path: Path) -> None:
    kept: list[rs.Reply] = []
    server = rs.RequestServer(path, lambda request, reply: kept.append(reply))
    server.open()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(b'{"command": "dial"}\n')
        serve_until(server, lambda: bool(kept))
    serve_until(server, lambda: kept[0].client_gone)
    kept[0].send(rs.success())  # the outcome still comes (nobody reads it), without an error
    assert kept[0].done
    server.close()


def test_a_handler_that_raises_answers_failed_and_the_server_goes_on(path: Path) -> None:
    def handle(request: dict[str, Any], reply: rs.Reply) -> None:
        raise KeyError("bug")

    server = rs.RequestServer(path, handle)
    server.open()
    for _ in range(2):
        client = ClientThread(path, {"command": "status"})
        client.start()
        serve_until(server, client.finished.is_set)
        assert client.messages[0]["ok"] is False and "internal error: KeyError" in client.messages[0]["message"]
    server.close()


def test_the_client_without_a_gateway_exits_3_with_a_json_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    with pytest.raises(rs.RequestError, match="does not accept requests"):
        list(rs.exchange(tmp_path / "none.sock", {"command": "status"}))
    assert rs.main(["status"], env={"SIPMEDIAGW_RUN_DIR": str(tmp_path)}) == rs.EXIT_NO_GATEWAY
    line = json.loads(capsys.readouterr().out)
    assert (line["ok"], line["kind"]) == (False, "unavailable") and str(tmp_path) in line["message"]


def test_the_client_relays_every_line_and_exits_by_the_final_one(path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    answers = {"good": [rs.progress("ringing"), rs.success(room="1")],
               "bad": [rs.failure("failed", "call to sip:a@b failed: 603 Decline", "603 Decline")]}
    seen: list[dict[str, Any]] = []

    def handle(request: dict[str, Any], reply: rs.Reply) -> None:
        seen.append(request)
        for message in answers[request["room"]]:
            reply.send(message)

    server = rs.RequestServer(path, handle)
    server.open()
    for room, code in (("good", rs.EXIT_OK), ("bad", rs.EXIT_FAILED)):
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(rs.main(
            ["dial", "--room", room, "--timeout", "30", "--", "sip:a@b"], env={"SIPMEDIAGW_RUN_DIR": str(path.parent)})))
        thread.start()
        serve_until(server, lambda: bool(result))
        assert result == [code]
        assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == answers[room]
    assert seen[0] == {"command": "dial", "uri": "sip:a@b", "room": "good", "timeout": 30.0}
    server.close()


def test_client_command_line() -> None:
    assert rs.client_request(["dial", "--", "sip:x@y"]) == {"command": "dial", "uri": "sip:x@y", "room": None,
                                                             "timeout": rs.DIAL_TIMEOUT}
    assert rs.client_request(["status"]) == {"command": "status"}
    with pytest.raises(SystemExit):
        rs.client_request(["hangup"])


# -- the commands ---------------------------------------------------------------------------------------------------


class FakeDialler:
    def __init__(self) -> None:
        self.registered = True
        self.dials: list[tuple[str, str | None, float]] = []

    def dial(self, uri: str, meeting: str | None, report: Callable[[dict[str, Any]], None],
             timeout: float = 60.0) -> None:
        self.dials.append((uri, meeting, timeout))
        report(rs.progress("dialling"))

    def call_fields(self) -> dict[str, Any]:
        return {"room": None, "caller": None}


class FakeReply:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def requests(state: GatewayState = GatewayState.READY) -> tuple[rs.GatewayRequests, FakeDialler]:
    handler = rs.GatewayRequests(Path("/nonexistent/requests.sock"))
    dialler = FakeDialler()
    handler.controller, handler.gateway_state = dialler, lambda: state
    return handler, dialler


def ask(handler: rs.GatewayRequests, request: dict[str, Any]) -> list[dict[str, Any]]:
    reply = FakeReply()
    handler.handle(request, reply)  # type: ignore[arg-type]
    return reply.sent


def test_dial_goes_to_the_controller_with_its_room_and_timeout() -> None:
    handler, dialler = requests()
    assert ask(handler, {"command": "dial", "uri": "sip:rs@pbx.example.org", "room": "1234", "timeout": 20}) == [
        rs.progress("dialling")]
    assert dialler.dials == [("sip:rs@pbx.example.org", "1234", 20.0)]
    ask(handler, {"command": "dial", "uri": "sip:rs@pbx.example.org"})
    assert dialler.dials[-1] == ("sip:rs@pbx.example.org", None, rs.DIAL_TIMEOUT)


@pytest.mark.parametrize("request_, needle", [
    ({"uri": "rs@pbx"}, "invalid SIP URI"),
    ({"uri": "sip:dial user@pbx"}, "invalid SIP URI"),
    ({"uri": 42}, "invalid SIP URI"),
    ({"uri": "sip:rs@pbx", "room": "a/b"}, "invalid room name"),
    ({"uri": "sip:rs@pbx", "room": 5}, "invalid room name"),
    ({"uri": "sip:rs@pbx", "timeout": 0}, "dial timeout must be"),
    ({"uri": "sip:rs@pbx", "timeout": "60"}, "dial timeout must be"),
])
def test_a_bad_dial_request_is_invalid_and_dials_nothing(request_: dict[str, Any], needle: str) -> None:
    handler, dialler = requests()
    [answer] = ask(handler, {"command": "dial", **request_})
    assert (answer["ok"], answer["kind"]) == (False, "invalid") and needle in answer["message"]
    assert dialler.dials == []


@pytest.mark.parametrize("state, why", [(GatewayState.IN_CALL, "in a call"), (GatewayState.STARTING, "starting"),
                                        (GatewayState.STOPPING, "stopping")])
def test_dial_is_refused_unless_the_gateway_is_ready(state: GatewayState, why: str) -> None:
    handler, dialler = requests(state)
    [answer] = ask(handler, {"command": "dial", "uri": "sip:rs@pbx"})
    assert answer == rs.failure("unavailable", f"the gateway is {why}, not ready to dial") and dialler.dials == []


def test_status_and_unknown_commands() -> None:
    handler, _dialler = requests(GatewayState.READY)
    assert ask(handler, {"command": "status"}) == [{"ok": True, "state": "ready", "registered": True, "room": None,
                                                    "caller": None}]
    [answer] = ask(handler, {"command": "reboot"})
    assert answer["kind"] == "invalid" and "unknown command 'reboot'" in answer["message"]
    handler.controller = None
    assert ask(handler, {"command": "status"}) == [rs.failure("unavailable", "the gateway is starting")]
