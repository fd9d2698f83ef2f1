"""The Jitsi Meet driver without a browser: URL building (hostile names, ?jwt= placement), its options (unknown ones
refused, secret ones marked and never shown), and the tokens it mints or fetches."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmediagw.errors import ValidationError
from sipmediagw.jwt import decode_hs256, encode_hs256
from sipmediagw.redaction import MASK, forget_secrets, redact
from sipmediagw.room import AUTH_REQUIRED, RoomRefused, load_room_driver

BROWSING = Path(__file__).resolve().parents[2] / "browsing"
Jitsi = load_room_driver("jitsi", BROWSING)
DRIVER = Jitsi.url.__globals__  # the driver module's namespace (hash_config, token_claims, fetch_token)
NOW = 1_800_000_000.0
BASE_KEYS = {"config.prejoinConfig.enabled", "config.prejoinPageEnabled", "config.startWithAudioMuted",
             "config.startWithVideoMuted", "config.disableDeepLinking", "userInfo.displayName"}


@pytest.fixture(autouse=True)
def _no_leftover_secrets() -> Iterator[None]:
    yield
    forget_secrets()


def split(url: str) -> tuple[urllib.parse.SplitResult, dict[str, list[str]], dict[str, object]]:
    """The URL's parts, its query and its hash config (each key once, values JSON)."""
    parts = urllib.parse.urlsplit(url)
    config: dict[str, object] = {}
    for kv in parts.fragment.split("&"):
        key, _, raw = kv.partition("=")
        assert key not in config, f"duplicate key {key}"
        config[key] = json.loads(urllib.parse.unquote(raw))
    return parts, urllib.parse.parse_qs(parts.query, keep_blank_values=True), config


def room(name: str = "Team Room", base: str = "https://meet.example.org", **options: Any) -> Any:
    driver = Jitsi(None, base, name, options)
    driver.clock = lambda: NOW
    return driver


# -- URL ---------------------------------------------------------------------------------------------------------------
@given(name=st.text(max_size=80), room_name=st.text(min_size=1, max_size=60).filter(
    lambda r: r.strip(".").strip() and r.isprintable()))
def test_hostile_names_stay_inside_the_path_segment_and_the_hash_value(name: str, room_name: str) -> None:
    token = encode_hs256({"room": "*"}, "k")
    driver = room(room_name, "https://meet.example.org/base", jwt=token)
    driver.display_name = name
    parts, query, config = split(driver.url())
    assert parts.netloc == "meet.example.org"
    prefix, _, segment = parts.path.rpartition("/")
    assert prefix == "/base" and urllib.parse.unquote(segment) == room_name
    assert query == {"lang": ["en"], "jwt": [token]}  # the name adds nothing to the query
    assert set(config) == BASE_KEYS and config["userInfo.displayName"] == name


def test_a_name_built_to_add_config_keys_adds_none() -> None:
    driver = room()
    driver.display_name = 'x"&config.startWithAudioMuted=true#&userInfo.displayName="y'
    _, query, config = split(driver.url())
    assert query == {"lang": ["en"]}
    assert config["config.startWithAudioMuted"] is False and config["userInfo.displayName"] == driver.display_name
    assert config["config.prejoinConfig.enabled"] is False


def test_the_token_goes_in_the_query_never_the_hash() -> None:
    token = encode_hs256({"room": "*"}, "k")
    url = room(jwt=token).url()
    assert url.startswith(f"https://meet.example.org/Team%20Room?lang=en&jwt={token}#")
    assert token not in urllib.parse.urlsplit(url).fragment
    assert urllib.parse.urlsplit(room().url()).query == "lang=en"  # no token: the page language only


def test_the_page_language_is_english_whatever_the_deployment_default() -> None:
    """The toolbar and host-wait buttons are found by their English labels: ?lang=en is upstream's first detector."""
    assert DRIVER["UI_LANGUAGE"] == "en"
    _, query, _ = split(room(config={"config.defaultLanguage": "fr"}).url())
    assert query["lang"] == ["en"]


def test_audio_only_joins_with_the_camera_off() -> None:
    _, _, config = split(room(audio_only=True).url())
    assert config["config.startWithVideoMuted"] is True and config["config.startAudioOnly"] is True


# -- options -----------------------------------------------------------------------------------------------------------
def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown room option 'pasword'"):
        room(pasword="x")


def test_secret_options_are_marked_and_their_values_never_shown() -> None:
    specs = Jitsi.option_specs()
    assert {name for name, spec in specs.items() if spec.secret} == {"password", "jwt", "app_secret"}
    with pytest.raises(ValidationError) as err:
        room(jwt="not-a-token-Hunter2")
    assert "Hunter2" not in str(err.value)
    with pytest.raises(ValidationError) as err:
        Jitsi.check_options({"password": ["Hunter2"]})
    assert "Hunter2" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"app_id": "gw"}, "app_id and app_secret go together"),
    ({"app_secret": "s3cret-key"}, "app_id and app_secret go together"),
    ({"jwt": "a.b.c", "token_url": "https://tokens.example.org/t"}, "exclusive"),
    ({"app_id": "gw", "app_secret": "s3cret-key", "jwt": "a.b.c"}, "exclusive"),
    ({"token_url": "ftp://tokens.example.org/t"}, "http"),
    ({"token_url": "https://user:pw@tokens.example.org/t"}, "user info"),
    ({"lobby_timeout": 0}, "out of range"),
    ({"moderator_timeout": "soon"}, "not a number"),
])
def test_inconsistent_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        room(**options)
    assert "s3cret-key" not in str(err.value) and "pw@" not in str(err.value)


def test_secret_values_are_registered_with_the_log_masker() -> None:
    room(password="Right-Horse-42", app_id="gw", app_secret="The-App-Secret")
    assert redact("typed Right-Horse-42 with The-App-Secret") == f"typed {MASK} with {MASK}"


# -- tokens ------------------------------------------------------------------------------------------------------------
def test_a_minted_token_carries_the_claims_prosody_checks() -> None:
    driver = room("Team-Room", app_id="sip-gateway", app_secret="The-App-Secret")
    driver.display_name = "Alice Caller"
    token = driver.token()
    assert token is not None
    claims = decode_hs256(token, "The-App-Secret")
    assert claims == {"aud": "jitsi", "iss": "sip-gateway", "sub": "meet.example.org", "room": "team-room",
                      "exp": int(NOW) + 6 * 3600, "context": {"user": {"name": "Alice Caller"}}}
    assert redact(f"url ?x={token}") == f"url ?x={MASK}"  # registered once minted


def test_a_tenant_deployment_gets_the_tenant_as_subject_and_overrides_win() -> None:
    tenant = room(base="https://meet.example.org/MyTenant", app_id="gw", app_secret="k3y-k3y")
    assert decode_hs256(tenant.token(), "k3y-k3y")["sub"] == "mytenant"
    custom = room(app_id="gw", app_secret="k3y-k3y", jwt_audience="meet", jwt_subject="*", jwt_room="*",
                  jwt_lifetime=600)
    claims = decode_hs256(custom.token(), "k3y-k3y")
    assert (claims["aud"], claims["sub"], claims["room"], claims["exp"]) == ("meet", "*", "*", int(NOW) + 600)


def test_token_claims_keep_the_documented_order() -> None:
    claims = DRIVER["token_claims"](app_id="a", audience="jitsi", subject="s", room="r", display_name="n", now=10,
                                    lifetime=5)
    assert list(claims) == ["aud", "iss", "sub", "room", "exp", "context"] and claims["exp"] == 15


class _TokenServer(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, body = self.answers.get(self.path.split("?", 1)[0], (404, b""))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def token_server() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    answers: dict[str, tuple[int, bytes]] = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_TokenServer,), {"answers": answers}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers
    server.shutdown()
    server.server_close()


def test_a_token_from_token_url_goes_in_the_query(token_server: tuple[str, dict[str, tuple[int, bytes]]]) -> None:
    url, answers = token_server
    token = encode_hs256({"room": "team room"}, "operator-key")
    answers["/token"] = (200, f"{token}\n".encode())
    _, query, _ = split(room(token_url=f"{url}/token?key=Operator-Api-Key").url())
    assert query == {"lang": ["en"], "jwt": [token]}


@pytest.mark.parametrize("answer, detail", [((403, b"nope"), "HTTP 403"), ((200, b"<html>login</html>"), "no token"),
                                            ((200, b"a.b.c" * 5000), "no token")])
def test_a_token_url_that_gives_no_token_is_auth_required_without_showing_the_url(
        token_server: tuple[str, dict[str, tuple[int, bytes]]], answer: tuple[int, bytes], detail: str) -> None:
    url, answers = token_server
    answers["/token"] = answer
    with pytest.raises(RoomRefused) as err:
        room(token_url=f"{url}/token?key=Operator-Api-Key").url()
    assert err.value.reason == AUTH_REQUIRED and detail in err.value.detail
    assert "Operator-Api-Key" not in str(err.value) and "/token" not in str(err.value)


def test_an_unreachable_token_url_is_auth_required() -> None:
    with pytest.raises(RoomRefused) as err:
        DRIVER["fetch_token"]("http://127.0.0.1:9/token?key=Operator-Api-Key", timeout=5)
    assert err.value.reason == AUTH_REQUIRED and "Operator-Api-Key" not in str(err.value)
