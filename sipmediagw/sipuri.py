"""SIP addresses a gateway may dial, and the SIP status of a failed call: one home for both sides.

The host validates ``sipmediagw dial``'s URI before it touches Docker; the gateway validates it again before handing
it to baresip, because baresip 1.0.0 "completes" what it does not understand (measured: ``dial not a uri`` placed a
call to ``sip:not a uri@<its domain>`` that never ended, ``dial sip:`` a call to ``sip:@<domain>``). Stdlib only:
this module runs inside the container too.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import ValidationError

MAX_URI = 256
# RFC 3261 user part: unreserved, escaped and user-unreserved characters, without ";", "?" and "/" (they would
# start URI parameters or headers in baresip's parser).
_USER = r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])"
_PARAM = r";[A-Za-z0-9\-_.!~*'%]+(?:=[A-Za-z0-9\-_.!~*'%\[\]/:&+$]+)?"
_DIAL_URI = re.compile(rf"(?P<scheme>sips?):(?:(?P<user>{_USER})@)?(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?"
                       rf"(?P<params>(?:{_PARAM})*)", re.IGNORECASE)
_STATUS = re.compile(r"^\s*(?P<code>[1-6][0-9]{2})(?:\s+(?P<reason>[^\r\n]*))?$")

#: what a final SIP status means to the person who asked for the call
STATUS_MEANINGS = {
    "404": "not found", "604": "not found", "410": "gone", "484": "address incomplete",
    "408": "no answer", "480": "unavailable", "487": "cancelled",
    "486": "busy", "600": "busy", "603": "declined",
    "488": "no common media", "606": "no common media", "403": "forbidden", "401": "unauthorized",
    "407": "unauthorized",
}


def check_dial_uri(uri: str) -> str:
    """`uri` if it is a complete ``sip:``/``sips:`` URI (user optional, host required, no headers, no display name,
    no spaces); ValidationError saying what is expected otherwise."""
    text = uri if isinstance(uri, str) else ""
    shown = text if len(text) <= 80 else text[:77] + "..."
    expected = "expected sip:user@host[:port][;param=value] (e.g. sip:room-system@example.org)"
    if not text or len(text) > MAX_URI:
        raise ValidationError(f"invalid SIP URI {shown!r}: {expected}, at most {MAX_URI} characters")
    match = _DIAL_URI.fullmatch(text)
    if match is None:
        hint = " (add the scheme)" if "@" in text and ":" not in text.split("@", 1)[0] else ""
        raise ValidationError(f"invalid SIP URI {shown!r}{hint}: {expected}")
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValidationError(f"invalid SIP URI {shown!r}: {host} is no IPv6 address") from None
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        raise ValidationError(f"invalid SIP URI {shown!r}: port {match['port']} is not 1-65535")
    return text


def sip_status(text: str | None) -> str | None:
    """``"486 Busy Here"`` from a CALL_CLOSED parameter that is a SIP status line; None for baresip's own reasons
    (``Connection reset by peer``, ``Request timeout``...)."""
    match = _STATUS.match(text or "")
    if match is None:
        return None
    return f"{match['code']} {match['reason'].strip()}".strip() if match["reason"] else match["code"]


def status_meaning(status: str | None) -> str | None:
    """``busy`` for ``486 Busy Here``, ``declined`` for ``603 Decline``...; None when the code says nothing more."""
    if not status:
        return None
    return STATUS_MEANINGS.get(status[:3])


_DEFAULT_PORTS = {"sip": "5060", "sips": "5061"}


def account_identity(uri: str) -> str:
    """What makes two account URIs the same account: ``sip:x@Example.org``, ``sip:x@example.org:5060`` and
    ``sip:x@example.org;transport=udp`` are one (scheme and host case-insensitive, the default port implied, URI
    parameters irrelevant); the user part stays case-sensitive (RFC 3261 19.1.4)."""
    text = uri.strip().strip("<>")
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    user, at, hostport = rest.rpartition("@")
    if hostport.startswith("["):  # IPv6 reference: [::1]:5060
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
        host = f"[{host.lower()}]"
    else:
        host, _, port = hostport.partition(":")
        host = host.lower().rstrip(".")
    if port == _DEFAULT_PORTS.get(scheme):
        port = ""
    return f"{scheme}:{user}{at}{host}" + (f":{port}" if port else "")
