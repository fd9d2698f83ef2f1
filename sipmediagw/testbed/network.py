"""Addresses of the test bed: the Docker bridge is where gateway containers meet Kamailio and Janus."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess

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


def port_open(ip: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to ip:port succeeds."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False
