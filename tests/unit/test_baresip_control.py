"""BaresipControl against a small in-process ctrl_tcp server: token matching, events, garbage, reconnects."""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any, Callable

import pytest

from sipmediagw.gateway.baresip import DISCONNECTED, BaresipControl, BaresipControlError
from sipmediagw.gateway.netstring import NetstringDecoder, encode


class FakeCtrlTcp:
    """Accepts one client at a time; `reply(command) -> list of raw bytes to send back` decides the answers."""

    def __init__(self, reply: Callable[[dict[str, Any]], list[bytes]], port: int = 0) -> None:
        self.reply = reply
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.received: list[dict[str, Any]] = []
        self.client: socket.socket | None = None
        self.connected = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.client = client
            self.connected.set()
            decoder = NetstringDecoder()
            while True:
                try:
                    data = client.recv(4096)
                except OSError:
                    break
                if not data:
                    break
                for payload in decoder.feed(data):
                    command = json.loads(payload)
                    self.received.append(command)
                    for raw in self.reply(command):
                        client.sendall(raw)

    def push(self, raw: bytes) -> None:
        assert self.client is not None
        self.client.sendall(raw)

    def drop_client(self) -> None:
        assert self.client is not None
        self.client.shutdown(socket.SHUT_RDWR)
        self.client.close()

    def close(self) -> None:
        self.listener.close()
        if self.client is not None:
            self.client.close()


def ok(command: dict[str, Any], data: str = "") -> bytes:
    return encode(json.dumps({"response": True, "ok": True, "data": data, "token": command["token"]}).encode())


def event(kind: str, **fields: Any) -> bytes:
    return encode(json.dumps({"event": True, "type": kind, "class": "call", **fields}).encode())


@pytest.fixture
def fake() -> Any:
    servers: list[FakeCtrlTcp] = []

    def make(reply: Callable[[dict[str, Any]], list[bytes]], port: int = 0) -> FakeCtrlTcp:
        server = FakeCtrlTcp(reply, port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_commands_get_their_own_responses_from_many_threads(fake: Any) -> None:
    # Answers come back in reverse pairs, split mid-message, with an event in between: tokens must sort them out.
    held: list[dict[str, Any]] = []
    lock = threading.Lock()

    def reply(command: dict[str, Any]) -> list[bytes]:
        with lock:
            held.append(command)
            if len(held) < 2:
                return []
            first, second = held.pop(), held.pop()
        blob = ok(first, first["params"]) + event("CALL_DTMF_START", param="5") + ok(second, second["params"])
        return [blob[:7], blob[7:30], blob[30:]]

    server = fake(reply)
    control = BaresipControl(port=server.port)
    control.connect(timeout=5)
    results: dict[str, dict[str, Any]] = {}

    def call(n: int) -> None:
        results[str(n)] = control.command("echo", f"param-{n}", timeout=10)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert {k: v["data"] for k, v in results.items()} == {str(n): f"param-{n}" for n in range(8)}
    assert [control.events.get(timeout=5)["type"] for _ in range(4)] == ["CALL_DTMF_START"] * 4
    control.close()


def test_garbage_and_bad_json_do_not_kill_the_reader(fake: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = fake(lambda command: [b"garbage!!", encode(b"{not json"), encode(b"[1,2]"), ok(command, "fine")])
    control = BaresipControl(port=server.port)
    control.connect(timeout=5)
    with caplog.at_level(logging.WARNING):
        assert control.command("reginfo")["data"] == "fine"
    server.push(event("REGISTER_OK", param="200 OK"))
    assert control.events.get(timeout=5)["type"] == "REGISTER_OK"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "discarded" in messages and "undecodable" in messages and "non-object" in messages
    control.close()


def test_command_times_out_and_fails_when_the_connection_drops(fake: Any) -> None:
    server = fake(lambda command: [])
    control = BaresipControl(port=server.port)
    control.connect(timeout=5)
    with pytest.raises(BaresipControlError, match="no response to 'hangup'"):
        control.command("hangup", timeout=0.3)
    failure: list[BaseException] = []

    def waiting() -> None:
        try:
            control.command("reginfo", timeout=30)
        except BaresipControlError as exc:
            failure.append(exc)

    thread = threading.Thread(target=waiting)
    thread.start()
    while not server.received or server.received[-1]["command"] != "reginfo":
        threading.Event().wait(0.05)
    server.drop_client()
    thread.join(10)
    assert failure and "connection lost" in str(failure[0])
    assert control.events.get(timeout=5)["type"] == DISCONNECTED
    assert not control.connected
    with pytest.raises(BaresipControlError, match="not connected|sending"):
        control.command("reginfo", timeout=1)
    control.close()


def test_connect_retries_until_the_port_listens_and_can_reconnect(fake: Any) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    control = BaresipControl(port=port)
    with pytest.raises(BaresipControlError, match=f"127.0.0.1:{port} not answering"):
        control.connect(timeout=0.3)

    servers: list[FakeCtrlTcp] = []
    starter = threading.Timer(0.5, lambda: servers.append(fake(lambda c: [ok(c, "up")], port)))
    starter.start()
    control.connect(timeout=20)  # retries while nothing listens yet
    assert control.command("reginfo")["data"] == "up"
    servers[0].drop_client()
    assert control.events.get(timeout=5)["type"] == DISCONNECTED
    control.connect(timeout=10)  # same object, fresh connection
    assert control.command("reginfo")["data"] == "up"
    control.close()
    control.close()  # idempotent


def test_commands_with_secrets_are_masked_in_logs(fake: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = fake(lambda c: [encode(json.dumps({"response": True, "ok": False, "data": "bad auth_pass=hunter22",
                                                "token": c["token"]}).encode())])
    control = BaresipControl(port=server.port)
    control.connect(timeout=5)
    with caplog.at_level(logging.DEBUG):
        response = control.command("uanew", "<sip:a@b>;auth_pass=hunter22")
    assert response["ok"] is False
    assert "hunter22" not in caplog.text
    assert "uanew" in caplog.text
    control.close()
