"""A second, private Docker engine for drills that must stop and start an engine.

The suite shares one engine (the test bed's containers and other tests' gateways live on it), so a drill that
restarts dockerd gets its own: a `dockerd` child of the test with its own data root, exec root, pidfile, unix socket,
containerd namespace and bridge, and no iptables rules (a second engine managing iptables would remove and rebuild
the DOCKER chains the shared engine relies on). Its containers reach the host at the bridge's address, which is all
a drill needs: the registrar and the caller run on the host there. They reach nothing beyond the host, and DNS
refuses at once (see argv). Everything it makes is removed by `destroy()`, whatever state the engine is in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import psutil

#: where private engines' candidate subnets come from: far from Docker's default pools (172.17-31/16, 192.168/20)
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
START_TIMEOUT = 60.0  # dockerd answers in ~1 s here; its first start also sets up overlay2 in the new data root
#: dockerd stops every container with the container's own stop timeout (a gateway's: 20 s) before it exits
STOP_TIMEOUT = 90.0


class EngineError(RuntimeError):
    """The private engine did not start, stop or answer; the message carries its log tail."""


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network an interface of this host is on (so a new bridge never shadows a route in use)."""
    taken = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and addr.netmask:
                taken.append(ipaddress.IPv4Network(f"{addr.address}/{addr.netmask}", strict=False))
    return taken


def free_subnet(prefix: int = 24) -> ipaddress.IPv4Network:
    """A /`prefix` of SUBNET_POOL that overlaps no network of this host's interfaces."""
    taken = _taken_networks()
    candidates = list(SUBNET_POOL.subnets(new_prefix=prefix))
    # start at a place of our own: two sessions choosing at the same moment rarely pick the same subnet
    start = os.getpid() % len(candidates)
    for candidate in candidates[start:] + candidates[:start]:
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise EngineError(f"no free /{prefix} left in {SUBNET_POOL}")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


class PrivateEngine:
    """A dockerd of our own, at `docker_host`, on bridge `bridge` (the host is `host_ip` on it).

    `tag` makes every name unique to this test process: /run/<tag>.sock, /run/<tag> (exec root), /run/<tag>.pid,
    /var/lib/<tag> (data root), bridge `bridge` (interface names are limited to 15 characters).
    """

    def __init__(self, workdir: Path, tag: str | None = None) -> None:
        self.tag = tag or f"sipmediagw-drill-{os.getpid()}"
        self.workdir = Path(workdir)
        self.socket_path = Path(f"/run/{self.tag}.sock")
        self.docker_host = f"unix://{self.socket_path}"
        self.exec_root = Path(f"/run/{self.tag}")
        self.data_root = Path(f"/var/lib/{self.tag}")
        self.pidfile = Path(f"/run/{self.tag}.pid")
        self.bridge = f"smgwd{os.getpid()}"[:15]
        self.log_path = self.workdir / "dockerd.log"
        self.subnet: ipaddress.IPv4Network | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._bridge_made = False

    @property
    def host_ip(self) -> str:
        """The host's address on the engine's bridge: where its containers reach host processes."""
        if self.subnet is None:
            raise EngineError("the private engine's bridge is not made yet")
        return str(next(self.subnet.hosts()))

    def argv(self) -> list[str]:
        """The dockerd command line: every path and name private, no iptables, no daemon.json of the host."""
        config = self.workdir / "daemon.json"
        config.write_text("{}\n")  # /etc/docker/daemon.json is the shared engine's: never read it
        return ["dockerd", "--config-file", str(config), "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root), "--pidfile", str(self.pidfile), "-H", self.docker_host,
                # (the userland proxy stays on, its default: without it dockerd turns on hairpin routing through
                # /proc/sys/net/ipv4/conf/<bridge>/route_localnet, read-only inside a container, e.g. a CI runner's;
                # no port is published here, so no proxy process runs either way)
                "--bridge", self.bridge, "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                # without iptables its containers have no way out, so a lookup at the host's resolver would time out
                # (20 s per Chromium start, measured): the bridge's host address, where nothing serves DNS, refuses
                # lookups at once, as on a host without network
                "--dns", self.host_ip,
                # dockerd uses a system containerd when one runs: a namespace of our own keeps its containers apart
                "--containerd-namespace", self.tag, "--containerd-plugins-namespace", f"{self.tag}-plugins"]

    def make_bridge(self) -> None:
        """Create the bridge with the host's address on a free subnet (dockerd's --bridge needs it to exist)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.subnet = free_subnet()
        made = _run("ip", "link", "add", self.bridge, "type", "bridge")
        if made.returncode != 0:
            raise EngineError(f"ip link add {self.bridge} type bridge: {made.stderr.strip()}")
        self._bridge_made = True
        for argv in (("ip", "addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", self.bridge),
                     ("ip", "link", "set", self.bridge, "up")):
            done = _run(*argv)
            if done.returncode != 0:
                raise EngineError(f"{' '.join(argv)}: {done.stderr.strip()}")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start dockerd and wait until it answers a ping; an early exit fails at once with its log."""
        if self.alive():
            raise EngineError(f"{self.tag}: already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # its own session: a ^C to pytest must reach the fixture's orderly stop, not dockerd directly
            self._popen = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if not self.alive():
                raise self.fail(f"dockerd exited with code {self._popen.returncode} before it answered")
            if time.monotonic() > deadline:
                raise self.fail(f"dockerd did not answer within {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT) -> float:
        """SIGTERM to dockerd alone (it stops its containers and its containerd, as on a host shutdown) and wait for
        it to exit; SIGKILL after `timeout`. Returns the seconds it took. Idempotent."""
        if not self.alive():
            return 0.0
        assert self._popen is not None
        began = time.monotonic()
        self._popen.send_signal(signal.SIGTERM)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait(10)
            raise self.fail(f"dockerd did not exit within {timeout:.0f} s of SIGTERM (killed)") from None
        return time.monotonic() - began

    def restart(self) -> tuple[float, float]:
        """Stop and start again; returns (seconds to stop, monotonic time the engine answered again)."""
        stopped = self.stop()
        self.start()
        return stopped, time.monotonic()

    def alive(self) -> bool:
        """True while our dockerd process runs."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def pid(self) -> int | None:
        """dockerd's pid (None before start)."""
        return self._popen.pid if self._popen else None

    def answers(self) -> bool:
        """True when the engine answers a ping on its socket."""
        if not self.socket_path.exists():
            return False
        try:
            client = docker.DockerClient(base_url=self.docker_host, timeout=3)
        except docker.errors.DockerException:
            return False
        try:
            return bool(client.ping())
        except Exception:  # requests' and docker-py's connection errors have no common base
            return False
        finally:
            client.close()

    def client(self, timeout: int = 120) -> docker.DockerClient:
        """A docker-py client for this engine (close it when done)."""
        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)

    def tail(self, lines: int = 30) -> str:
        """The last lines of dockerd's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def fail(self, reason: str) -> EngineError:
        """An error naming the engine, the reason and dockerd's log tail."""
        return EngineError(f"{self.tag}: {reason}\n--- {self.log_path} (tail) ---\n{self.tail()}")

    def load_image(self, source: docker.DockerClient, image: str) -> float:
        """Copy `image` from the engine of `source` (`docker save | docker load`, streamed); returns the seconds."""
        began = time.monotonic()
        with contextlib.closing(self.client(timeout=600)) as target:
            # get_image streams the tar; load_image sends it chunked: the 1 GB image never sits in memory
            for chunk in target.api.load_image(source.api.get_image(image), quiet=True):
                if "error" in chunk:
                    raise self.fail(f"loading {image}: {chunk['error']}")
            target.images.get(image)  # raises ImageNotFound if the load silently did nothing
        return time.monotonic() - began

    def _leftover_processes(self) -> list[psutil.Process]:
        """containerd and shims of this engine still running (after a dockerd that had to be killed): found by our
        own exec root in their command line, which no other process carries."""
        marker = str(self.exec_root)
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if any(marker in arg for arg in cmdline) and proc.pid != os.getpid():
                found.append(proc)
        return found

    def _unmount_leftovers(self) -> None:
        """Lazily unmount anything still mounted under our roots (overlay layers, netns files), deepest first."""
        roots = (str(self.data_root), str(self.exec_root))
        points = []
        with open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                point = line.split()[4]
                if any(point == root or point.startswith(root + "/") for root in roots):
                    points.append(point)
        for point in sorted(points, key=len, reverse=True):
            _run("umount", "-l", point)

    def destroy(self) -> list[str]:
        """Stop everything and remove every trace: containers, dockerd, containerd, mounts, roots, socket, bridge.
        Never raises; returns what went wrong (for the test's report)."""
        problems: list[str] = []
        if self.alive() and self.answers():
            try:
                with contextlib.closing(self.client(timeout=60)) as client:
                    for container in client.containers.list(all=True):
                        container.remove(force=True)  # faster than dockerd's 20 s stop grace each
            except docker.errors.DockerException as exc:
                problems.append(f"removing containers: {exc}")
        try:
            self.stop(timeout=STOP_TIMEOUT)
        except EngineError as exc:
            problems.append(str(exc))
        for proc in self._leftover_processes():
            problems.append(f"killed leftover {' '.join(proc.info.get('cmdline') or [])[:120]} (pid {proc.pid})")
            try:
                proc.kill()
                proc.wait(10)
            except psutil.Error:
                pass
        self._unmount_leftovers()
        for path in (self.data_root, self.exec_root):
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                problems.append(f"could not remove {path}")
        for path in (self.socket_path, self.pidfile):
            path.unlink(missing_ok=True)
        if self._bridge_made:
            removed = _run("ip", "link", "del", self.bridge)
            if removed.returncode != 0 and Path(f"/sys/class/net/{self.bridge}").exists():
                problems.append(f"ip link del {self.bridge}: {removed.stderr.strip()}")
            self._bridge_made = False
        return problems
