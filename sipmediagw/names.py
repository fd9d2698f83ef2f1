"""Validation of gateway and room names, and the gateway -> container name mapping (DNS-safe and injective)."""

from __future__ import annotations

import re

from .errors import ValidationError

CONTAINER_PREFIX = "sipmediagw-"
#: what an operator may call a gateway (the seed's example is ``my_gateway``)
GATEWAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
#: a gateway name already in canonical DNS form maps to the container name unchanged (after the prefix)
_CANONICAL = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
#: room names end up in a URL path and in labels: no whitespace, slashes, query/fragment marks or control chars
ROOM_NAME = re.compile(r"^[\w][\w.~@+-]{0,127}$")


def validate_gateway_name(name: str) -> str:
    """Return `name` if it is an acceptable gateway name, else raise ValidationError saying what is allowed."""
    if not GATEWAY_NAME.fullmatch(name or ""):
        raise ValidationError(
            f"invalid gateway name {name!r}: use 1-40 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return name


def validate_room_name(room: str) -> str:
    """Return `room` if it is an acceptable room name, else raise ValidationError."""
    if not ROOM_NAME.fullmatch(room or ""):
        raise ValidationError(
            f"invalid room name {room!r}: use 1-128 letters, digits, '.', '_', '~', '@', '+' or '-' "
            "(no spaces or slashes), starting with a letter or digit"
        )
    return room


def container_name(gateway: str) -> str:
    """The Docker container name of `gateway`: DNS-safe ([a-z0-9-]) and injective.

    Canonical names (lowercase words joined by single hyphens) are kept as they are: ``room-1`` ->
    ``sipmediagw-room-1``. Any other name is escaped behind a ``x--`` marker, each character outside [a-z0-9] as
    ``-hh`` (hex): ``My_GW`` -> ``sipmediagw-x---4dy-5f-47-57``. Canonical names never contain ``--`` and escaped
    ones always do, and the escape code is prefix-free, so two different names cannot meet.
    """
    validate_gateway_name(gateway)
    if _CANONICAL.fullmatch(gateway):
        return CONTAINER_PREFIX + gateway
    escaped = "".join(c if c.isascii() and (c.islower() or c.isdigit()) else f"-{ord(c):02x}" for c in gateway)
    return CONTAINER_PREFIX + "x--" + escaped
