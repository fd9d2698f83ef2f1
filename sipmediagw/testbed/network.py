"""Addresses of the test bed: the Docker bridge is where gateway containers meet Kamailio and Janus."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psutil

DEFAULT_BRIDGE = "docker0"


def interface_ipv4(name: str) -> str | None:
    """The first IPv4 address of interface `name`, or None when it has none (or does not exist)."""
    for addr in psutil.net_if_addrs().get(name, []):
        if addr.family == socket.AF_INET:
            return str(addr.address)
    return None


def docker_bridge_ip(interface: str = DEFAULT_BRIDGE) -> str:
    """The host's address on the Docker bridge (e.g. 172.17.0.1), from the interface or `docker network inspect`."""
    ip = interface_ipv4(interface)
    if ip:
        return ip
    try:
        out = subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
        gateway = json.loads(out)[0]["IPAM"]["Config"][0]["Gateway"]
        return str(ipaddress.IPv4Address(gateway))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        raise RuntimeError(f"cannot find the Docker bridge address (interface {interface!r}): {exc}") from exc


def interface_of(ip: str) -> str | None:
    """The name of the local interface holding `ip` (e.g. 'docker0' for 172.17.0.1), or None."""
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == ip for a in addrs):
            return name
    return None


def free_port(ip: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on `ip` right now (the usual race applies; good enough for tests)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def free_port_range(ip: str = "127.0.0.1", count: int = 2) -> int:
    """An even port p with p .. p+count-1 all free for both UDP and TCP on `ip` (SIP servers also bind p+1 for
    TLS: baresip, Kamailio with TLS)."""
    for _ in range(200):
        base = free_port(ip, socket.SOCK_DGRAM) & ~1
        if base + count < 65536 and all(_port_free(ip, port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports on {ip}")


def _port_free(ip: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((ip, port))
            except OSError:
                return False
    return True


def port_open(ip: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to ip:port succeeds."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


BRIDGE_KEEPER_LABEL = "org.sipmediagw.testbed"
BRIDGE_KEEPER_IMAGE = "debian:bookworm-slim"


def interface_running(name: str) -> bool:
    """True when `name` has carrier (IFF_RUNNING). A Docker bridge with no container attached has none."""
    # sysfs `flags` does not carry IFF_RUNNING; operstate does ("down" = NO-CARRIER).
    try:
        return Path(f"/sys/class/net/{name}/operstate").read_text().strip() in ("up", "unknown")
    except OSError:
        return False


class BridgeKeeper:
    """Keeps the Docker bridge's link up by running one idle, labelled container on it.

    Janus refuses to bind (HTTP) and gather ICE candidates on a bridge without carrier, i.e. before the first
    gateway container starts; an idle `sleep` container gives the bridge carrier.
    """

    def __init__(self, interface: str = DEFAULT_BRIDGE, image: str = BRIDGE_KEEPER_IMAGE) -> None:
        self.interface = interface
        self.image = image
        self.container_id: str | None = None

    def start(self, timeout: float = 30) -> None:
        """Start the keeper container and wait for carrier. Always started, even when the bridge has carrier now:
        that carrier may belong to a container about to go away (another test's gateway), and Janus needs it."""
        name = f"sipmediagw-testbed-bridge-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        proc = subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "bridge",
                               "--label", f"{BRIDGE_KEEPER_LABEL}=bridge-keeper", "--cap-drop", "ALL",
                               "--memory", "16m", "--entrypoint", "sleep", self.image, "infinity"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"cannot start the bridge keeper container ({self.image}): {proc.stderr.strip()}")
        self.container_id = proc.stdout.strip()
        deadline = time.monotonic() + timeout
        while not interface_running(self.interface):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.interface} has no carrier even with a container attached")
            time.sleep(0.1)

    def stop(self) -> None:
        """Remove the keeper container if this object started one. Idempotent."""
        if self.container_id:
            subprocess.run(["docker", "rm", "-f", self.container_id], capture_output=True, timeout=60)
            self.container_id = None

    def __enter__(self) -> "BridgeKeeper":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
