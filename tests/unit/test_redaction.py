"""The one redaction (sipmediagw.redaction): every spelling of a secret the host or a gateway may print."""

from __future__ import annotations

import time

import pytest

from sipmediagw.redaction import add_secret, forget_secrets, is_secret_key, redact


@pytest.fixture(autouse=True)
def _no_registered_literals():
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize("raw, expected", [
    # the account line and its parameters
    ("<sip:gw@example.org>;auth_pass=s3cret;answermode=auto", "<sip:gw@example.org>;auth_pass=***;answermode=auto"),
    ("stunserver=turn:t.example:3478;stunuser=u;stunpass=p4ss", "stunserver=turn:t.example:3478;stunuser=u;stunpass=***"),
    ("auth_pass=a1;stunpass=b2;MyPassWord=c3;user=ok", "auth_pass=***;stunpass=***;MyPassWord=***;user=ok"),
    # short values are secrets too
    ("auth_pass=x;answermode=auto", "auth_pass=***;answermode=auto"),
    # k = v, k: v, k : v
    ("auth_pass = hunter2 rest", "auth_pass = *** rest"),
    ("malformed 'auth_pass:hunter2' here", "malformed 'auth_pass:*** here"),
    ("password : hunter2", "password : ***"),
    # JSON and quoted forms, escaped quotes inside
    ('{"password": "two words"}', '{"password": "***"}'),
    ('{"auth_pass":"a\\"b","user":"gw"}', '{"auth_pass":"***","user":"gw"}'),
    ("shared_secret='x y z' next", "shared_secret='***' next"),
    ("{'auth_pass': 'hunter2'}", "{'auth_pass': '***'}"),
    ('auth_pass="unterminated', 'auth_pass="***'),
    # other secret names: BBB shared secret, JWT, TURN credential, API keys, signed URLs
    # in a query string the rest of it goes too (over-masking is harmless; a password may contain '&')
    ("meetingID=m1&secret=abc&x=1 done", "meetingID=m1&secret=*** done"),
    ("https://bbb.example/api/join?meetingID=x&password=mp&checksum=123", "https://bbb.example/api/join?meetingID=x&password=***"),
    ("auth_pass=ab)c&d<e>f,g]h;next=1", "auth_pass=***;next=1"),
    ("JWT=abc.def", "JWT=***"),
    ("turn credential: k3y", "turn credential: ***"),
    ("LIVEKIT_API_KEY=APIxyz", "LIVEKIT_API_KEY=***"),
    # URL user info, auth headers, bare JWTs
    ("https://alice:pw-7@meet.example/room", "https://alice:***@meet.example/room"),
    ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
    ("Authorization: Basic dXNlcjpwdw==", "Authorization: Basic ***"),
    ("got Bearer eyJabc and more", "got Bearer *** and more"),
    ("token eyJhbGciOi.eyJzdWIiOi.sig_x-y in url", "token *** in url"),
    ("no secrets here: user=gw domain=example.org", "no secrets here: user=gw domain=example.org"),
])
def test_every_form_is_masked(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_registered_values_are_masked_without_their_key_and_tiny_ones_are_not() -> None:
    add_secret("Zebra-Unique-771")
    add_secret("ab")  # would shred ordinary text: only masked in keyed forms
    assert redact("digest for Zebra-Unique-771 computed, about") == "digest for *** computed, about"
    assert redact("auth_pass=ab") == "auth_pass=***"


def test_redaction_is_idempotent_and_leaves_no_part_of_the_value() -> None:
    text = 'a auth_pass = "p1 p2" b {"jwt": "eyJx.eyJy.z"} c https://u:p3@h/'
    once = redact(text)
    assert redact(once) == once
    for part in ("p1", "p2", "eyJx", "p3"):
        assert part not in once, once


@pytest.mark.parametrize("key, secret", [("auth_pass", True), ("stunpass", True), ("bbb_shared_secret", True),
                                         ("jwt", True), ("api_key", True), ("answermode", False), ("stunuser", False)])
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_a_registered_common_word_does_not_eat_key_names() -> None:
    add_secret("pass")  # the seed README's own example password
    assert redact("auth_pass=pass;stunpass=x ready to pass") == "auth_pass=***;stunpass=*** ready to ***"


def test_a_long_line_is_redacted_in_linear_time() -> None:
    line = ("x" * 200_000 + " auth_pass=secret " + "pass" * 50_000 + " " + "a." * 50_000 + " " + "eyJ" * 30_000
            + " https://u:" + "p" * 50_000 + " Bearer" * 10_000)
    started = time.process_time()
    masked = redact(line)
    assert "secret" not in masked
    assert time.process_time() - started < 2.0  # was quadratic: 16 KB took 8.5 s
