"""The gateway's request socket: how the host asks a running gateway to act (``dial``), through the Docker engine.

Nothing outside the supervisor may talk to baresip (ctrl_tcp keeps ONE client: a second connection evicts the
supervisor's). So ``sipmediagw dial`` runs this module's client inside the container (``docker exec``, which works
the same against a remote DOCKER_HOST), and the client connects to a unix socket in the gateway's private run folder
(``$SIPMEDIAGW_RUN_DIR/requests.sock``, mode 0600 in a 0700 folder of the gateway user). The supervisor's main loop
serves it without blocking (:meth:`RequestServer.poll` on every turn). A web page cannot open a unix socket, so the
conference page in Chromium has no way to it.

Protocol, JSON lines in UTF-8: the client sends ONE request line, ``{"command": "dial", "uri": "sip:...", "room":
"1234" | null, "timeout": 60}`` or ``{"command": "status"}``. The gateway answers with any number of progress lines
(``{"progress": "ringing", ...}``; ``"waiting"`` every 10 s while nothing happens) and exactly one final line that
has ``"ok"``, then closes. A final ``"ok": false`` says ``kind``: ``invalid`` (the request itself: URI, room),
``unavailable`` (not now: starting, in a call, not registered, stopping) or ``failed`` (the call was tried: busy,
declined, no answer, room not joined), a ``message``, and ``sip_status`` (``"486 Busy Here"``) when the callee
answered with one. Stdlib only: this module runs inside the container.

Client: ``python3 -m sipmediagw.gateway.request_socket dial [--room ROOM] [--timeout S] -- SIP-URI`` (or
``status``) prints every line it receives and exits 0 (final ok), 1 (final not ok), 3 (no gateway to talk to).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import select
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

from ..errors import ValidationError
from ..names import validate_room_name
from ..sipuri import check_dial_uri
from ..state import GatewayState
from .logs import get_logger

SOCKET_NAME = "requests.sock"
DEFAULT_RUN_DIR = "/tmp/sipmediagw"  # GatewayConfig.run_dir's default
MAX_REQUEST = 4096  # bytes of the request line
MAX_CLIENTS = 8  # connections served at once (one dial at a time anyway: a second one is refused as busy)
IDLE_TIMEOUT = 5.0  # a client must send its request line within this
HEARTBEAT = 10.0  # a waiting request gets a progress line at least this often (keeps the docker exec stream alive)
SEND_TIMEOUT = 2.0  # a client that does not read its answers for this long is dropped
CLIENT_READ_TIMEOUT = 35.0  # the client gives up when the gateway says nothing for this long (> HEARTBEAT)
DIAL_TIMEOUT = 60.0  # default seconds the callee has to answer
MAX_DIAL_TIMEOUT = 600.0

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GATEWAY = 0, 1, 2, 3

Message = dict[str, Any]
Send = Callable[[Message], None]


# -- messages (the protocol's one home; the controller reports with these) ----------------------------------------


def progress(stage: str, **fields: Any) -> Message:
    """A progress line: ``dialling``, ``ringing``, ``answered``, ``waiting``..."""
    return {"progress": stage, **fields}


def failure(kind: str, message: str, sip_status: str | None = None, **fields: Any) -> Message:
    """A final failure: `kind` is ``invalid``, ``unavailable`` or ``failed``."""
    return {"ok": False, "kind": kind, "message": message, "sip_status": sip_status, **fields}


def success(**fields: Any) -> Message:
    """A final success."""
    return {"ok": True, **fields}


def is_final(message: Mapping[str, Any]) -> bool:
    """True for the one line that ends an answer."""
    return "ok" in message


def encode_line(message: Mapping[str, Any]) -> bytes:
    """One JSON line (ASCII-safe: any text is escaped)."""
    return (json.dumps(dict(message), sort_keys=True) + "\n").encode("utf-8")


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the gateway listens: ``$SIPMEDIAGW_RUN_DIR/requests.sock`` (``docker exec`` inherits the container's
    environment, so the client finds the folder the supervisor was configured with)."""
    env = os.environ if env is None else env
    return Path(env.get("SIPMEDIAGW_RUN_DIR") or DEFAULT_RUN_DIR) / SOCKET_NAME


# -- server --------------------------------------------------------------------------------------------------------


class Reply:
    """One client's connection: :meth:`send` progress lines, then one final line, which closes it. Sending to a
    client that went away is not an error (the request still runs: a dial is not undone by a lost terminal)."""

    def __init__(self, sock: socket.socket, clock: Callable[[], float] = time.monotonic) -> None:
        self._sock: socket.socket | None = sock
        self._clock = clock
        self.last_sent = clock()
        self.done = False
        self.client_gone = False

    def send(self, message: Message) -> None:
        """Write one line; a final one (with "ok") closes the connection. Lines after the final one are dropped."""
        if self.done:
            return
        final = is_final(message)
        if self._sock is not None and not self.client_gone:
            try:
                self._sock.sendall(encode_line(message))
            except OSError:
                self.client_gone = True
        self.last_sent = self._clock()
        if final:
            self.done = True
            self.close()

    def fileno(self) -> int:
        """For select(): the connection's descriptor (-1 once closed)."""
        return self._sock.fileno() if self._sock is not None else -1

    def check_client(self) -> None:
        """Call when the connection is readable: a client sends nothing after its request, so this is its EOF (or
        stray bytes, ignored)."""
        try:
            data = self._sock.recv(1) if self._sock is not None else b""
        except OSError:
            data = b""
        if not data:
            self.client_gone = True

    def close(self) -> None:
        """Close the connection. Unread bytes the client sent (an oversized request) are read away first: closing
        a unix socket with data still queued makes the client's read fail (ECONNRESET) before it sees our answer."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.setblocking(False)
            for _ in range(16):
                if not sock.recv(65536):
                    break
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass


@dataclasses.dataclass
class _Incoming:
    """A connection whose request line has not arrived yet."""

    sock: socket.socket
    since: float
    data: bytes = b""


class RequestServer:
    """A non-blocking unix socket server of JSON-line requests, driven by :meth:`poll` from the supervisor's loop.

    `handle(request, reply)` runs on the loop's thread; it may answer at once or keep `reply` and answer later
    (a dial answers when the call is in its room or over). Malformed, oversized or silent clients are answered
    ``invalid`` and dropped without reaching `handle`.
    """

    def __init__(self, path: Path, handle: Callable[[Message, Reply], None], *, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.handle = handle
        self._log = log or get_logger("requests")
        self._clock = clock
        self._sock: socket.socket | None = None
        self._incoming: list[_Incoming] = []
        self._waiting: list[Reply] = []

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def open(self) -> None:
        """Listen on `path` (a stale socket file from an earlier run is replaced), readable by this user only."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # created 0600: no window in which another user could connect
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old_umask)
            sock.listen(MAX_CLIENTS)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._log.info("serving requests on %s", self.path)

    def poll(self) -> None:
        """Accept, read and dispatch what is ready; heartbeat waiting requests; never blocks."""
        if self._sock is None:
            return
        self._accept()
        now = self._clock()
        watched = [reply for reply in self._waiting if not reply.done and not reply.client_gone]
        sockets: list[Any] = [item.sock for item in self._incoming] + watched
        readable = set(select.select(sockets, [], [], 0)[0]) if sockets else set()
        for item in list(self._incoming):
            if item.sock in readable:
                self._read(item)
            elif now - item.since > IDLE_TIMEOUT:
                self._incoming.remove(item)
                Reply(item.sock, self._clock).send(failure("invalid", f"no request line within {IDLE_TIMEOUT:g} s"))
        for reply in list(self._waiting):
            if reply in readable:
                reply.check_client()
                if reply.client_gone:
                    self._log.info("request client went away; the request goes on")
            if not reply.done and not reply.client_gone and now - reply.last_sent >= HEARTBEAT:
                reply.send(progress("waiting"))
        self._waiting = [reply for reply in self._waiting if not reply.done]

    def close(self, reason: str = "gateway stopping") -> None:
        """Answer every waiting request ``unavailable`` (`reason`), drop the rest, stop listening. Idempotent."""
        for reply in self._waiting:
            reply.send(failure("unavailable", reason))
        self._waiting = []
        for item in self._incoming:
            item.sock.close()
        self._incoming = []
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._log.warning("request socket: accept failed: %s", exc)
                return
            conn.settimeout(SEND_TIMEOUT)  # reads only happen when select says readable
            if len(self._incoming) + len(self._waiting) >= MAX_CLIENTS:
                Reply(conn, self._clock).send(failure("unavailable", "too many requests at once"))
                continue
            self._incoming.append(_Incoming(conn, self._clock()))

    def _read(self, item: _Incoming) -> None:
        try:
            chunk = item.sock.recv(MAX_REQUEST + 1 - len(item.data))
        except OSError:
            chunk = b""
        if not chunk:  # closed before sending a whole line
            self._incoming.remove(item)
            item.sock.close()
            return
        item.data += chunk
        line, newline, _rest = item.data.partition(b"\n")
        if not newline:
            if len(item.data) > MAX_REQUEST:
                self._incoming.remove(item)
                Reply(item.sock, self._clock).send(failure("invalid", f"request longer than {MAX_REQUEST} bytes"))
            return
        self._incoming.remove(item)
        self._dispatch(item.sock, line)

    def _dispatch(self, sock: socket.socket, line: bytes) -> None:
        reply = Reply(sock, self._clock)
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            reply.send(failure("invalid", "the request is not one line of JSON"))
            return
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            reply.send(failure("invalid", 'the request must be an object with a "command"'))
            return
        try:
            self.handle(request, reply)
        except Exception as exc:  # a bug in one request must not take the supervisor's loop down
            self._log.exception("request %r failed", request.get("command"))
            reply.send(failure("failed", f"internal error: {exc.__class__.__name__}: {exc}"))
        if not reply.done:
            self._waiting.append(reply)


# -- what the requests do -------------------------------------------------------------------------------------------


class Dialler(Protocol):
    """What the request socket needs from controller.Controller."""

    registered: bool

    def dial(self, uri: str, meeting: str | None, report: Send, timeout: float = ...) -> None: ...

    def call_fields(self) -> dict[str, Any]: ...


class GatewayRequests:
    """The request socket's commands, carried out on the supervisor's thread: ``dial`` (by the call controller)
    and ``status``. The supervisor opens it once its controller exists, polls it every turn, closes it on stop."""

    def __init__(self, path: Path, *, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log or get_logger("requests")
        self.server = RequestServer(path, self.handle, log=self._log, clock=clock)
        self.controller: Dialler | None = None
        self.gateway_state: Callable[[], GatewayState] = lambda: GatewayState.STARTING

    def open(self, controller: Dialler, gateway_state: Callable[[], GatewayState]) -> None:
        """Start serving for `controller`; `gateway_state` says whether the gateway is ready for a dial."""
        self.controller, self.gateway_state = controller, gateway_state
        self.server.open()

    def poll(self) -> None:
        self.server.poll()

    def close(self, reason: str = "gateway stopping") -> None:
        self.server.close(reason)

    def handle(self, request: Message, reply: Reply) -> None:
        """One request line (RequestServer's `handle`)."""
        command = request["command"]
        controller = self.controller
        if controller is None:
            reply.send(failure("unavailable", "the gateway is starting"))
        elif command == "status":
            reply.send(success(state=self.gateway_state().value, registered=controller.registered,
                               **controller.call_fields()))
        elif command == "dial":
            self._dial(controller, request, reply)
        else:
            reply.send(failure("invalid", f"unknown command {command!r} (known: dial, status)"))

    def _dial(self, controller: Dialler, request: Message, reply: Reply) -> None:
        try:
            uri = check_dial_uri(request.get("uri"))  # type: ignore[arg-type]
            room = request.get("room")
            if room is not None:
                validate_room_name(room if isinstance(room, str) else "")
            timeout = dial_timeout(request.get("timeout", DIAL_TIMEOUT))
        except ValidationError as exc:
            reply.send(failure("invalid", str(exc)))
            return
        state = self.gateway_state()
        if state is not GatewayState.READY:
            why = {GatewayState.IN_CALL: "in a call"}.get(state, state.value)
            reply.send(failure("unavailable", f"the gateway is {why}, not ready to dial"))
            return
        self._log.info("dial request: %s%s", uri, f" into room {room}" if room else "")
        controller.dial(uri, room, reply.send, timeout=timeout)


def dial_timeout(value: Any) -> float:
    """Seconds the callee has to answer: a number in [1, MAX_DIAL_TIMEOUT]; ValidationError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_DIAL_TIMEOUT:
        raise ValidationError(f"dial timeout must be 1-{MAX_DIAL_TIMEOUT:g} seconds, not {value!r}")
    return float(value)


# -- client (runs in the container under docker exec) --------------------------------------------------------------


class RequestError(Exception):
    """The client could not talk to the gateway (no socket, refused, silent, cut off)."""


def exchange(path: Path, request: Message, read_timeout: float = CLIENT_READ_TIMEOUT) -> Iterator[Message]:
    """Send `request` to the gateway at `path`; yield each answer line, the final one last. RequestError when
    there is no gateway to talk to or it stops answering."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(read_timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise RequestError(f"the gateway does not accept requests at {path} ({exc.strerror or exc}): "
                               "is it still starting?") from None
        sock.sendall(encode_line(request))
        buffer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise RequestError(f"no answer from the gateway for {read_timeout:g} s") from None
            except OSError as exc:
                raise RequestError(f"connection to the gateway failed: {exc.strerror or exc}") from None
            if not chunk:
                raise RequestError("the gateway closed the connection without a final answer")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    message = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise RequestError("the gateway answered something that is not JSON") from None
                if not isinstance(message, dict):
                    raise RequestError("the gateway answered something that is not a JSON object")
                yield message
                if is_final(message):
                    return
    finally:
        sock.close()


def client_request(argv: list[str]) -> Message:
    """The request of the client's command line (argparse exits 2 on a usage error)."""
    parser = argparse.ArgumentParser(prog="python3 -m sipmediagw.gateway.request_socket",
                                     description="Send one request to this container's gateway; print its answers "
                                                 "as JSON lines.")
    commands = parser.add_subparsers(dest="command", required=True)
    dial = commands.add_parser("dial", help="call SIP-URI and join the room when it answers")
    dial.add_argument("--room", help="room (pool gateway: required; fixed gateway: its own room)")
    dial.add_argument("--timeout", type=float, default=DIAL_TIMEOUT, help="seconds the callee has to answer")
    dial.add_argument("uri", metavar="SIP-URI")
    commands.add_parser("status", help="the gateway's state and current call")
    args = parser.parse_args(argv)
    if args.command == "dial":
        return {"command": "dial", "uri": args.uri, "room": args.room, "timeout": args.timeout}
    return {"command": args.command}


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Relay one request; print every answer line; exit 0 (ok), 1 (not ok), 2 (usage), 3 (no gateway)."""
    request = client_request(sys.argv[1:] if argv is None else argv)
    final: Message | None = None
    try:
        for message in exchange(socket_path(env), request):
            sys.stdout.write(json.dumps(message, sort_keys=True) + "\n")
            sys.stdout.flush()
            final = message
    except RequestError as exc:
        sys.stdout.write(json.dumps(failure("unavailable", str(exc)), sort_keys=True) + "\n")
        return EXIT_NO_GATEWAY
    return EXIT_OK if final is not None and final.get("ok") is True else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
