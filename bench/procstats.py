"""CPU and memory of a gateway container, per process, sampled from the host (cgroup v1 + /proc via psutil).

CPU is measured as the difference of two snapshots of every process's user+system time, so a figure is exact for
processes that live through the whole window; the container's cgroup counter (cpuacct.usage) is the authoritative
total and also covers processes that exited inside the window.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUPS = ("baresip", "chromium", "ffmpeg", "rest")


def cgroup_dir(controller: str, container_id: str) -> Path:
    """The container's cgroup v1 folder for `controller` (Docker's cgroupfs driver layout)."""
    for candidate in (CGROUP_ROOT / controller / "docker" / container_id,
                      CGROUP_ROOT / controller / "system.slice" / f"docker-{container_id}.scope"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no {controller} cgroup for container {container_id[:12]} under {CGROUP_ROOT}")


def container_pids(container_id: str) -> list[int]:
    """Host PIDs of every process (thread-group leader) in the container."""
    text = (cgroup_dir("cpuacct", container_id) / "cgroup.procs").read_text()
    return [int(line) for line in text.split()]


def cgroup_cpu_seconds(container_id: str) -> float:
    """Total CPU time (user+system, all processes ever in the container) in seconds."""
    return int((cgroup_dir("cpuacct", container_id) / "cpuacct.usage").read_text()) / 1e9


def cgroup_memory(container_id: str) -> dict[str, int]:
    """The container's memory cgroup: usage (incl. page cache), peak usage, and rss/cache/shmem from memory.stat."""
    folder = cgroup_dir("memory", container_id)
    stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines() if " " in line)
    return {
        "usage_bytes": int((folder / "memory.usage_in_bytes").read_text()),
        "max_usage_bytes": int((folder / "memory.max_usage_in_bytes").read_text()),
        "rss_bytes": int(stat.get("total_rss", stat.get("rss", 0))),
        "cache_bytes": int(stat.get("total_cache", stat.get("cache", 0))),
        "shmem_bytes": int(stat.get("total_shmem", stat.get("shmem", 0))),
        # what `docker stats` shows as MEM USAGE on cgroup v1: usage minus the reclaimable inactive file cache
        "working_set_bytes": int((folder / "memory.usage_in_bytes").read_text())
        - int(stat.get("total_inactive_file", stat.get("inactive_file", 0))),
    }


def classify(proc: psutil.Process) -> tuple[str, str]:
    """(group, name) of a gateway process: baresip, chromium (every Chromium process), ffmpeg or rest."""
    try:
        name = proc.name()
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "rest", "?"
    exe = os.path.basename(cmdline[0]) if cmdline else name
    if name == "baresip" or exe == "baresip":
        return "baresip", "baresip"
    if "chromedriver" in (name, exe):
        return "rest", "chromedriver"
    if name.startswith("chrom") or exe.startswith("chromium") or "/chromium/" in (cmdline[0] if cmdline else ""):
        return "chromium", "chromium"
    if name == "ffmpeg" or exe == "ffmpeg":
        return "ffmpeg", "ffmpeg"
    if name.startswith("python") and any("sipmediagw.gateway" in arg for arg in cmdline):
        return "rest", "supervisor (python)"
    return "rest", name


@dataclasses.dataclass(frozen=True)
class ProcSample:
    """One process at one instant."""

    pid: int
    created: float
    group: str
    name: str
    cpu: float  # user + system seconds so far (own threads, not reaped children)


def _cpu_of(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def snapshot_pids(pids: list[int], classifier=classify) -> dict[tuple[int, float], ProcSample]:  # type: ignore[no-untyped-def]
    """Sample every pid still alive; keyed by (pid, create time) so a recycled pid is a different process."""
    out: dict[tuple[int, float], ProcSample] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                created = proc.create_time()
                group, name = classifier(proc)
                cpu = _cpu_of(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[(pid, created)] = ProcSample(pid, created, group, name, cpu)
    return out


def cpu_delta(before: dict[tuple[int, float], ProcSample], after: dict[tuple[int, float], ProcSample],
              key: str = "group") -> dict[str, float]:
    """CPU seconds per group (or per name) between two snapshots; a process born in the window counts in full."""
    totals: dict[str, float] = {}
    for ident, sample in after.items():
        start = before[ident].cpu if ident in before else 0.0
        label = getattr(sample, key)
        totals[label] = totals.get(label, 0.0) + max(0.0, sample.cpu - start)
    return totals


def memory_by_group(pids: list[int]) -> dict[str, dict[str, int]]:
    """RSS, PSS and USS (bytes) summed per group. PSS shares shared pages fairly: its sum is the honest total."""
    groups: dict[str, dict[str, int]] = {g: {"rss": 0, "pss": 0, "uss": 0, "processes": 0} for g in GROUPS}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            group, _ = classify(proc)
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        entry = groups[group]
        entry["rss"] += int(info.rss)
        entry["pss"] += int(getattr(info, "pss", 0))
        entry["uss"] += int(getattr(info, "uss", 0))
        entry["processes"] += 1
    return groups


def host_busy_seconds() -> float:
    """CPU seconds the whole host spent busy (all cores; not idle, not iowait) since boot."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def own_processes() -> set[int]:
    """This benchmark and every process it started (Kamailio, Janus, callers, participants' Chromiums...)."""
    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


def host_classify(container_pids_set: set[int], ours: set[int] | None = None):  # type: ignore[no-untyped-def]
    """A classifier for host processes: the gateway containers' processes vs the test bed's (by name, among the
    processes this benchmark started: the machine is shared, another engineer's Chromium is not our test bed)."""
    def classifier(proc: psutil.Process) -> tuple[str, str]:
        if proc.pid in container_pids_set:
            return "gateway containers", "gateway"
        try:
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return "other", "?"
        if name in ("dockerd", "containerd") or name.startswith("containerd-shim") or name == "docker-proxy":
            return "docker daemon", name  # serves every container on the host, ours included
        if ours is not None and proc.pid not in ours:
            return "other", name
        if name.startswith("janus"):
            return "janus", name
        if name.startswith("kamailio"):
            return "kamailio", name
        if name == "baresip":
            return "caller baresip", name
        if name.startswith("chrom"):
            return "participant chromium", name
        if name in ("dockerd", "containerd") or name.startswith("containerd-shim") or name == "docker-proxy":
            return "docker daemon", name
        if proc.pid == os.getpid():
            return "benchmark (python)", name
        return ("other", name) if ours is None else ("test bed, other", name)
    return classifier


@dataclasses.dataclass
class Window:
    """A measurement window over one or more gateway containers and the whole host."""

    containers: dict[str, str]  # gateway name -> container id
    started: float = 0.0
    ended: float = 0.0
    before: dict[str, dict] = dataclasses.field(default_factory=dict)
    after: dict[str, dict] = dataclasses.field(default_factory=dict)
    host_before: dict = dataclasses.field(default_factory=dict)
    host_after: dict = dataclasses.field(default_factory=dict)
    cgroup_before: dict[str, float] = dataclasses.field(default_factory=dict)
    cgroup_after: dict[str, float] = dataclasses.field(default_factory=dict)
    busy_before: float = 0.0
    busy_after: float = 0.0
    memory: dict[str, dict] = dataclasses.field(default_factory=dict)
    series: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def _sample(self) -> tuple[dict[str, dict], dict, dict[str, float], float]:
        per: dict[str, dict] = {}
        all_container: set[int] = set()
        for gw, cid in self.containers.items():
            pids = container_pids(cid)
            all_container.update(pids)
            per[gw] = snapshot_pids(pids)
        host = snapshot_pids(psutil.pids(), host_classify(all_container, own_processes()))
        cgroups = {gw: cgroup_cpu_seconds(cid) for gw, cid in self.containers.items()}
        return per, host, cgroups, host_busy_seconds()

    def run(self, seconds: float, step: float = 5.0) -> "Window":
        """Sample, wait `seconds` (recording each container's CPU % every `step` s), sample again, read memory."""
        self.before, self.host_before, self.cgroup_before, self.busy_before = self._sample()
        self.started = time.monotonic()
        last = dict(self.cgroup_before)
        last_t = self.started
        self.series = {gw: [] for gw in self.containers}
        while time.monotonic() < self.started + seconds:
            time.sleep(min(step, max(0.0, self.started + seconds - time.monotonic())))
            now_t = time.monotonic()
            for gw, cid in self.containers.items():
                value = cgroup_cpu_seconds(cid)
                self.series[gw].append(round(100 * (value - last[gw]) / max(1e-6, now_t - last_t), 1))
                last[gw] = value
            last_t = now_t
        self.after, self.host_after, self.cgroup_after, self.busy_after = self._sample()
        self.ended = time.monotonic()
        for gw, cid in self.containers.items():
            self.memory[gw] = {"processes": memory_by_group(container_pids(cid)), "cgroup": cgroup_memory(cid)}
        return self

    @property
    def wall(self) -> float:
        """Window length in seconds."""
        return self.ended - self.started

    def pct(self, seconds: float) -> float:
        """CPU seconds over the window -> % of one core."""
        return round(100 * seconds / self.wall, 1)

    def gateway_report(self, gw: str) -> dict:
        """One gateway: CPU % of one core per group and per process name, cgroup total, memory."""
        groups = cpu_delta(self.before[gw], self.after[gw])
        names = cpu_delta(self.before[gw], self.after[gw], key="name")
        total = self.cgroup_after[gw] - self.cgroup_before[gw]
        attributed = sum(groups.values())
        return {
            "cpu_pct": {g: self.pct(groups.get(g, 0.0)) for g in GROUPS},
            "cpu_pct_by_name": {n: self.pct(s) for n, s in sorted(names.items(), key=lambda kv: -kv[1])},
            "cpu_pct_cgroup_total": self.pct(total),
            "cpu_pct_unattributed": self.pct(total - attributed),  # processes that exited in the window
            "cpu_pct_series_5s": self.series.get(gw, []),
            "memory": self.memory.get(gw, {}),
        }

    def host_report(self) -> dict:
        """The whole host over the window: busy %, and CPU % per group of processes (test bed, docker, other)."""
        groups = cpu_delta(self.host_before, self.host_after)
        return {
            "busy_pct_of_one_core": self.pct(self.busy_after - self.busy_before),
            "cores": psutil.cpu_count(),
            "cpu_pct_by_group": {g: self.pct(s) for g, s in sorted(groups.items(), key=lambda kv: -kv[1])},
            "window_s": round(self.wall, 1),
        }
