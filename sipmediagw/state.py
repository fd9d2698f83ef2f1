"""The gateway state: written by the container's supervisor, read by the HEALTHCHECK and by `sipmediagw status`.

Two copies of one document, both reachable through the Docker engine's API alone (so a remote DOCKER_HOST or a
swarm works like the local engine):
- ``state.json`` in the gateway's log folder (``/var/log/sipmediagw`` in the container), rewritten at least every
  few seconds (the heartbeat the HEALTHCHECK watches); writes are atomic (temp file + rename) so a reader never sees
  half a document. The single-engine backend reads it with the archive API (``docker cp``).
- a ``state: {json}`` line in the gateway's log (its stdout) each time the document changes: the only view of a
  swarm task on another node, through the manager's ``service logs`` API.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_FILE_NAME = "state.json"
#: the logger (component) name of the state lines: ``[timestamp] state: {json}``
STATE_LINE_COMPONENT = "state"
_STATE_LINE_MARK = f"] {STATE_LINE_COMPONENT}: "


class GatewayState(str, enum.Enum):
    """Lifecycle of one gateway as a whole."""

    STARTING = "starting"
    READY = "ready"  # every component running, SIP account registered, waiting for a call
    IN_CALL = "in-call"  # a SIP call is bridged into the room
    STOPPING = "stopping"
    ERROR = "error"  # a component failed; last_error says why
    EXITED = "exited"  # the supervisor finished


class ComponentState(str, enum.Enum):
    """Lifecycle of one component (Xvfb, PulseAudio, baresip, browser, ...)."""

    STARTING = "starting"
    RUNNING = "running"
    ERROR = "error"
    FINISHED = "finished"


@dataclasses.dataclass
class ComponentStatus:
    """State of one component, with the reason when it is in error."""

    state: ComponentState = ComponentState.STARTING
    reason: str | None = None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class GatewayStatus:
    """Everything the state file says about a gateway."""

    gateway: str
    state: GatewayState = GatewayState.STARTING
    components: dict[str, ComponentStatus] = dataclasses.field(default_factory=dict)
    sip_uri: str | None = None
    mode: str | None = None  # "pool" | "fixed" (None: written by a gateway older than pool gateways)
    room: str | None = None  # the room the current call is in (None when idle, or in the keypad menu)
    platform: str | None = None  # the gateway's default platform
    call_platform: str | None = None  # the platform of the current call's room
    meeting: str | None = None  # the user part the current caller dialled
    media: str | None = None
    caller: str | None = None  # the current caller's display name
    caller_uri: str | None = None
    call_started: str | None = None  # when the current call was answered (ISO 8601, UTC)
    call_direction: str | None = None  # "incoming" | "outgoing" (sipmediagw dial) while there is a call
    joining: str | None = None  # the room the current call is entering (the browser is joining it)
    join_progress: str | None = None  # what that join waits for: "waiting to be let in", a question to the caller
    audio_only: bool = False  # no video: no caller display, no camera, no m=video, the browser publishes audio only
    last_end_reason: str | None = None  # why the last call ended or was refused: "caller hung up", "unknown meeting 9"
    registration: str | None = None  # registered | registering | failed | lost (None: not known yet)
    registration_reason: str | None = None  # the registrar's answer ("401 Unauthorized (...)") or "no answer ..."
    since: str = dataclasses.field(default_factory=_now)  # when `state` was entered
    last_error: str | None = None
    calls: int = 0  # calls bridged into a room since start
    sandbox: str | None = None  # Chromium's sandbox: "on", or "off: <why>" (--no-sandbox); None: not known / older
    # When the writer wrote this document (ISO 8601, UTC), as a reader parsed it; to_dict always stamps the time of
    # writing, so a writer never sets it. The supervisor rewrites the file every few seconds: an old one means hung.
    updated: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        data["components"] = {
            name: {"state": c.state.value, "reason": c.reason} for name, c in self.components.items()
        }
        data["updated"] = _now()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GatewayStatus":
        """Parse what `to_dict` wrote; unknown keys are ignored so old readers survive new writers."""
        components = {
            name: ComponentStatus(ComponentState(c.get("state", "starting")), c.get("reason"))
            for name, c in (data.get("components") or {}).items()
        }
        known = {f.name for f in dataclasses.fields(cls)} - {"state", "components"}
        kwargs = {k: v for k, v in data.items() if k in known}
        return cls(state=GatewayState(data.get("state", "starting")), components=components, **kwargs)

    def call_seconds(self, now: _dt.datetime | None = None) -> float | None:
        """How long the current call has lasted (None when there is none or its start is unreadable)."""
        if not self.call_started:
            return None
        try:
            started = _dt.datetime.fromisoformat(self.call_started)
        except ValueError:
            return None
        if started.tzinfo is None:
            started = started.replace(tzinfo=_dt.timezone.utc)
        return max(0.0, ((now or _dt.datetime.now(_dt.timezone.utc)) - started).total_seconds())

    def set_state(self, state: GatewayState) -> None:
        """Enter `state`, stamping `since` only when it actually changes."""
        if state != self.state:
            self.state = state
            self.since = _now()


def write_state(folder: str | os.PathLike[str], status: GatewayStatus) -> Path:
    """Atomically write `status` as ``state.json`` in `folder`; return the file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / STATE_FILE_NAME
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(status.to_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)  # readable by the host user and the HEALTHCHECK
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def read_state(folder: str | os.PathLike[str]) -> GatewayStatus | None:
    """Read ``state.json`` from `folder`; None when it does not exist (yet) or cannot be parsed."""
    try:
        text = (Path(folder) / STATE_FILE_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # a corrupt file (not UTF-8) is unreadable too, not a crash
        return None
    return parse_state(text)


def parse_state(text: str | bytes) -> GatewayStatus | None:
    """A GatewayStatus from the JSON text of a state file or state line; None when it is not one."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            return None
        status = GatewayStatus.from_dict(data)
    except (ValueError, TypeError, AttributeError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        return None
    # a document with a wrongly typed field ({"call_started": 5}) is no state: readers (call_seconds, status) rely
    # on the types
    return status if _well_typed(status) else None


#: the Python types a JSON value may have for each field annotation (`from __future__ import annotations`: text)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "str | None": (str, type(None)), "bool": (bool,),
                                             "int": (int,)}


def _well_typed(status: GatewayStatus) -> bool:
    """True when every field holds what its annotation says (True is no calls count, 5 no call_started)."""
    for field in dataclasses.fields(status):
        allowed = _FIELD_TYPES.get(str(field.type))
        value = getattr(status, field.name)
        if allowed is None:
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return False
    return all(c.reason is None or isinstance(c.reason, str) for c in status.components.values())


def state_line_payload(status: GatewayStatus) -> str:
    """The one-line JSON of a state line (the log formatter adds ``[timestamp] state: ``)."""
    return json.dumps(status.to_dict(), sort_keys=True, separators=(",", ":"))


def last_state_in_log(lines: "list[str]") -> GatewayStatus | None:
    """The newest state line's document among log `lines` (oldest first); None when there is none."""
    for line in reversed(lines):
        _, mark, payload = line.partition(_STATE_LINE_MARK)
        if mark:
            status = parse_state(payload.strip())
            if status is not None:
                return status
    return None
