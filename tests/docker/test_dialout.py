"""Dial-out and audio-only gateways against the real image, driven by the real CLI.

`sipmediagw dial` reaches the gateway through the Docker engine only (docker exec of the request client, which talks
to the supervisor over the request socket). The callees are real baresip "room systems" on the host, registered at a
real Kamailio on the Docker bridge; Kamailio also logs the SDP body of every INVITE it relays, which is exactly what
the gateway's baresip sent. The room is a tiny driver (a file:// page in the gateway's Chromium) that plays a 440 Hz
tone into the room's output (what the callee must hear), asks getUserMedia for audio + video like a conference page
and measures the microphone it gets (the callee's 1 kHz tone must be there); it notes each join, with what it
measured, in the gateway's log folder. Helpers and fixtures (client, bridge_ip, _wait) come from test_gateway.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sipmediagw import dockerops, labels
from sipmediagw.backends.engine import EngineBackend
from sipmediagw.launcher import discard_gateway
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import free_port
from sipmediagw.testbed.tones import check_tone

from test_gateway import DOMAIN, _require_programs, _wait, bridge_ip, client  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).resolve().parents[2]
SECRET = "Dial-Secret-2718"
DIAL_USER, AUDIO_USER = "gwdial", "gwaudio"  # SIP users of the two gateways
DIAL_GW, AUDIO_GW = f"dial-{os.getpid()}", f"audio-{os.getpid()}"  # gateway names: unique on a shared daemon
ROOM_SYSTEM, DECLINER = "roomsys", "decliner"  # the callees
ROOM_HZ = 440  # the room page's tone (what the callee must hear)
ROOM_LEVEL_DB = -13.5  # its level: a sine of amplitude 0.3
CALLEE_HZ = 1000  # the callee's ausine tone (what the room page's microphone must hear)
READY_TIMEOUT = 150

KAMAILIO_CFG = """#!KAMAILIO
# Registrar + proxy for tests/docker/test_dialout.py; logs the SDP of every INVITE it relays.
#!ifndef SIP_DOMAIN
#!define SIP_DOMAIN "127.0.0.1"
#!endif
#!ifndef CTL_SOCKET
#!define CTL_SOCKET "unix:/tmp/kamailio_ctl"
#!endif
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=2
auto_aliases=no
alias=SIP_DOMAIN

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "ctl.so"
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
modparam("ctl", "binrpc", CTL_SOCKET)

request_route {
	if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
	if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
	if (has_totag()) {
		if (loose_route()) { t_relay(); exit; }
		if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
		if (uri == myself && $rU != $null && lookup("location")) { t_relay(); exit; }
		sl_send_reply("404", "Not here");
		exit;
	}
	t_check_trans();  # a retransmission ends here: each INVITE below is logged once
	if (is_method("INVITE") && has_body("application/sdp")) {
		xlog("L_NOTICE", "SDP-BEGIN $fU -> $tU\\n$rb\\nSDP-END\\n");
	}
	if (is_method("REGISTER")) { save("location"); exit; }
	if (is_method("INVITE")) { record_route(); }
	if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
	t_relay();
}
"""

ROOM_DRIVER = '''
import json
import os
import time

from sipmediagw.room import Room, url_path_segment

PAGE = """<!doctype html><meta charset=utf-8><title>room</title><h1>room @ROOM@</h1><script>
window.measured = null;
(async function () {
  const ctx = new AudioContext();
  if (ctx.state !== "running") { await ctx.resume(); }
  const tone = ctx.createOscillator();
  tone.frequency.value = @HZ@;
  const gain = ctx.createGain();
  gain.gain.value = 0.3;
  tone.connect(gain);
  gain.connect(ctx.destination);  /* the room's sound: Chromium's output, which the caller side hears */
  tone.start();
  const r = {context: ctx.state, samples: []};
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    r.audio_tracks = stream.getAudioTracks().length;
    r.video_tracks = stream.getVideoTracks().length;
    r.cameras = (await navigator.mediaDevices.enumerateDevices()).filter(d => d.kind === "videoinput").length;
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    ctx.createMediaStreamSource(new MediaStream(stream.getAudioTracks())).connect(analyser);
    const spectrum = new Float32Array(analyser.frequencyBinCount);
    const wave = new Float32Array(analyser.fftSize);
    for (let i = 0; i < 30; i++) {
      await new Promise(done => setTimeout(done, 200));
      analyser.getFloatFrequencyData(spectrum);
      analyser.getFloatTimeDomainData(wave);
      let peak = 1;
      for (let b = 1; b < spectrum.length; b++) { if (spectrum[b] > spectrum[peak]) { peak = b; } }
      let power = 0;
      for (const v of wave) { power += v * v; }
      r.samples.push([peak * ctx.sampleRate / analyser.fftSize, 10 * Math.log10(power / wave.length + 1e-12)]);
    }
  } catch (e) {
    r.error = String(e);
  }
  window.measured = r;
})();
</script>"""


class TonePage(Room):
    """A local page that plays the room's tone and measures the microphone; each join/leave is noted (JSON lines)
    in joins.log of the gateway's log folder."""

    platform = "tonepage"

    def __init__(self, driver, base_url, room, options=None):
        super().__init__(driver, base_url, room, options)
        url_path_segment(room)

    def url(self):
        return f"file:///tmp/tonepage-{os.getpid()}.html"

    def _note(self, entry):
        with open(os.path.join(os.environ["SIPMEDIAGW_LOG_DIR"], "joins.log"), "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\\n")

    def join(self, display_name):
        with open(self.url()[len("file://"):], "w", encoding="utf-8") as page:
            page.write(PAGE.replace("@ROOM@", self.room).replace("@HZ@", "@ROOM_HZ@"))
        self.driver.get(self.url())
        deadline = time.monotonic() + 30
        measured = None
        while measured is None and time.monotonic() < deadline:
            time.sleep(0.2)
            measured = self.driver.execute_script("return window.measured")
        self._note({"event": "join", "room": self.room, "name": display_name, "options": self.options,
                    "measured": measured})

    def leave(self):
        self.driver.get("about:blank")
        self._note({"event": "leave", "room": self.room})
'''.replace("@ROOM_HZ@", str(ROOM_HZ))


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, bridge_ip: str) -> Iterator[Kamailio]:  # noqa: F811
    """Kamailio that logs every INVITE's SDP (overrides test_gateway's)."""
    _require_programs("kamailio", "kamcmd", "baresip", "sox")
    workdir = tmp_path_factory.mktemp("kamailio-dialout")
    config = workdir / "dialout.cfg"
    config.write_text(KAMAILIO_CFG)
    with Kamailio(domain=DOMAIN, listen=[bridge_ip], port=free_port(bridge_ip), workdir=workdir,
                  config=config) as kamailio:
        yield kamailio


def offers(registrar: Kamailio, from_user: str) -> list[str]:
    """The SDP bodies of the INVITEs `from_user` sent, as Kamailio relayed them."""
    text = registrar.log_path.read_text(errors="replace")
    bodies = []
    for chunk in text.split("SDP-BEGIN ")[1:]:
        head, _, rest = chunk.partition("\n")
        if head.split(" -> ")[0].strip() == from_user:
            bodies.append(rest.split("SDP-END")[0])
    return bodies


class Host:
    """A host setup of the real CLI (config file, one accounts file per gateway, logs) driving the real image."""

    def __init__(self, root: Path, image: str, bridge_ip: str, registrar: Kamailio) -> None:  # noqa: F811
        self.root = root
        self.logs_dir = root / "logs"
        browsing = root / "browsing"
        browsing.mkdir(parents=True)
        (browsing / "tonepage.py").write_text(ROOM_DRIVER)
        lines = {user: f'<sip:{user}@{DOMAIN};transport=udp>;auth_pass={SECRET};'
                       f'outbound="sip:{bridge_ip}:{registrar.port};transport=udp";regint=300\n'
                 for user in (DIAL_USER, AUDIO_USER)}
        for user in lines:  # the first free account is taken: each gateway's file lists its own account first
            (root / f"{user}.accounts").write_text(lines[user] + "".join(v for k, v in lines.items() if k != user))
        self.config = root / "sipmediagw.yaml"
        self.config.write_text(
            f"image: {image}\nlogs_dir: {self.logs_dir}\nbrowsing_dir: {browsing}\n"
            f"baresip_dir: {PROJECT / 'baresip'}\nbackend: engine\n"
            f"platform: tonepage\nbase_url: http://{bridge_ip}:8000\nmedia: userspace\n"
            f"cpu_per_gateway: 0.5\nmemory_per_gateway: 1G\nready_timeout: {READY_TIMEOUT}\n")
        self.processes: list[subprocess.Popen[str]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "sipmediagw.cli", "--config", str(self.config), *args]

    @staticmethod
    def env() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("SIPMEDIAGW_")}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The real CLI with this setup's config; no SIPMEDIAGW_* from the caller's shell."""
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env())

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """The real CLI, not waited for (killed by the fixture's teardown if the test does not finish it)."""
        process = subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=self.env())
        self.processes.append(process)
        return process

    def launch(self, gateway: str, user: str, *args: str) -> None:
        result = self.run("launch", "-g", gateway, "--accounts", str(self.root / f"{user}.accounts"), *args)
        assert result.returncode == 0, f"launch {gateway} failed:\n{result.stderr}"

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", "--no-stats", timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def gateway(self, name: str) -> dict[str, Any]:
        """This gateway's entry in `status --json`."""
        return next((g for g in self.status()["gateways"] if g["name"] == name), {})

    def wait_gateway(self, name: str, predicate: Callable[[dict[str, Any]], bool], what: str,
                     timeout: float = 60) -> dict[str, Any]:
        seen: list[dict[str, Any]] = [{}]

        def check() -> dict[str, Any] | None:
            seen[0] = self.gateway(name)
            return seen[0] if predicate(seen[0]) else None

        return _wait(check, timeout, f"{name}: {what}", lambda: f"last status: {seen[0]}\n{self.report(name)}")

    def state(self, name: str) -> dict[str, Any]:
        return json.loads((self.logs_dir / name / "state.json").read_text())

    def joins(self, name: str) -> list[dict[str, Any]]:
        path = self.logs_dir / name / "joins.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def report(self, name: str) -> str:
        app = self.logs_dir / name / "app.log"
        tail = "\n".join(app.read_text(errors="replace").splitlines()[-40:]) if app.exists() else "(no app.log)"
        return f"app.log of {name}:\n{tail}"

    def container(self, client: Any, name: str) -> Any:  # noqa: F811
        [found] = [c for c in dockerops.list_gateways(client) if c.labels[labels.GATEWAY] == name]
        return found


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, real_gateway_image: str, client: Any,  # noqa: F811
         bridge_ip: str, registrar: Kamailio) -> Iterator[Host]:  # noqa: F811
    setup = Host(tmp_path_factory.mktemp("dialout-host"), real_gateway_image, bridge_ip, registrar)
    yield setup
    for process in setup.processes:
        if process.poll() is None:
            process.kill()
            process.communicate()
    for container in dockerops.list_gateways(client):
        if container.labels.get(labels.LOGS, "").startswith(str(setup.logs_dir)):
            discard_gateway(client, container.labels[labels.GATEWAY], EngineBackend(client))


@pytest.fixture(scope="module")
def dial_gateway(host: Host, registrar: Kamailio) -> str:  # noqa: F811
    host.launch(DIAL_GW, DIAL_USER)  # a pool gateway: `dial` names the room
    registrar.wait_registered(DIAL_USER, 30)
    return DIAL_GW


@pytest.fixture(scope="module")
def audio_gateway(host: Host, registrar: Kamailio) -> str:  # noqa: F811
    host.launch(AUDIO_GW, AUDIO_USER, "-r", "1234", "--audio-only")  # fixed: `dial` joins its own room
    registrar.wait_registered(AUDIO_USER, 30)
    return AUDIO_GW


def _callee(tmp_path: Path, registrar: Kamailio, bridge_ip: str, user: str,  # noqa: F811
            **options: Any) -> Iterator[BaresipCaller]:
    with BaresipCaller(user=user, domain=DOMAIN, registrar=f"{bridge_ip}:{registrar.port}",
                       workdir=tmp_path / user, tone_hz=CALLEE_HZ, **options) as callee:
        callee.wait_registered(30)
        yield callee


@pytest.fixture
def room_system(tmp_path: Path, registrar: Kamailio, bridge_ip: str) -> Iterator[BaresipCaller]:  # noqa: F811
    """A room system in auto-answer: sends a 1 kHz tone and a test pattern, records what it hears."""
    yield from _callee(tmp_path, registrar, bridge_ip, ROOM_SYSTEM)


@pytest.fixture
def decliner(tmp_path: Path, registrar: Kamailio, bridge_ip: str) -> Iterator[BaresipCaller]:  # noqa: F811
    """A callee that does not answer by itself (answermode manual): the test declines its calls."""
    yield from _callee(tmp_path, registrar, bridge_ip, DECLINER, answermode="manual")


def assert_mic_hears(measured: dict[str, Any], hz: float) -> None:
    """The page's microphone carried the callee's tone: from the first sample with sound on (the microphone may take
    a second to start), at least 3 s of 200 ms samples, 90 % of them peaking at `hz` well above silence."""
    assert measured and not measured.get("error"), measured
    samples = measured["samples"]
    onset = next((i for i, (_hz, level) in enumerate(samples) if level > -45), len(samples))
    heard = samples[onset:]
    good = [s for s in heard if abs(s[0] - hz) < 30 and s[1] > -45]
    assert len(heard) >= 15 and len(good) >= 0.9 * len(heard), f"microphone samples (Hz, dBFS): {samples}"


def assert_heard_the_room(callee: BaresipCaller) -> None:
    """The callee's recording holds the room page's tone, at level, for the whole time the page played it."""
    check = check_tone(callee.closed_recording("dec"), ROOM_HZ, ROOM_LEVEL_DB, min_window=3)
    assert check.ok, f"the callee heard: {check}"


# ---------------------------------------------------------------------------------------------------------------


def test_dial_joins_the_room_when_answered_audio_flows_both_ways_then_ready(
        host: Host, dial_gateway: str, room_system: BaresipCaller, registrar: Kamailio) -> None:  # noqa: F811
    assert host.gateway(dial_gateway)["state"] == "ready"
    result = host.run("dial", dial_gateway, f"sip:{ROOM_SYSTEM}@{DOMAIN}", "-r", "1234", timeout=180)
    assert result.returncode == 0, result.stderr + host.report(dial_gateway)
    assert result.stdout.strip() == (f"gateway {dial_gateway} called sip:{ROOM_SYSTEM}@{DOMAIN}: answered by "
                                     f"{ROOM_SYSTEM}, in room 1234 (tonepage)")
    assert f"{dial_gateway}: dialling sip:{ROOM_SYSTEM}@{DOMAIN} for room 1234" in result.stderr
    assert f"{dial_gateway}: answered, joining room 1234" in result.stderr
    established = room_system.wait_established(10)
    assert established["direction"] == "incoming" and DIAL_USER in established["peeruri"]

    busy = host.wait_gateway(dial_gateway, lambda g: g.get("state") == "in-call" and g.get("room"), "in its room")
    assert (busy["room"], busy["caller"], busy["direction"], busy["meeting"]) == (
        "1234", ROOM_SYSTEM, "outgoing", "1234")
    assert host.state(dial_gateway)["caller_uri"] == f"sip:{ROOM_SYSTEM}@{DOMAIN}"
    row = next(line for line in host.run("status", "--no-stats").stdout.splitlines() if dial_gateway in line)
    assert row.split()[1:5] == ["in-call", "pool", "1234", ROOM_SYSTEM]
    [join] = [j for j in host.joins(dial_gateway) if j["event"] == "join"]
    assert (join["room"], join["name"], join["options"]) == ("1234", ROOM_SYSTEM, {})
    assert (join["measured"]["audio_tracks"], join["measured"]["video_tracks"]) == (1, 1), join  # with a camera
    assert_mic_hears(join["measured"], CALLEE_HZ)  # callee -> gateway -> the room page's microphone
    sent = offers(registrar, DIAL_USER)
    assert sent and all("m=audio" in sdp and "m=video" in sdp for sdp in sent), sent  # a gateway with video
    assert room_system.snapshot("dialled-room", timeout=30) is not None  # the callee sees the room display

    room_system.wait_recorded(6, timeout=60)
    room_system.hangup()
    room_system.wait_closed(30)
    after = host.wait_gateway(dial_gateway, lambda g: g.get("state") == "ready", "ready again")
    assert (after["room"], after["caller"], after["direction"], after["last_end_reason"]) == (
        None, None, None, "callee hung up")
    assert host.joins(dial_gateway)[-1] == {"event": "leave", "room": "1234"}
    assert_heard_the_room(room_system)  # the room page's tone -> gateway -> callee


def test_a_declined_or_unknown_callee_gives_the_sip_status_exit_8_and_the_gateway_is_ready_again(
        host: Host, dial_gateway: str, decliner: BaresipCaller) -> None:
    dialling = host.popen("dial", dial_gateway, f"sip:{DECLINER}@{DOMAIN}", "-r", "1234")
    decliner.wait_event({"CALL_INCOMING"}, 60)
    decliner.command("hangup")  # declines: baresip 1.0.0 answers 486 Rejected
    out, err = dialling.communicate(timeout=60)
    assert dialling.returncode == 8, err
    assert out == ""
    assert err.splitlines()[-1] == (f"Error: call to sip:{DECLINER}@{DOMAIN} failed: 486 Rejected (busy); gateway "
                                    f"{dial_gateway} is ready again")
    entry = host.wait_gateway(dial_gateway, lambda g: g.get("state") == "ready", "ready")
    assert entry["last_end_reason"] == f"call to sip:{DECLINER}@{DOMAIN} failed: 486 Rejected (busy)"

    unknown = host.run("dial", dial_gateway, f"sip:nobody@{DOMAIN}", "-r", "1234", "--json", timeout=120)
    assert unknown.returncode == 8, unknown.stderr
    outcome = json.loads(unknown.stdout)
    assert (outcome["ok"], outcome["kind"], outcome["sip_status"]) == (False, "failed", "404 Not Found")
    assert "404 Not Found (not found)" in unknown.stderr
    assert host.gateway(dial_gateway)["state"] == "ready"

    # refused before anything is dialled: a bad URI (on the host), a pool gateway without a room
    bad = host.run("dial", dial_gateway, f"{DECLINER}@{DOMAIN}")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: invalid SIP URI") and len(bad.stderr.splitlines()) == 1
    roomless = host.run("dial", dial_gateway, f"sip:{DECLINER}@{DOMAIN}")
    assert roomless.returncode == 2 and "pool gateway: name the room it joins with -r ROOM" in roomless.stderr
    decliner.in_call()  # takes in the events that came since
    assert [e["type"] for e in decliner.history].count("CALL_INCOMING") == 1  # only the declined call rang
    assert host.run("dial", "no-such-gateway", f"sip:{DECLINER}@{DOMAIN}", "-r", "1").returncode == 4


def test_audio_only_gateway_offers_no_video_runs_no_video_parts_and_carries_audio_both_ways(
        host: Host, audio_gateway: str, room_system: BaresipCaller, registrar: Kamailio,
        client: Any) -> None:  # noqa: F811
    state = host.state(audio_gateway)
    assert state["audio_only"] is True
    assert sorted(state["components"]) == ["baresip", "browser", "pulseaudio", "xvfb-web"]
    entry = host.gateway(audio_gateway)
    assert (entry["state"], entry["mode"], entry["audio_only"]) == ("ready", "fixed", True)
    row = next(line for line in host.run("status", "--no-stats").stdout.splitlines() if audio_gateway in line)
    assert row.split()[2] == "fixed/audio-only"
    container = host.container(client, audio_gateway)
    assert container.labels[labels.AUDIO_ONLY] == "true"
    code, out = container.exec_run(["python3", "-c", "import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n"
                                    "  try: print(open(f'/proc/{p}/cmdline').read().replace(chr(0), ' '))\n"
                                    "  except OSError: pass"])
    assert code == 0
    commands = out.decode().splitlines()
    assert [c for c in commands if c.startswith("Xvfb ")] == [next(c for c in commands if c.startswith("Xvfb :0 "))]
    assert not [c for c in commands if c.startswith("ffmpeg")]  # no camera relay
    code, out = container.exec_run(["cat", "/tmp/sipmediagw/baresip/config"])
    active = [line for line in out.decode().splitlines() if line and not line.startswith("#")]
    assert not [line for line in active if line.startswith(("video_", "module\t\t\tavcodec", "module\t\t\tvp8",
                                                            "module\t\t\tx11"))], active

    result = host.run("dial", audio_gateway, f"sip:{ROOM_SYSTEM}@{DOMAIN}", timeout=180)  # its own room
    assert result.returncode == 0, result.stderr + host.report(audio_gateway)
    assert "in room 1234" in result.stdout
    room_system.wait_established(10)
    sent = offers(registrar, AUDIO_USER)
    assert sent and all("m=audio" in sdp and "m=video" not in sdp for sdp in sent), sent  # what baresip sent
    # the callee's view: only audio was negotiated (its own unused video stream is listed apart, as "local media")
    media = str(room_system.command("callstat").get("data", ""))
    negotiated = media.split("session media:")[-1].split("local media:")[0]
    assert "audio RTP/AVP" in negotiated and "video" not in negotiated, media
    [join] = [j for j in host.joins(audio_gateway) if j["event"] == "join"]
    assert join["options"] == {"audio_only": True}
    measured = join["measured"]
    assert (measured["audio_tracks"], measured["video_tracks"], measured["cameras"]) == (1, 0, 0), measured
    assert_mic_hears(measured, CALLEE_HZ)
    busy = host.wait_gateway(audio_gateway, lambda g: g.get("state") == "in-call" and g.get("room"), "in its room")
    assert (busy["room"], busy["caller"], busy["direction"]) == ("1234", ROOM_SYSTEM, "outgoing")

    room_system.wait_recorded(6, timeout=60)
    room_system.hangup()
    room_system.wait_closed(30)
    host.wait_gateway(audio_gateway, lambda g: g.get("state") == "ready", "ready again")
    assert_heard_the_room(room_system)
