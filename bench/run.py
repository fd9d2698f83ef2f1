"""Benchmark one (and two) real sipmediagw gateways on this host: readiness, audio latency, CPU/memory, codec floor.

    python3 -m bench.run [--out bench/results.json]

Starts its own Kamailio + Janus on free ports of the Docker bridge address, launches gateways named `bench-*` with
a private logs folder, places real calls (baresip caller -> Kamailio -> gateway -> Janus room ->
headless Chromium participant), prints a summary and writes JSON. Everything it started is stopped at the end, also
on failure or Ctrl-C. Not a test: nothing here asserts a time. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import re
import shlex
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import docker
from sipmediagw.demo import CALLER_TONE, ROOM_LISTEN_S, ROOM_TONE, TOLERANCE, make_caller, run_test_call, wait_audible
from sipmediagw.errors import GatewayNotFound
from sipmediagw.launcher import LaunchRequest, LaunchResult, launch, log_folder, stop_gateway
from sipmediagw.settings import Settings, load_settings
from sipmediagw.state import GatewayState, read_state
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.network import free_port, free_port_range
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import LocalStack
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, check_tone

from . import codecfloor
from .codecfloor import Stream
from .machine import machine_info
from .procstats import Window

IMAGE = "sipmediagw:latest"
ROOM_A, ROOM_B = "1234", "1235"
TONE_B = 700  # Hz, the second caller's tone in the two-gateway run
CAMERA_FPS = 15.0  # the gateway's camera for the room (inject.js captureStream)
VIDEO_OK_FPS = 10.0  # below this frame rate in the room, video counts as degraded in the verdict
#: published anchors for SIPMediaGW (issue 4): per gateway, 2 participants, audio+video
ANCHOR_CPU_PCT = {"baresip": 130, "chromium": 100, "total": 230}
ANCHOR_CORES_RECOMMENDED = (2.5, 4)


def say(message: str) -> None:
    """Progress on stderr, with the elapsed time."""
    sys.stderr.write(f"[bench {time.monotonic() - T0:6.1f}s] {message}\n")
    sys.stderr.flush()


T0 = time.monotonic()


def close(measured: float | None, expected: float) -> bool:
    """`measured` within the demo's tolerance of `expected` Hz."""
    return measured is not None and abs(measured - expected) <= expected * TOLERANCE


def stats(values: list[float]) -> dict[str, Any]:
    """median/min/max of a series (None-free), rounded, with the raw values."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "values": values}
    return {"median": round(statistics.median(clean), 2), "min": round(min(clean), 2), "max": round(max(clean), 2),
            "values": [round(v, 2) if v is not None else None for v in values]}


# --- gateways ---


class Gateways:
    """Launches bench-* gateways through sipmediagw.launcher and remembers them, so `stop_all` cleans up."""

    def __init__(self, settings: Settings, client: docker.DockerClient) -> None:
        self.settings = settings
        self.client = client
        self.started: set[str] = set()

    def launch(self, name: str, room: str) -> tuple[LaunchResult, float]:
        """Launch and wait until ready; (result, seconds from the call to ready)."""
        self.started.add(name)
        began = time.monotonic()
        result = launch(self.settings, LaunchRequest(name, room), self.client)
        return result, time.monotonic() - began

    def stop(self, name: str) -> float:
        """Stop and remove; seconds it took."""
        began = time.monotonic()
        try:
            stop_gateway(self.client, name, self.settings.stop_timeout)
        except GatewayNotFound:
            pass
        self.started.discard(name)
        return time.monotonic() - began

    def container_id(self, result: LaunchResult) -> str:
        """Full Docker id (the cgroup folder name)."""
        return str(self.client.containers.get(result.container).id)

    def wait_state(self, name: str, state: GatewayState, timeout: float = 60) -> bool:
        """Poll the gateway's state file until it says `state`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = read_state(log_folder(self.settings, name))
            if status is not None and status.state == state:
                return True
            time.sleep(0.5)
        return False

    def app_log(self, name: str) -> str:
        """The gateway's app.log (host copy)."""
        path = log_folder(self.settings, name) / "app.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        """Stop every gateway launched here (best effort: each one is tried)."""
        for name in sorted(self.started):
            try:
                self.stop(name)
            except Exception as exc:  # noqa: BLE001 - clean-up goes on
                say(f"could not stop {name}: {exc}")


# --- a call held open while measuring ---


@dataclasses.dataclass
class HeldCall:
    """A running call: the room participant, the SIP caller, and what was measured while setting it up."""

    participant: Participant
    caller: BaresipCaller
    answered_after: float
    audible_after: float | None


@contextlib.contextmanager
def held_call(stack: LocalStack, gateway_uri: str, room: str, workdir: Path, tone: int,
              name: str) -> Iterator[HeldCall]:
    """Participant joins `room`, the caller (sending `tone`) dials the gateway; yields once the tone is heard in the
    room; hangs up on exit."""
    with Participant(base_url=stack.base_url, room=room, tone_hz=ROOM_TONE, name=name,
                     workdir=workdir / "participant") as participant, \
            make_caller(stack, workdir / "caller", tone=tone) as caller:
        caller.wait_registered(30)
        dialled = time.monotonic()
        caller.dial(gateway_uri)
        caller.wait_established(60)
        answered = time.monotonic()
        participant.wait_remote(1, timeout=60)
        heard = wait_audible(participant, tone, 60) is not None
        call = HeldCall(participant, caller, answered - dialled, time.monotonic() - answered if heard else None)
        try:
            yield call
        finally:
            try:
                caller.hangup()
                caller.wait_closed(30)
            except Exception as exc:  # noqa: BLE001 - the context managers stop both anyway
                say(f"hang-up of {gateway_uri}: {exc}")


def video_elements(participant: Participant, gap: float = 2.0) -> dict[str, dict[str, float]]:
    """Size and displayed frame rate of each <video> on the participant's page ('local' = its own camera)."""
    # The page's own clock times the two snapshots: on a saturated host one WebDriver round-trip can take a second,
    # so dividing by `gap` would overstate the rate (the first run's 12 and 21.5 fps were computed that way).
    script = ("return {t: performance.now(), videos: Array.from(document.querySelectorAll('video')).map("
              "function (v) { return {id: v.id, w: v.videoWidth, h: v.videoHeight, f: v.getVideoPlaybackQuality ? "
              "v.getVideoPlaybackQuality().totalVideoFrames : 0}; })};")
    assert participant.driver is not None
    snap1 = participant.driver.execute_script(script)
    time.sleep(gap)
    snap2 = participant.driver.execute_script(script)
    elapsed = max(1e-3, (snap2["t"] - snap1["t"]) / 1000)
    first = {v["id"]: v for v in snap1["videos"]}
    out = {}
    for v in snap2["videos"]:
        before = first.get(v["id"], {"f": v["f"]})
        out[v["id"]] = {"width": v["w"], "height": v["h"], "fps": round((v["f"] - before["f"]) / elapsed, 1)}
    return out


def media_check(call: HeldCall, path: Path) -> dict[str, Any]:
    """Is media still flowing: record the caller's audio in the room (judged after the call), changing video."""
    recording = call.participant.record_remote_audio(path, ROOM_LISTEN_S)
    return {"room_recording": str(recording) if recording else None,
            "room_video_changing": call.participant.remote_video_changing(timeout=20)}


def audio_verdicts(call: HeldCall, check: dict[str, Any], tone: int) -> dict[str, Any]:
    """After hang-up (recordings closed): the caller's tone in the room and the room's tone at the caller, each
    judged on level and frequency over the whole window (sipmediagw.testbed.tones)."""
    out: dict[str, Any] = {}
    try:
        room = check.get("room_recording")
        heard = check_tone(Path(room), tone, call.caller.sent_level(), min_window=ROOM_LISTEN_S - 2) if room else None
        out |= {"room_audio": heard.summary() if heard else "no audio", "room_audio_hz": heard.hz if heard else None,
                "room_audio_ok": bool(heard and heard.ok)}
    except Exception as exc:  # noqa: BLE001 - a failed measurement is reported, not fatal to the benchmark
        out |= {"room_audio": f"not measured: {exc}", "room_audio_ok": False}
    try:
        caller = call.caller.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB)
        out |= {"caller_audio": caller.summary(), "caller_audio_hz": caller.hz, "caller_audio_ok": caller.ok,
                "caller_audible_share": round(caller.audible_share, 2)}
    except Exception as exc:  # noqa: BLE001 - no recording = nothing heard
        out |= {"caller_audio": f"not measured: {exc}", "caller_audio_ok": False}
    return out


# --- negotiated media, from the logs ---


def negotiated(app_log: str, caller_log: str) -> dict[str, Any]:
    """Codecs, sizes and rates the last call used, from the gateway's and the caller's baresip logs."""
    def last(pattern: str, text: str) -> re.Match[str] | None:
        found = list(re.finditer(pattern, text))
        return found[-1] if found else None

    out: dict[str, Any] = {}
    if m := last(r"Set audio encoder: (\S+) (\d+)Hz (\d+)ch", app_log):
        out["audio"] = f"{m.group(1)} {m.group(2)} Hz {m.group(3)} ch"
    if m := last(r"Set video encoder: (\S+)\s+\((\d+) bit/s, ([\d.]+) fps\)", app_log):
        out["gateway_sends"] = {"codec": m.group(1), "bitrate": int(m.group(2)), "fps": float(m.group(3))}
    if m := last(r"Set video decoder: (\S+)", app_log):
        out["gateway_receives_codec"] = m.group(1)
    if m := last(r"video: receiving with resolution (\d+) x (\d+)", app_log):
        out["gateway_receives_size"] = [int(m.group(1)), int(m.group(2))]
    if m := last(r"video: receiving with resolution (\d+) x (\d+)", caller_log):
        out["caller_receives_size"] = [int(m.group(1)), int(m.group(2))]
    if m := last(r"Set video encoder: (\S+)\s+\((\d+) bit/s, ([\d.]+) fps\)", caller_log):
        out["caller_sends"] = {"codec": m.group(1), "bitrate": int(m.group(2)), "fps": float(m.group(3))}
    return out


def call_streams(media: dict[str, Any], videos: dict[str, dict[str, float]]) -> dict[str, Stream]:
    """The four video streams of the measured call (fallbacks: the documented defaults)."""
    sends = media.get("gateway_sends", {"codec": "VP8", "bitrate": 921600, "fps": 15.0})
    caller = media.get("caller_sends", {"codec": sends["codec"], "bitrate": 800000, "fps": 15.0})
    in_w, in_h = media.get("gateway_receives_size", [640, 360])
    out_w, out_h = media.get("caller_receives_size", [1280, 720])
    remote = next((v for k, v in videos.items() if k != "local" and v["width"]), {"width": 640, "height": 360,
                                                                                   "fps": 15.0})
    local = videos.get("local") or {"width": 640, "height": 480, "fps": 30.0}
    return {
        "sip_in": Stream(caller["codec"], in_w, in_h, caller["fps"], caller["bitrate"]),
        "sip_out": Stream(sends["codec"], out_w, out_h, sends["fps"], sends["bitrate"]),
        # Chromium <-> Janus is VP8 (Janus VideoRoom default); WebRTC picks its own bitrate, 800 kbit/s assumed
        # the camera is canvas.captureStream(15): its nominal rate, not what a loaded host managed to deliver
        "room_out": Stream("VP8", int(remote["width"]), int(remote["height"]), CAMERA_FPS, 800000),
        "room_in": Stream("VP8", int(local["width"] or 640), int(local["height"] or 480),
                          max(1.0, local["fps"] or 30.0), 800000),
    }


# --- the benchmark ---


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement; returns the results record."""
    client = docker.from_env()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sipmediagw-bench-"))
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python3 -m bench.run " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "machine": machine_info(client, IMAGE),
        "workdir": str(workdir),
    }
    probe = LocalStack(workdir / "stack")  # only for the bridge address
    stack = LocalStack(workdir / "stack", gateways=2, sip_port=free_port_range(probe.ip),
                       janus_http_port=free_port(probe.ip), janus_web_port=free_port(probe.ip))
    say(f"starting Kamailio sip:{stack.registrar} and Janus {stack.base_url} (workdir {workdir})")
    stack.start()
    settings = load_settings(overrides={
        "image": IMAGE, "platform": "janus", "base_url": stack.base_url, "accounts_file": stack.accounts_file(),
        "logs_dir": workdir / "logs", "media": "userspace",
        "ready_timeout": 180})  # the default budget: it is also each gateway's CPU limit, so it must not be lowered
    gateways = Gateways(settings, client)
    try:
        # 1. launch -> ready, stop in between
        ready, stopped = [], []
        for i in range(args.launches):
            _, seconds = gateways.launch("bench-a", ROOM_A)
            ready.append(seconds)
            stopped.append(gateways.stop("bench-a"))
            say(f"launch {i + 1}/{args.launches}: ready after {seconds:.2f} s")
        results["launch_to_ready_s"] = stats(ready)
        results["stop_s"] = stats(stopped)

        # 3a. idle gateway
        gw_a, _ = gateways.launch("bench-a", ROOM_A)
        cid_a = gateways.container_id(gw_a)
        time.sleep(args.settle)
        say(f"idle window {args.idle:.0f} s")
        idle = Window({"bench-a": cid_a}).run(args.idle)
        results["idle"] = {"gateway": idle.gateway_report("bench-a"), "host": idle.host_report()}

        # 2. answer -> caller audible in the room, with the demo's measured test call
        calls = []
        for i in range(args.calls):
            report = run_test_call(stack, gw_a.sip_uri, ROOM_A, workdir / f"call-{i + 1}")
            calls.append(dataclasses.asdict(report) | {"ok": report.ok})
            say(f"call {i + 1}/{args.calls}: audible in the room {report.room_audible_after} s after answer, "
                f"media both ways: {report.ok}")
            gateways.wait_state("bench-a", GatewayState.READY)
        results["calls"] = calls
        results["answer_to_audible_s"] = stats([c["room_audible_after"] for c in calls])
        results["answer_to_room_joined_s"] = stats([c["room_joined_after"] for c in calls])
        results["dial_to_answer_s"] = stats([c["answered_after"] for c in calls])

        # 3b. one gateway in a two-party audio+video call
        say(f"in-call window {args.window:.0f} s")
        with held_call(stack, gw_a.sip_uri, ROOM_A, workdir / "held", CALLER_TONE, "participant") as call:
            time.sleep(args.settle)
            videos = video_elements(call.participant)
            window = Window({"bench-a": cid_a}).run(args.window)
            after = media_check(call, workdir / "held" / "room-heard.wav")
        after |= audio_verdicts(call, after, CALLER_TONE)
        media = negotiated(gateways.app_log("bench-a"), (workdir / "held" / "caller" / "baresip.log").read_text(
            errors="replace"))
        results["in_call"] = {"gateway": window.gateway_report("bench-a"), "host": window.host_report(),
                              "audible_after_s": call.audible_after, "media_after_window": after,
                              "negotiated": media, "participant_videos": videos}

        # 6. two gateways in calls at once
        if args.two:
            # The default budget admits one video gateway on 2 cores; step 6 deliberately runs two to show why: the
            # second one is admitted with a smaller budget, which is also its CPU limit (bench-a keeps 1.3 cores).
            gateways.settings = dataclasses.replace(settings, cpu_per_gateway=0.5)
            gw_b, _ = gateways.launch("bench-b", ROOM_B)
            cid_b = gateways.container_id(gw_b)
            gateways.wait_state("bench-a", GatewayState.READY)
            say(f"two gateways in calls: window {args.two_window:.0f} s")
            with held_call(stack, gw_a.sip_uri, ROOM_A, workdir / "two-a", CALLER_TONE, "alice") as call_a, \
                    held_call(stack, gw_b.sip_uri, ROOM_B, workdir / "two-b", TONE_B, "bob") as call_b:
                time.sleep(args.settle)
                both = Window({"bench-a": cid_a, "bench-b": cid_b}).run(args.two_window)
                check_a = media_check(call_a, workdir / "two-a" / "room-heard.wav")
                check_b = media_check(call_b, workdir / "two-b" / "room-heard.wav")
                check_a["participant_videos"] = video_elements(call_a.participant)
                check_b["participant_videos"] = video_elements(call_b.participant)
            check_a |= audio_verdicts(call_a, check_a, CALLER_TONE)
            check_b |= audio_verdicts(call_b, check_b, TONE_B)
            results["two_gateways"] = {
                "bench-a": both.gateway_report("bench-a") | {"media": check_a, "audible_after_s": call_a.audible_after},
                "bench-b": both.gateway_report("bench-b") | {"media": check_b, "audible_after_s": call_b.audible_after},
                "host": both.host_report(),
            }
    finally:
        say("stopping gateways and the stack")
        gateways.stop_all()
        stack.stop()

    # 4. codec floor, on the now quiet host (CPU seconds of each ffmpeg child are counted, not wall time)
    say("codec floor (ffmpeg)")
    streams = call_streams(results["in_call"]["negotiated"], results["in_call"]["participant_videos"])
    results["codec_floor"] = codecfloor.measure(streams["sip_in"], streams["sip_out"], streams["room_out"],
                                                streams["room_in"], workdir / "floor", seconds=args.floor_seconds)
    h264 = dataclasses.replace(streams["sip_out"], codec="H264")
    h264_in = dataclasses.replace(streams["sip_in"], codec="H264")
    results["codec_floor"]["with_h264_on_the_sip_leg"] = codecfloor.measure(
        h264_in, h264, streams["room_out"], streams["room_in"], workdir / "floor", seconds=args.floor_seconds)
    results["derived"] = derive(results)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return results


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios and capacity from the measured figures."""
    gw = results["in_call"]["gateway"]
    floor = results["codec_floor"]
    cores = results["machine"]["nproc"]
    total_pct = gw["cpu_pct_cgroup_total"]
    pss = sum(g["pss"] for g in gw["memory"]["processes"].values())
    memory = results["machine"]["memory_gib"] * 2**30
    out: dict[str, Any] = {
        "in_call_cores_per_gateway": round(total_pct / 100, 2),
        "ratio_to_sip_leg_floor": round(total_pct / max(0.1, floor["sip_leg_pct_of_one_core"]), 1),
        "ratio_to_both_legs_floor": round(total_pct / max(0.1, floor["both_legs_pct_of_one_core"]), 1),
        "anchor_ratio": round(total_pct / ANCHOR_CPU_PCT["total"], 2),
        "in_call_pss_mib": round(pss / 2**20),
        "gateways_by_cpu_no_headroom": int(cores * 100 // max(1.0, total_pct)),
        "gateways_by_cpu_80pct": int(cores * 80 // max(1.0, total_pct)),
        "gateways_by_memory": int(memory // max(1, pss)),
    }
    testbed = {k: v for k, v in results["in_call"]["host"]["cpu_pct_by_group"].items() if k != "gateway containers"}
    out["testbed_cpu_pct_during_call"] = testbed
    if "two_gateways" in results:
        two = results["two_gateways"]
        out["two_gateways_cgroup_total_pct"] = round(
            two["bench-a"]["cpu_pct_cgroup_total"] + two["bench-b"]["cpu_pct_cgroup_total"], 1)
        names = ("bench-a", "bench-b")
        out["two_gateways_audio_ok"] = all(two[g]["media"]["room_audio_ok"] and two[g]["media"]["caller_audio_ok"]
                                           for g in names)
        out["two_gateways_room_video_fps"] = [remote_fps(two[g]["media"]["participant_videos"]) for g in names]
        out["two_gateways_video_ok"] = all(two[g]["media"]["room_video_changing"] and (fps or 0) >= VIDEO_OK_FPS
                                           for g, fps in zip(names, out["two_gateways_room_video_fps"]))
    return out


def remote_fps(videos: dict[str, dict[str, float]]) -> float | None:
    """Displayed frame rate of the (first) remote video on a participant's page."""
    return next((v["fps"] for k, v in videos.items() if k != "local"), None)


def summary(results: dict[str, Any]) -> str:
    """A human-readable digest of the results record."""
    def pct_line(label: str, report: dict[str, Any]) -> str:
        c = report["cpu_pct"]
        return (f"  {label:<10} total {report['cpu_pct_cgroup_total']:6.1f} %  baresip {c['baresip']:5.1f}  "
                f"chromium {c['chromium']:5.1f}  ffmpeg {c['ffmpeg']:5.1f}  rest {c['rest']:5.1f}  "
                f"(cgroup rss {report['memory']['cgroup']['rss_bytes'] / 2**20:.0f} MiB, PSS "
                f"{sum(g['pss'] for g in report['memory']['processes'].values()) / 2**20:.0f} MiB)")

    m, d, f = results["machine"], results["derived"], results["codec_floor"]
    lr, la = results["launch_to_ready_s"], results["answer_to_audible_s"]
    lines = [
        f"sipmediagw benchmark: {m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"docker {m['docker_server']}, image {m['image']['size_mb']} MB",
        f"  launch -> ready      median {lr['median']} s (min {lr['min']}, max {lr['max']}, n={len(lr['values'])})",
        f"  answer -> audible    median {la['median']} s (min {la['min']}, max {la['max']}, n={len(la['values'])})",
        "  CPU in % of one core, per gateway:",
        pct_line("idle", results["idle"]["gateway"]),
        pct_line("in call", results["in_call"]["gateway"]),
        f"  room sees the gateway's camera at {remote_fps(results['in_call']['participant_videos'])} fps; "
        f"media after the window: {results['in_call']['media_after_window']}",
        f"  host busy during the call: {results['in_call']['host']['busy_pct_of_one_core']} % of one core "
        f"(test bed: {d['testbed_cpu_pct_during_call']})",
        f"  codec floor per 60 s: SIP leg {f['sip_leg_pct_of_one_core']} %, both legs "
        f"{f['both_legs_pct_of_one_core']} % of one core -> gateway / floor = {d['ratio_to_sip_leg_floor']}x "
        f"(SIP leg), {d['ratio_to_both_legs_floor']}x (both legs)",
        f"  anchor (SIPMediaGW 230 %): this gateway uses {d['anchor_ratio']}x of it",
        f"  capacity on this host: {d['gateways_by_cpu_no_headroom']} by CPU (no headroom), "
        f"{d['gateways_by_cpu_80pct']} at 80 %, {d['gateways_by_memory']} by memory",
    ]
    if "two_gateways" in results:
        two = results["two_gateways"]
        lines.append(f"  two gateways in calls: containers {d['two_gateways_cgroup_total_pct']} %, host busy "
                     f"{two['host']['busy_pct_of_one_core']} % of one core, audio ok both ways: {d['two_gateways_audio_ok']}, "
                     f"video ok (>= {VIDEO_OK_FPS:g} fps in the room): {d['two_gateways_video_ok']}")
        for g in ("bench-a", "bench-b"):
            media = dict(two[g]["media"])
            videos = media.pop("participant_videos", {})
            lines.append(f"    {g}: {two[g]['cpu_pct_cgroup_total']} %, room sees its camera at "
                         f"{remote_fps(videos)} fps, {media}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the documented run (about 8 minutes)."""
    parser = argparse.ArgumentParser(prog="python3 -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    parser.add_argument("--workdir", help="keep logs and recordings here (default: a new temp folder)")
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30, help="idle window, seconds")
    parser.add_argument("--window", type=float, default=60, help="in-call window, seconds")
    parser.add_argument("--two-window", type=float, default=30, help="two-gateway window, seconds")
    parser.add_argument("--no-two", dest="two", action="store_false", help="skip the two-gateway run")
    parser.add_argument("--settle", type=float, default=5, help="seconds before each window")
    parser.add_argument("--floor-seconds", type=float, default=60, help="seconds of media in the codec floor")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: stop the gateways and the stack


def main(argv: list[str] | None = None) -> int:
    """Run, print the summary, write the JSON."""
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    results = run(args)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
