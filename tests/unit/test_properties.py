"""Property-based tests (hypothesis) of everything that reads text from outside: the accounts file, account
identities, base URLs and other user-supplied names, the gateway state document, the netstring stream of baresip.

Each property says what must hold for *any* input (never an exception but the project's own error type, round trips,
no secret in what is shown); a few `@example`s pin inputs that once broke a property, so that proof is not left to
the luck of the draw.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import string
import tempfile
import time
import types
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from sipmediagw.accounts import TRANSPORTS, Account, parse_account_line, parse_accounts
from sipmediagw.dispatch import check_meeting
from sipmediagw.errors import ConfigError, FileLineError, ValidationError
from sipmediagw.gateway.netstring import NetstringDecoder, encode
from sipmediagw.launcher import normalise_base_url
from sipmediagw.names import container_name, validate_gateway_name, validate_room_name
from sipmediagw.room import check_base_url, url_path_segment
from sipmediagw.sipuri import MAX_URI, account_identity, check_dial_uri
from sipmediagw.state import (STATE_FILE_NAME, ComponentState, ComponentStatus, GatewayState, GatewayStatus,
                              last_state_in_log, parse_state, read_state, state_line_payload, write_state)

PROPS = settings(max_examples=200, deadline=None)
ALNUM = string.ascii_letters + string.digits
PATH = "/etc/sipmediagw/accounts"

# ---------------------------------------------------------------------------------------------------------------
# the accounts file
# ---------------------------------------------------------------------------------------------------------------

# (built from sampled_from/text rather than from_regex: generation is most of these tests' run time)
LABELS = st.text(alphabet=ALNUM, min_size=1, max_size=6) | st.sampled_from(["xn--bcher-kva", "my-host", "a-1"])
HOSTNAMES = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
HOSTS = st.one_of(HOSTNAMES, st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]"))
USERS = st.text(alphabet=ALNUM + "-_.!~*'()&=+$,", min_size=1, max_size=10)
#: parameter names that are not secrets (nor `transport`, which the URI parameters give a meaning)
KEYS = st.builds(str.__add__, st.sampled_from(string.ascii_letters), st.text(alphabet=ALNUM + "_-", max_size=8)) \
    .filter(lambda k: "pass" not in k.lower() and k != "transport")
#: names of secret parameters: any name with "pass" in it, whatever its case
SECRET_KEYS = st.builds(lambda head, word, tail: head + word + tail,
                        st.sampled_from(["", "auth_", "stun", "x-", "My", "turn_"]),
                        st.sampled_from(["pass", "PASS", "Pass"]), st.sampled_from(["", "word", "_2", "-x", "Phrase"]))
SECRETS = st.text(alphabet=ALNUM, min_size=4, max_size=12)
URI_VALUES = st.text(alphabet=ALNUM + ":._/-+@=,", max_size=12)
VALUES = st.text(alphabet=ALNUM + ":._/-+@=,<>", max_size=12)
WS = st.sampled_from(["", "", "", " ", "  ", "\t"])


@st.composite
def account_cases(draw, with_secrets: bool = False, secret_values: st.SearchStrategy[str] = SECRETS,
                  secrets_in_uri: bool = True) -> types.SimpleNamespace:
    """A valid account line, what parsing it must give, and its text as segments: (text, protected) where protected
    marks a secret's key or value (mutations leave those alone so the secret stays a secret)."""
    segments: list[tuple[str, bool]] = []
    spacing = itertools.cycle(draw(st.sampled_from([0, 0, 2**64 - 1]) | st.integers(0, 2**64 - 1)).to_bytes(8, "big"))

    def ws() -> str:  # where whitespace may go, one draw for the whole line (generation is the cost here)
        return ("", "", "", "", " ", "  ", "\t", " \t")[next(spacing) % 8]

    def add(text: str, protected: bool = False) -> None:
        segments.append((text, protected))

    def add_params(items: list[tuple[str, str, bool]]) -> None:
        for key, value, secret in items:
            add(";" + ws())
            add(key, secret)
            if value or secret or next(spacing) % 2:  # an empty value may be written `key=` or `key`
                add(ws() + "=" + ws())
                add(value, secret)
            add(ws())

    add(ws())
    display = draw(st.none() | st.text(alphabet=ALNUM + " -_.()", max_size=12))
    if display is not None:
        add(f'"{display}"' + ws())
    scheme = draw(st.sampled_from(["sip", "sips"]))
    user, host = draw(USERS), draw(HOSTS)
    port = draw(st.none() | st.integers(min_value=1, max_value=65535))
    domain = host if port is None else f"{host}:{port}"
    add(f"<{scheme}:{user}@{domain}")
    uri_items = [(k, v, False) for k, v in draw(st.dictionaries(KEYS, URI_VALUES, max_size=3)).items()]
    transport = draw(st.none() | st.sampled_from(TRANSPORTS + ("TCP", "Tls", "WSS")))
    if transport is not None:
        uri_items.append(("transport", transport, False))
    items = [(k, v, False) for k, v in draw(st.dictionaries(KEYS, VALUES, max_size=4)).items()]
    secrets: list[str] = []
    if with_secrets:
        for key, value in draw(st.dictionaries(SECRET_KEYS, secret_values, min_size=1, max_size=3)).items():
            in_uri = secrets_in_uri and draw(st.integers(0, 3)) == 0  # a misplaced '>' puts it in the URI
            (uri_items if in_uri else items).append((key, value, True))
            secrets.append(value)
    uri_items, items = draw(st.permutations(uri_items)), draw(st.permutations(items))
    add_params(uri_items)
    add(ws() + ">")
    add_params(items)
    add(ws())
    line = "".join(text for text, _ in segments)
    return types.SimpleNamespace(
        line=line, segments=segments, secrets=secrets, display=display, scheme=scheme, user=user, host=host,
        port=port, domain=domain.lower(), transport=(transport or "udp").lower(),
        uri_params={k: v for k, v, _ in uri_items}, params={k: v for k, v, _ in items})


MUTATION_CHARS = st.sampled_from(list(';:=,<>" \t&?@#/()\\\'') + ["a", "7", "pass"])


@st.composite
def mutated(draw, case: types.SimpleNamespace) -> types.SimpleNamespace:
    """`case` with 1-3 typos (a character replaced, deleted or inserted) outside its secrets' keys and values, most
    of them near a secret: the separators a hand-edited file gets wrong (`auth_pass:x`, `,auth_pass=x`...)."""
    chars = [c for text, _ in case.segments for c in text]
    protected = [p for text, p in case.segments for _ in text]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "delete", "insert"]))
        if op == "insert":
            spots = [i for i in range(len(chars) + 1) if not (0 < i < len(chars) and protected[i - 1] and protected[i])]
        else:
            spots = [i for i in range(len(chars)) if not protected[i]]
        near = [i for i in spots if any(protected[j] for j in range(max(0, i - 2), min(len(chars), i + 2)))]
        if not spots:
            continue
        spot = draw(st.sampled_from(near if near and draw(st.booleans()) else spots))
        new = draw(MUTATION_CHARS)
        if op == "replace":
            chars[spot:spot + 1], protected[spot:spot + 1] = list(new), [False] * len(new)
        elif op == "delete":
            del chars[spot], protected[spot]
        else:
            chars[spot:spot], protected[spot:spot] = list(new), [False] * len(new)
    return types.SimpleNamespace(line="".join(chars), secrets=case.secrets)


def shows(secret: str, text: str) -> bool:
    """Case-insensitive: an echo lowercased on the way (domain, transport) shows the secret all the same."""
    return secret.lower() in text.lower()


def occurrences(secret: str, text: str) -> int:
    return text.lower().count(secret.lower())


def placeholder_for(secret: str) -> str:
    """An alphanumeric stand-in of the same length (so the line parses the same way) that does not contain it."""
    letter = next(c for c in "QZXJKWVYBFGHMPUDLCTRNOIEAS" if c.lower() not in secret.lower())
    return letter * len(secret)


def with_placeholders(line: str, secrets: list[str]) -> str:
    for secret in secrets:
        line = line.replace(secret, placeholder_for(secret))
    return line


def shown_forms(account: Account) -> dict[str, str]:
    """Every way an Account gets printed."""
    return {"str": str(account), "repr": repr(account), "format": f"{account}", "in a list": repr([account]),
            "redacted_line": account.redacted_line(), "redacted_params": repr(account.redacted_params),
            "sip_uri": account.sip_uri}


# arbitrary text, text made of the format's own characters, and typos of valid lines
ACCOUNT_TEXTS = st.one_of(
    st.text(max_size=120),
    st.text(alphabet='<>"sip:@;=,.[] \t?' + "auth_pas" + "xyz019", max_size=80),
    account_cases(with_secrets=True).flatmap(mutated).map(lambda m: m.line),
)


@PROPS
@given(ACCOUNT_TEXTS, st.integers(min_value=1, max_value=10_000))
def test_any_account_line_gives_an_account_or_a_file_line_error(text: str, line_no: int) -> None:
    try:
        account = parse_account_line(text, PATH, line_no)
    except FileLineError as exc:
        assert (exc.path, exc.line) == (PATH, line_no)
        assert str(exc).startswith(f"{PATH}:{line_no}: ")
        return
    assert isinstance(account, Account) and account.line_no == line_no
    assert account.transport in TRANSPORTS and account.domain == account.domain.lower()
    assert account.line == text.strip()
    assert parse_account_line(account.line, PATH, line_no) == account  # what was kept parses to the same account


@PROPS
@given(st.lists(ACCOUNT_TEXTS | st.sampled_from(["", "  ", "# comment", "<sip:a@h>", "<sip:a@H:5060>"]), max_size=4))
def test_any_accounts_file_gives_accounts_or_a_config_error(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        accounts = parse_accounts(text, PATH)
    except ConfigError as exc:
        assert isinstance(exc, FileLineError) and exc.path == PATH
        assert 1 <= exc.line <= max(1, len(text.splitlines()))
        return
    identities = [account_identity(a.sip_uri) for a in accounts]
    assert len(set(identities)) == len(identities), "one account twice must be refused"
    assert [a.line_no for a in accounts] == sorted({a.line_no for a in accounts})


@PROPS
@given(account_cases())
def test_a_valid_account_line_round_trips(case: types.SimpleNamespace) -> None:
    account = parse_account_line(case.line, PATH, 3)
    assert (account.user, account.domain, account.scheme, account.transport) == (
        case.user, case.domain, case.scheme, case.transport)
    assert account.uri_params == case.uri_params
    assert account.params == case.params
    assert account.display_name == case.display
    assert account.line == case.line.strip()
    assert account.sip_uri == f"{case.scheme}:{case.user}@{case.domain}"
    assert parse_accounts(f"# header\n\n{case.line}\n", PATH) == [account]  # line 3 too


@PROPS
@given(account_cases(with_secrets=True))
def test_a_secret_never_shows_when_an_account_is_printed(case: types.SimpleNamespace) -> None:
    for secret in case.secrets:
        assume(occurrences(secret, case.line) == 1)
    account = parse_account_line(case.line, PATH)
    # what the same line shows with other secrets: a "secret" found there is part of the syntax, not a leak
    reference = shown_forms(parse_account_line(with_placeholders(case.line, case.secrets), PATH))
    for where, text in shown_forms(account).items():
        for secret in case.secrets:
            assume(not shows(secret, reference[where]))
            assert not shows(secret, text), f"{secret!r} shows in {where}: {text}"


# a password is rarely letters and digits only: chunks of >= 4 of them joined by punctuation; no chunk may show
PUNCTUATED_SECRETS = st.lists(SECRETS, min_size=2, max_size=3).flatmap(
    lambda chunks: st.lists(st.sampled_from(list("!#$%&()*+,-./:<=>?@[]^_{|}~\"'") + [" "]),
                            min_size=len(chunks) - 1, max_size=len(chunks) - 1)
    .map(lambda seps: "".join(c + s for c, s in zip(chunks, seps + [""]))))


@PROPS
@given(account_cases(with_secrets=True, secret_values=PUNCTUATED_SECRETS, secrets_in_uri=False))
@example(types.SimpleNamespace(line="<sip:gw@example.org>;auth_pass=Hunter22)Hunter33", secrets=["Hunter22)Hunter33"]))
def test_no_part_of_a_punctuated_secret_shows_when_an_account_is_printed(case: types.SimpleNamespace) -> None:
    chunks = [chunk for secret in case.secrets for chunk in re.findall(r"[A-Za-z0-9]{4,}", secret)]
    for chunk in chunks:
        assume(occurrences(chunk, case.line) == 1)
    account = parse_account_line(case.line, PATH)
    reference = shown_forms(parse_account_line(with_placeholders(case.line, chunks), PATH))
    for where, text in shown_forms(account).items():
        for chunk in chunks:
            assume(not shows(chunk, reference[where]))
            assert not shows(chunk, text), f"part {chunk!r} of a secret shows in {where}: {text}"


@PROPS
@given(account_cases(with_secrets=True).flatmap(mutated))
@example(types.SimpleNamespace(line="<sip:gw@example.org>;auth_pass:Hunter22", secrets=["Hunter22"]))
@example(types.SimpleNamespace(line="<sip:gw@example.org>;auth_pass Hunter22", secrets=["Hunter22"]))
@example(types.SimpleNamespace(line="<sip:gw@example.org>;2Hunter22", secrets=["2Hunter22"]))
@example(types.SimpleNamespace(line="<sip:gw@example.org;transport=tcp,auth_pass=Hunter22>", secrets=["Hunter22"]))
@example(types.SimpleNamespace(line="<sip:gw@example.org auth_pass=Hunter22>", secrets=["Hunter22"]))
def test_a_secret_never_shows_in_a_parse_error(case: types.SimpleNamespace) -> None:
    for secret in case.secrets:
        assume(occurrences(secret, case.line) == 1)
    try:
        parse_accounts(case.line, PATH)
    except FileLineError as exc:
        message = str(exc)
    else:
        return  # the typo still parses: the other properties cover what an Account shows
    try:
        parse_accounts(with_placeholders(case.line, case.secrets), PATH)
        reference = ""
    except FileLineError as exc:
        reference = str(exc)
    for secret in case.secrets:
        assume(not shows(secret, reference))
        assert not shows(secret, message), f"the error for {case.line!r} shows the secret: {message}"


# ---------------------------------------------------------------------------------------------------------------
# account identity
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_PORT = {"sip": 5060, "sips": 5061}


def any_case(draw, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips))


@st.composite
def spellings(draw, scheme: str, user: str, host: str) -> str:
    """One way of writing the account scheme:user@host that account_identity must see as that account."""
    text = f"{any_case(draw, scheme)}:{user}@{any_case(draw, host)}"
    if not host.startswith("[") and draw(st.booleans()):
        text += "."  # the absolute form of the domain
    if draw(st.booleans()):
        text += f":{DEFAULT_PORT[scheme]}"
    for key, value in draw(st.lists(st.tuples(st.sampled_from(["transport", "lr", "maddr", "x"]),
                                              st.sampled_from(list(TRANSPORTS) + ["TCP", "", "1"])), max_size=3)):
        text += f";{key}={value}" if value else f";{key}"
    if draw(st.booleans()):
        text += "?subject=hello&x=y"
    if draw(st.booleans()):
        text = f"<{text}>"
    return draw(WS) + text + draw(WS)


@PROPS
@given(st.sampled_from(["sip", "sips"]), USERS, HOSTS, st.data())
def test_spellings_of_one_account_have_one_identity(scheme: str, user: str, host: str, data: st.DataObject) -> None:
    identity = account_identity(f"{scheme}:{user}@{host.lower()}")
    variant = data.draw(spellings(scheme, user, host))
    assert account_identity(variant) == identity, variant
    assert account_identity(identity) == identity  # idempotent
    assert account_identity(account_identity(variant)) == account_identity(variant)


@PROPS
@given(st.sampled_from(["sip", "sips"]), USERS, HOSTS, HOSTS,
       st.sampled_from([5060, 5061, 5062, 506]) | st.integers(min_value=1, max_value=65535))
def test_different_accounts_have_different_identities(scheme: str, user: str, host: str, other_host: str,
                                                      port: int) -> None:
    identity = account_identity(f"{scheme}:{user}@{host}")
    if user.swapcase() != user:  # the user part is case-sensitive (RFC 3261 19.1.4)
        assert account_identity(f"{scheme}:{user.swapcase()}@{host}") != identity
    if port != DEFAULT_PORT[scheme]:
        assert account_identity(f"{scheme}:{user}@{host}:{port}") != identity
    other_scheme = "sips" if scheme == "sip" else "sip"
    assert account_identity(f"{other_scheme}:{user}@{host}") != identity
    if other_host.lower().rstrip(".") != host.lower().rstrip("."):
        assert account_identity(f"{scheme}:{user}@{other_host}") != identity
    assert account_identity(f"{scheme}:{user}x@{host}") != identity


@PROPS
@given(st.text(max_size=80))
def test_account_identity_of_any_text_is_text(text: str) -> None:
    assert isinstance(account_identity(text), str)


@PROPS
@given(account_cases(), st.data())
def test_one_account_spelled_twice_in_the_accounts_file_is_refused(case: types.SimpleNamespace,
                                                                   data: st.DataObject) -> None:
    host = any_case(data.draw, case.host)
    port = case.port
    if port is None and data.draw(st.booleans()):
        port = DEFAULT_PORT[case.scheme]
    elif port == DEFAULT_PORT[case.scheme] and data.draw(st.booleans()):
        port = None
    transport = data.draw(st.sampled_from(["", ";transport=udp", ";transport=TLS", ";lr"]))
    twin = f"<{case.scheme}:{case.user}@{host}{'' if port is None else f':{port}'}{transport}>"
    with pytest.raises(FileLineError, match=r"is already used on line 1$") as caught:
        parse_accounts(f"{case.line}\n{twin}\n", PATH)
    assert caught.value.line == 2
    other = f"<{case.scheme}:{case.user}2@{host}>"  # another user on the same domain is another account
    assert len(parse_accounts(f"{case.line}\n{other}\n", PATH)) == 2


# ---------------------------------------------------------------------------------------------------------------
# base URLs (--domain / base_url, dispatch rules, SIPMEDIAGW_BASE_URL) and other names a user types
# ---------------------------------------------------------------------------------------------------------------

URL_SCHEMES = st.sampled_from(["", "http://", "https://", "HTTPS://", "ftp://", "http:", "//", "https:///",
                               "javascript:"]) | st.text(max_size=8)
URL_USERINFO = st.sampled_from(["", "", "", "user:pw@", "@", "u@", "a:b@c@"])
URL_HOSTS = st.sampled_from(["meet.example.org", "[::1]", "[::1", "::1]", "127.0.0.1", "", "a b", "h\x00",
                             "[v1.x]", "xn--bcher-kva.example", "h\u00a0x", "[fe80::1%25eth0]"]) | HOSTNAMES | \
    st.text(max_size=10)
URL_PORTS = st.sampled_from(["", "", ":", ":443", ":8088", ":99999", ":-1", ":abc", ":0", ": 80", ":\uff18\uff10",
                             ":+80"])
URL_PATHS = st.sampled_from(["", "", "/", "/x/", "//", "/a b", "/%2F", "/room/"]) | \
    st.text(max_size=10).map(lambda s: "/" + s)
URL_TAILS = st.sampled_from(["", "", "", "?", "#", "?q=1", "#f", "?#", "/?"])
URL_TEXTS = st.one_of(st.text(max_size=60), st.tuples(URL_SCHEMES, URL_USERINFO, URL_HOSTS, URL_PORTS, URL_PATHS,
                                                      URL_TAILS).map("".join))


def assert_is_a_base_url(url: str) -> None:
    """The documented shape: http(s)://host[:port][/path], no user info (checked by the caller), no ?query or
    #fragment (the drivers append the room), nothing a URL cannot carry, no trailing slash."""
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname, repr(url)
    assert parts.port is None or 0 <= parts.port <= 65535  # .port raises ValueError on a port that is no number
    assert not parts.query and not parts.fragment and "?" not in url and "#" not in url, repr(url)
    assert not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url), f"accepted with a control: {url!r}"
    assert not url.endswith("/"), repr(url)


@PROPS
@given(URL_TEXTS)
@example("https://[::1")
@example("https://h:abc")
@example("https://h?")
@example("https://meet example.org")
def test_check_base_url_accepts_only_base_urls_and_raises_only_validation_error(text: str) -> None:
    try:
        url = check_base_url(text)
    except ValidationError:
        return
    assert_is_a_base_url(url)
    assert url == text.rstrip("/")
    assert check_base_url(url) == url  # idempotent


@PROPS
@given(URL_TEXTS)
@example("https://h\x00")
def test_what_launch_accepts_as_domain_the_gateway_accepts(text: str) -> None:
    try:
        url = normalise_base_url(text)
    except ValidationError:
        return
    assert_is_a_base_url(url)
    parts = urllib.parse.urlsplit(url)
    assert parts.username is None and parts.password is None, url
    assert normalise_base_url(url) == url  # idempotent
    # launch hands the normalised URL to the gateway (SIPMEDIAGW_BASE_URL), which checks it with check_base_url:
    # a URL launch accepts must not make the gateway fail after the container started
    try:
        assert check_base_url(url) == url
    except ValidationError as exc:
        pytest.fail(f"launch accepts {text!r} as {url!r}, the gateway then refuses it: {exc}")


@PROPS
@given(st.sampled_from(["https://", "http://", ""]), st.sampled_from(["u", "alice", ""]), SECRETS, URL_HOSTS,
       URL_PORTS, URL_PATHS, URL_TAILS)
@example("https://", "alice", "Hunter22", "[::1", "", "", "")
@example("https://", "alice", "Hunter22", "h", ":abc", "", "")
def test_a_domain_error_never_shows_the_password(scheme: str, user: str, secret: str, host: str, port: str, path: str,
                                                 tail: str) -> None:
    text = f"{scheme}{user}:{secret}@{host}{port}{path}{tail}"
    assume(occurrences(secret, text) == 1)
    assume(scheme or "://" not in text)  # else `user:` reads as a scheme: the secret is no password then
    try:
        normalise_base_url(text)
    except ValidationError as exc:
        message = str(exc)
    else:
        return
    try:
        normalise_base_url(text.replace(secret, placeholder_for(secret)))
        reference = ""
    except ValidationError as exc:
        reference = str(exc)
    assume(not shows(secret, reference))
    assert not shows(secret, message), message


SIP_URI_TEXTS = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from(["sip:", "sips:", "SIP:", "tel:", "", "sip:<"]), st.sampled_from(["", "alice@", "a b@",
              "%41@", "@", "x;y@"]), URL_HOSTS, URL_PORTS, st.sampled_from(["", ";transport=tcp", "?h=1", ";=x"]))
    .map("".join))


@PROPS
@given(SIP_URI_TEXTS)
@example("sip:x@[::zz]")
@example("sip:x@h:99999")
def test_check_dial_uri_accepts_only_complete_sip_uris(text: str) -> None:
    try:
        uri = check_dial_uri(text)
    except ValidationError as exc:
        assert len(str(exc)) < 400  # the echo of the input is shortened
        return
    assert uri == text and 0 < len(uri) <= MAX_URI
    assert uri.lower().startswith(("sip:", "sips:"))
    assert not any(ch.isspace() or ch in '<>"?' or ord(ch) < 32 for ch in uri), uri


GATEWAY_LIKE = st.text(alphabet="aZ0-_.", min_size=1, max_size=5)


@PROPS
@given(st.lists(GATEWAY_LIKE | st.text(max_size=42), min_size=1, max_size=25))
def test_container_names_are_dns_safe_and_injective(names: list[str]) -> None:
    valid = set()
    for name in names:
        try:
            assert validate_gateway_name(name) == name
        except ValidationError:
            with pytest.raises(ValidationError):
                container_name(name)
            continue
        valid.add(name)
        assert re.fullmatch(r"[a-z0-9-]+", container_name(name)), container_name(name)
    assert len({container_name(name) for name in valid}) == len(valid)


@PROPS
@given(st.text(max_size=140) | st.text(alphabet="a0._~@+-/ ?#%", max_size=10))
def test_room_names_and_path_segments(text: str) -> None:
    try:
        segment = url_path_segment(text)
    except ValidationError:
        with pytest.raises(ValidationError):  # a room name that cannot be put in a URL is no room name
            validate_room_name(text)
        return
    assert urllib.parse.unquote(segment) == text  # nothing lost
    assert re.fullmatch(r"[A-Za-z0-9_.~%-]+", segment) and segment.strip(".") != "", segment  # one path segment


@PROPS
@given(st.text(max_size=250) | st.none() | st.integers())
def test_check_meeting_raises_only_validation_error(meeting: object) -> None:
    try:
        assert check_meeting(meeting) == meeting  # type: ignore[arg-type]
    except ValidationError:
        return
    assert isinstance(meeting, str) and meeting.strip() and len(meeting) <= 200
    assert not re.search(r"[\x00-\x1f\x7f]", meeting)


# ---------------------------------------------------------------------------------------------------------------
# the state document (state.json, `state:` log lines)
# ---------------------------------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
OPTIONAL_TEXT_FIELDS = ("sip_uri", "mode", "room", "platform", "call_platform", "meeting", "media", "caller",
                        "caller_uri", "call_started", "call_direction", "last_end_reason", "last_error")
#: documents shaped like a state document, each key with a right or a wrong value
STATE_LIKE = st.fixed_dictionaries({}, optional={
    "gateway": st.text(max_size=10) | JSON_VALUES,
    "state": st.sampled_from([s.value for s in GatewayState]) | JSON_VALUES,
    "components": st.dictionaries(st.text(max_size=6), st.fixed_dictionaries({}, optional={
        "state": st.sampled_from([s.value for s in ComponentState]) | JSON_VALUES,
        "reason": st.none() | st.text(max_size=10) | JSON_VALUES}) | JSON_VALUES, max_size=3) | JSON_VALUES,
    "call_started": st.just("2024-05-01T10:00:00+00:00") | st.text(max_size=10) | JSON_VALUES,
    "calls": st.integers(0, 100) | JSON_VALUES,
    "audio_only": st.booleans() | JSON_VALUES,
    "since": st.text(max_size=10) | JSON_VALUES,
    **{name: st.none() | st.text(max_size=10) | JSON_VALUES for name in OPTIONAL_TEXT_FIELDS[:6]},
})
OPTIONAL_TEXT = st.none() | st.text(max_size=20)
STATUSES = st.builds(
    GatewayStatus,
    gateway=st.text(max_size=20),
    state=st.sampled_from(GatewayState),
    components=st.dictionaries(st.text(max_size=10), st.builds(ComponentStatus, st.sampled_from(ComponentState),
                                                              OPTIONAL_TEXT), max_size=4),
    audio_only=st.booleans(),
    since=st.text(max_size=30),
    calls=st.integers(min_value=0, max_value=10**9),
    **{name: OPTIONAL_TEXT for name in OPTIONAL_TEXT_FIELDS},
)


def same_state(a: GatewayStatus | None, b: GatewayStatus | None) -> bool:
    """Equal but for `updated`, which a writer stamps with the time of writing."""
    def fields(status: GatewayStatus | None) -> dict | None:
        return None if status is None else {k: v for k, v in dataclasses.asdict(status).items() if k != "updated"}
    return fields(a) == fields(b)


def assert_is_a_state(status: GatewayStatus) -> None:
    """What a reader of a parsed state may rely on: the field types, and that it can be shown and written again."""
    assert isinstance(status.gateway, str) and isinstance(status.since, str)
    assert isinstance(status.state, GatewayState)
    assert isinstance(status.audio_only, bool)
    assert isinstance(status.calls, int) and not isinstance(status.calls, bool)
    for field in dataclasses.fields(status):
        if str(field.type) == "str | None":
            value = getattr(status, field.name)
            assert value is None or isinstance(value, str), (field.name, value)
    for name, component in status.components.items():
        assert isinstance(name, str) and isinstance(component.state, ComponentState)
        assert component.reason is None or isinstance(component.reason, str)
    seconds = status.call_seconds()  # `sipmediagw status` computes the call's duration
    assert seconds is None or seconds >= 0
    assert same_state(parse_state(state_line_payload(status)), status)


@PROPS
@given(JSON_VALUES | STATE_LIKE)
@example({"gateway": "gw", "state": "in-call", "call_started": 1714557600})
@example({"gateway": 5})
def test_any_json_document_is_a_state_or_none(document: object) -> None:
    for text in (json.dumps(document), json.dumps(document).encode()):
        status = parse_state(text)
        assert status is None or isinstance(status, GatewayStatus)
        if status is not None:
            assert_is_a_state(status)


@PROPS
@given(st.binary(max_size=200) | st.text(max_size=200) | st.text(alphabet='{}[]":,0123456789.e-truefalsn ',
                                                                  max_size=200))
@example("[" * 100_000)
@example('{"gateway": "gw", "x": ' + "[" * 100_000)
def test_any_text_or_bytes_is_a_state_or_none(text: str | bytes) -> None:
    status = parse_state(text)
    assert status is None or isinstance(status, GatewayStatus)
    if status is not None:
        assert_is_a_state(status)


@PROPS
@given(STATUSES, st.data())
def test_a_truncated_state_document_is_none(status: GatewayStatus, data: st.DataObject) -> None:
    file_form = json.dumps(status.to_dict(), indent=2, sort_keys=True) + "\n"
    for document in (file_form, state_line_payload(status)):
        assert same_state(parse_state(document), status)
        for cut in data.draw(st.lists(st.integers(0, len(document)), max_size=12)):
            truncated = parse_state(document[:cut])
            if document[cut:].strip():
                assert truncated is None, cut
            else:
                assert same_state(truncated, status)
        # the engine backend reads the file as bytes, possibly cut short by a concurrent rewrite
        assert parse_state(document.encode()[: len(document) // 2]) is None


@PROPS
@given(STATUSES)
def test_a_written_state_reads_back(status: GatewayStatus) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write_state(folder, status)
        assert path == Path(folder) / STATE_FILE_NAME
        assert same_state(read_state(folder), status)
        assert [p.name for p in Path(folder).iterdir()] == [STATE_FILE_NAME]  # no temporary file left behind
    assert same_state(parse_state(state_line_payload(status)), status)


@PROPS
@given(st.binary(max_size=200))
@example(b'{"gateway": "\xff"}')
@example(b"\xff\xfe{\x00}\x00")
def test_read_state_of_any_file_is_a_state_or_none(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / STATE_FILE_NAME).write_bytes(content)
        status = read_state(folder)
        assert status is None or isinstance(status, GatewayStatus)
    assert read_state(Path(folder) / "gone") is None


NOISE_LINES = st.text(max_size=60).filter(lambda line: "] state: " not in line) | st.sampled_from(
    ["[t] state: ", "[t] state: {", "[t] state: []", "[t] state: {\"state\": \"bogus\"}", "state: {}"])


@PROPS
@given(st.lists(st.tuples(NOISE_LINES, st.none() | STATUSES), max_size=5))
def test_the_newest_state_line_wins_whatever_else_the_log_holds(entries: list) -> None:
    lines, newest = [], None
    for noise, status in entries:
        lines.append(noise)
        if status is not None:
            lines.append(f"[2024-05-01T10:00:00] state: {state_line_payload(status)}")
            newest = status
    assert same_state(last_state_in_log(lines), newest)


@PROPS
@given(st.lists(st.text(max_size=40).map(lambda s: "[x] state: " + s) | st.text(max_size=40), max_size=8))
def test_any_log_gives_a_state_or_none(lines: list[str]) -> None:
    status = last_state_in_log(lines)
    assert status is None or isinstance(status, GatewayStatus)


# ---------------------------------------------------------------------------------------------------------------
# netstrings (baresip's ctrl_tcp); tests/unit/test_netstring.py has the round trip of valid streams
# ---------------------------------------------------------------------------------------------------------------

#: streams mixing valid frames with the pieces a broken or hostile peer sends
STREAMS = st.lists(st.one_of(st.binary(max_size=40).map(encode), st.binary(max_size=10),
                             st.sampled_from([b"0:", b"3:", b",", b":", b"12", b"007:", b"99999999:", b"1:x"])),
                   max_size=15).map(b"".join)
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=20)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


def discarded_bytes(reports: list[str]) -> int:
    counts = [int(re.search(r"discarded (\d+) byte", r).group(1)) for r in reports]  # type: ignore[union-attr]
    assert all(n >= 1 for n in counts), reports
    return sum(counts)


def max_pending(max_length: int) -> int:
    """The most a decoder may hold back: the longest length prefix, ':' and the longest payload."""
    return len(str(max_length)) + 1 + max_length


@PROPS
@given(STREAMS, st.integers(min_value=1, max_value=64), CUTS)
def test_any_chunking_of_any_stream_decodes_the_same(data: bytes, max_length: int, cuts: list[int]) -> None:
    whole_reports: list[str] = []
    whole = NetstringDecoder(max_length=max_length, on_garbage=whole_reports.append)
    expected = whole.feed(data)
    reports: list[str] = []
    decoder = NetstringDecoder(max_length=max_length, on_garbage=reports.append)
    got: list[bytes] = []
    for chunk in chunked(data, cuts):
        got += decoder.feed(chunk)
        assert decoder.pending <= max_pending(max_length)  # bounded buffer, whatever arrives
    assert got == expected
    # garbage at a chunk's end is reported with that chunk (the next one may hold more): count the bytes, not reports
    assert discarded_bytes(reports) == discarded_bytes(whole_reports)
    assert decoder.pending == whole.pending and decoder.garbage_events == len(reports)


@PROPS
@given(STREAMS | st.binary(max_size=300), st.integers(min_value=1, max_value=100_000), CUTS)
def test_every_byte_is_decoded_discarded_or_pending(data: bytes, max_length: int, cuts: list[int]) -> None:
    reports: list[str] = []
    decoder = NetstringDecoder(max_length=max_length, on_garbage=reports.append)
    messages = [m for chunk in chunked(data, cuts) for m in decoder.feed(chunk)]
    assert sum(len(encode(m)) for m in messages) + discarded_bytes(reports) + decoder.pending == len(data)
    assert all(len(m) <= max_length for m in messages)
    assert decoder.pending <= max_pending(max_length)


@PROPS
@given(st.integers(min_value=1, max_value=300), st.data())
def test_the_length_limit_is_inclusive(max_length: int, data: st.DataObject) -> None:
    at_limit = data.draw(st.binary(min_size=max_length, max_size=max_length))
    # one byte too many; no digit or ',' inside, so the resync cannot find a frame within it
    over = bytes(b"x"[0] if 0x30 <= c <= 0x39 or c == b","[0] else c for c in at_limit) + b"x"
    reports: list[str] = []
    decoder = NetstringDecoder(max_length=max_length, on_garbage=reports.append)
    assert decoder.feed(encode(at_limit)) == [at_limit] and not reports
    assert decoder.feed(encode(over) + encode(b"")) == [b""]  # refused, then back in step
    assert reports and decoder.pending == 0


@pytest.mark.parametrize("pattern", [b"9", b"1:", b"0", b"12345678", b"x", b"1048576:", b"7:abcdefgX"])
def test_adversarial_streams_are_decoded_in_linear_time(pattern: bytes) -> None:
    data = pattern * (100_000 // len(pattern))
    started = time.perf_counter()
    for step in (len(data), 7):
        decoder = NetstringDecoder()
        for start in range(0, len(data), step):
            decoder.feed(data[start:start + step])
        assert decoder.pending <= max_pending(decoder.max_length)
    assert time.perf_counter() - started < 5, "decoding 2 x 100 kB took too long: quadratic rescans?"
