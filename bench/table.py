"""Issue 12's table from a results record: measured value, codec floor, target, met or not, media checks; and the
test bed's own load in each window (it shares the host with the gateways).

    python3 -m bench.run --table-only      # prints this for bench/results.json
"""

from __future__ import annotations

from typing import Any

FPS_OK = 14.0


def _get(record: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def _fps_ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and value >= FPS_OK


def _verdict(*checks: bool | None) -> bool | None:
    """True when every check passed, False when one failed, None when nothing was measured."""
    if any(c is None for c in checks):
        return None if all(c is None for c in checks) else False
    return all(checks)


def _row(figure: str, measured: str, floor: str, target: str, met: bool | None, checks: str) -> dict[str, Any]:
    return {"figure": figure, "measured": measured, "floor": floor, "target": target, "met": met, "checks": checks}


def _cores(pct: float) -> str:
    return f"{pct / 100:.2f} cores"


def av_row(results: dict[str, Any]) -> dict[str, Any]:
    """One audio+video call: container CPU against the SIP leg's codec floor; media checks both ways."""
    call, floor = results.get("in_call"), results.get("codec_floor")
    target = "≤ 0.35 cores, ≤ 3.5× floor"
    if not call:
        return _row("audio+video call, container CPU", "not run", "–", target, None, "–")
    pct = call["gateway"]["cpu_pct_cgroup_total"]
    media = call["media_after_window"]
    room_fps, caller_fps = call.get("room_sees_camera_fps"), call.get("caller_receives_fps")
    media_ok = bool(media.get("room_audio_ok") and media.get("caller_audio_ok") and media.get("room_video_changing")
                    and _fps_ok(room_fps) and _fps_ok(caller_fps))
    checks = (f"room audio {'ok' if media.get('room_audio_ok') else 'FAIL'}, caller audio "
              f"{'ok' if media.get('caller_audio_ok') else 'FAIL'}, room sees camera {room_fps} fps, caller receives "
              f"{caller_fps} fps")
    if not floor:
        return _row("audio+video call, container CPU", _cores(pct), "not measured", target, None, checks)
    sip = floor["sip_leg_pct_of_one_core"]
    both = floor["both_legs_pct_of_one_core"]
    ratio = pct / max(0.1, sip)
    return _row("audio+video call, container CPU", f"{_cores(pct)}, {ratio:.1f}× floor",
                f"SIP leg {sip} %, both legs {both} % of a core ({pct / max(0.1, both):.1f}× both)", target,
                pct <= 35 and ratio <= 3.5 and media_ok, checks)


def audio_row(results: dict[str, Any]) -> dict[str, Any]:
    """One audio-only call (audio-only gateway, phone caller)."""
    call, floor = results.get("audio_call"), results.get("codec_floor_audio")
    figure, target = "audio-only call, container CPU", "≤ 0.10 cores"
    if not call:
        return _row(figure, "not run", "–", target, None, "–")
    pct = call["gateway"]["cpu_pct_cgroup_total"]
    media = call["media_after_window"]
    ok = bool(media.get("room_audio_ok") and media.get("caller_audio_ok"))
    codec = _get(call, "negotiated", "audio") or "?"
    floor_text = (f"{floor['codec']} both legs {floor['both_legs_pct_of_one_core']} % of a core "
                  f"({pct / max(0.01, floor['both_legs_pct_of_one_core']):.0f}×)") if floor else "not measured"
    return _row(figure, _cores(pct), floor_text, target, pct <= 10 and ok,
                f"{codec}; room audio {'ok' if media.get('room_audio_ok') else 'FAIL'}, caller audio "
                f"{'ok' if media.get('caller_audio_ok') else 'FAIL'}")


def idle_row(results: dict[str, Any]) -> dict[str, Any]:
    """An idle pool gateway: CPU and memory (working set as `docker stats` shows it)."""
    idle = results.get("idle")
    figure, target = "idle pool gateway (registered, ready)", "≤ 1 % of a core, ≤ 120 MiB"
    if not idle:
        return _row(figure, "not run", "–", target, None, "–")
    gw = idle["gateway"]
    pct = gw["cpu_pct_cgroup_total"]
    memory = gw["memory"]["cgroup"]
    working = memory.get("working_set_bytes", memory["usage_bytes"]) / 2**20
    pss = sum(g["pss"] for g in gw["memory"]["processes"].values()) / 2**20
    return _row(figure, f"{pct} % of a core, {working:.0f} MiB", "0 (no media)", target,
                pct <= 1 and working <= 120,
                f"cgroup rss {memory['rss_bytes'] / 2**20:.0f} MiB, PSS sum {pss:.0f} MiB")


def latency_row(figure: str, series: dict[str, Any] | None, limit: float, checks: str,
                checks_ok: bool | None) -> dict[str, Any]:
    """A time, median of n (min-max)."""
    if not series or series.get("median") is None:
        return _row(figure, "not run" if not series else "never heard", "–", f"≤ {limit:g} s",
                    None if not series else False, checks)
    values = series["values"]
    return _row(figure, f"{series['median']} s median of {len(values)} ({series['min']}–{series['max']})", "–",
                f"≤ {limit:g} s", series["median"] <= limit and bool(checks_ok) and None not in values, checks)


def concurrency_row(figure: str, runs: dict[str, Any] | None, target: str, want: int, floor_pct: float | None,
                    video: bool) -> dict[str, Any]:
    """The most calls at once with every check passing, and what each tried count measured."""
    if not runs:
        return _row(figure, "not run", "–", target, None, "–")
    passed = [int(n) for n, run in runs.items() if run.get("ok")]
    best = max(passed) if passed else 0
    parts = []
    for n, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
        if "error" in run:
            parts.append(f"{n}: broke ({run['error'][:120]})")
            continue
        text = (f"{n}: {'ok' if run['ok'] else 'FAIL'}, gateways {_cores(run['cpu_pct_total'])} "
                f"({run['cpu_pct_per_call']} % per call), audio {'clean' if run['audio_ok'] else 'NOT clean'}")
        if video:
            text += (f", room sees cameras {run.get('room_sees_cameras_fps')} fps, callers receive "
                     f"{run.get('callers_receive_fps')} fps")
        parts.append(text)
    floor = f"{floor_pct} % of a core per call" if floor_pct is not None else "not measured"
    return _row(figure, str(best), floor, target, best >= want, "; ".join(parts))


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of the table, in the issue's order."""
    fixed_calls = results.get("calls") or []
    pool_calls = _get(results, "pool_calls", "calls") or []
    floor_av = _get(results, "codec_floor", "both_legs_pct_of_one_core")
    floor_audio = _get(results, "codec_floor_audio", "both_legs_pct_of_one_core")
    image = _get(results, "machine", "image", "size_mb")
    return [
        av_row(results),
        audio_row(results),
        idle_row(results),
        latency_row("launch → ready (registered), pool gateway", results.get("launch_to_ready_s"), 1.5, "–", True),
        latency_row("dial → caller's voice heard in the room, pool gateway", results.get("dial_to_heard_pool_s"),
                    2.5, f"{sum(c['audio_ok'] for c in pool_calls)}/{len(pool_calls)} calls clean both ways",
                    bool(pool_calls) and all(c["audio_ok"] for c in pool_calls)),
        latency_row("answer → caller audible, fixed-room gateway", results.get("answer_to_audible_s"), 0.8,
                    f"{sum(c['ok'] for c in fixed_calls)}/{len(fixed_calls)} calls: audio + video both ways",
                    bool(fixed_calls) and all(c["ok"] for c in fixed_calls)),
        concurrency_row("concurrent audio+video calls, ≥ 14 fps both ways, audio clean", results.get("av-concurrent"),
                        "≥ 2 (3 stretch)", 2, floor_av, video=True),
        concurrency_row("concurrent audio-only calls, audio clean", results.get("audio-concurrent"), "≥ 10", 10,
                        floor_audio, video=False),
        _row("gateway image", f"{image} MB" if image else "not measured", "–", "≤ 600 MB",
             None if image is None else image <= 600,
             f"`docker image inspect` Size of {_get(results, 'machine', 'image_tag') or 'the image'} "
             f"({str(_get(results, 'machine', 'image', 'id'))[7:19]}, pinned for the whole run)"),
    ]


def testbed_lines(results: dict[str, Any]) -> list[str]:
    """The host's load in each window, split into the gateways and the test bed's parts."""
    windows: list[tuple[str, dict[str, Any]]] = []
    for label, path in (("idle pool gateway", ("idle", "host")), ("audio+video call", ("in_call", "host")),
                        ("audio-only call", ("audio_call", "host"))):
        host = _get(results, *path)
        if host:
            windows.append((label, host))
    for part in ("av-concurrent", "audio-concurrent"):
        for n, run in sorted((results.get(part) or {}).items(), key=lambda kv: int(kv[0])):
            if run.get("host"):
                windows.append((f"{part} ×{n}", run["host"]))
    if not windows:
        return []
    lines = ["", "| window | host busy (of 200 %) | gateway containers | test bed (participant Chromium, callers, "
             "Janus, Kamailio, docker, bench) | other (not ours) | unattributed (processes that came and went) |",
             "|---|---|---|---|---|---|"]
    for label, host in windows:
        groups = dict(host["cpu_pct_by_group"])
        gateways = groups.pop("gateway containers", 0.0)
        other = groups.pop("other", 0.0)
        testbed = ", ".join(f"{k} {v}" for k, v in groups.items() if v >= 0.1)
        rest = host["busy_pct_of_one_core"] - gateways - other - sum(groups.values())
        lines.append(f"| {label} ({host['window_s']} s) | {host['busy_pct_of_one_core']} % | {gateways} % | "
                     f"{sum(groups.values()):.1f} % ({testbed}) | {other} % | {max(0.0, rest):.1f} % |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The table the lead pastes into docs/benchmarks.md, with the machine and the run's time."""
    m = results.get("machine", {})
    head = (f"Run {results.get('started')} – {results.get('finished')}: {m.get('nproc')} × {m.get('cpu_model')}, "
            f"{m.get('memory_gib')} GiB, docker {m.get('docker_server')}, image {_get(m, 'image', 'id')}"
            f"; parts: {', '.join(results.get('parts', []))}")
    lines = [head, "", "| figure | measured | codec floor | target | met | media checks |", "|---|---|---|---|---|---|"]
    for row in results.get("rows") or rows(results):
        met = {True: "yes", False: "**no**", None: "–"}[row["met"]]
        lines.append(f"| {row['figure']} | {row['measured']} | {row['floor']} | {row['target']} | {met} | "
                     f"{row['checks']} |")
    errors = [f"- {part} broke: {error}" for part, error in (results.get("errors") or {}).items()]
    return "\n".join(lines + testbed_lines(results) + ([""] + errors if errors else []))
