"""What runs: gateways (labels) + their state documents + stats, where they run, and what is still free.

Everything is read through the engine's API (sipmediagw/backends): a remote engine or a swarm manager answers the
same questions as the local engine.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
from typing import Any, Callable, Sequence

import docker

from . import claims as claiming
from . import labels
from .accounts import Account
from .allocator import Holding, choose_media, free_resources, holding_from_labels
from .backends import Backend, Handle, Observation, select_backend
from .backends.swarm import node_capacity
from .devices import Discovery
from .resources import Budget, HostResources, human_bytes
from .settings import Settings
from .state import GatewayState, GatewayStatus

#: a running gateway whose state file is older than this shows as "unresponsive": its supervisor rewrites the file at
#: least every 5 s (gateway/supervisor.py HEARTBEAT), so three heartbeats were missed. Only the engine backend reads
#: the file; swarm's state lines are logged on change only and carry no heartbeat.
UNRESPONSIVE_AFTER = 15.0


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
    container: str  # the container's (engine) or service's (swarm) name
    uptime: float | None  # seconds since the container (task) started
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
    joining: str | None = None  # the room the current call is entering
    join_progress: str | None = None  # what that join waits for ("waiting to be let in", a question to the caller)
    audio_only: bool = False  # no video in its calls (label org.sipmediagw.audio-only)
    node: str | None = None  # the engine's or swarm node's hostname
    note: str | None = None  # why it is not running, that Docker restarted it, or that it moved to another node (swarm)
    registration: str | None = None  # registered | registering | failed | lost (the gateway's word)
    registration_reason: str | None = None  # the registrar's answer when failed or lost

    @property
    def registration_problem(self) -> str | None:
        """"registration failed: 401 Unauthorized" when the account is not registered for a known reason."""
        if self.registration in ("failed", "lost") or (self.registration == "registering" and self.registration_reason):
            verb = {"lost": "registration lost", "failed": "registration failed"}.get(self.registration or "",
                                                                                      "registration pending")
            return f"{verb}: {self.registration_reason or 'no reason given'}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def gateway_state(seen: Observation) -> tuple[str, str | None]:
    """(state, last_error): the gateway's own word while it runs; 'exited'/'restarting'/'starting' from the engine
    otherwise."""
    if seen.runtime in ("exited", "gone"):
        return "exited", seen.detail
    if seen.runtime == "restarting":
        return "restarting", seen.detail
    if seen.status is None:
        return "starting", None
    return seen.status.state.value, seen.status.last_error


def heartbeat_age(status: GatewayStatus, now: _dt.datetime) -> float | None:
    """Seconds since the gateway wrote `status` (None: the document does not say, or says it nonsensically)."""
    try:
        written = _dt.datetime.fromisoformat(status.updated or "")
    except ValueError:
        return None
    if written.tzinfo is None:
        written = written.replace(tzinfo=_dt.timezone.utc)
    return (now - written).total_seconds()


def describe(handle: Handle, seen: Observation, stats: dict[str, Any] | None = None,
             now: _dt.datetime | None = None, heartbeat: bool = False) -> GatewayInfo:
    """A GatewayInfo from a gateway's labels, what the engine observed and (when running) its stats. `heartbeat`:
    the state document is the heartbeat file, so an old one shows the gateway "unresponsive" (UNRESPONSIVE_AFTER)."""
    tags = handle.labels
    state, last_error = gateway_state(seen)
    status = seen.status if seen.runtime == "running" else None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    note = seen.detail if seen.runtime != "exited" else None
    # Only the serving loop (ready, in a call) heartbeats: start-up waits for each component (the browser up to 90 s)
    # and the ordered stop take their time without one.
    serving = status is not None and status.state in (GatewayState.READY, GatewayState.IN_CALL)
    age = heartbeat_age(status, now) if heartbeat and status is not None and serving else None
    if age is not None and age > UNRESPONSIVE_AFTER:
        # a hung supervisor keeps its last words: say so rather than trust them (the HEALTHCHECK sees it at 60 s)
        note = f"unresponsive (no heartbeat for {age:.0f} s; its last state: {state})"
        state = "unresponsive"
    # What the call is: only while the gateway says in-call (an older gateway wrote its fixed room as `room`).
    call = status if status is not None and status.state is GatewayState.IN_CALL else None
    raw_slot = tags.get(labels.SLOT, "")
    mode = tags.get(labels.MODE) or ("fixed" if tags.get(labels.ROOM) else "pool")
    return GatewayInfo(
        name=tags.get(labels.GATEWAY, handle.name),
        state=state,
        room=call.room if call else tags.get(labels.ROOM) or None,
        platform=(call.call_platform if call and call.call_platform else tags.get(labels.PLATFORM, "")),
        sip_uri=tags.get(labels.ACCOUNT, ""),
        slot=int(raw_slot) if raw_slot.isdigit() else None,
        media=tags.get(labels.MEDIA, ""),
        container=handle.name,
        uptime=(now - seen.started).total_seconds() if seen.started and seen.runtime == "running" else None,
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
        joining=call.joining if call else None,
        join_progress=call.join_progress if call else None,
        audio_only=tags.get(labels.AUDIO_ONLY) == "true",
        node=seen.node,
        note=note,
        registration=status.registration if status else None,
        registration_reason=status.registration_reason if status else None,
    )


@dataclasses.dataclass
class HostStatus:
    """Everything `sipmediagw status` prints."""

    gateways: list[GatewayInfo]
    media: str
    free_slots: int
    free_accounts: int
    backend: str = "engine"

    def to_dict(self) -> dict[str, Any]:
        """The --json document."""
        return {
            "gateways": [g.to_dict() for g in self.gateways],
            "media": self.media,
            "free_slots": self.free_slots,
            "free_accounts": self.free_accounts,
            "backend": self.backend,
        }


def gather(
    settings: Settings,
    client: docker.DockerClient,
    accounts: Sequence[Account],
    discovery: Discovery,
    host: HostResources,
    with_stats: bool = True,
    backend: Backend | None = None,
) -> HostStatus:
    """Collect the status of every gateway (observed and stats fetched in parallel: each takes about a second)."""
    backend = backend or select_backend(client, settings.backend)
    handles = backend.list()

    def one(handle: Handle) -> tuple[GatewayInfo, bool]:
        seen = backend.observe(handle)
        stats = backend.stats(handle) if with_stats and seen.runtime == "running" else None
        holds = backend.holds(handle) and seen.runtime != "exited" if backend.kind == "engine" else True
        return describe(handle, seen, stats, heartbeat=backend.kind == "engine"), holds

    if handles:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(handles))) as pool:
            rows = list(pool.map(one, handles))
    else:
        rows = []
    infos = sorted((info for info, _ in rows), key=lambda g: g.name)
    holdings = [holding_from_labels(h.labels) for h, (_, holds) in zip(handles, rows) if holds]
    held_accounts = {h.account for h in holdings}
    for claim in claiming.live_claims(backend.claims("")):
        if claim.kind == claiming.ACCOUNT and claim.value not in held_accounts:
            holdings.append(Holding(claim.gateway, None, claim.value, ""))
    budget = Budget(settings.cpu_per_gateway, settings.memory_per_gateway)
    if backend.kind == "swarm":
        free = free_resources("userspace", accounts, Discovery((), (), (), ()), holdings, budget, None)
        fits = sum(node.fits for node in node_capacity(client, budget.cpu, budget.memory))
        return HostStatus(infos, "userspace", min(fits, len(free.accounts)), len(free.accounts), "swarm")
    media = choose_media(settings.media, discovery)
    free = free_resources(media, accounts, discovery, holdings, budget, host)
    return HostStatus(infos, media, len(free.slots), len(free.accounts), "engine")


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
    if in_call and gateway.direction == "outgoing" and not gateway.joining:
        return "(dialling)"  # `sipmediagw dial`: not answered yet
    if in_call and gateway.joining:  # answered, the browser entering the room, maybe waiting (a lobby, a password)
        return f"(joining {gateway.joining}" + (f": {gateway.join_progress})" if gateway.join_progress else ")")
    if in_call and gateway.mode == "fixed":
        return f"(joining {gateway.fixed_room})"  # answered, the browser entering the room (no menu on a fixed one)
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
    ("NODE", lambda g: g.node or "-"),
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
    for gateway in status.gateways:
        if gateway.note or (gateway.state in ("error", "exited") and gateway.last_error):
            lines.append(f"{gateway.name}: {gateway.note or gateway.last_error}")
        if gateway.registration_problem:
            lines.append(f"{gateway.name}: {gateway.registration_problem}")
    where = "swarm: gateways that fit on the nodes" if status.backend == "swarm" else status.media
    lines.append(f"free slots: {status.free_slots} ({where})   free accounts: {status.free_accounts}")
    return "\n".join(lines)
