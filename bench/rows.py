"""The rows of issue 12's table that the first bench did not measure: the audio-only call, dial -> heard through a
pool gateway, and N calls at once (audio+video, audio-only). Each returns a plain dict for results.json, media
verdicts included; `bench.run` calls them in order and cleans up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from sipmediagw.demo import CALLER_TONE, ROOM_LISTEN_S, ROOM_TONE, make_caller, wait_audible
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed.stack import SIP_DOMAIN, LocalStack
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, check_tone

from .callerstats import log_offset, median_fps, received_fps_since
from .janusrooms import JanusRooms
from .mixcheck import check_in_mix
from .procstats import Window

FPS_OK = 14.0  # issue 12: ">= 14 fps both ways"
AV_ROOM = "1234"  # every audio+video gateway of a concurrency run, with one participant
POOL_ROOM = "1236"  # the meeting the pool calls dial
AUDIO_ROOMS = range(1234, 1241)  # audio-only concurrency: two gateways per room (the test bed's 7 rooms: <= 14)
AV_TONES = [1000, 700, 1300, 1600]  # callers of the audio+video concurrency run (the room sends 440 Hz)


def audio_tones(n: int) -> list[int]:
    """One tone per audio-only caller, 150 Hz apart (the narrowband check resolves +-20 Hz), below 4 kHz (G.711)."""
    return [500 + 150 * i for i in range(n)]


# --- page-side frame rates, timed by the page's own clock ---

_PAGE_VIDEOS = ("return {t: performance.now(), videos: Array.from(document.querySelectorAll('video')).map("
                "function (v) { return {id: v.id, w: v.videoWidth, h: v.videoHeight, f: v.getVideoPlaybackQuality ? "
                "v.getVideoPlaybackQuality().totalVideoFrames : 0}; })};")


def page_videos(participant: Participant) -> dict[str, Any]:
    """One reading of every <video> on the participant's page: frames shown so far, size, page time."""
    assert participant.driver is not None
    return dict(participant.driver.execute_script(_PAGE_VIDEOS))


def page_fps(first: dict[str, Any], second: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Displayed frame rate of each video between two readings ('local' = the participant's own camera)."""
    elapsed = max(1e-3, (second["t"] - first["t"]) / 1000)
    before = {v["id"]: v for v in first["videos"]}
    return {v["id"]: {"width": v["w"], "height": v["h"],
                      "fps": round((v["f"] - before.get(v["id"], v)["f"]) / elapsed, 1)}
            for v in second["videos"]}


def remote_rates(videos: dict[str, dict[str, float]]) -> list[float]:
    """Frame rates of the remote videos (the gateways' cameras), highest first."""
    return sorted((v["fps"] for k, v in videos.items() if k != "local"), reverse=True)


# --- a pool gateway: the caller dials the meeting ---


def pool_calls(stack: LocalStack, gateway: str, count: int, workdir: Path, wait_ready: Callable[[str], bool],
               say: Callable[[str], None]) -> dict[str, Any]:
    """`count` calls to sip:<POOL_ROOM>@domain, hunted to the (only) pool gateway: dial -> the caller's tone heard in
    the room; each call's audio judged both ways over ROOM_LISTEN_S (room) and the whole call (caller)."""
    calls: list[dict[str, Any]] = []
    with Participant(base_url=stack.base_url, room=POOL_ROOM, tone_hz=ROOM_TONE, name="pool-room",
                     workdir=workdir / "participant") as participant, \
            make_caller(stack, workdir / "caller", tone=CALLER_TONE) as caller:
        caller.wait_registered(30)
        for i in range(count):
            record: dict[str, Any] = {}
            dialled = time.monotonic()
            caller.dial(f"sip:{POOL_ROOM}@{SIP_DOMAIN}")
            caller.wait_established(60)
            record["dial_to_answer_s"] = round(time.monotonic() - dialled, 2)
            heard = wait_audible(participant, CALLER_TONE, 60)
            record["dial_to_heard_s"] = round(time.monotonic() - dialled, 2) if heard else None
            recording = participant.record_remote_audio(workdir / f"room-heard-{i + 1}.wav", ROOM_LISTEN_S)
            caller.hangup()
            caller.wait_closed(30)
            record |= judge_single(recording, CALLER_TONE, caller)
            calls.append(record)
            say(f"pool call {i + 1}/{count}: dial -> heard {record['dial_to_heard_s']} s, audio clean both ways: "
                f"{record['audio_ok']}")
            if not wait_ready(gateway):
                say(f"{gateway} not ready again after call {i + 1}")
                break
    return {"room": POOL_ROOM, "dialled": f"sip:{POOL_ROOM}@{SIP_DOMAIN}", "calls": calls}


def judge_single(recording: Path | None, tone: int, caller: Any) -> dict[str, Any]:
    """After hang-up: the caller's tone in the room's recording, the room's tone in the caller's (testbed/tones.py,
    the same check as the fixed-room calls)."""
    out: dict[str, Any] = {}
    try:
        room = (check_tone(recording, tone, caller.sent_level(), min_window=ROOM_LISTEN_S - 2)
                if recording else None)
        out |= {"room_audio": room.summary() if room else "no audio", "room_audio_ok": bool(room and room.ok)}
    except Exception as exc:  # noqa: BLE001 - a failed measurement is a failed check, reported
        out |= {"room_audio": f"not measured: {exc}", "room_audio_ok": False}
    try:
        heard = caller.check_heard(ROOM_TONE, MAKE_TONE_LEVEL_DB)
        out |= {"caller_audio": heard.summary(), "caller_audio_ok": heard.ok,
                "caller_audible_share": round(heard.audible_share, 2)}
    except Exception as exc:  # noqa: BLE001
        out |= {"caller_audio": f"not measured: {exc}", "caller_audio_ok": False}
    out["audio_ok"] = out["room_audio_ok"] and out["caller_audio_ok"]
    return out


# --- N calls at once ---


@dataclasses.dataclass
class Concurrent:
    """What a concurrency run needs from the bench: launch/stop gateways, their container ids."""

    stack: LocalStack
    launch: Callable[[str, str], Any]  # (name, room) -> LaunchResult, ready
    container_id: Callable[[Any], str]
    stop: Callable[[str], Any]
    say: Callable[[str], None]


def concurrent_calls(bench: Concurrent, n: int, audio_only: bool, window: float, settle: float,
                     workdir: Path) -> dict[str, Any]:
    """N gateways, N callers, all in calls at once; CPU of every gateway and of the host over `window`; then media
    checks for every call.

    Audio+video: every gateway in ONE room with ONE Chromium participant (N participants' Chromiums would eat the
    2-core host); each gateway still publishes its camera and receives the room (the participant and the other
    gateways). Video: the participant's page shows each gateway's camera at >= 14 fps, and each caller decodes the
    room view at >= 14 fps (baresip's own frame count), both over the window. Audio: each caller's tone in the
    room's mix, the room's 440 Hz in each caller's mix (narrowband, bench/mixcheck.py).
    Audio-only: gateways in pairs, one room per pair, no browser participant: each caller must hear the other
    caller's tone, clean, through both gateways (a failure in either direction of either gateway shows).
    """
    kind = "audio" if audio_only else "av"
    names = [f"bench-{kind}{n}-{i + 1}" for i in range(n)]
    if audio_only:
        # pairs; with an odd n the last caller makes the last room a three-way call
        rooms = [str(AUDIO_ROOMS[max(0, min(i // 2, n // 2 - 1))]) for i in range(n)]
        tones = audio_tones(n)
    else:
        rooms, tones = [AV_ROOM] * n, AV_TONES[:n]
    out: dict[str, Any] = {"n": n, "audio_only": audio_only, "rooms": rooms, "tones": tones}
    janus = JanusRooms(bench.stack.janus.api_url)
    try:
        began = time.monotonic()
        launched = [bench.launch(name, room) for name, room in zip(names, rooms)]
        out["launch_all_s"] = round(time.monotonic() - began, 1)
        cids = {name: bench.container_id(result) for name, result in zip(names, launched)}
        with contextlib.ExitStack() as held:
            participant = None if audio_only else held.enter_context(
                Participant(base_url=bench.stack.base_url, room=AV_ROOM, tone_hz=ROOM_TONE, name="room",
                            workdir=workdir / "participant"))
            callers = [held.enter_context(make_caller(bench.stack, workdir / f"caller{i + 1}", tone=tones[i],
                                                      index=i, video=not audio_only)) for i in range(n)]
            for caller in callers:
                caller.wait_registered(30)
            dialled = time.monotonic()
            for caller, result in zip(callers, launched):
                caller.dial(result.sip_uri)
            for caller in callers:
                caller.wait_established(60)
            expected = {room: rooms.count(room) + (0 if audio_only else 1) for room in set(rooms)}
            joined = all(janus.wait_publishers(room, count, 120) for room, count in expected.items())
            out["all_in_rooms_after_s"] = round(time.monotonic() - dialled, 1) if joined else None
            bench.say(f"{n} {kind} calls up (all publishing: {joined}); settling {settle:g} s, window {window:g} s")
            time.sleep(settle)  # a settle, not a wait: the window should not include the joins' start-up burst
            page_before = page_videos(participant) if participant else None
            caller_offsets = [log_offset(c) for c in callers]
            measured = Window(cids).run(window)
            if participant:
                room_videos = page_fps(page_before, page_videos(participant))  # type: ignore[arg-type]
                out["room_sees_cameras_fps"] = remote_rates(room_videos)
                out["room_videos"] = room_videos
                detail = [received_fps_since(c, o) for c, o in zip(callers, caller_offsets)]
                out["callers_receive_fps"] = [median_fps(d) for d in detail]
                out["callers_receive_fps_detail"] = detail
                recording = participant.record_remote_audio(workdir / "room-heard.wav", ROOM_LISTEN_S)
            out["gateways"] = {name: measured.gateway_report(name) for name in names}
            out["host"] = measured.host_report()
            for caller in callers:
                caller.hangup()
            for caller in callers:
                caller.wait_closed(30)
            out["calls"] = judge_concurrent(callers, rooms, tones, recording if participant else None, audio_only)
    finally:
        for name in names:
            try:
                bench.stop(name)
            except Exception as exc:  # noqa: BLE001 - clean-up goes on
                bench.say(f"could not stop {name}: {exc}")
    gateways = out.get("gateways", {})
    out["cpu_pct_total"] = round(sum(g["cpu_pct_cgroup_total"] for g in gateways.values()), 1)
    out["cpu_pct_per_call"] = round(out["cpu_pct_total"] / n, 1) if gateways else None
    calls = out.get("calls", [])
    out["audio_ok"] = len(calls) == n and all(c["audio_ok"] for c in calls)
    if audio_only:
        out["video_ok"] = None
    else:
        room_fps, caller_fps = out.get("room_sees_cameras_fps", []), out.get("callers_receive_fps", [])
        out["video_ok"] = (len(room_fps) >= n and all(f >= FPS_OK for f in room_fps[:n])
                           and len(caller_fps) == n and all(f is not None and f >= FPS_OK for f in caller_fps))
    out["ok"] = out["audio_ok"] and out["video_ok"] is not False
    return out


def judge_concurrent(callers: list[Any], rooms: list[str], tones: list[int], room_recording: Path | None,
                     audio_only: bool) -> list[dict[str, Any]]:
    """Per call, after hang-up: what its caller heard (every other tone of its room, narrowband) and, with a room
    participant, its tone in the room's recording."""
    levels = []
    for caller in callers:
        try:
            levels.append(caller.sent_level())
        except Exception:  # noqa: BLE001 - no encoder dump: nothing was sent
            levels.append(None)
    calls = []
    for i, caller in enumerate(callers):
        record: dict[str, Any] = {"tone": tones[i], "room": rooms[i]}
        # what this caller must hear: the room's participant, or the other callers of its room
        expected = [(ROOM_TONE, MAKE_TONE_LEVEL_DB)] if not audio_only else [
            (tones[j], levels[j]) for j in range(len(callers)) if j != i and rooms[j] == rooms[i]]
        heard = []
        try:
            recording = caller.closed_recording("dec")
            for hz, level in expected:
                heard.append(check_in_mix(recording, hz, level).as_dict() if level is not None
                             else {"hz": hz, "ok": False, "summary": "its sender sent nothing"})
        except Exception as exc:  # noqa: BLE001
            heard.append({"ok": False, "summary": f"not measured: {exc}"})
        record["caller_hears"] = heard
        ok = bool(heard) and all(h["ok"] for h in heard)
        if not audio_only:
            if room_recording is None or levels[i] is None:
                record["room_hears"] = {"ok": False, "summary": "no room recording / nothing sent"}
            else:
                record["room_hears"] = check_in_mix(room_recording, tones[i], levels[i]).as_dict()
            ok = ok and record["room_hears"]["ok"]
        record["audio_ok"] = ok
        calls.append(record)
    return calls
