"""The accounts file (the seed's baresip ``accounts`` format, one line per gateway) -> Account records.

A line looks like ``["Name"] <sip:user@domain;transport=tcp>;auth_pass=secret;answermode=auto;...``.
Values of any parameter whose name contains ``pass`` are secrets: they are kept only in ``Account.line`` (which goes
to the container as a file) and shown as ``***`` everywhere else.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from .errors import ConfigError, FileLineError
from .redaction import MASK, add_secret, is_secret_key, redact
from .sipuri import account_identity

_LINE = re.compile(r'^(?:"(?P<display>[^"]*)"\s*)?<(?P<uri>[^<>]+)>(?P<params>.*)$')
_URI = re.compile(r"^(?P<scheme>sips?):(?P<user>[^@:;]+)(?::(?P<password>[^@;]*))?@(?P<host>[^;?>]+)(?P<uriparams>.*)$")
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_KEY_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*")
_HOST_LIKE = re.compile(r"(?:[A-Za-z0-9.-]{1,64}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,6})?")
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9]{1,10}")
TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")


@dataclasses.dataclass(frozen=True)
class Account:
    """One SIP account of the accounts file."""

    line_no: int
    user: str
    domain: str  # host[:port]
    scheme: str
    transport: str
    uri_params: dict[str, str]
    params: dict[str, str]  # account parameters after the <uri>; secrets included, never print this dict raw
    display_name: str | None = None
    line: str = dataclasses.field(default="", repr=False)  # the full line with secrets: goes to the container only

    @property
    def sip_uri(self) -> str:
        """``sip:user@domain``: the address a caller dials, and the account's identity (label value)."""
        return f"{self.scheme}:{self.user}@{self.domain}"

    @property
    def redacted_params(self) -> dict[str, str]:
        """The account parameters with secret values masked."""
        return {k: (MASK if is_secret_key(k) else v) for k, v in self.params.items()}

    def redacted_line(self) -> str:
        """The account line as it may be shown to a human: each secret parameter's whole value masked (a value ends
        only at ';' here, so a password with spaces or quotes is masked whole), then the general redaction."""
        head, bracket, params = self.line.partition(">")  # the URI holds no '>': the first one ends it
        if not bracket:
            return redact(self.line)
        parts = []
        for part in params.split(";"):
            key, sep, _value = part.partition("=")
            parts.append(f"{key}{sep}{MASK}" if sep and is_secret_key(key.strip()) else part)
        return redact(head + bracket + ";".join(parts))

    def __str__(self) -> str:
        return self.redacted_line()

    def __repr__(self) -> str:
        # the dataclass repr would print `params` (and its auth_pass) into tracebacks and debug output
        uri_params = {k: (MASK if is_secret_key(k) else v) for k, v in self.uri_params.items()}
        return (f"Account(line_no={self.line_no}, sip_uri={self.sip_uri!r}, transport={self.transport!r}, "
                f"uri_params={uri_params!r}, params={self.redacted_params!r}, display_name={self.display_name!r})")


def _echo(value: str, looks_like: re.Pattern[str]) -> str:
    """`value` quoted for an error message when it has the shape expected there (a host, a short token), else a
    placeholder: a mistyped line may have run a password into it."""
    return repr(value) if looks_like.fullmatch(value) else "(not shown: it holds characters that do not belong there)"


def _split_params(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def _parse_params(parts: list[str], where: tuple[str, int], what: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for index, part in enumerate(parts, start=1):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not _KEY.match(key):
            # never echo the text: a typo like `auth_pass:secret` or `;secret` would print the password
            name = _KEY_PREFIX.match(part)
            # a secret-looking name may have the password run into it (`auth_passHunter2`), and a password holding
            # ';' continues as the next "parameter" (`auth_pass=Hunter;2x:y`): then only its number
            after_secret = index > 1 and is_secret_key(parts[index - 2].partition("=")[0].strip())
            shown = f"starting {name.group(0)!r}" if name and not is_secret_key(name.group(0)) and not after_secret \
                else f"number {index}"
            raise FileLineError(where[0], where[1], f"malformed {what} ({shown}): expected name=value")
        if key in params:
            raise FileLineError(where[0], where[1], f"{what} {key!r} given twice")
        params[key] = value.strip() if sep else ""
    return params


def parse_account_line(text: str, path: str = "<accounts>", line_no: int = 1) -> Account:
    """Parse one account line; raise FileLineError naming `path` and `line_no` if it is malformed."""
    where = (path, line_no)
    stripped = text.strip()
    match = _LINE.match(stripped)
    if not match:
        raise FileLineError(path, line_no, "expected <sip:user@domain>;param=value;... (the URI in angle brackets)")
    uri = _URI.match(match.group("uri").strip())
    if not uri:
        raise FileLineError(path, line_no, "the URI must look like sip:user@domain (or sips:)")
    if uri.group("password") is not None:
        # baresip reads auth_pass; a password in the URI would end up in labels and status output
        raise FileLineError(path, line_no, "put the password in ;auth_pass=..., not in the URI (user:password@)")
    host = uri.group("host").strip()
    if not _HOST.match(host):
        raise FileLineError(path, line_no, f"invalid SIP domain {_echo(host, _HOST_LIKE)}")
    uri_params = _parse_params(_split_params(uri.group("uriparams")), where, "URI parameter")
    rest = match.group("params").strip()
    if rest and not rest.startswith(";"):
        raise FileLineError(path, line_no, "account parameters after the <URI> must start with ';'")
    params = _parse_params(_split_params(rest), where, "account parameter")
    for key, value in params.items():  # masked wherever it turns up later, even without its key
        if is_secret_key(key):
            add_secret(value.strip('"'))
    transport = uri_params.get("transport", "udp").lower()
    if transport not in TRANSPORTS:
        raise FileLineError(path, line_no, f"unknown transport {_echo(transport, _TOKEN_LIKE)} (one of {', '.join(TRANSPORTS)})")
    return Account(
        line_no=line_no,
        user=uri.group("user"),
        domain=host.lower(),
        scheme=uri.group("scheme"),
        transport=transport,
        uri_params=uri_params,
        params=params,
        display_name=match.group("display"),
        line=stripped,
    )


def parse_accounts(text: str, path: str = "<accounts>") -> list[Account]:
    """Parse a whole accounts file: ``#`` comments and blank lines ignored, one account per remaining line.

    The same account twice is an error (two gateways cannot register the same account), however it is spelled:
    ``sip:x@example.org`` and ``sip:x@Example.org:5060`` are one (sipuri.account_identity).
    """
    accounts: list[Account] = []
    seen: dict[str, int] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        account = parse_account_line(raw, path, line_no)
        identity = account_identity(account.sip_uri)
        if identity in seen:
            raise FileLineError(path, line_no, f"{account.sip_uri} is already used on line {seen[identity]}")
        seen[identity] = line_no
        accounts.append(account)
    return accounts


def load_accounts(path: str | Path) -> list[Account]:
    """Read and parse the accounts file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"accounts file {path} does not exist (copy baresip/accounts.example there, one line per gateway, "
            "or pass --accounts FILE)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read accounts file {path}: {exc}") from exc
    return parse_accounts(text, str(path))
