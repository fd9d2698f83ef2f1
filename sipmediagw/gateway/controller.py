"""baresip events -> gateway actions: registration state, and one call at a time taken to its room (or to the menu).

The supervisor pumps :attr:`BaresipControl.events` into :meth:`Controller.handle` from one thread (its main loop) and
maps the controller's attributes to the state file whenever ``on_change`` fires. Event names and fields are those of
baresip 1.0.0's ctrl_tcp (docs/baresip.md). Stdlib only: this module runs inside the gateway container.

Which room a call goes to (docs/dialplan.md): baresip runs with ``answermode=manual``, so every call starts with
CALL_INCOMING, unanswered. The events do not say which address was dialled, but ``callstat`` does (its ``local_uri``
is the To URI, which the registrar leaves as dialled). :meth:`Routing.decide` turns that user part into: join a room,
open the keypad menu, or reject the call before answering (baresip 1.0.0 can only send ``486 Rejected`` then).

Outgoing calls (``sipmediagw dial``, docs/dialplan.md "Dial-out"): :meth:`Controller.dial` sends baresip's ``dial``,
whose answer carries no call id; the call's id is taken from its first event with one (CALL_RINGING, or CALL_CLOSED
when it fails at once). CALL_ESTABLISHED takes it into its room like an answered incoming call; a CALL_CLOSED before
that is the callee's refusal (its SIP status, e.g. ``486 Busy Here``, is the event's param). The requester hears of
each step through the `report` it gave (request_socket's progress lines, then one final message).

Rooms are entered and left on the room worker's thread (room_worker.py), never on the event loop: a join takes
seconds to a minute, and meanwhile baresip events, the state file's heartbeat and SIGTERM must still be served. The
call is JOINING until the worker hands the join back (applied by :meth:`Controller.pump`); a call that ends meanwhile,
or whose join outlives ``join_timeout``, cancels it, and the late result is discarded (the leave queued behind it
tidies the page). The keypad menu and the call watch drive the browser from the event loop, so they wait while the
worker has it.

A pool gateway parks its browser and camera while idle (ondemand.py): with an `on_demand` room side, a call taken
(or a dial placed) first queues their start on the room worker, before the answer, so Chromium starts while the call
is answered and established; the join queued behind it finds it running. Once the call is over and its room left,
they are parked again.

A call whose room the dialled address names (``join_on_invite``) is answered once its room is joined, so that the
caller is heard in the room from the moment the call is up, not a second later: the join starts at the INVITE and the
call rings meanwhile. It is answered earlier when the join has something to tell or ask the caller (a lobby, a
password: the dialogue moved), when the join fails (the caller hears why), and at the latest ANSWER_WAIT s after the
INVITE, so a slow room never keeps a caller ringing.

A room that cannot be joined is not a bare BYE: with a `notifier` (gateway/notice.py, drawn and said by menu.py), the
call goes to the NOTIFYING stage, the caller sees and hears why, and the pump hangs up once the prompt has been said
(NOTICE_MIN .. NOTICE_LIMIT s after the failure); a caller hanging up meanwhile ends it at once.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import queue
import re
import threading
import time
import urllib.parse
from typing import Any, Callable, Protocol

from ..dispatch import Dispatcher, RoomTarget, UnknownMeeting
from ..redaction import redact
from ..sipuri import sip_status, status_meaning
from .baresip import DISCONNECTED, BaresipControl, BaresipControlError
from .join_dialogue import JoinDialogue
from .logs import get_logger, strip_ansi
from .notice import Notice, join_failed
from .request_socket import failure, progress, success
from .room_worker import JOIN, LEAVE, RoomTask, RoomWorker

PREPARE = "prepare"  # room worker task: start the parked room side for a call
RELEASE = "release"  # room worker task: park it again after the call

DEFAULT_DISPLAY_NAME = "SIP gateway"
MAX_EARLY_KEYS = 32  # keys kept while the keypad menu waits for the browser (a meeting number and its '#')
REGISTRAR_SILENCE = 5.0  # seconds unregistered with no answer at all before the state says "no answer"
_MAX_NAME = 64
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_LOCAL_URI = re.compile(r"^\s*local_uri:\s*<?(?P<uri>[^>\s]+)", re.MULTILINE)
_CALL_ID = re.compile(r"\bid=(?P<id>\S+)")
_USER = re.compile(r"^(?:sips?):(?:(?P<user>[^@;>?]*)@)?", re.IGNORECASE)

# ActiveCall.stage
DIALLING = "dialling"  # outgoing: dialled, not answered yet
ANSWERING = "answering"  # taken (answer sent), not established yet
MENU = "menu"  # established, the keypad menu decides where it goes
JOINING = "joining"  # established, the browser is entering the room
IN_ROOM = "room"  # bridged into the room
NOTIFYING = "notice"  # the room could not be joined: the caller is told why (screen + prompt), then hung up; until
#                       CALL_CLOSED
FAILED = "failed"  # the room could not be joined: hung up, waiting for CALL_CLOSED
#: an outgoing call whose CALL_CLOSED never comes after we cancelled it is ended this long after its deadline
DIAL_CLOSE_GRACE = 10.0
#: a call not in its room this long after its join started is hung up ("room join timed out"): the backstop over the
#: browser's page-load timeout (30 s) and the drivers' own waits (30-60 s per step)
ROOM_JOIN_TIMEOUT = 90.0
#: a cancelled join that has not returned this long after its cancel is inside one WebDriver command (a page load):
#: settle_room stops waiting for it (a join that polls its page sees the cancel within half a second)
CANCEL_GRACE = 1.0
#: seconds a call whose room is being joined may ring before it is answered anyway (join_on_invite)
ANSWER_WAIT = 5.0
#: the "cannot be joined" notice: the call is hung up once its prompt has been said (the prompt lasts 4.5 s) and at
#: least NOTICE_MIN s after the failure (the screen is read even when no prompt plays), at most NOTICE_LIMIT s after
NOTICE_MIN = 3.0
NOTICE_LIMIT = 8.0
#: after the prompt's player exits, its last syllable is still in PulseAudio's and baresip's buffers
NOTICE_TAIL = 0.4


class RoomSession(Protocol):
    """What the controller needs from the browser side: check a call's room, enter it under a name, leave it."""

    def check(self, target: RoomTarget) -> None:
        """Raise (ValidationError) when `target`'s driver refuses the room; called before the call is answered."""

    def join(self, target: RoomTarget, display_name: str, cancelled: threading.Event,
             dialogue: JoinDialogue | None = None) -> None:
        """Enter `target`'s room as `display_name` with microphone and camera on; raise on failure. Runs on the room
        worker; once `cancelled` is set (the controller gave up on it), stop at the next page step. What the join
        waits for or asks the caller goes through `dialogue` (join_dialogue.py)."""

    def leave(self) -> None:
        """Leave the room (or whatever page the call showed), leaving the browser ready for the next call. Runs on
        the room worker."""


@dataclasses.dataclass
class Dialout:
    """What an outgoing call adds: who asked (`report` gets progress messages, then exactly one final one), until
    when the callee may answer, and the SIP status it answered with."""

    report: Callable[[dict[str, Any]], None]
    deadline: float  # clock() time after which an unanswered call is cancelled
    timeout: float
    sip_status: str | None = None
    reported: bool = False

    def final(self, message: dict[str, Any]) -> None:
        """Send the one final message (later ones are dropped)."""
        if not self.reported:
            self.reported = True
            self.report(message)


@dataclasses.dataclass
class ActiveCall:
    """The call this gateway owns, from the moment it decided to take it (or dialled it) until its CALL_CLOSED.
    For an outgoing call, `caller`/`caller_uri` are the dialled party and `dialled` the room asked for."""

    call_id: str  # "" for an outgoing call until its first event with an id
    caller: str  # display name used in the room
    caller_uri: str | None
    dialled: str | None  # user part of the dialled address (None: callstat did not say)
    target: RoomTarget | None  # where it goes; None while the keypad menu decides
    stage: str = ANSWERING
    started: str | None = None  # ISO time it was established (answered)
    answer_by: float | None = None  # clock() time it is answered at the latest, while its answer waits for its room
    dialout: Dialout | None = None  # set on an outgoing call

    @property
    def direction(self) -> str:
        """``incoming`` or ``outgoing``."""
        return "outgoing" if self.dialout is not None else "incoming"


class CallHandle:
    """What the keypad menu and the call watch share about their call: who called, and hang-up with a reason."""

    def __init__(self, controller: "Controller", call: ActiveCall) -> None:
        self._controller = controller
        self._call = call

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def caller(self) -> str:
        """The caller's display name (as the room will show it)."""
        return self._call.caller

    def hangup(self, reason: str) -> None:
        """End the call (BYE); `reason` becomes the call's end reason in the state file."""
        self._controller.hang_up(reason, self._call)


class WatchedCall(CallHandle):
    """The handle a CallWatch gets on its call: who called, where the call is, and hang-up with a reason."""

    @property
    def active(self) -> bool:
        """True until the call is over (or no longer this gateway's current call)."""
        return self._controller.call is self._call

    @property
    def in_room(self) -> bool:
        """True while the call is bridged into its room."""
        return self.active and self._call.stage == IN_ROOM

    @property
    def target(self) -> RoomTarget | None:
        """The room the call is in (or joining); None in the keypad menu."""
        return self._call.target


class MenuCall(CallHandle):
    """The keypad menu's handle on its call: who called, the dispatcher, and the two ways out (a room, or hang up).

    Methods are called from the controller's thread (inside :meth:`Menu.start`, :meth:`Menu.key` or
    :meth:`Menu.poll`), like everything else the controller does.
    """

    @property
    def caller_uri(self) -> str | None:
        return self._call.caller_uri

    @property
    def dialled(self) -> str | None:
        """The user part the caller dialled (the gateway's own user or the service user)."""
        return self._call.dialled

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The pool's dispatch rules (e.g. to offer a choice of platform); None on a fixed gateway."""
        return self._controller.routing.dispatcher

    @property
    def active(self) -> bool:
        """True while this call is still in the menu (not closed, not gone to a room)."""
        return self._controller.call is self._call and self._call.stage == MENU

    def resolve(self, meeting: str, platform: str | None = None) -> RoomTarget:
        """The room of `meeting` (typed digits), on `platform` when the caller chose one (see
        ``dispatcher.platforms()``); UnknownMeeting (a message to show) when there is none."""
        return self._controller.resolve_meeting(meeting, platform)

    def join(self, target: RoomTarget) -> None:
        """Leave the menu (its stop() is called first) and take the call into `target`'s room."""
        self._controller.join_from_menu(self._call, target)


class Menu(Protocol):
    """The keypad menu (IVR) of a pool gateway: calls to the gateway's own address or to the service user land here.

    Every method runs on the controller's thread and must return quickly (the event loop waits for it).
    """

    def start(self, call: MenuCall) -> None:
        """The call is answered: show/say the menu. Leave by ``call.join(target)`` or ``call.hangup(reason)``."""

    def key(self, key: str) -> None:
        """A keypad key (DTMF: ``0``-``9``, ``*``, ``#``) pressed while the menu runs."""

    def poll(self) -> None:
        """Called on every turn of the event loop (about 5 times a second) while the menu runs: timeouts."""

    def stop(self) -> None:
        """The call left the menu (gone to a room, or closed): stop drawing and speaking."""


class NoMenu:
    """The menu of a gateway without a keypad menu: tells the caller on screen how to reach a meeting, hangs up."""

    REASON = "no keypad menu on this gateway"

    def __init__(self, show: Callable[[str], None] | None = None, delay: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.show = show
        self.delay = delay
        self.clock = clock
        self.call: MenuCall | None = None
        self.deadline = 0.0

    def start(self, call: MenuCall) -> None:
        """Show the message, then hang up after `delay` seconds (see poll)."""
        self.call, self.deadline = call, self.clock() + self.delay
        if self.show is not None:
            self.show("This gateway has no keypad menu. Dial the meeting number as the address: "
                      "sip:MEETING@… (e.g. sip:1234@…).")

    def key(self, key: str) -> None:
        """Keys do nothing here."""

    def poll(self) -> None:
        """Hang up once the caller had time to read the message."""
        if self.call is not None and self.call.active and self.clock() >= self.deadline:
            call, self.call = self.call, None
            call.hangup(self.REASON)

    def stop(self) -> None:
        """Forget the call."""
        self.call = None


class OnDemandRoomSide(Protocol):
    """The parts of the room side that run only during calls (ondemand.py: a pool gateway's browser and camera).
    Both methods run on the room worker."""

    def prepare(self, cancelled: threading.Event) -> None:
        """A call is coming: start what is parked (raise on failure: the join then tries again and reports it)."""

    def release(self) -> None:
        """The call is over and its room left: park what runs on demand."""


class CallWatch(Protocol):
    """What runs beside an answered call besides its routing: the keypad controls in the room and the call's timeouts
    (gateway/incall.py). Every method runs on the controller's thread and must return quickly."""

    def start(self, call: WatchedCall) -> None:
        """The call is answered (keypad menu or room): timers start."""

    def joined(self) -> None:
        """The call entered its room (keypad controls from now on)."""

    def key(self, key: str) -> None:
        """A DTMF key pressed while the call is in its room."""

    def media(self, event: dict[str, Any]) -> None:
        """A baresip media event of the call: CALL_RTPESTAB (first RTP of a stream), CALL_RTCP (with rtcp_stats)."""

    def poll(self) -> None:
        """Called on every turn of the event loop while the call lasts (timeouts, overlay upkeep)."""

    def stop(self) -> None:
        """The call is over: forget it."""


class Notifier(Protocol):
    """Tells the caller why their call ends before the gateway hangs up: a notice on the room display (the video they
    receive) and a spoken prompt (menu.NoticeScreen). Every method runs on the controller's thread and must return
    quickly."""

    def say(self, notice: Notice) -> bool:
        """Start the notice's prompt (it needs no browser); False when nothing could be played."""

    def show(self, notice: Notice) -> None:
        """Draw the notice on the room display; called once the room worker leaves the browser free. May raise."""

    @property
    def speaking(self) -> bool:
        """True while the prompt plays."""

    def stop(self) -> None:
        """The call is over: silence the prompt (the controller's leave blanks the page)."""


@dataclasses.dataclass
class _NoticeRun:
    """The notice of the current call while it is being given: what, the end reason, and its deadlines."""

    notice: Notice
    reason: str  # the call's end reason (technical: the state file's, the operator's)
    earliest: float  # clock() times: hang up once the prompt is over and not before this...
    latest: float  # ...and at this time whatever happens
    shown: bool = False  # show() was tried
    quiet_since: float | None = None  # when the prompt was first seen over


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with an incoming call: ``join`` `target`, open the ``menu``, or ``reject`` it for `reason`."""

    action: str
    target: RoomTarget | None = None
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Routing:
    """What a gateway accepts: a fixed gateway its own room; a pool gateway any meeting its dispatcher knows, and the
    keypad menu when its own user or the service user is dialled."""

    account_user: str
    fixed: RoomTarget | None = None  # the fixed room; None: a pool gateway
    dispatcher: Dispatcher | None = None  # pool: meeting -> room
    service_user: str = "meet"

    @property
    def mode(self) -> str:
        """``fixed`` or ``pool``."""
        return "pool" if self.fixed is None else "fixed"

    def decide(self, dialled: str | None) -> Decision:
        """The decision for a call to user part `dialled` (None: unknown, e.g. callstat failed)."""
        if self.fixed is not None:
            # Any call for us joins the room; another meeting's call (a registrar hunting the pool landed here) is
            # refused before answering, so the registrar tries the next gateway.
            if dialled is None or dialled in (self.account_user, self.fixed.room):
                return Decision("join", self.fixed)
            return Decision("reject", reason=f"not this gateway's meeting: {dialled} (fixed room {self.fixed.room})")
        if dialled is None or dialled in ("", self.account_user, self.service_user):
            return Decision("menu")
        if self.dispatcher is None:
            return Decision("reject", reason=f"unknown meeting {dialled}")
        try:
            return Decision("join", self.dispatcher.resolve(dialled))
        except UnknownMeeting as exc:
            return Decision("reject", reason=str(exc))


def dialled_user(uri: str) -> str | None:
    """The percent-decoded user part of a SIP/SIPS/tel URI (``""`` for ``sip:domain``), None if it is no such URI."""
    uri = uri.strip().strip("<>")
    if uri.lower().startswith("tel:"):
        return urllib.parse.unquote(uri[4:].split(";", 1)[0])
    match = _USER.match(uri)
    if match is None:
        return None
    return urllib.parse.unquote(match["user"] or "")


def parse_callstat(text: str) -> tuple[str | None, str | None]:
    """(dialled user, call id) from baresip 1.0.0's ``callstat`` text (`` local_uri:  <sip:1234@dom;transport=udp>``
    = the To URI, `` af=AF_INET id=2ea0…``); None for what it does not show."""
    text = strip_ansi(text)
    uri = _LOCAL_URI.search(text)
    call_id = _CALL_ID.search(text)
    return (dialled_user(uri["uri"]) if uri else None), (call_id["id"] if call_id else None)


def caller_display_name(event: dict[str, Any], default: str = DEFAULT_DISPLAY_NAME) -> str:
    """The name to show in the room: the caller's SIP display name, else the user part of its URI, else `default`."""
    name = str(event.get("peerdisplayname") or "").strip()
    if not name:
        uri = str(event.get("peeruri") or event.get("param") or "")
        match = re.match(r"^(?:sips?|tel):([^@;>]+)@", uri)
        name = urllib.parse.unquote(match[1]) if match else ""
    name = _CONTROL_CHARS.sub("", name).strip()[:_MAX_NAME]
    return name or default


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _first_line(exc: BaseException | None) -> str:
    """An exception as one line for the state file (Selenium's messages go on with session info and a stack)."""
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class Controller:
    """Turns baresip events into room joins/leaves, menu sessions and registration state (one call per gateway).

    Not thread-safe by design: call :meth:`handle`, :meth:`pump`, :meth:`hangup_and_wait` and :meth:`settle_room`
    from one thread. Only `room`'s join and leave run elsewhere (on `room_worker`).
    """

    def __init__(
        self,
        control: BaresipControl,
        room: RoomSession,
        on_change: Callable[[], None],
        once: bool = False,
        *,
        routing: Routing,
        menu: Menu | None = None,
        watch: CallWatch | None = None,
        notifier: Notifier | None = None,
        default_display_name: str = DEFAULT_DISPLAY_NAME,
        on_dtmf: Callable[[str], None] | None = None,
        room_worker: RoomWorker | None = None,
        join_timeout: float = ROOM_JOIN_TIMEOUT,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        registration_hint: Callable[[], str | None] | None = None,
        on_demand: OnDemandRoomSide | None = None,
        join_on_invite: bool = False,
    ) -> None:
        self.control = control
        self.room = room
        self.on_demand = on_demand  # started per call, parked after it (None: the room side is always running)
        #: a call whose room is known from the dialled address starts its join as soon as it is taken and is
        #: answered once joined (or ANSWER_WAIT s later); the keypad menu still waits for the answer
        self.join_on_invite = join_on_invite
        self.on_change = on_change
        self.once = once
        self.routing = routing
        self.menu: Menu = menu if menu is not None else NoMenu()
        self.watch = watch  # keypad controls and timeouts of answered calls (None: none)
        self._watched: ActiveCall | None = None  # the call the watch was started for
        self.notifier = notifier  # tells the caller why a room cannot be joined (None: hang up at once)
        self._notice: _NoticeRun | None = None  # the notice being given to the current call
        self.default_display_name = default_display_name
        self.on_dtmf = on_dtmf
        self._log = log or get_logger("controller")
        self.clock = clock
        self.registered = False
        self.register_reason: str | None = None  # why the last registration failed, or "no answer ..."
        self.ever_registered = False  # a failure after this is a lost registration
        self._registration_hint = registration_hint  # the registrar's last answer as baresip logged it
        self._unregistered_since = clock()
        self.call: ActiveCall | None = None  # the call this gateway owns (from answer until CALL_CLOSED)
        self.calls = 0  # calls bridged into a room since start
        self.last_end_reason: str | None = None  # why the last call ended (or was refused)
        self.done = False  # once mode: the call is over, the gateway should exit
        self.error: str | None = None  # last failure (room join/leave, lost control connection)
        self.control_lost = False
        self._hangup_reason: str | None = None  # set when we hang up: the end reason CALL_CLOSED will get
        self.room_worker = room_worker if room_worker is not None else RoomWorker()
        self.join_timeout = join_timeout
        self._join_task: RoomTask | None = None  # the current call's join while it runs (None: none, or given up)
        self._join_deadline = 0.0  # clock() time the current join times out
        self._dialogue: JoinDialogue | None = None  # the current join's progress and questions to the caller
        self._dialogue_seen = 0  # its generation last seen: a move restarts the join timeout
        self._menu_waiting = False  # the menu's start waits until the room worker leaves it the browser
        self._early_keys: list[str] = []  # keys typed before the menu showed, given to it once it starts
        self._applying = False

    # views of the current call ------------------------------------------------------------------------------

    @property
    def call_id(self) -> str | None:
        """The id of the call this gateway owns, if any."""
        return self.call.call_id if self.call else None

    @property
    def in_call(self) -> bool:
        """The call is answered AND the browser is in its room."""
        return self.call is not None and self.call.stage == IN_ROOM and self._answered(self.call)

    @property
    def joining(self) -> bool:
        """The call is answered and the browser is entering its room (on the room worker). A join started at the
        INVITE (join_on_invite) counts from the answer on, as the state file tells callers and rooms apart by it."""
        return self.call is not None and self.call.stage == JOINING and self._answered(self.call)

    @staticmethod
    def _answered(call: ActiveCall) -> bool:
        return call.started is not None

    @property
    def in_menu(self) -> bool:
        """The call is answered and in the keypad menu."""
        return self.call is not None and self.call.stage == MENU

    @property
    def notifying(self) -> bool:
        """The room could not be joined and the caller is being told why (the hang-up follows)."""
        return self.call is not None and self.call.stage == NOTIFYING

    @property
    def dialling(self) -> bool:
        """An outgoing call is placed and not answered yet (the gateway is taken: no other call, no other dial)."""
        return self.call is not None and self.call.stage == DIALLING

    @property
    def caller(self) -> str | None:
        """The current caller's display name (once the call is established)."""
        return self.call.caller if self.call and self.call.started else None

    @property
    def caller_uri(self) -> str | None:
        """The current caller's SIP URI (once the call is established)."""
        return self.call.caller_uri if self.call and self.call.started else None

    def call_fields(self) -> dict[str, Any]:
        """What the state file says about the call (state.GatewayStatus fields): the room it is in now, the caller,
        since when, and why the last one ended; and the account's registration (state and the registrar's answer). Nothing but last_end_reason while idle or still answering; an
        outgoing call shows whom it calls from the dial on."""
        call = self.call if self.call is not None and (self.call.started or self.call.dialout) else None
        target = call.target if call is not None and call.stage == IN_ROOM else None
        joining = call.target if call is not None and call.stage == JOINING else None
        return {
            "joining": joining.room if joining else None,
            "join_progress": self._dialogue.status if joining and self._dialogue else None,
            "room": target.room if target else None,
            "call_platform": target.platform if target else None,
            "meeting": call.dialled if call else None,
            "caller": call.caller if call else None,
            "caller_uri": call.caller_uri if call else None,
            "call_started": call.started if call else None,
            "call_direction": call.direction if call else None,
            "last_end_reason": self.last_end_reason,
            "registration": self.registration,
            "registration_reason": self.register_reason,
        }

    @property
    def registration(self) -> str:
        """registered | registering (no answer yet) | failed (the registrar refused, or no answer) | lost (was
        registered, then failed)."""
        if self.registered:
            return "registered"
        if self.register_reason is None:
            return "registering"
        return "lost" if self.ever_registered else "failed"

    # event pump ---------------------------------------------------------------------------------------------

    def pump(self, timeout: float) -> dict[str, Any] | None:
        """Handle the next event if one arrives within `timeout` seconds; return it (None if there was none).
        On every turn: finished room work is applied and the join's timeout checked; the keypad menu and the call
        watch are polled while the room worker leaves them the browser."""
        try:
            event = self.control.events.get(timeout=timeout)
        except queue.Empty:
            event = None
        if event is not None:
            self.handle(event)
        self._apply_room_work()
        call = self.call
        dialogue = self._dialogue
        if call is not None and call.stage == JOINING and dialogue is not None \
                and dialogue.generation != self._dialogue_seen:
            # the driver said what it waits for (a lobby, the moderator) or the caller typed: not stuck; the
            # driver's own options bound each such wait
            self._dialogue_seen = dialogue.generation
            self._join_deadline = self.clock() + self.join_timeout
            self._answer_if_waiting(call, f"the join needs the caller: {dialogue.status}")
            self.on_change()
        if call is not None and call.answer_by is not None and self.clock() >= call.answer_by:
            self._answer_if_waiting(call, f"still joining its room after {ANSWER_WAIT:g} s")
        if call is not None and call.stage == JOINING and self.clock() >= self._join_deadline:
            self._fail_join(call, f"room join timed out after {self.join_timeout:g} s", timed_out=True)
        browser_free = not self.room_worker.busy
        if self.notifying:
            self._notice_turn(browser_free)
        if self.in_menu and browser_free:
            if self._menu_waiting and self.call is not None:
                self._start_menu(self.call)
            else:
                self._menu_step("poll", self.menu.poll)
        if self._watched is not None and self._watched is self.call and browser_free:
            self._watch_step("poll", lambda watch: watch.poll())
        if self.dialling:
            self._check_dial_deadline()
        return event

    def handle(self, event: dict[str, Any]) -> None:
        """Act on one baresip event; unknown events are ignored."""
        kind = str(event.get("type", ""))
        self._adopt_outgoing_id(event)
        handler = self._HANDLERS.get(kind)
        if handler is None:
            if kind not in ("CALL_RTCP", "CALL_LOCAL_SDP", "CALL_REMOTE_SDP", "CALL_RTPESTAB"):
                self._log.debug("event %s ignored", kind)
            return
        handler(self, event)

    # registration -------------------------------------------------------------------------------------------

    def _on_register_ok(self, event: dict[str, Any]) -> None:
        changed = not self.registered or self.register_reason is not None
        self.registered, self.register_reason, self.ever_registered = True, None, True
        if changed:
            self._log.info("registered %s (%s)", event.get("accountaor", ""), event.get("param", ""))
            self.on_change()

    def _on_register_fail(self, event: dict[str, Any]) -> None:
        reason = str(event.get("param") or "registration failed")
        self._log.warning("registration of %s failed: %s", event.get("accountaor", ""), reason)
        if self.registered:
            self._unregistered_since = self.clock()
        self.registered, self.register_reason = False, reason
        self.on_change()

    def _on_unregistering(self, event: dict[str, Any]) -> None:
        if self.registered:
            self.registered = False
            self._unregistered_since = self.clock()
            self.on_change()

    def sync_registration(self) -> bool:
        """Ask baresip (``reginfo``) whether the account is registered; call it right after connecting.

        baresip registers at start-up, before the supervisor connects, so that first REGISTER_OK/REGISTER_FAIL
        event is never seen. reginfo shows ``OK`` or ``ERR`` per account (without the SIP status code): the
        registrar's words come from baresip's log (`registration_hint`). Neither OK nor ERR for REGISTRAR_SILENCE
        seconds is reported as "no answer" (a UDP registrar that is down only times out after 32 s).
        """
        try:
            data = strip_ansi(str(self.control.reginfo().get("data", "")))
        except BaresipControlError as exc:
            self._log.warning("reginfo failed: %s", exc)
            return self.registered
        lines = [line for line in data.splitlines() if "sip" in line]
        registered = any(re.search(r"\bOK\b", line) for line in lines)
        failed = not registered and any(re.search(r"\bERR\b", line) for line in lines)
        if self.registered and not registered:
            self._unregistered_since = self.clock()
        reason = self.register_reason
        if registered:
            reason = None
            self.ever_registered = True
        elif failed:
            hint = self._registration_hint() if self._registration_hint is not None else None
            reason = hint or reason or "registration failed (reginfo: ERR, see the baresip log)"
        elif reason is None and self.clock() - self._unregistered_since >= REGISTRAR_SILENCE:
            reason = f"no answer from the registrar within {REGISTRAR_SILENCE:g} s"
        changed = (registered, reason) != (self.registered, self.register_reason)
        self.registered, self.register_reason = registered, reason
        if changed:
            if reason is not None:
                self._log.warning("registration: %s", reason)
            self.on_change()
        return registered

    # deciding -----------------------------------------------------------------------------------------------

    def _reject(self, call_id: str, why: str) -> None:
        """Refuse a call (before answering: baresip 1.0.0 sends 486 Rejected)."""
        self._log.warning("rejecting call %s: %s", call_id, why)
        try:
            self.control.hangup(call_id)
        except BaresipControlError as exc:
            self._log.warning("could not hang up call %s: %s", call_id, exc)

    def _read_dialled(self, call_id: str) -> str | None:
        """The dialled user part of the current call, from ``callstat``; None when baresip does not tell."""
        try:
            data = str(self.control.callstat().get("data", ""))
        except BaresipControlError as exc:
            self._log.warning("callstat failed: %s", exc)
            return None
        dialled, shown_id = parse_callstat(data)
        if shown_id and call_id and shown_id != call_id:
            # callstat describes baresip's current call: never decide call A on call B's address
            self._log.warning("callstat shows call %s, not %s: dialled address unknown", shown_id, call_id)
            return None
        return dialled

    def resolve_meeting(self, meeting: str, platform: str | None = None) -> RoomTarget:
        """The room of `meeting` by the pool's rules (of `platform` only, when given), checked by its driver;
        UnknownMeeting otherwise."""
        if self.routing.dispatcher is None:
            raise UnknownMeeting(f"unknown meeting {meeting}")
        target = self.routing.dispatcher.resolve(meeting, platform)
        try:
            self.room.check(target)
        except Exception as exc:  # the driver's own refusal (e.g. Janus rooms are numbers) is an unknown meeting
            raise UnknownMeeting(f"unknown meeting {meeting}: {exc}") from None
        return target

    def _take(self, event: dict[str, Any], answered: bool) -> bool:
        """Decide on a new call: take it (True; answered unless it already is) or refuse it (False)."""
        call_id = str(event.get("id") or "")
        dialled = self._read_dialled(call_id)
        decision = self.routing.decide(dialled)
        if decision.action == "join":
            assert decision.target is not None
            try:
                self.room.check(decision.target)
            except Exception as exc:
                decision = Decision("reject", reason=f"unknown meeting {dialled}: {exc}")
        if decision.action == "reject":
            self.last_end_reason = decision.reason
            self._reject(call_id, decision.reason)
            self.on_change()
            return False
        self.call = ActiveCall(call_id=call_id, caller=caller_display_name(event, self.default_display_name),
                               caller_uri=str(event.get("peeruri") or "") or None, dialled=dialled,
                               target=decision.target)
        where = f"room {decision.target.room} ({decision.target.platform})" if decision.target else "the keypad menu"
        self._log.info("call %s from %s to %r: taking it to %s", call_id, self.call.caller_uri, dialled, where)
        self._prepare_room(self.call)  # before the answer: the browser starts while the call is set up
        if not answered:
            if self.join_on_invite and decision.target is not None:
                # the room is known: enter it while the call rings, answer once in it (see the module's docstring);
                # a call that ends unanswered abandons the join (_end_call)
                self.call.answer_by = self.clock() + ANSWER_WAIT
                self._join(self.call, decision.target)
            else:
                self._answer(self.call, "")
        return True

    def _answer(self, call: ActiveCall, why: str) -> None:
        """Send baresip's ``accept`` for the incoming `call` (once; `why` says what ended its wait, for the log)."""
        call.answer_by = None
        if why:
            self._log.info("call %s: answering (%s)", call.call_id, why)
        try:
            self.control.accept()
        except BaresipControlError as exc:
            self._log.warning("could not answer call %s: %s", call.call_id, exc)

    def _answer_if_waiting(self, call: ActiveCall | None, why: str) -> None:
        """Answer `call` now if its answer still waits for its room."""
        if call is not None and call is self.call and call.answer_by is not None and call.started is None:
            self._answer(call, why)

    # calls --------------------------------------------------------------------------------------------------

    def _busy(self, call_id: str) -> None:
        # baresip's call_max_calls=1 answers a second INVITE 486 itself; this is the fallback, and it does not touch
        # last_end_reason: that belongs to the call in progress.
        self._reject(call_id, f"busy with call {self.call_id} (one call per gateway)")

    def _on_call_incoming(self, event: dict[str, Any]) -> None:
        call_id = str(event.get("id") or "")
        if self.call is not None:
            if call_id != self.call.call_id:
                self._busy(call_id)
            return
        self._take(event, answered=False)

    def _on_call_established(self, event: dict[str, Any]) -> None:
        if event.get("direction", "incoming") != "incoming":
            self._on_outgoing_established(event)
            return
        call_id = str(event.get("id") or "")
        if self.call is not None and call_id != self.call.call_id:
            self._busy(call_id)
            return
        if self.call is None and not self._take(event, answered=True):  # an account left in answermode=auto
            return
        call = self.call
        assert call is not None
        if call.started is not None:
            return  # duplicate event for the call already taken
        call.started = _now()
        if event.get("peerdisplayname"):
            call.caller = caller_display_name(event, self.default_display_name)
        call.answer_by = None  # (an account in answermode=auto answered by itself)
        if call.stage != ANSWERING:  # entering its room since the INVITE (join_on_invite), or failed to
            self._log.info("call %s from %s answered; the room join started at the INVITE is %s", call_id,
                           call.caller_uri, call.stage)
            if call.stage in (JOINING, IN_ROOM):
                self._start_watch(call)
            if call.stage == IN_ROOM:  # joined before the answer: the watch hears of it now
                self._watch_step("joined", lambda watch: watch.joined())
            self.on_change()
            return
        if call.target is None:
            call.stage = MENU
            self._log.info("call %s from %s answered; keypad menu", call_id, call.caller_uri)
            self.on_change()
            self._start_watch(call)
            self._menu_waiting = True
            self._early_keys = []
            if not self.room_worker.busy:  # else the last call's leave still has the browser: pump starts the menu
                self._start_menu(call)
            return
        self._start_watch(call)  # the call's timers count from the answer, not from the room's page
        self._join(call, call.target)

    def _join(self, call: ActiveCall, target: RoomTarget) -> None:
        """Start entering `target`'s room on the room worker; pump applies the outcome (_join_done)."""
        call.stage, call.target = JOINING, target
        self._log.info("call %s from %s: joining room %s (%s) as %r", call.call_id, call.caller_uri,
                       target.room, target.platform, call.caller)
        name = call.caller
        self._join_deadline = self.clock() + self.join_timeout
        dialogue = self._dialogue = JoinDialogue()
        self._dialogue_seen = dialogue.generation
        self.on_change()
        self._join_task = self.room_worker.submit(
            JOIN, lambda cancelled: self.room.join(target, name, cancelled, dialogue), owner=call)
        self._apply_room_work()  # (a worker without a thread has finished it already)

    def _join_done(self, task: RoomTask) -> None:
        """A join came back from the room worker: the call is in its room, or is hung up. The join of a call that
        ended meanwhile (or timed out) is only logged: the leave queued behind it tidies the page."""
        call: ActiveCall = task.owner
        if task is not self._join_task:
            outcome = "never started" if task.skipped else f"failed: {_first_line(task.error)}" if task.error \
                else "joined"
            self._log.info("the given-up join of call %s came back after %.1f s (%s): discarded", call.call_id,
                           task.seconds, outcome)
            return
        self._join_task = None
        if task.error is not None:  # whatever the browser raised, the caller must not stay half-bridged
            # (redacted: a room URL in the error may carry a token, and this line goes to the state file)
            self._fail_join(call, f"room join failed: {redact(_first_line(task.error))}", task.error)
            return
        call.stage = IN_ROOM
        self.calls += 1
        self.error = None
        self._log.info("call %s is in room %s (joined in %.1f s)", call.call_id,
                       call.target.room if call.target else "?", task.seconds)
        self.on_change()
        if call.answer_by is not None:  # the answer waited for this: the watch starts once the call is established
            self._answer(call, "in its room")
            return
        self._start_watch(call)
        self._watch_step("joined", lambda watch: watch.joined())
        if call.dialout is not None and call.target is not None:
            call.dialout.final(success(uri=call.caller_uri, callee=call.caller, room=call.target.room,
                                       platform=call.target.platform, call_id=call.call_id))

    def _fail_join(self, call: ActiveCall, error: str, cause: BaseException | None = None,
                   timed_out: bool = False) -> None:
        """The room cannot be joined (the join raised `cause`, or timed out): give the join up, tidy the page, tell
        the caller why when a notifier is wired (the pump hangs up after it), else hang up at once."""
        self.error = error
        call.stage = FAILED
        self._abandon_join()
        self._leave_room(call)  # the half-joined room first; the notice's page replaces it, the call's end blanks it
        if self._watched is call:  # never in a room now: no timeouts, no overlay drawn over the notice
            self._watch_step("stop", lambda watch: watch.stop())
            self._watched = None
        if self.notifier is None:
            self._log.error("%s; hanging up call %s", error, call.call_id)
            self.hang_up(error, call)
            self.on_change()
            return
        self._answer_if_waiting(call, "its room cannot be joined: the caller is told why")
        notice = join_failed(cause, call.target, timed_out)
        self._log.error("%s; telling the caller (%s: %s), then hanging up call %s", error, notice.category,
                        notice.reason, call.call_id)
        call.stage = NOTIFYING
        now = self.clock()
        self._notice = _NoticeRun(notice, error, earliest=now + NOTICE_MIN, latest=now + NOTICE_LIMIT)
        self._notifier_step("say", lambda notifier: notifier.say(notice))
        self.on_change()

    def _notice_turn(self, browser_free: bool) -> None:
        """One turn of the notice: draw it once the browser is free, hang up once it has been said (or at the
        latest)."""
        run, call = self._notice, self.call
        if run is None or call is None:
            return
        if not run.shown and browser_free:
            run.shown = True
            self._notifier_step("show", lambda notifier: notifier.show(run.notice))
        now = self.clock()
        speaking = self._notifier_step("speaking", lambda notifier: notifier.speaking)
        if speaking:
            run.quiet_since = None
        elif run.quiet_since is None:
            run.quiet_since = now
        said = run.quiet_since is not None and now >= max(run.earliest, run.quiet_since + NOTICE_TAIL)
        if said or now >= run.latest:
            self._notice = None  # once: CALL_CLOSED then ends the call with run.reason (and blanks the page)
            self.hang_up(run.reason, call)

    def _notifier_step(self, what: str, step: Callable[[Notifier], Any]) -> Any:
        """Run one notifier callback; a failing one is logged, never breaks the event loop (the hang-up follows
        anyway). None when it failed."""
        if self.notifier is None:
            return None
        try:
            return step(self.notifier)
        except Exception as exc:
            self._log.error("join-failure notice %s failed: %s", what, exc)
            return None

    def _abandon_join(self) -> None:
        """Cancel the running join (skipped if not started; else stopped at its next page step): its result will
        be discarded."""
        task, self._join_task = self._join_task, None
        if task is not None:
            self.room_worker.cancel(task)

    def join_from_menu(self, call: ActiveCall, target: RoomTarget) -> None:
        """MenuCall.join: the menu chose `target` for `call`."""
        if self.call is not call or call.stage != MENU:
            raise RuntimeError(f"call {call.call_id} is no longer in the menu")
        self._stop_menu()
        self._join(call, target)

    def hang_up(self, reason: str, call: ActiveCall | None = None) -> None:
        """End the current call (or `call`, if it is still the current one) with a BYE; its end reason is `reason`."""
        if self.call is None or (call is not None and call is not self.call):
            return
        self._hangup_reason = reason
        self._notice = None  # a notice being given ends with this BYE: never a second one
        self._log.info("hanging up call %s: %s", self.call.call_id, reason)
        try:
            self.control.hangup(self.call.call_id)
        except BaresipControlError as exc:
            self._log.warning("hangup of call %s failed: %s", self.call.call_id, exc)

    def _on_call_closed(self, event: dict[str, Any]) -> None:
        call_id = str(event.get("id") or "")
        if self.call is None or (call_id and call_id != self.call.call_id):
            self._log.info("call %s closed (%s)", call_id or "?", event.get("param", ""))
            return
        param = str(event.get("param") or "")
        self._log.info("call %s closed: %s", call_id, param)
        dialout = self.call.dialout
        if dialout is not None:
            dialout.sip_status = sip_status(param)
        if self._hangup_reason is not None:
            reason = self._hangup_reason
        elif self._notice is not None:  # the join had failed: that stays the reason, for the operator
            reason = f"{self._notice.reason} (the caller hung up during the notice)"
        elif dialout is not None and self.call.stage == DIALLING:
            meaning = status_meaning(dialout.sip_status)
            reason = f"call to {self.call.caller_uri} failed: {param or 'closed'}" + (f" ({meaning})" if meaning else "")
        elif "by peer" in param:
            reason = "callee hung up" if dialout is not None else "caller hung up"
        elif param == "rtp stream error":  # baresip's own rtp_timeout (the watch's backstop) closed it
            reason = "no RTP from the caller (baresip rtp_timeout)"
        else:
            reason = f"call closed: {param}" if param else "call closed"
        self._end_call(reason)

    def _end_call(self, reason: str) -> None:
        """The owned call is over: leave the menu/room, then ready again (or done in once mode)."""
        call = self.call
        if self._watched is not None:
            self._watch_step("stop", lambda watch: watch.stop())
            self._watched = None
        if call is not None and call.stage == MENU and not self._menu_waiting:
            self._stop_menu()
        if call is not None and call.stage == JOINING:
            self._abandon_join()
        if call is not None and call.stage == NOTIFYING:
            self._notice = None
            self._notifier_step("stop", lambda notifier: notifier.stop())
        if call is not None and call.stage in (MENU, JOINING, IN_ROOM, NOTIFYING):
            self._leave_room(call)  # (after a notice: blank its page)
        if call is not None:
            self._release_room(call)
        self._menu_waiting = False
        self.call = None
        self._hangup_reason = None
        self.last_end_reason = reason
        if self.once:
            self.done = True
        self.on_change()
        if call is not None and call.dialout is not None:  # after on_change: the requester hears "ready again"
            call.dialout.final(failure("failed", reason, call.dialout.sip_status, uri=call.caller_uri))

    def _leave_room(self, call: ActiveCall | None = None) -> None:
        """Leave the room (or the page the call showed) on the room worker, after any join still running there."""
        self.room_worker.submit(LEAVE, lambda cancelled: self.room.leave(), owner=call)
        self._apply_room_work()

    def _prepare_room(self, call: ActiveCall) -> None:
        """Start the parked room side on the room worker for `call` (nothing without an on-demand room side)."""
        on_demand = self.on_demand
        if on_demand is not None:
            self.room_worker.submit(PREPARE, on_demand.prepare, owner=call)
            self._apply_room_work()

    def _release_room(self, call: ActiveCall) -> None:
        """Park the room side again once the worker is done with `call` (queued behind its leave)."""
        on_demand = self.on_demand
        if on_demand is not None:
            self.room_worker.submit(RELEASE, lambda cancelled: on_demand.release(), owner=call)
            self._apply_room_work()

    def _apply_room_work(self) -> None:
        """Apply the joins and leaves the room worker finished, in order, on the controller's thread."""
        if self._applying:
            return  # a task applied below submitted another one: the loop below collects it
        self._applying = True
        try:
            while tasks := self.room_worker.finished():
                for task in tasks:
                    if task.kind == JOIN:
                        self._join_done(task)
                    elif task.error is not None:  # the browser may be gone; the supervisor decides what to do
                        self.error = f"room {task.kind} failed: {_first_line(task.error)}"
                        self._log.error(self.error)
        finally:
            self._applying = False

    def settle_room(self, timeout: float) -> bool:
        """Give the room worker up to `timeout` s to finish (e.g. the last call's leave, before the browser is
        stopped), applying what it finishes; True when it is idle. A cancelled join still inside one WebDriver
        command CANCEL_GRACE s after its cancel is not waited for: stopping the browser ends that command."""
        deadline = time.monotonic() + timeout
        while not self.room_worker.wait_idle(min(0.1, max(0.0, deadline - time.monotonic()))):
            current = self.room_worker.current
            if current is not None and current.cancelled_at is not None \
                    and time.monotonic() - current.cancelled_at >= CANCEL_GRACE:
                self._log.warning("the cancelled room %s is stuck in a page step: not waiting for it", current.kind)
                break
            if time.monotonic() >= deadline:
                self._log.warning("room work not finished within %g s", timeout)
                break
        self._apply_room_work()
        return not self.room_worker.busy

    # outgoing calls ------------------------------------------------------------------------------------------

    def dial(self, uri: str, meeting: str | None, report: Callable[[dict[str, Any]], None],
             timeout: float = 60.0) -> None:
        """Call `uri` (already checked: sipuri.check_dial_uri) and take the call into the room when it answers: a
        fixed gateway's own room (`meeting` None or that room), a pool gateway's `meeting` by its dispatch rules.

        `report` gets request_socket progress messages, then exactly one final one: success once in the room;
        ``invalid`` (no such room), ``unavailable`` (not registered, already in a call) at once; ``failed`` once
        the call is over (busy, declined, no answer within `timeout` s, room join failed), with its SIP status.
        """
        if self.call is not None:
            report(failure("unavailable", f"the gateway is in a call with {self.call.caller_uri or self.call.caller}"))
            return
        if not self.registered:
            report(failure("unavailable", "the gateway is not registered at its SIP registrar"))
            return
        try:
            target = self._dial_target(meeting)
        except UnknownMeeting as exc:
            report(failure("invalid", str(exc)))
            return
        try:
            response = self.control.dial(uri)
        except BaresipControlError as exc:
            report(failure("unavailable", f"baresip did not take the dial: {exc}"))
            return
        if not response.get("ok", False):
            report(failure("failed", f"baresip refused to dial {uri}: {strip_ansi(str(response.get('data', '')))}"))
            return
        dialout = Dialout(report, deadline=self.clock() + timeout, timeout=timeout)
        self.call = ActiveCall(call_id="", caller=caller_display_name({"peeruri": uri}, self.default_display_name),
                               caller_uri=uri, dialled=meeting, target=target, stage=DIALLING, dialout=dialout)
        self._prepare_room(self.call)  # the browser starts while the callee's phone rings
        self.error = None
        self._log.info("dialling %s for room %s (%s), %g s to answer", uri, target.room, target.platform, timeout)
        report(progress("dialling", uri=uri, room=target.room, platform=target.platform))
        self.on_change()

    def _dial_target(self, meeting: str | None) -> RoomTarget:
        """The room a dialled call joins; UnknownMeeting (a message for the requester) when there is none."""
        fixed = self.routing.fixed
        if fixed is not None:
            if meeting is not None and meeting != fixed.room:
                raise UnknownMeeting(f"this gateway is fixed in room {fixed.room}: it cannot join {meeting} "
                                     "(leave the room out, or dial from a pool gateway)")
            return fixed
        if meeting is None:
            raise UnknownMeeting("a pool gateway joins the room it is given: name the room (-r ROOM)")
        return dataclasses.replace(self.resolve_meeting(meeting), meeting=meeting)

    def _adopt_outgoing_id(self, event: dict[str, Any]) -> None:
        """baresip's ``dial`` answers without the call's id: the first outgoing event that has one gives it."""
        call = self.call
        if call is not None and call.dialout is not None and not call.call_id \
                and event.get("direction") == "outgoing" and event.get("id"):
            call.call_id = str(event["id"])

    def _own_outgoing(self, event: dict[str, Any]) -> ActiveCall | None:
        call = self.call
        if call is not None and call.dialout is not None and str(event.get("id") or "") == call.call_id:
            return call
        return None

    def _on_call_ringing(self, event: dict[str, Any]) -> None:
        call = self._own_outgoing(event)
        if call is None or call.stage != DIALLING or call.dialout is None:
            return
        stage = "ringing" if event.get("type") == "CALL_RINGING" else "progress"
        self._log.info("call %s to %s: %s", call.call_id, call.caller_uri, stage)
        call.dialout.report(progress(stage, uri=call.caller_uri))

    def _on_outgoing_established(self, event: dict[str, Any]) -> None:
        call = self._own_outgoing(event)
        if call is None:
            self._log.info("outgoing call %s to %s established, not ours: not bridged", event.get("id", ""),
                           event.get("peeruri", ""))
            return
        if call.stage != DIALLING or call.dialout is None or call.target is None:
            return  # duplicate event
        call.started = _now()
        if event.get("peerdisplayname"):
            call.caller = caller_display_name(event, self.default_display_name)
        self._log.info("call %s: %s answered", call.call_id, call.caller_uri)
        call.dialout.report(progress("answered", uri=call.caller_uri, room=call.target.room))
        # success is reported once in the room (_join_done); a failed join hangs up, reported with the call's end
        self._join(call, call.target)

    def _check_dial_deadline(self) -> None:
        """Cancel a call nobody answered in time; end it ourselves if baresip never reports it closed."""
        call = self.call
        assert call is not None and call.dialout is not None
        now = self.clock()
        if now < call.dialout.deadline:
            return
        if self._hangup_reason is None:
            self.hang_up(f"no answer from {call.caller_uri} within {call.dialout.timeout:g} s", call)
        elif now >= call.dialout.deadline + DIAL_CLOSE_GRACE:
            self._log.warning("no CALL_CLOSED for the cancelled call to %s: ending it", call.caller_uri)
            self._end_call(self._hangup_reason)

    # the keypad menu ----------------------------------------------------------------------------------------

    def _menu_step(self, what: str, step: Callable[[], None]) -> None:
        """Run one menu callback; a failing menu hangs up its call rather than breaking the event loop."""
        try:
            step()
        except Exception as exc:
            self._log.error("keypad menu %s failed: %s", what, exc)
            if self.in_menu:
                self.hang_up(f"keypad menu failed: {exc}")

    def _start_menu(self, call: ActiveCall) -> None:
        self._menu_waiting = False
        self._menu_step("start", lambda: self.menu.start(MenuCall(self, call)))
        # a caller who knows the meeting types it at once, while the browser still starts (a pool gateway starts
        # it at the call): those keys are not lost, the menu gets them in order
        keys, self._early_keys = self._early_keys, []
        for key in keys:
            if not self.in_menu:
                break
            self._menu_step("key", lambda key=key: self.menu.key(key))

    def _stop_menu(self) -> None:
        try:
            self.menu.stop()
        except Exception as exc:
            self._log.error("keypad menu stop failed: %s", exc)

    def _on_dtmf(self, event: dict[str, Any]) -> None:
        key = str(event.get("param") or "")
        self._log.info("DTMF %r from %s", key, event.get("peeruri", ""))
        if not key:
            return
        if self.joining and self._dialogue is not None and self._dialogue.take_key(key):
            return  # typed for the join's question (a meeting password)
        if self.in_menu:
            if self._menu_waiting:
                if len(self._early_keys) < MAX_EARLY_KEYS:
                    self._early_keys.append(key)
            else:
                self._menu_step("key", lambda: self.menu.key(key))
            return
        if self.in_call and self._watched is self.call:
            self._watch_step("key", lambda watch: watch.key(key))
            return
        if self.on_dtmf is not None:
            try:
                self.on_dtmf(key)
            except Exception as exc:  # an in-call control must never break the event loop
                self._log.error("DTMF hook failed on %r: %s", key, exc)

    def _on_media(self, event: dict[str, Any]) -> None:
        if self._watched is not None and self._watched is self.call \
                and str(event.get("id") or "") in ("", self._watched.call_id):
            self._watch_step("media", lambda watch: watch.media(event))

    # the call watch (keypad controls in the room, timeouts) --------------------------------------------------

    def _start_watch(self, call: ActiveCall) -> None:
        """Start the watch once per call: at the answer (menu) or when the room is joined, whichever comes first."""
        if self.watch is not None and self._watched is not call:
            self._watched = call
            self._watch_step("start", lambda watch: watch.start(WatchedCall(self, call)))

    def _watch_step(self, what: str, step: Callable[[CallWatch], None]) -> None:
        """Run one watch callback; a failing watch is logged, never breaks the event loop (the call goes on)."""
        if self.watch is None:
            return
        try:
            step(self.watch)
        except Exception as exc:
            self._log.error("call watch %s failed: %s", what, exc)

    def _on_disconnected(self, event: dict[str, Any]) -> None:
        # baresip quit or died: its call and registration are gone with it.
        self.control_lost = True
        self.registered = False
        self.error = "baresip control connection lost"
        if self.call is not None:
            self._end_call(self.error)
        else:
            self.on_change()

    _HANDLERS: dict[str, Callable[["Controller", dict[str, Any]], None]] = {
        "REGISTER_OK": _on_register_ok,
        "REGISTER_FAIL": _on_register_fail,
        "UNREGISTERING": _on_unregistering,
        "CALL_INCOMING": _on_call_incoming,
        "CALL_RINGING": _on_call_ringing,
        "CALL_PROGRESS": _on_call_ringing,
        "CALL_ESTABLISHED": _on_call_established,
        "CALL_CLOSED": _on_call_closed,
        "CALL_DTMF_START": _on_dtmf,
        "CALL_RTCP": _on_media,
        "CALL_RTPESTAB": _on_media,
        DISCONNECTED: _on_disconnected,
    }

    # shutdown -----------------------------------------------------------------------------------------------

    def hangup_and_wait(self, timeout: float, reason: str = "gateway hung up") -> bool:
        """Send BYE for the current call and handle events until its CALL_CLOSED (True) or `timeout` (False).

        On timeout the room is left anyway, so a stopping gateway never stays in the room.
        """
        call = self.call
        if call is None:
            return True
        self.hang_up(reason)
        deadline = time.monotonic() + timeout
        while self.call is call:  # (an outgoing call may learn its id meanwhile: follow the call, not the id)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._log.warning("no CALL_CLOSED for call %s within %gs", call.call_id, timeout)
                self._end_call(reason)
                return False
            self.pump(min(remaining, 0.5))
        return True
