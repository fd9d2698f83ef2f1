"""What the caller is told when their meeting cannot be joined: a screen and a spoken prompt, before the hang-up.

A room system's screen and loudspeaker are all its user has: a bare BYE tells them nothing. When the room cannot be
joined (its server does not answer, its page does not load, the join takes too long), the controller asks its
Notifier (menu.py: the keypad menu's screen and prompt player) to show a :class:`Notice` and say its prompt, then
hangs up. The notice speaks the caller's language: the technical error is mapped to one of a few plain reasons
(:data:`REASONS`); a short code for whoever the caller reports it to goes on the bottom line, redacted
(sipmediagw.redaction) like everything derived from an error. The state file keeps the technical reason.

Stdlib only (it runs inside the gateway container); nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from ..dispatch import RoomTarget
from ..redaction import redact
from ..room import AUTH_REQUIRED, LOBBY, NOT_FOUND, NOT_STARTED, WRONG_PASSWORD, RoomRefused
from .ivr import NOTICE, MenuView

#: prompt id of the spoken notice (prompts.SPOKEN has its text; scripts/make-prompts makes the WAV)
MEETING_UNAVAILABLE = "meeting_unavailable"

HEADLINE = "This meeting cannot be joined right now"
CLOSING = "The call ends now. Please try again later."

# reason categories (Notice.category)
SERVER = "server"  # the room's server did not answer (DNS, refused, unreachable, reset)
INSECURE = "insecure"  # it answered, but its certificate or TLS was refused
PAGE = "page"  # the room's page did not load in time
TIMEOUT = "timeout"  # the page loaded, the join did not finish in time
OTHER = "other"

#: what the screen says for each category: the caller's terms, no jargon
REASONS = {
    SERVER: "The meeting's server did not answer.",
    INSECURE: "The meeting's server could not be reached securely.",
    PAGE: "The meeting's page did not load.",
    TIMEOUT: "Joining the meeting took too long.",
    OTHER: "The meeting could not be opened.",
    # what the platform answered (sipmediagw.room.RoomRefused, raised by the drivers)
    NOT_FOUND: "This meeting does not exist.",
    NOT_STARTED: "The meeting has not started yet.",
    LOBBY: "Nobody let you into the meeting.",
    WRONG_PASSWORD: "The meeting's password was not accepted.",
    AUTH_REQUIRED: "This meeting needs a sign-in the gateway does not have.",
}

MAX_DETAIL = 48  # characters of the code line (about one line of the page's hint; a longer one wraps)
MAX_MEETING = 40

_NET_ERROR = re.compile(r"\bnet::(ERR_[A-Z0-9_]+)")
_INSECURE_NET = re.compile(r"^ERR_(?:CERT_|SSL_|BAD_SSL_)")
# chromedriver's page-load timeout ("timeout: Timed out receiving message from renderer: 30.000"; "page load" in
# other versions' wording)
_PAGE_LOAD = re.compile(r"receiving message from renderer|page load", re.IGNORECASE)
_SELENIUM_PREFIX = re.compile(r"^(?:Message:\s*)?(?:unknown error:\s*)?")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>()]+")


@dataclasses.dataclass(frozen=True)
class Notice:
    """One notice: the reason category, what the screen says, and the prompt said."""

    category: str
    reason: str  # one line in the caller's terms (REASONS)
    detail: str = ""  # a short, redacted code for support ("" when none)
    meeting: str = ""  # the meeting the caller tried (as dialled), "" when unknown
    prompt: tuple[str, ...] = (MEETING_UNAVAILABLE,)

    def view(self) -> MenuView:
        """The notice as a menu screen view (menu.html draws it; the marker band says stage ``notice``)."""
        hint = CLOSING + (f"\nCode: {self.detail}" if self.detail else "")
        return MenuView(NOTICE, title=f"Meeting {self.meeting}" if self.meeting else "", prompt=HEADLINE,
                        error=self.reason, hint=hint)


def category(error: BaseException | None, timed_out: bool = False) -> str:
    """The plain reason category of a failed join: `error` is what the join raised (None with `timed_out`: the
    controller's own join timeout fired)."""
    if timed_out:
        return TIMEOUT
    if error is None:
        return OTHER
    if isinstance(error, RoomRefused):
        return error.reason
    text = str(error)
    net = _NET_ERROR.search(text)
    if net:
        return INSECURE if _INSECURE_NET.match(net[1]) else SERVER
    if _PAGE_LOAD.search(text):
        return PAGE
    # selenium's TimeoutException without a page load: a driver's wait for its page (joined, button shown) ran out
    if type(error).__name__ == "TimeoutException":
        return TIMEOUT
    return OTHER


def detail(error: BaseException | None) -> str:
    """A short code of `error` for whoever the caller reports it to: Chromium's ``net::ERR_...`` when there is one,
    else the error's first line, redacted, each URL shown as its host only, cut to MAX_DETAIL characters ("" for
    none)."""
    if error is None:
        return ""
    text = _URL.sub(_host_only, redact(str(error)))
    net = _NET_ERROR.search(text)
    if net:
        return net[0]
    lines = text.strip().splitlines()
    line = _SELENIUM_PREFIX.sub("", lines[0].strip()) if lines else ""
    line = line or type(error).__name__
    return line if len(line) <= MAX_DETAIL else line[:MAX_DETAIL - 1].rstrip() + "\u2026"


def _host_only(url: re.Match[str]) -> str:
    """A URL in an error as its host: no user, path or query (where tokens and room secrets travel)."""
    try:
        host = urllib.parse.urlsplit(url[0]).hostname
    except ValueError:
        host = None
    return host or "(address)"


def join_failed(error: BaseException | None, target: RoomTarget | None = None, timed_out: bool = False) -> Notice:
    """The notice of a join of `target` that raised `error` (None and `timed_out`: it outlived the join timeout)."""
    kind = category(error, timed_out)
    meeting = (target.meeting or target.room) if target is not None else ""
    meeting = redact(meeting)[:MAX_MEETING]
    return Notice(kind, REASONS[kind], detail(error) if not timed_out else "", meeting)
