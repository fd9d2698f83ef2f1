"""What runs: gateway containers (labels) + their state files + docker stats, and what is still free."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any, Callable, Sequence

import docker
from docker.models.containers import Container

from . import dockerops, labels
from .accounts import Account
from .allocator import choose_media, free_resources, holding_from_labels
from .devices import Discovery
from .resources import Budget, HostResources, human_bytes
from .settings import Settings
from .state import GatewayState, GatewayStatus, read_state


@dataclasses.dataclass
class GatewayInfo:
    """One row of `sipmediagw status`."""

    name: str
    state: str
    room: str | None  # the room it is in now; an idle fixed gateway: its room (joined on every call); else None
    platform: str
    sip_uri: str
    slot: int | None
    media: str
    container: str
    uptime: float | None  # seconds since the container started
    cpu_percent: float | None
    memory: int | None  # bytes
    last_error: str | None = None
    mode: str = "fixed"  # "pool" | "fixed"
    fixed_room: str | None = None  # a fixed gateway's room (the room it joins on every call)
    caller: str | None = None  # the current caller's display name
    call_started: str | None = None  # ISO 8601 (UTC)
    call_duration: float | None = None  # seconds the current call has lasted
    meeting: str | None = None  # what the current caller dialled
    last_end_reason: str | None = None  # why the last call ended (or was refused)
    direction: str | None = None  # "incoming" | "outgoing" (`sipmediagw dial`: the caller is the dialled party)
    audio_only: bool = False  # no video in its calls (label org.sipmediagw.audio-only)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def _started_at(container: Container) -> _dt.datetime | None:
    raw = container.attrs.get("State", {}).get("StartedAt", "")
    if not raw or raw.startswith("0001-"):
        return None
    # docker gives nanoseconds: keep microseconds for fromisoformat
    head, _, frac = raw.rstrip("Z").partition(".")
    text = head + ("." + frac[:6] if frac else "") + "+00:00"
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _running_status(container: Container, log_folder: Path | None) -> GatewayStatus | None:
    """The state file of a running gateway (None when it is not running or has not written one yet)."""
    if container.status in ("exited", "dead", "created") or log_folder is None:
        return None
    return read_state(log_folder)


def gateway_state(container: Container, log_folder: Path | None) -> tuple[str, str | None]:
    """(state, last_error): the state file's word while the container runs; docker's 'exited' otherwise."""
    if container.status in ("exited", "dead"):
        return "exited", None
    status = _running_status(container, log_folder)
    if status is None:
        return "starting", None
    return status.state.value, status.last_error


def describe(container: Container, now: _dt.datetime | None = None, with_stats: bool = True) -> GatewayInfo:
    """A GatewayInfo from a container's labels, its state file and (when running) docker stats."""
    tags = container.labels
    folder = Path(tags[labels.LOGS]) if tags.get(labels.LOGS) else None
    state, last_error = gateway_state(container, folder)
    status = _running_status(container, folder)
    # What the call is: only while the state file says in-call (an older gateway wrote its fixed room as `room`).
    call = status if status is not None and status.state is GatewayState.IN_CALL else None
    started = _started_at(container) if container.status == "running" else None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    stats = dockerops.container_stats(container) if with_stats and container.status == "running" else None
    raw_slot = tags.get(labels.SLOT, "")
    mode = tags.get(labels.MODE) or ("fixed" if tags.get(labels.ROOM) else "pool")
    return GatewayInfo(
        name=tags.get(labels.GATEWAY, container.name),
        state=state,
        room=call.room if call else tags.get(labels.ROOM) or None,
        platform=(call.call_platform if call and call.call_platform else tags.get(labels.PLATFORM, "")),
        sip_uri=tags.get(labels.ACCOUNT, ""),
        slot=int(raw_slot) if raw_slot.isdigit() else None,
        media=tags.get(labels.MEDIA, ""),
        container=container.name,
        uptime=(now - started).total_seconds() if started else None,
        cpu_percent=stats["cpu_percent"] if stats else None,
        memory=stats["memory"] if stats else None,
        last_error=last_error,
        mode=mode,
        fixed_room=tags.get(labels.ROOM) or None,
        caller=call.caller if call else None,
        call_started=call.call_started if call else None,
        call_duration=call.call_seconds(now) if call else None,
        meeting=call.meeting if call else None,
        last_end_reason=status.last_end_reason if status else None,
        direction=call.call_direction if call else None,
        audio_only=tags.get(labels.AUDIO_ONLY) == "true",
    )


@dataclasses.dataclass
class HostStatus:
    """Everything `sipmediagw status` prints."""

    gateways: list[GatewayInfo]
    media: str
    free_slots: int
    free_accounts: int

    def to_dict(self) -> dict[str, Any]:
        """The --json document."""
        return {
            "gateways": [g.to_dict() for g in self.gateways],
            "media": self.media,
            "free_slots": self.free_slots,
            "free_accounts": self.free_accounts,
        }


def gather(
    settings: Settings,
    client: docker.DockerClient,
    accounts: Sequence[Account],
    discovery: Discovery,
    host: HostResources,
    with_stats: bool = True,
) -> HostStatus:
    """Collect the status of every gateway container (stats fetched in parallel: each takes about a second)."""
    containers = dockerops.list_gateways(client, include_stopped=True)
    if containers:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(containers))) as pool:
            infos = list(pool.map(lambda c: describe(c, with_stats=with_stats), containers))
    else:
        infos = []
    infos.sort(key=lambda g: g.name)
    holdings = [holding_from_labels(c.labels) for c in containers if dockerops.holds_resources(c)]
    media = choose_media(settings.media, discovery)
    free = free_resources(media, accounts, discovery, holdings,
                          Budget(settings.cpu_per_gateway, settings.memory_per_gateway), host)
    return HostStatus(infos, media, len(free.slots), len(free.accounts))


def human_duration(seconds: float | None) -> str:
    """3725 -> '1h02m'."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def room_cell(gateway: GatewayInfo) -> str:
    """The room a gateway is in now; an idle fixed gateway shows its room in parentheses, an idle pool one '-'."""
    in_call = gateway.state == "in-call"
    if gateway.room and in_call:
        return gateway.room
    if in_call and gateway.direction == "outgoing":
        return "(dialling)"  # `sipmediagw dial`: not answered yet
    if in_call:
        return "(keypad menu)"  # answered, no room yet
    return f"({gateway.fixed_room})" if gateway.fixed_room else "-"


COLUMNS: list[tuple[str, Callable[[GatewayInfo], str]]] = [
    ("NAME", lambda g: g.name),
    ("STATE", lambda g: g.state),
    ("MODE", lambda g: g.mode + ("/audio-only" if g.audio_only else "")),
    ("ROOM", room_cell),
    ("CALLER", lambda g: g.caller or "-"),
    ("CALL", lambda g: human_duration(g.call_duration)),
    ("PLATFORM", lambda g: g.platform),
    ("SIP URI", lambda g: g.sip_uri),
    ("SLOT", lambda g: "-" if g.slot is None else f"{g.slot} ({g.media})"),
    ("UPTIME", lambda g: human_duration(g.uptime)),
    ("CPU %", lambda g: "-" if g.cpu_percent is None else f"{g.cpu_percent:.1f}"),
    ("MEMORY", lambda g: "-" if g.memory is None else human_bytes(g.memory)),
]


def render_table(status: HostStatus) -> str:
    """The `docker ps`-like table, then a line of free slots and accounts."""
    rows = [[header for header, _ in COLUMNS]] + [[cell(g) for _, cell in COLUMNS] for g in status.gateways]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    if not status.gateways:
        lines.append("(no gateway)")
    lines.append(f"free slots: {status.free_slots} ({status.media})   free accounts: {status.free_accounts}")
    return "\n".join(lines)
