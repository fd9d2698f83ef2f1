"""The one redaction of secrets in text, used by the host CLI and by the gateway container alike.

Anything a human or a log collector may see (error lines, warnings, status, logs, tracebacks, state lines) goes
through :func:`redact`. It masks, whatever the spelling:

- a value after a secret-looking key: ``auth_pass=v``, ``auth_pass = v``, ``auth_pass: v``, ``"auth_pass": "v"``,
  ``password='v w'``, ``?password=v&checksum=w``; however short the value (one character is still a secret);
- the password of a URL's user info (``https://user:pw@host``);
- ``Bearer``/``Basic`` credentials and anything shaped like a JWT (three base64url parts, the first ``eyJ``);
- literal values registered with :func:`add_secret` (the SIP password read from the secret file, a shared secret),
  wherever they appear as a whole token — for the case where a secret shows up without its key.

A key is secret-looking when its name contains one of SECRET_KEY_WORDS (``auth_pass``, ``stunpass``, ``password``,
``shared_secret``, ``jwt``, ``token``, ``api_key``, ``checksum``...). Masking too much (``bypass: true``) is
harmless; masking too little is not.
"""

from __future__ import annotations

import re
import threading

MASK = "***"
SECRET_KEY_WORDS = ("pass", "secret", "token", "jwt", "credential", "apikey", "api_key", "api-key", "checksum")
#: registered literals shorter than this are not masked on their own (they would shred ordinary text); the
#: keyed forms above mask values of any length
MIN_LITERAL = 3

# A key (a whole run of name characters, taken atomically: no backtracking into it, so a 200 KB run of letters in a
# log line costs one pass) and its separator (= or :, spaces around, a closing quote before it). Whether the key
# names a secret is decided in code, and the value's extent by _VALUE: a regex alternative for all of it
# backtracks quadratically on long lines.
_KEY_SEP = re.compile(r"""(?<![\w.-])(?P<key>(?>[\w.-]+))(?P<sep>["']?[ \t]*[=:][ \t]*)""")
# a quoted value up to its closing quote (escapes honoured; an unterminated one to the end of the line); a bare value
# runs to whitespace or ';' (the end of an account parameter): a password may hold any other character
# (`auth_pass=ab)c&d"e`), and masking what follows it (`&checksum=...`, a closing quote) is harmless
_VALUE = re.compile(r""""(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|[^\s;]+""")
_URL_USERINFO = re.compile(r"(?P<head>(?<![A-Za-z0-9+.-])(?>[A-Za-z][A-Za-z0-9+.-]*)://(?>[^/\s:@]*):)"
                           r"(?P<value>(?>[^@/\s]+))(?=@)")
_AUTH_SCHEME = re.compile(r"(?P<head>\b(?:Bearer|Basic)[ \t]+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

_literals: set[str] = set()
_literals_lock = threading.Lock()
_literal_pattern: re.Pattern[str] | None = None  # all literals, longest first, rebuilt when one is added


def is_secret_key(key: str) -> bool:
    """True for parameter/option names whose value must never be shown (auth_pass, shared_secret, jwt...)."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)


def add_secret(value: str) -> None:
    """Mask this literal value wherever it appears from now on (process-wide)."""
    global _literal_pattern
    if value and len(value) >= MIN_LITERAL:
        with _literals_lock:
            if value not in _literals:
                _literals.add(value)
                alternatives = "|".join(re.escape(v) for v in sorted(_literals, key=len, reverse=True))
                # whole tokens only: a password "pass" must not eat the "pass" of every "auth_pass" key
                _literal_pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def forget_secrets() -> None:
    """Drop every registered literal (tests; a long-lived process that changed accounts)."""
    global _literal_pattern
    with _literals_lock:
        _literals.clear()
        _literal_pattern = None


def _mask_keyed(text: str) -> str:
    """Every value after a secret-looking key, masked (quotes kept)."""
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    at = 0
    while (found := _KEY_SEP.search(text, at)) is not None:
        at = found.end("key")
        if not is_secret_key(found["key"]):
            continue
        value = _VALUE.match(text, found.end())
        if value is None:  # `auth_pass=` and nothing: nothing to mask
            continue
        shown = MASK
        if value[0][:1] in "\"'":
            quote = value[0][0]
            shown = f"{quote}{MASK}{quote if len(value[0]) > 1 and value[0].endswith(quote) else ''}"
        parts += [text[done:value.start()], shown]
        done = at = value.end()
    parts.append(text[done:])
    return "".join(parts)


def redact(text: str) -> str:
    """`text` with every secret it carries replaced by ``***``."""
    masked = _mask_keyed(text)
    masked = _URL_USERINFO.sub(lambda m: m["head"] + MASK, masked)
    masked = _AUTH_SCHEME.sub(lambda m: m["head"] + MASK, masked)
    masked = _JWT.sub(MASK, masked)
    pattern = _literal_pattern
    return pattern.sub(MASK, masked) if pattern is not None else masked
