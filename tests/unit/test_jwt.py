"""HS256 tokens: the RFC 7515 appendix A.1 key and claims give its signature; tampering is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from sipmediagw.jwt import decode_hs256, encode_hs256
from sipmediagw.redaction import redact


def test_signature_is_hmac_sha256_of_header_and_payload() -> None:
    token = encode_hs256({"sub": "gw", "room": "r1"}, "s3cret-key")
    header, payload, signature = token.split(".")
    expected = hmac.new(b"s3cret-key", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    assert decode_hs256(token, "s3cret-key") == {"sub": "gw", "room": "r1"}


def test_rfc7515_example_key_verifies_its_example_token() -> None:
    # RFC 7515 A.1: the example JWS and its symmetric key (base64url of the JWK "k")
    key = base64.urlsafe_b64decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow==")
    token = ("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
             "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert decode_hs256(token, key)["iss"] == "joe"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
    lambda t: t.split(".")[0] + ".e30." + t.split(".")[2],  # payload swapped for {}
    lambda t: "garbage",
])
def test_tampered_token_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    token = encode_hs256({"room": "r1"}, "k")
    with pytest.raises(ValueError):
        decode_hs256(mangle(token), "k")


def test_minted_token_is_masked_in_logs() -> None:
    token = encode_hs256({"room": "masked-room"}, "k2")
    assert token not in redact(f"opening https://meet.example.org/r?jwt={token} now")
    assert token not in redact(f"token {token}")
