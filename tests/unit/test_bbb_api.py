"""The BigBlueButton driver's signed API: checksum, URL building, option checks and the API join decisions (with a
fake HTTP fetch and a fake WebDriver; the real browser flows are in tests/integration/test_bbb_flows.py)."""

from __future__ import annotations

import hashlib
import types
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from sipmediagw.errors import ValidationError
from sipmediagw.redaction import forget_secrets, redact
from sipmediagw.room import AUTH_REQUIRED, NOT_FOUND, NOT_STARTED, RoomRefused, load_room_driver

BROWSING = Path(__file__).resolve().parents[2] / "browsing"
BBB = load_room_driver("bigbluebutton", BROWSING)
MODULE = types.SimpleNamespace(**BBB.join.__globals__)  # the driver module (loaded from its file)
SERVER = "https://bbb.example.org"
SECRET = "s3cr3t-shared-secret-0123456789"

# The example of BigBlueButton's API documentation, "API Security Model" > "Usage":
# bigbluebutton/bigbluebutton docs/docs/development/api.md @ 283667b7bbedeb2dfa2549ee5192fe179e861e91 (and the older
# bigbluebutton/bigbluebutton.github.io _posts/dev/2015-04-05-api.md @ 7307bd8b38081b171e88f60160affe0b7eb10a71):
#   query string   name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444
#   call name      create
#   shared secret  639259d4-9dd8-4b25-bf01-95f9567eaf4b
#   SHA-1          1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17
#   final query    name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444
#                  &checksum=1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17
DOC_PARAMS = [("name", "Test Meeting"), ("meetingID", "abc123"), ("attendeePW", "111222"), ("moderatorPW", "333444")]
DOC_QUERY = "name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444"
DOC_SECRET = "639259d4-9dd8-4b25-bf01-95f9567eaf4b"
DOC_CHECKSUM = "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"


@pytest.fixture(autouse=True)
def _no_registered_secrets():  # type: ignore[no-untyped-def]
    forget_secrets()
    yield
    forget_secrets()


def test_checksum_matches_the_api_documentation_example() -> None:
    assert MODULE.api_query(DOC_PARAMS) == DOC_QUERY
    assert MODULE.api_checksum("create", DOC_QUERY, DOC_SECRET) == DOC_CHECKSUM
    url = MODULE.signed_api_url("https://h", "/bigbluebutton/api", "create", DOC_PARAMS, DOC_SECRET)
    assert url == f"https://h/bigbluebutton/api/create?{DOC_QUERY}&checksum={DOC_CHECKSUM}"


@pytest.mark.parametrize("algorithm, length", [("sha1", 40), ("sha256", 64), ("sha384", 96), ("sha512", 128)])
def test_each_checksum_algorithm_hashes_call_query_and_secret(algorithm: str, length: int) -> None:
    # The documentation gives an example for SHA-1 only; the others are the same rule with another hash.
    got = MODULE.api_checksum("create", DOC_QUERY, DOC_SECRET, algorithm)
    expected = hashlib.new(algorithm, f"create{DOC_QUERY}{DOC_SECRET}".encode()).hexdigest()
    assert got == expected and len(got) == length
    room = BBB(None, SERVER, "meeting-1", {"shared_secret": SECRET, "checksum": algorithm})
    url = room.api.url("join", [("fullName", "A"), ("meetingID", "meeting-1"), ("role", "VIEWER")])
    query, checksum = url.split("?", 1)[1].rsplit("&checksum=", 1)
    assert checksum == hashlib.new(algorithm, f"join{query}{SECRET}".encode()).hexdigest()


def test_unknown_checksum_algorithm_is_refused() -> None:
    with pytest.raises(ValueError):
        MODULE.api_checksum("join", "", "s", "md5")
    with pytest.raises(ValidationError):
        BBB(None, SERVER, "m1", {"shared_secret": SECRET, "checksum": "md5"})


@pytest.mark.parametrize("name", ['Ålice "O\'Brien" & <b>co</b>#x=1', "a&checksum=0&role=MODERATOR", "+ %20 ?/=;,",
                                  "日本語 名前"])
def test_join_url_keeps_hostile_names_inside_their_parameter(name: str) -> None:
    meeting = "room/../x?y=1&z#w"
    room = BBB(None, SERVER, meeting, {"shared_secret": SECRET})
    url = room.api.url("join", [("fullName", name), ("meetingID", meeting), ("role", room.role)])
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == ("https", "bbb.example.org",
                                                                        "/bigbluebutton/api/join", "")
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    assert [k for k, _ in pairs] == ["fullName", "meetingID", "role", "checksum"]
    assert dict(pairs)["fullName"] == name and dict(pairs)["meetingID"] == meeting
    assert dict(pairs)["role"] == "VIEWER"
    signed, checksum = parts.query.rsplit("&checksum=", 1)
    assert checksum == hashlib.sha1(f"join{signed}{SECRET}".encode()).hexdigest()


def test_api_path_and_url_of_the_room() -> None:
    room = BBB(None, SERVER + "/", "Team Room", {"shared_secret": SECRET, "api_path": "/bbb/api/"})
    assert room.url() == "https://bbb.example.org/bbb/api/join?meetingID=Team+Room"
    assert SECRET not in room.url() and "checksum" not in room.url()
    greenlight = BBB(None, SERVER, "abc-def-ghi")
    assert greenlight.url() == "https://bbb.example.org/rooms/abc-def-ghi/join" and not greenlight.api_mode


@pytest.mark.parametrize("meeting", ["a", "", "  ", "a,b", "x\ny", "\x00ab", "m" * 257])
def test_meeting_ids_bbb_refuses_are_refused(meeting: str) -> None:
    with pytest.raises(ValidationError):
        BBB(None, SERVER, meeting, {"shared_secret": SECRET})


@pytest.mark.parametrize("options", [
    {"checksum": "sha256"}, {"role": "MODERATOR"}, {"create": True}, {"api_path": "/x"},  # API options, no secret
    {"shared_secret": SECRET, "access_code": "1234"}, {"shared_secret": SECRET, "greenlight": 3},  # Greenlight + API
    {"shared_secret": SECRET, "role": "moderator"}, {"shared_secret": SECRET, "role": "ADMIN"},
    {"shared_secret": SECRET, "api_path": "bigbluebutton/api"}, {"shared_secret": SECRET, "api_path": "/a/../b"},
    {"shared_secret": SECRET, "api_path": "/a b"}, {"shared_secret": SECRET, "api_path": "/a?b"},
    {"shared_secret": SECRET, "api_path": "//evil.example/api"}, {"shared_secret": SECRET, "start_timeout": -1},
    {"shared_secret": SECRET, "start_timeout": 4000}, {"greenlight": 4},
])
def test_option_checks(options: dict[str, Any]) -> None:
    room = "abc-def-ghi"
    with pytest.raises(ValidationError):
        BBB(None, SERVER, room, options)


def test_secret_options_are_declared_secret_and_never_shown() -> None:
    assert BBB.OPTIONS["shared_secret"].secret and BBB.OPTIONS["access_code"].secret
    assert not BBB.OPTIONS["checksum"].secret
    with pytest.raises(ValidationError) as refused:
        BBB.check_options({"shared_secret": ["zqx-secret-value"]})
    assert "zqx" not in str(refused.value)
    room = BBB(None, SERVER, "m1", {"shared_secret": SECRET})
    assert SECRET not in repr(room.api)
    assert redact(f"secret is {SECRET}.") == "secret is ***."  # registered for the log redaction
    BBB(None, SERVER, "abc-def", {"access_code": "98765"})
    assert redact("code 98765") == "code ***"


# -- the API join decisions, with a fake server and a fake browser ----------------------------------------------------
class FakeServer:
    """Answers the driver's API calls like BBB (checksum checked); `running_after` polls until the meeting runs."""

    def __init__(self, meetings: dict[str, bool] | None = None, secret: str = SECRET, running_after: int | None = None,
                 down: bool = False) -> None:
        self.meetings = dict(meetings or {})
        self.secret = secret
        self.running_after = running_after
        self.down = down
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, timeout: float) -> bytes:
        assert timeout > 0
        if self.down:
            raise urllib.error.URLError(ConnectionRefusedError(111, f"refused {url}"))
        parts = urllib.parse.urlsplit(url)
        call = parts.path.rsplit("/", 1)[1]
        query, checksum = parts.query.rsplit("&checksum=", 1)
        if checksum != hashlib.sha1(f"{call}{query}{self.secret}".encode()).hexdigest():
            return b"<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey></response>"
        params = dict(urllib.parse.parse_qsl(query))
        self.calls.append((call, params))
        meeting = params["meetingID"]
        if call == "create":
            self.meetings[meeting] = False
            return b"<response><returncode>SUCCESS</returncode></response>"
        if meeting not in self.meetings:
            return b"<response><returncode>FAILED</returncode><messageKey>notFound</messageKey></response>"
        if self.running_after is not None:
            self.running_after -= 1
            self.meetings[meeting] = self.running_after < 0
        running = "true" if self.meetings[meeting] else "false"
        return f"<response><returncode>SUCCESS</returncode><running>{running}</running></response>".encode()


class FakeDriver:
    def __init__(self) -> None:
        self.opened: list[str] = []

    def get(self, url: str) -> None:
        self.opened.append(url)

    def execute_script(self, script: str, *args: Any) -> Any:
        return 0 if script == "return 0" else None  # a cancel point / no XML error page


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def api_room(server: FakeServer, options: dict[str, Any] | None = None, meeting: str = "math-101"):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    room = BBB(FakeDriver(), SERVER, meeting, {"shared_secret": SECRET, **(options or {})}, fetch=server,
               sleep=clock.sleep, clock=clock)
    room.progress_seen = []
    room.on_progress = room.progress_seen.append
    return room, clock


def test_running_meeting_is_joined_with_a_signed_url() -> None:
    server = FakeServer({"math-101": True})
    room, _ = api_room(server)
    room._join_api("Alice & Bob")
    assert [c for c, _ in server.calls] == ["getMeetingInfo"]
    [opened] = room.driver.opened
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(opened).query))
    assert params["fullName"] == "Alice & Bob" and params["role"] == "VIEWER"
    assert server(opened, 1) == b"<response><returncode>SUCCESS</returncode><running>true</running></response>"
    assert params["checksum"] not in redact(opened)  # the join checksum is a registered secret
    assert room.progress_seen == []


def test_missing_meeting_is_refused_unless_create_is_allowed() -> None:
    server = FakeServer()
    room, _ = api_room(server)
    with pytest.raises(RoomRefused) as refused:
        room._join_api("A")
    assert refused.value.reason == NOT_FOUND
    assert [c for c, _ in server.calls] == ["getMeetingInfo"] and room.driver.opened == []

    room, _ = api_room(server, {"create": True, "role": "VIEWER"})
    room._join_api("A")
    assert [c for c, _ in server.calls] == ["getMeetingInfo", "getMeetingInfo", "create"]
    assert server.calls[-1][1] == {"name": "math-101", "meetingID": "math-101"}
    assert len(room.driver.opened) == 1 and room.progress_seen == []  # created: joined at once, no wait


def test_viewer_waits_for_the_meeting_to_start_then_joins() -> None:
    server = FakeServer({"math-101": False}, running_after=2)
    room, clock = api_room(server, {"start_timeout": 60})
    room._join_api("A")
    assert room.progress_seen == ["waiting for the meeting to start"]
    assert [c for c, _ in server.calls] == ["getMeetingInfo"] * 3
    assert clock.now == pytest.approx(2 * MODULE.START_POLL) and len(room.driver.opened) == 1


def test_viewer_gives_up_after_start_timeout() -> None:
    server = FakeServer({"math-101": False})
    room, clock = api_room(server, {"start_timeout": 5})
    with pytest.raises(RoomRefused) as refused:
        room._join_api("A")
    assert refused.value.reason == NOT_STARTED and clock.now == pytest.approx(5)
    assert room.progress_seen == ["waiting for the meeting to start"] and room.driver.opened == []


def test_moderator_joins_a_meeting_that_has_not_started() -> None:
    server = FakeServer({"math-101": False})
    room, _ = api_room(server, {"role": "MODERATOR"})
    room._join_api("A")
    assert room.progress_seen == []
    assert dict(urllib.parse.parse_qsl(room.driver.opened[0].split("?", 1)[1]))["role"] == "MODERATOR"


def test_refused_checksum_is_auth_required_and_shows_no_secret() -> None:
    server = FakeServer({"math-101": True}, secret="the-servers-other-secret")
    room, _ = api_room(server)
    with pytest.raises(RoomRefused) as refused:
        room._join_api("A")
    assert (refused.value.reason, refused.value.detail) == (AUTH_REQUIRED, "checksum refused")
    assert SECRET not in str(refused.value) and "checksum=" not in str(refused.value)


def test_unreachable_server_names_the_call_not_its_url() -> None:
    room, _ = api_room(FakeServer(down=True))
    with pytest.raises(RuntimeError) as failed:
        room._join_api("A")
    assert "getMeetingInfo" in str(failed.value)
    assert "checksum" not in str(failed.value) and "bbb.example.org" not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


@pytest.mark.parametrize("body", [b"", b"not xml", b"<html><body>502</body></html>", b"<response>" * 10])
def test_garbage_answers_are_errors(body: bytes) -> None:
    room, _ = api_room(FakeServer())
    room.api._fetch = lambda url, timeout: body
    with pytest.raises(RuntimeError, match="getMeetingInfo"):
        room._join_api("A")

