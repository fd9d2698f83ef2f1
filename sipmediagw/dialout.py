"""``sipmediagw dial``: a ready gateway calls a SIP endpoint (a room system in auto-answer) and joins a room when it
answers.

The host reaches the gateway through the Docker engine only: it runs the request client inside the container
(``docker exec python3 -m sipmediagw.gateway.request_socket dial ...``), which asks the supervisor over the request
socket in the gateway's private run folder and relays its answers as JSON lines (docs/contracts.md). No host folder,
no port, no direct baresip connection (ctrl_tcp has room for one client, the supervisor), so it works the same
against a remote DOCKER_HOST.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import docker

from . import dockerops, labels
from .errors import DialFailed, GatewayNotFound, GatewayNotReady, ValidationError
from .names import validate_gateway_name, validate_room_name
from .sipuri import check_dial_uri

REQUEST_CLIENT = ["python3", "-m", "sipmediagw.gateway.request_socket"]
DEFAULT_TIMEOUT = 60  # seconds the callee has to answer (the gateway cancels the call then)
MAX_TIMEOUT = 600

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DialResult:
    """A dialled call that was answered and is in its room."""

    gateway: str
    uri: str
    callee: str  # the name the gateway shows in the room (the callee's display name, else its user part)
    room: str
    platform: str
    call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (`dial --json`)."""
        return {"ok": True, **dataclasses.asdict(self)}


def dial_argv(uri: str, room: str | None, timeout: float) -> list[str]:
    """The request client's command line (no shell: the URI stays one argument; `--` ends the options)."""
    argv = REQUEST_CLIENT + ["dial", "--timeout", f"{timeout:g}"]
    if room is not None:
        argv += ["--room", room]
    return argv + ["--", uri]


def check_dial(container_labels: dict[str, str], gateway: str, room: str | None) -> None:
    """What the labels already tell: a pool gateway needs a room; a fixed one only joins its own."""
    fixed_room = container_labels.get(labels.ROOM) or None
    mode = container_labels.get(labels.MODE) or ("fixed" if fixed_room else "pool")
    if mode == "pool" and room is None:
        raise ValidationError(f"{gateway} is a pool gateway: name the room it joins with -r ROOM")
    if mode == "fixed" and room is not None and room != fixed_room:
        raise ValidationError(f"{gateway} is fixed in room {fixed_room}: leave -r out (a pool gateway can dial "
                              f"into room {room})")


def _describe(gateway: str, message: dict[str, Any]) -> str | None:
    stage = message.get("progress")
    if stage == "dialling":
        return f"{gateway}: dialling {message.get('uri')} for room {message.get('room')}"
    if stage == "ringing":
        return f"{gateway}: ringing"
    if stage == "progress":
        return f"{gateway}: call in progress"
    if stage == "answered":
        return f"{gateway}: answered, joining room {message.get('room')}"
    return None  # "waiting" heartbeats and stages this version does not know


def dial(client: docker.DockerClient, gateway: str, uri: str, room: str | None = None,
         timeout: float = DEFAULT_TIMEOUT, progress: Progress = lambda message: None) -> DialResult:
    """Make `gateway` call `uri` and join `room` (a fixed gateway: its own) when the callee answers.

    Raises ValidationError (bad URI/room: nothing is dialled), GatewayNotFound, GatewayNotReady (not running,
    starting, in a call, not registered), DialFailed (busy, declined, not found, no answer, unreachable, room not
    joined: the SIP status in `sip_status`; the gateway is ready again), DockerUnavailable.
    """
    validate_gateway_name(gateway)
    uri = check_dial_uri(uri)
    if room is not None:
        validate_room_name(room)
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise ValidationError(f"--timeout must be 1-{MAX_TIMEOUT} seconds, not {timeout:g}")
    container = dockerops.find_gateway(client, gateway)
    if container is None:
        raise GatewayNotFound(f"no gateway named {gateway!r} (see `sipmediagw status`)")
    if container.status != "running":
        raise GatewayNotReady(f"gateway {gateway} is not running ({container.status})")
    check_dial(container.labels, gateway, room)
    final: dict[str, Any] | None = None
    other: list[str] = []  # stderr and non-JSON output: shown when no answer came
    code: str | None = None
    for stream, text in dockerops.exec_lines(client, container, dial_argv(uri, room, timeout)):
        if stream == "exit":
            code = text
            continue
        try:
            message = json.loads(text) if stream == "stdout" else None
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            if text.strip():
                other = (other + [text.strip()])[-5:]
            continue
        if "ok" in message:
            final = message
        elif (line := _describe(gateway, message)) is not None:
            progress(line)
    if final is None:
        raise GatewayNotReady(f"gateway {gateway} gave no answer to the dial request (exit code {code}): "
                              f"{' | '.join(other) or 'no output'}; an image older than `sipmediagw dial` has no "
                              "request client: rebuild it and launch the gateway again")
    if final.get("ok") is True:
        return DialResult(gateway=gateway, uri=uri, callee=str(final.get("callee") or uri),
                          room=str(final.get("room") or room), platform=str(final.get("platform") or ""),
                          call_id=final.get("call_id"))
    kind, why = final.get("kind"), str(final.get("message") or "failed")
    if kind == "invalid":
        raise ValidationError(f"{gateway}: {why}")
    if kind == "unavailable":
        raise GatewayNotReady(f"gateway {gateway} cannot dial now: {why}")
    raise DialFailed(f"{why}; gateway {gateway} is ready again", sip_status=final.get("sip_status"), result=final)
