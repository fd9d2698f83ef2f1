"""The SIP secret is out of the browser's reach (gateway/isolation.py): a gateway that the real CLI launched from the
real image runs chromedriver and Chromium in user and mount namespaces of their own, where /run/secrets and
baresip's config folder are empty covers, and from which baresip's and the supervisor's /proc entries are refused;
baresip still registers, a call still joins the room, Chromium's own sandbox still runs.

What "the browser's processes" can do is tested by the browser itself: the room driver navigates Chromium to the
secret files (file: URLs, which only automation can open) and reports what it was shown; and a program that
chromedriver starts as if it were Chromium (a local WebDriver "new session" naming it as the browser binary) runs
in the browser's namespaces and tries to read every secret, directly and through /proc, and to unmount a cover.
A second gateway, whose seccomp profile refuses the launcher's mount, falls back: ready, sandboxed, and saying that
the secrets are not hidden. (Docker's default profile, a swarm service's: test_hostile_page.py's fallback test.)

Fixtures (client, bridge_ip, registrar, caller) come from test_gateway.py.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from sipmediagw import seccomp
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port

from cli_gateway import CliGateway, launched
from test_gateway import (DOMAIN, IMAGE, TEST_LABEL, _put_secret, _wait, bridge_ip, caller, client,  # noqa: F401
                          registrar)

pytestmark = pytest.mark.docker

SECRET = "Isolated-Secret-5820"
USER = "gwisolated"
GATEWAY = f"isolated-{os.getpid()}"
READY_TIMEOUT = 180
ACCOUNT_FILE = "/run/secrets/sipmediagw-account"
BARESIP_ACCOUNTS = "/tmp/sipmediagw/baresip/accounts"
PROBE = "/home/gw/isolation-probe.py"  # not in /tmp: Docker mounts its tmpfs noexec
PROBE_RESULT = "/tmp/isolation-probe.json"

# The room: before entering its page the driver shows Chromium each secret (file and folder) and reports what it saw.
ROOM_DRIVER = '''
import json

from sipmediagw.room import Room

SECRET_URLS = ["file://__ACCOUNT__", "file://__ACCOUNT_DIR__/", "file://__BARESIP__", "file://__BARESIP_DIR__/"]


class IsolatedRoom(Room):
    platform = "isolated"

    def url(self):
        return self.base_url + "/room.html"

    def join(self, display_name):
        seen = {}
        for url in SECRET_URLS:
            try:
                self.driver.get(url)
                seen[url] = {"title": self.driver.title,
                             "text": self.driver.execute_script("return document.body ? document.body.innerText : ''")}
            except Exception as exc:  # an error page is an answer too; a WebDriver error is reported as such
                seen[url] = {"error": exc.__class__.__name__}
        self.driver.get(self.url())
        self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/report', {method: 'POST', body: arguments[0]}).then(() => done(true), e => done(String(e)));",
            json.dumps(seen))

    def leave(self):
        self.driver.get("about:blank")
'''.replace("__ACCOUNT__", ACCOUNT_FILE).replace("__ACCOUNT_DIR__", os.path.dirname(ACCOUNT_FILE)) \
   .replace("__BARESIP__", BARESIP_ACCOUNTS).replace("__BARESIP_DIR__", os.path.dirname(BARESIP_ACCOUNTS))

# Started by chromedriver as its "browser": it runs where Chromium runs. It tries everything a compromised browser
# process would, writes what it got, and exits (chromedriver then reports that "Chrome" failed to start).
PROBE_PROGRAM = r'''#!/usr/bin/python3
import ctypes, json, os, sys, traceback
def crashed(kind, value, tb):
    json.dump({"crashed": "".join(traceback.format_exception(kind, value, tb))}, open("__RESULT__", "w"))
sys.excepthook = crashed
out = {"uid": os.getuid(), "user_ns": os.readlink("/proc/self/ns/user"), "mnt_ns": os.readlink("/proc/self/ns/mnt"),
       "attempts": {}}
def attempt(name, action):
    try:
        out["attempts"][name] = {"ok": True, "value": action()}
    except OSError as exc:
        out["attempts"][name] = {"ok": False, "error": exc.strerror}
def read(path):
    with open(path, "rb") as handle:
        return handle.read(4096).decode(errors="replace")
def opened(path):
    with open(path, "rb"):
        return "opened"
pids = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        continue
    if argv[0].endswith(b"baresip"):
        pids["baresip"] = pid
    elif argv[1:3] == [b"-m", b"sipmediagw.gateway"]:
        pids["supervisor"] = pid
out["pids"] = pids
attempt("list /run/secrets", lambda: os.listdir("/run/secrets"))
attempt("read the account file", lambda: read("__ACCOUNT__"))
attempt("list baresip's config folder", lambda: os.listdir("__BARESIP_DIR__"))
attempt("read baresip's accounts", lambda: read("__BARESIP__"))
for name, pid in pids.items():
    attempt(f"{name} cmdline", lambda: read(f"/proc/{pid}/cmdline"))  # the process is visible: only its insides are not
    attempt(f"{name} environ", lambda: read(f"/proc/{pid}/environ"))
    attempt(f"{name} mem", lambda: opened(f"/proc/{pid}/mem"))
    # its fd numbers can be listed (the folder is the uid's), where they lead cannot
    attempt(f"{name} fd", lambda: [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")])
    attempt(f"{name} root: account file", lambda: read(f"/proc/{pid}/root__ACCOUNT__"))
    attempt(f"{name} root: baresip's accounts", lambda: read(f"/proc/{pid}/root__BARESIP__"))
libc = ctypes.CDLL(None, use_errno=True)
def umount():
    if libc.umount2(b"/run/secrets", 2) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return os.listdir("/run/secrets")
attempt("unmount the cover of /run/secrets", umount)
def mount_own():  # what the launcher did, in namespaces of the browser's own: its filter refuses mount
    uid = os.getuid()
    if libc.unshare(0x10000000 | 0x20000) != 0:
        raise OSError(ctypes.get_errno(), "unshare: " + os.strerror(ctypes.get_errno()))
    open("/proc/self/uid_map", "w").write(f"0 {uid} 1")
    if libc.mount(b"x", b"/run/secrets", b"tmpfs", ctypes.c_ulong(15), b"") != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "mounted"
attempt("mount in namespaces of its own", mount_own)
json.dump(out, open("__RESULT__", "w"))
'''.replace("__ACCOUNT__", ACCOUNT_FILE).replace("__BARESIP_DIR__", os.path.dirname(BARESIP_ACCOUNTS)) \
   .replace("__BARESIP__", BARESIP_ACCOUNTS).replace("__RESULT__", PROBE_RESULT)

# Run by `docker exec` (the container's own namespaces): ask the gateway's chromedriver for a session whose browser
# binary is the probe program, then wait for its result.
START_PROBE = r'''
import json, os, re, time, urllib.error, urllib.request
port = None
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
    except OSError:
        continue
    if argv[0].endswith("chromedriver"):
        port = next(int(a.split("=", 1)[1]) for a in argv if a.startswith("--port="))
body = json.dumps({"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                    "goog:chromeOptions": {"binary": "__PROBE__"}}}}).encode()
request = urllib.request.Request(f"http://127.0.0.1:{port}/session", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
try:
    answer = urllib.request.urlopen(request, timeout=90).read().decode()
except urllib.error.HTTPError as exc:  # expected: the "browser" exits at once
    answer = exc.read().decode()
deadline = time.monotonic() + 30
while not os.path.exists("__RESULT__") and time.monotonic() < deadline:
    time.sleep(0.2)
result = json.load(open("__RESULT__")) if os.path.exists("__RESULT__") else None
print(json.dumps({"chromedriver": answer[:600], "result": result}))
'''.replace("__PROBE__", PROBE).replace("__RESULT__", PROBE_RESULT)

# Run by `docker exec`: the namespaces of each process, and what the browser's root shows of the secret folders.
FROM_OUTSIDE = r'''
import json, os
out = {"processes": []}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        # Chromium's helpers rewrite their command line as one string: split on spaces too
        argv = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").split()
        entry = {"pid": int(pid), "argv": argv, "user": os.readlink(f"/proc/{pid}/ns/user"),
                 "mnt": os.readlink(f"/proc/{pid}/ns/mnt")}
    except OSError:
        continue
    out["processes"].append(entry)
    if argv and argv[0].endswith("chromium") and not any(a.startswith("--type=") for a in argv):
        root = f"/proc/{pid}/root"
        out["browser_view"] = {folder: os.listdir(root + folder) for folder in ("/run/secrets", "__BARESIP_DIR__")}
out["own_view"] = {"account file": os.path.exists("__ACCOUNT__"), "baresip accounts": os.path.exists("__BARESIP__")}
print(json.dumps(out))
'''.replace("__ACCOUNT__", ACCOUNT_FILE).replace("__BARESIP_DIR__", os.path.dirname(BARESIP_ACCOUNTS)) \
   .replace("__BARESIP__", BARESIP_ACCOUNTS)


class RoomSite:
    """The room's web server on the Docker bridge: a page, and the reports the room driver posts."""

    def __init__(self, ip: str) -> None:
        self.reports: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = b"<!DOCTYPE html><title>isolated room</title><h1>the room</h1>"
                self._send(200 if self.path.startswith("/room.html") else 404, body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/report":
                    with site.lock:
                        site.reports.append(json.loads(body))
                self._send(204, b"")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port(ip)
        self.server = http.server.ThreadingHTTPServer((ip, self.port), Handler)
        self.url = f"http://{ip}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(bridge_ip: str) -> Iterator[RoomSite]:  # noqa: F811
    served = RoomSite(bridge_ip)
    yield served
    served.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, real_gateway_image: str, client: Any,  # noqa: F811
            site: RoomSite, bridge_ip: str, registrar: Kamailio) -> Iterator[CliGateway]:  # noqa: F811
    made = CliGateway(tmp_path_factory.mktemp("isolated"), image=real_gateway_image, platform="isolated",
                      driver=ROOM_DRIVER, base_url=site.url, bridge=bridge_ip, registrar=registrar, user=USER,
                      secret=SECRET, domain=DOMAIN, gateway=GATEWAY, ready_timeout=READY_TIMEOUT)
    with launched(client, made) as running:
        yield running


def test_the_browser_sees_no_secret_while_baresip_registers_and_a_call_joins(
        gateway: CliGateway, site: RoomSite, caller: BaresipCaller, client: Any) -> None:  # noqa: F811
    host_config = client.api.inspect_container(gateway.container.id)["HostConfig"]
    assert host_config["SecurityOpt"] == ["no-new-privileges", seccomp.security_opt()]
    state = gateway.state()
    assert state["state"] == "ready" and state["sandbox"] == "on", gateway.report()  # ready = baresip registered
    log = gateway.app_log()
    assert "secrets hidden from chromium: own user and mount namespaces" in log, gateway.report()
    assert "chromium sandbox: on (" in log and "; secrets hidden from the browser: " in log, gateway.report()

    # a call: answered, the browser joins the room (where the driver first shows Chromium the secret files)
    caller.dial(f"sip:{USER}@{DOMAIN}")
    caller.wait_established(30)
    _wait(lambda: gateway.state().get("state") == "in-call", 60, "in-call", gateway.report)
    _wait(lambda: site.reports, 60, "the room driver's report", gateway.report)
    assert caller.in_call()

    # what Chromium was shown at file:///run/secrets/... and baresip's folder: nothing of the secret, no file listed
    [seen] = site.reports
    assert SECRET not in json.dumps(seen), seen
    for url, page in seen.items():
        assert "error" not in page, (url, page)  # Chromium answered with a page (its "not found" one), not a failure
        assert "sipmediagw-account" not in page["text"] and "accounts" not in page["text"].split(), (url, page)
        assert "auth_pass" not in page["text"], (url, page)

    # from the container's namespaces: the secrets are there, the browser's root shows the folders empty, and the
    # browser (chromedriver, Chromium) runs in a user and mount namespace of its own, renderers in theirs below
    outside = gateway.python(FROM_OUTSIDE)
    assert outside["own_view"] == {"account file": True, "baresip accounts": True}, outside["own_view"]
    assert outside["browser_view"] == {"/run/secrets": [], os.path.dirname(BARESIP_ACCOUNTS): []}, outside
    processes = outside["processes"]
    supervisor = next(p for p in processes if p["argv"][1:3] == ["-m", "sipmediagw.gateway"])
    baresip = next(p for p in processes if p["argv"][0].endswith("baresip"))
    driver = next(p for p in processes if p["argv"][0].endswith("chromedriver"))
    browser = [p for p in processes if p["argv"][0].endswith("chromium")]
    main = [p for p in browser if not any(a.startswith("--type=") for a in p["argv"])]
    assert len(main) == 1 and not [p for p in browser if "--no-sandbox" in p["argv"]], browser
    assert baresip["user"] == supervisor["user"] and baresip["mnt"] == supervisor["mnt"]
    assert driver["user"] != supervisor["user"] and driver["mnt"] != supervisor["mnt"], (driver, supervisor)
    assert (main[0]["user"], main[0]["mnt"]) == (driver["user"], driver["mnt"])
    renderers = [p for p in browser if "--type=renderer" in p["argv"]]
    assert renderers and all(r["user"] not in (driver["user"], supervisor["user"]) for r in renderers), renderers

    # from inside the browser's namespaces (a program chromedriver starts as its browser): nothing readable
    # written from inside (docker cp / put_archive would write below the container's /tmp tmpfs, unseen)
    code, out = gateway.container.exec_run(["python3", "-c", f"import os; open({PROBE!r}, 'w').write("
                                                             f"{PROBE_PROGRAM!r}); os.chmod({PROBE!r}, 0o755)"],
                                           user="gw")
    assert code == 0, out
    probed = gateway.python(START_PROBE)
    result = probed["result"]
    assert result, f"the probe program did not run: chromedriver answered {probed['chromedriver']}"
    assert SECRET not in json.dumps(probed), "the secret reached the browser's namespaces"
    assert (result["user_ns"], result["mnt_ns"]) == (driver["user"], driver["mnt"]), (result, driver)
    assert result["uid"] == 10001 and set(result["pids"]) == {"baresip", "supervisor"}, result
    attempts = result["attempts"]
    assert attempts["list /run/secrets"] == {"ok": True, "value": []}, attempts
    assert attempts["list baresip's config folder"] == {"ok": True, "value": []}, attempts
    assert attempts["read the account file"] == {"ok": False, "error": "No such file or directory"}, attempts
    assert attempts["read baresip's accounts"] == {"ok": False, "error": "No such file or directory"}, attempts
    for name in ("baresip", "supervisor"):
        assert attempts[f"{name} cmdline"]["ok"], attempts  # it is the real process, seen from the browser...
        for what in ("environ", "mem", "fd", "root: account file", "root: baresip's accounts"):
            # ...whose insides the kernel refuses to a process of a child user namespace, whatever its uid
            assert attempts[f"{name} {what}"] == {"ok": False, "error": "Permission denied"}, (name, what, attempts)
    assert attempts["unmount the cover of /run/secrets"] == {"ok": False, "error": "Operation not permitted"}
    # the profile lets the launcher's one mount through; the filter it adds refuses the browser any
    assert attempts["mount in namespaces of its own"] == {"ok": False, "error": "Operation not permitted"}

    # the call went on throughout, and ends normally
    assert caller.in_call() and gateway.state()["state"] == "in-call", gateway.report()
    caller.hangup()
    caller.wait_closed(30)
    _wait(lambda: gateway.state().get("state") == "ready", 60, "ready after the call", gateway.report)


def _profile_without_the_launchers_mount() -> str:
    """Our profile as it was before the launcher: every mount refused."""
    profile = seccomp.profile()
    for rule in profile["syscalls"]:
        if rule["names"] == ["mount"]:
            rule.pop("args")
    return "seccomp=" + json.dumps(profile, separators=(",", ":"))


def test_where_the_cover_cannot_be_mounted_the_gateway_falls_back_and_says_so(
        client: Any, registrar: Kamailio, bridge_ip: str, tmp_path: Path) -> None:  # noqa: F811
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    os.chown(log_dir, 10001, 10001)
    browsing = tmp_path / "browsing"
    browsing.mkdir()
    (browsing / "isolated.py").write_text(ROOM_DRIVER)
    container = client.containers.create(
        IMAGE, name=f"sipmediagw-test-nomount-{os.getpid()}", labels={TEST_LABEL: f"gateway-{os.getpid()}"},
        environment={"SIPMEDIAGW_GATEWAY": "gw-nomount", "SIPMEDIAGW_ROOM": "1234",
                     "SIPMEDIAGW_PLATFORM": "isolated", "SIPMEDIAGW_BASE_URL": f"http://{bridge_ip}:8000"},
        volumes={str(log_dir): {"bind": "/var/log/sipmediagw", "mode": "rw"},
                 str(browsing): {"bind": "/opt/sipmediagw/browsing", "mode": "ro"}},
        init=True, shm_size="256m", cap_drop=["ALL"],
        security_opt=["no-new-privileges", _profile_without_the_launchers_mount()],
    )
    try:
        _put_secret(container, f'<sip:gw-nomount@{DOMAIN}>;auth_pass={SECRET};answermode=auto;'
                               f'outbound="sip:{bridge_ip}:{registrar.port}"')
        container.start()

        def state() -> dict[str, Any]:
            try:
                return json.loads((log_dir / "state.json").read_text())
            except (FileNotFoundError, ValueError):
                return {}

        def report() -> str:
            return json.dumps(state(), indent=1) + "\n" + container.logs(tail=40).decode(errors="replace")

        _wait(lambda: state().get("state") == "ready", READY_TIMEOUT, "ready", report)
        # Chromium's sandbox is still on; the state file and the log say the secrets are not hidden, and why
        why = "mounting a tmpfs over /run/secrets refused: Operation not permitted"
        assert state()["sandbox"] == f"on; secrets NOT hidden from the browser: {why}", report()
        log = (log_dir / "app.log").read_text()
        assert f"secrets NOT hidden from chromium (it runs in the gateway's namespaces): {why}" in log
        code, out = container.exec_run(["python3", "-c", FROM_OUTSIDE], user="gw")
        assert code == 0, out
        processes = json.loads(out)["processes"]
        supervisor = next(p for p in processes if p["argv"][1:3] == ["-m", "sipmediagw.gateway"])
        driver = next(p for p in processes if p["argv"][0].endswith("chromedriver"))
        browser = [p for p in processes if p["argv"][0].endswith("chromium")]
        assert browser and not [p for p in browser if "--no-sandbox" in p["argv"]], browser
        assert (driver["user"], driver["mnt"]) == (supervisor["user"], supervisor["mnt"])  # as before the launcher
    finally:
        container.remove(force=True)
