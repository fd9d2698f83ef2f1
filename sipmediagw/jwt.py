"""HS256 JSON Web Tokens (RFC 7519), signed here: the one token format of the drivers that mint their own room
tokens (Jitsi's token authentication, LiveKit's access tokens). Stdlib only: it runs in the gateway container.

A minted token is a secret like the key that signed it: it is registered with the log masker
(sipmediagw.redaction.add_secret) before it is returned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from .redaction import add_secret


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_hs256(claims: dict[str, Any], key: str | bytes) -> str:
    """`claims` as a compact JWT signed with HMAC-SHA256 under `key` (compact JSON, keys in insertion order)."""
    secret = key.encode("utf-8") if isinstance(key, str) else key
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    token = f"{header}.{payload}.{signature}"
    add_secret(token)
    return token


def decode_hs256(token: str, key: str | bytes) -> dict[str, Any]:
    """The claims of `token` after checking its HS256 signature under `key`; ValueError when it is not one."""
    secret = key.encode("utf-8") if isinstance(key, str) else key
    try:
        header, payload, signature = token.split(".")
        if json.loads(_b64url_decode(header)).get("alg") != "HS256":
            raise ValueError("not an HS256 token")
        expected = hmac.new(secret, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_decode(signature)):
            raise ValueError("bad signature")
        claims = json.loads(_b64url_decode(payload))
    except (ValueError, UnicodeError, AttributeError) as exc:
        raise ValueError(f"invalid token: {exc}") from None
    if not isinstance(claims, dict):
        raise ValueError("invalid token: claims are not an object")
    return claims
