"""Room options on their way from the operator to the driver: ``--room-option KEY=VALUE`` and ``room_options:``
(plain), ``--room-secret KEY=FILE`` and ``room_secrets:`` (secret: a BigBlueButton shared secret, a room password, an
API secret).

Plain options travel to the gateway in its environment (``SIPMEDIAGW_ROOM_OPTIONS``, JSON). Secret ones are read from
their files on the host at launch and travel with the SIP account, in the same secret file (tmpfs, mode 0400, a
Docker secret on a swarm), one ``room-secret KEY=VALUE`` line each after the account line: never on a command line,
in the environment, a label or a log. The driver declares which of its options are secret (sipmediagw.room.Option),
and each path refuses the other kind, so a secret cannot slip onto the plain one by mistake.

Stdlib only below the host-side checks: the gateway reads the secret lines with :func:`parse_secret_lines`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, ValidationError
from .redaction import add_secret

ENV_VAR = "SIPMEDIAGW_ROOM_OPTIONS"
SECRET_LINE = "room-secret "  # prefix of a secret option's line in the account secret file
KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_SECRET_BYTES = 4096  # a shared secret, password or key is a line, not a file's worth
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    """``KEY=VALUE`` of a repeatable flag (`flag` names it in errors) -> (key, value)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not KEY.match(key):
        raise ValidationError(f"{flag}: expected KEY=VALUE with KEY in lowercase letters, digits and '_', "
                              f"got {key or text!r}")
    return key, value


def check_key(key: Any, where: str) -> str:
    """An option name from a settings file or the environment."""
    if not isinstance(key, str) or not KEY.match(key):
        raise ValidationError(f"{where}: invalid room option name {key!r} (lowercase letters, digits and '_')")
    return key


def read_secret_file(key: str, path: str | os.PathLike[str]) -> str:
    """The value of secret option `key` from `path`: its first line, without the line end. Errors name the option
    and the file, never the content."""
    where = f"room secret {key} ({path})"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ValidationError(f"{where}: cannot read the file: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ValidationError(f"{where}: the file is larger than {MAX_SECRET_BYTES} bytes: not a secret value")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{where}: the file is not UTF-8 text") from None
    lines = text.splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise ValidationError(f"{where}: the file is empty")
    if any(line.strip() for line in lines[1:]):
        raise ValidationError(f"{where}: the file has more than one line (one value per file)")
    if _CONTROL.search(value):
        raise ValidationError(f"{where}: the value has control characters")
    add_secret(value)
    return value


def check_against_driver(driver: Any, plain: Mapping[str, Any], secret: Mapping[str, str]) -> dict[str, Any]:
    """Both kinds checked by the driver class `driver` (sipmediagw.room.Room): each on its own path, typed and in
    range; the merged options as the driver will get them."""
    specs = driver.option_specs()
    for key in plain:
        spec = specs.get(key)
        if spec is not None and spec.secret:
            raise ValidationError(f"{driver.platform}: room option {key!r} is secret, so it comes from a file: "
                                  "pass --room-secret KEY=FILE, or list it under room_secrets in the settings (a "
                                  "command line, the environment and the settings file are readable by others)")
    for key in secret:
        spec = specs.get(key)
        if spec is not None and not spec.secret:
            raise ValidationError(f"{driver.platform}: room option {key!r} is not secret, so it is plain: pass it with "
                                  "--room-option KEY=VALUE, or under room_options in the settings")
    return driver.check_options({**plain, **secret})


def to_env(plain: Mapping[str, Any]) -> str:
    """The plain options as the gateway's environment carries them."""
    return json.dumps(dict(plain), separators=(",", ":"), sort_keys=True)


def from_env(text: str) -> dict[str, Any]:
    """The plain options of ``SIPMEDIAGW_ROOM_OPTIONS``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_VAR}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{ENV_VAR}: expected a JSON object of option: value")
    return {check_key(key, ENV_VAR): item for key, item in value.items()}


def secret_lines(secret: Mapping[str, str]) -> str:
    """The secret options as lines of the account secret file (after the account line)."""
    return "".join(f"{SECRET_LINE}{key}={value}\n" for key, value in sorted(secret.items()))


def parse_secret_line(line: str, where: str) -> tuple[str, str] | None:
    """(key, value) of a ``room-secret KEY=VALUE`` line, None for any other line; the value is registered with the
    log masker. Errors name `where` (file:line), never the value."""
    if not line.startswith(SECRET_LINE):
        return None
    key, sep, value = line[len(SECRET_LINE):].partition("=")
    if not sep or not KEY.match(key) or not value:
        raise ConfigError(f"{where}: expected room-secret KEY=VALUE")
    add_secret(value)
    return key, value
