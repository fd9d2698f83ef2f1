"""Benchmark real sipmediagw gateways on this host: every row of issue 12's table, each with its codec floor.

    python3 -m bench.run [--parts launch,idle,...] [--table bench/table.md]   # writes bench/results.json
    python3 -m bench.run --table-only                                        # the table of the last run

Starts its own Kamailio + Janus on free ports of the Docker bridge address, launches gateways named `bench-*` with
a private logs folder, places real calls (baresip caller -> Kamailio -> gateway -> Janus room ->
headless Chromium participant), prints the table and writes JSON. Everything it started is stopped at the end, also
on failure or Ctrl-C. Not a test: nothing here asserts a time (the table says which targets were met). See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import docker
from sipmediagw.demo import CALLER_TONE, ROOM_LISTEN_S, ROOM_TONE, make_caller, run_test_call, wait_audible
from sipmediagw.errors import GatewayNotFound
from sipmediagw.labels import GATEWAY as GATEWAY_LABEL
from sipmediagw.launcher import LaunchRequest, LaunchResult, cpu_limit, launch, log_folder, stop_gateway
from sipmediagw.settings import Settings, load_settings
from sipmediagw.state import GatewayState, read_state
from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.network import free_port, free_port_range
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import LocalStack
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, check_tone

from . import codecfloor, rows, table
from .callerstats import log_offset, median_fps, received_fps_since
from .codecfloor import Stream
from .machine import machine_info
from .procstats import Window

IMAGE = "sipmediagw:latest"
ROOM_A = "1234"
CAMERA_FPS = 15.0  # the gateway's camera for the room (inject.js captureStream)


def say(message: str) -> None:
    """Progress on stderr, with the elapsed time."""
    sys.stderr.write(f"[bench {time.monotonic() - T0:6.1f}s] {message}\n")
    sys.stderr.flush()


T0 = time.monotonic()


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
        self.planned = 1  # how many of ours will run at once (the concurrency rows raise it)
        self.budgets: dict[str, dict[str, Any]] = {}  # name -> the budget it was launched with, and why

    def others_running(self) -> list[str]:
        """Gateways on this engine that this benchmark did not start (the machine is shared)."""
        found = self.client.containers.list(filters={"label": GATEWAY_LABEL})
        return sorted(str(c.labels.get(GATEWAY_LABEL)) for c in found if c.labels.get(GATEWAY_LABEL) not in
                      self.started)

    def budget(self) -> tuple[float, list[str]]:
        """The CPU budget to launch with: the settings' one, lowered so that the launcher's admission (which counts
        every gateway on the engine, other users' too) takes ours; the quota is twice the budget, at most all cores.
        """
        others = self.others_running()
        cores = os.cpu_count() or 1
        # ADMISSION_SLACK: the admitted count also caps the userspace slot indices, and other users' claims (some
        # left by gateways that already exited) hold indices beyond their running gateways (seen: "no free
        # userspace slot" at the 8th of 10); the budget only serves admission, the quota is set after the launch
        fit = math.floor(cores / (len(others) + self.planned + ADMISSION_SLACK) * 1000) / 1000
        return min(self.settings.cpu_per_gateway, fit), others

    def launch(self, name: str, room: str | None) -> tuple[LaunchResult, float]:
        """Launch and wait until ready; (result, seconds from the call to ready).

        The quota is then set to what the gateway would get on a host of its own with `planned` gateways (other
        users' gateways only lowered the budget to get ours admitted): `docker update --cpus`, before any call."""
        budget, others = self.budget()
        cores = os.cpu_count() or 1
        intended = cpu_limit(min(self.settings.cpu_per_gateway, math.floor(cores / self.planned * 1000) / 1000), cores)
        self.budgets[name] = {"admitted_with_cpu_per_gateway": budget, "cpu_quota_cores": round(intended, 3),
                              "other_gateways_on_engine": others}
        self.started.add(name)
        began = time.monotonic()
        result = launch(dataclasses.replace(self.settings, cpu_per_gateway=budget), LaunchRequest(name, room),
                        self.client)
        seconds = time.monotonic() - began
        if abs(intended - cpu_limit(budget, cores)) > 1e-3:
            subprocess.run(["docker", "update", "--cpus", f"{intended:.3f}", result.container], check=True,
                           capture_output=True, text=True, timeout=30)
        return result, seconds

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
              name: str, **caller_options: Any) -> Iterator[HeldCall]:
    """Participant joins `room`, the caller (sending `tone`) dials the gateway; yields once the tone is heard in the
    room; hangs up on exit."""
    with Participant(base_url=stack.base_url, room=room, tone_hz=ROOM_TONE, name=name,
                     workdir=workdir / "participant") as participant, \
            make_caller(stack, workdir / "caller", tone=tone, **caller_options) as caller:
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

SPARE_ACCOUNTS = 8
ADMISSION_SLACK = 4
PARTS = ("launch", "idle", "pool", "fixed", "av", "audio", "av-concurrent", "audio-concurrent", "floor")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The selected parts (all by default); returns the results record."""
    parts = set(args.parts)
    client = docker.from_env()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sipmediagw-bench-"))
    # Pinned by id: other engineers rebuild sipmediagw:latest on this machine, and a run whose gateways came from two
    # different images (seen: a rebuild in the middle of the ten audio-only launches) measures neither.
    image = str(client.images.get(IMAGE).id)
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python3 -m bench.run " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "parts": [p for p in PARTS if p in parts],
        "machine": machine_info(client, image) | {"image_tag": IMAGE},
        "workdir": str(workdir),
    }
    # one gateway account and one caller account per concurrent call; the launcher's account claims are engine-wide
    # and other users of this engine's test beds hold gw1, gw2...: spare accounts keep ours launchable
    calls_at_once = max([2, *(args.av_counts if "av-concurrent" in parts else []),
                         *(args.audio_counts if "audio-concurrent" in parts else [])])
    accounts = calls_at_once + SPARE_ACCOUNTS
    probe = LocalStack(workdir / "stack")  # only for the bridge address
    stack = LocalStack(workdir / "stack", gateways=accounts, callers=calls_at_once, sip_port=free_port_range(probe.ip),
                       janus_http_port=free_port(probe.ip), janus_web_port=free_port(probe.ip))
    say(f"starting Kamailio sip:{stack.registrar} and Janus {stack.base_url} (workdir {workdir})")
    stack.start()
    settings = load_settings(overrides={
        "image": image, "platform": "janus", "base_url": stack.base_url, "accounts_file": stack.accounts_file(),
        "logs_dir": workdir / "logs", "media": "userspace", "backend": "engine",
        "ready_timeout": 180})  # the default budget: it is also each gateway's CPU limit, so it must not be lowered
    gateways = Gateways(settings, client)
    try:
        def attempt(label: str, part: Any, *part_args: Any) -> None:
            # A part that breaks (a call never answered on a saturated host...) is recorded and its gateways
            # stopped; the other rows are still measured.
            try:
                part(*part_args)
            except Exception as exc:  # noqa: BLE001
                say(f"{label} broke: {type(exc).__name__}: {exc}")
                results.setdefault("errors", {})[label] = f"{type(exc).__name__}: {exc}"
                gateways.stop_all()

        if parts & {"launch", "idle", "pool"}:
            attempt("pool gateway", pool_part, args, parts, stack, gateways, workdir, results)
        if parts & {"fixed", "av"}:
            attempt("fixed gateway", fixed_part, args, parts, stack, gateways, workdir, results)
        if "audio" in parts:
            attempt("audio-only gateway", audio_part, args, stack, gateways, workdir, results)
        for part, counts, audio_only in (("av-concurrent", args.av_counts, False),
                                         ("audio-concurrent", args.audio_counts, True)):
            if part not in parts:
                continue
            results[part] = {}
            for n in counts:
                gateways.settings = dataclasses.replace(settings, audio_only=audio_only)
                gateways.planned = n
                bench = rows.Concurrent(stack, lambda name, room: gateways.launch(name, room)[0],
                                        gateways.container_id, gateways.stop, say)
                say(f"{part}: {n} calls at once")
                try:
                    outcome = rows.concurrent_calls(bench, n, audio_only, args.concurrent_window, args.settle,
                                                    workdir / f"{part}-{n}")
                except Exception as exc:  # noqa: BLE001 - a run that breaks is a failed row, the others go on
                    outcome = {"n": n, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                results[part][str(n)] = outcome
                say(f"{part} x{n}: ok {outcome.get('ok')}, audio {outcome.get('audio_ok')}, video "
                    f"{outcome.get('video_ok')}, gateways {outcome.get('cpu_pct_total')} %")
                if not outcome.get("ok"):
                    break  # more calls will not pass where fewer did not
            gateways.settings, gateways.planned = settings, 1
    finally:
        say("stopping gateways and the stack")
        gateways.stop_all()
        stack.stop()

    if "floor" in parts:
        # codec floors, on the now quiet host (CPU seconds of each ffmpeg child are counted, not wall time)
        say("codec floor (ffmpeg)")
        av = results.get("in_call", {})
        streams = call_streams(av.get("negotiated", {}), av.get("participant_videos", {}))
        results["codec_floor"] = codecfloor.measure(streams["sip_in"], streams["sip_out"], streams["room_out"],
                                                    streams["room_in"], workdir / "floor", seconds=args.floor_seconds)
        h264 = dataclasses.replace(streams["sip_out"], codec="H264")
        h264_in = dataclasses.replace(streams["sip_in"], codec="H264")
        results["codec_floor"]["with_h264_on_the_sip_leg"] = codecfloor.measure(
            h264_in, h264, streams["room_out"], streams["room_in"], workdir / "floor", seconds=args.floor_seconds)
        audio_codec = "g711" if "PCM" in str(results.get("audio_call", {}).get("negotiated", {}).get("audio")) \
            else "opus"
        results["codec_floor_audio"] = codecfloor.measure_audio(workdir / "floor", args.floor_seconds, audio_codec)
    results["budgets"] = gateways.budgets
    results["rows"] = table.rows(results)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return results


def pool_part(args: argparse.Namespace, parts: set[str], stack: LocalStack, gateways: Gateways, workdir: Path,
              results: dict[str, Any]) -> None:
    """A pool gateway (`launch` without -r): launch -> ready (stop in between), idle, calls dialling a meeting."""
    name = "bench-pool"
    launches = args.launches if "launch" in parts else 1
    keep = bool(parts & {"idle", "pool"})
    ready, stopped = [], []
    for i in range(launches):
        result, seconds = gateways.launch(name, None)
        ready.append(seconds)
        say(f"pool launch {i + 1}/{launches}: ready after {seconds:.2f} s")
        if i < launches - 1 or not keep:
            stopped.append(gateways.stop(name))
    if "launch" in parts:
        results["launch_to_ready_s"] = stats(ready) | {"mode": "pool (no -r)"}
        results["stop_s"] = stats(stopped)
    if "idle" in parts:
        cid = gateways.container_id(result)
        time.sleep(args.settle)  # a settle after ready, not a wait for a condition
        say(f"idle pool gateway: window {args.idle:.0f} s")
        idle = Window({name: cid}).run(args.idle)
        results["idle"] = {"gateway": idle.gateway_report(name), "host": idle.host_report(), "mode": "pool"}
    if "pool" in parts:
        results["pool_calls"] = rows.pool_calls(
            stack, name, args.calls, workdir / "pool",
            lambda gw: gateways.wait_state(gw, GatewayState.READY), say)
        results["dial_to_heard_pool_s"] = stats([c["dial_to_heard_s"] for c in results["pool_calls"]["calls"]])
    gateways.stop(name)


def fixed_part(args: argparse.Namespace, parts: set[str], stack: LocalStack, gateways: Gateways, workdir: Path,
               results: dict[str, Any]) -> None:
    """A fixed-room gateway (`launch -r 1234`): answer -> audible calls (the demo's checked test call), then one
    audio+video call held for the CPU window."""
    gw_a, seconds = gateways.launch("bench-a", ROOM_A)
    results["fixed_launch_to_ready_s"] = round(seconds, 2)
    cid_a = gateways.container_id(gw_a)
    if "fixed" in parts:
        calls = []
        for i in range(args.calls):
            report = run_test_call(stack, gw_a.sip_uri, ROOM_A, workdir / f"call-{i + 1}")
            calls.append(dataclasses.asdict(report) | {"ok": report.ok, "problems": report.problems()})
            say(f"call {i + 1}/{args.calls}: audible in the room {report.room_audible_after} s after answer, "
                f"media both ways: {report.ok}")
            gateways.wait_state("bench-a", GatewayState.READY)
        results["calls"] = calls
        results["answer_to_audible_s"] = stats([c["room_audible_after"] for c in calls])
        results["answer_to_room_joined_s"] = stats([c["room_joined_after"] for c in calls])
        results["dial_to_answer_s"] = stats([c["answered_after"] for c in calls])
    if "av" in parts:
        say(f"audio+video call: window {args.window:.0f} s")
        with held_call(stack, gw_a.sip_uri, ROOM_A, workdir / "held", CALLER_TONE, "participant") as call:
            time.sleep(args.settle)  # a settle: the window should not include the join's start-up burst
            page_before, caller_offset = rows.page_videos(call.participant), log_offset(call.caller)
            window = Window({"bench-a": cid_a}).run(args.window)
            videos = rows.page_fps(page_before, rows.page_videos(call.participant))
            caller_fps = received_fps_since(call.caller, caller_offset)
            after = media_check(call, workdir / "held" / "room-heard.wav")
        after |= audio_verdicts(call, after, CALLER_TONE)
        media = negotiated(gateways.app_log("bench-a"), (workdir / "held" / "caller" / "baresip.log").read_text(
            errors="replace"))
        results["in_call"] = {"gateway": window.gateway_report("bench-a"), "host": window.host_report(),
                              "audible_after_s": call.audible_after, "media_after_window": after,
                              "negotiated": media, "participant_videos": videos,
                              "room_sees_camera_fps": remote_fps(videos), "caller_receives_fps": median_fps(caller_fps),
                              "caller_receives_fps_detail": caller_fps}
    gateways.stop("bench-a")


def audio_part(args: argparse.Namespace, stack: LocalStack, gateways: Gateways, workdir: Path,
               results: dict[str, Any]) -> None:
    """An audio-only gateway (`launch --audio-only -r 1234`) in a call with a phone (no video in its SDP)."""
    base = gateways.settings
    gateways.settings = dataclasses.replace(base, audio_only=True)
    try:
        gw, seconds = gateways.launch("bench-audio", ROOM_A)
        cid = gateways.container_id(gw)
        say(f"audio-only call: window {args.window:.0f} s")
        folder = workdir / "audio-call"
        with held_call(stack, gw.sip_uri, ROOM_A, folder, CALLER_TONE, "participant", video=False) as call:
            time.sleep(args.settle)  # a settle, as above
            window = Window({"bench-audio": cid}).run(args.window)
            recording = call.participant.record_remote_audio(folder / "room-heard.wav", ROOM_LISTEN_S)
        after = audio_verdicts(call, {"room_recording": str(recording) if recording else None}, CALLER_TONE)
        media = negotiated(gateways.app_log("bench-audio"),
                           (folder / "caller" / "baresip.log").read_text(errors="replace"))
        results["audio_call"] = {"gateway": window.gateway_report("bench-audio"), "host": window.host_report(),
                                 "launch_to_ready_s": round(seconds, 2), "audible_after_s": call.audible_after,
                                 "media_after_window": after, "negotiated": media}
        gateways.stop("bench-audio")
    finally:
        gateways.settings = base


def remote_fps(videos: dict[str, dict[str, float]]) -> float | None:
    """Displayed frame rate of the (first) remote video on a participant's page."""
    return next((v["fps"] for k, v in videos.items() if k != "local"), None)


def summary(results: dict[str, Any]) -> str:
    """The issue's table and the test bed's share, for the terminal."""
    return table.markdown(results)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the documented full run (about 13 minutes)."""
    parser = argparse.ArgumentParser(prog="python3 -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    parser.add_argument("--table", type=Path, metavar="FILE",
                        help="also write the markdown table to FILE (e.g. bench/table.md)")
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing: print the table of the results in --out")
    parser.add_argument("--parts", type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
                        default=list(PARTS), help=f"comma-separated, of: {','.join(PARTS)} (default: all)")
    parser.add_argument("--workdir", help="keep logs and recordings here (default: a new temp folder)")
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="fixed-room calls and pool calls, each")
    parser.add_argument("--idle", type=float, default=30, help="idle window, seconds")
    parser.add_argument("--window", type=float, default=60, help="single-call windows (a+v, audio-only), seconds")
    parser.add_argument("--concurrent-window", type=float, default=30, help="concurrency windows, seconds")
    parser.add_argument("--av-counts", type=lambda t: [int(x) for x in t.split(",")], default=[2, 3],
                        help="audio+video calls at once, tried in order until one fails (default 2,3)")
    parser.add_argument("--audio-counts", type=lambda t: [int(x) for x in t.split(",")], default=[10],
                        help="audio-only calls at once (default 10; at most 14: two per test-bed room)")
    parser.add_argument("--settle", type=float, default=5, help="seconds before each window")
    parser.add_argument("--floor-seconds", type=float, default=60, help="seconds of media in the codec floor")
    args = parser.parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: stop the gateways and the stack


def main(argv: list[str] | None = None) -> int:
    """Run, print the summary, write the JSON."""
    args = parse_args(argv)
    if args.table_only:
        results = json.loads(args.out.read_text())
    else:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _terminate)
        results = run(args)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")  # str: a stray numpy scalar
    text = summary(results)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")
        print(f"table: {args.table}")
    if not args.table_only:
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
