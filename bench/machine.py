"""What the benchmark ran on: CPU, memory, kernel, Docker, the image, tool versions."""

from __future__ import annotations

import os
import platform
import subprocess

import psutil

import docker


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def cpu_model() -> str:
    """The 'model name' line of /proc/cpuinfo."""
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    """Installed Debian package version on the host."""
    return _first_line(["dpkg-query", "-W", "-f=${Version}", name])


def image_info(client: docker.DockerClient, image: str) -> dict:
    """Size (bytes, as `docker image inspect` reports it), id and creation time of the gateway image."""
    attrs = client.images.get(image).attrs
    return {"name": image, "id": attrs["Id"], "created": attrs.get("Created"), "size_bytes": attrs["Size"],
            "size_mb": round(attrs["Size"] / 1e6), "layers": len(attrs.get("RootFS", {}).get("Layers", []))}


def machine_info(client: docker.DockerClient, image: str) -> dict:
    """Everything a reader needs to compare these figures with their own host."""
    version = client.version()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "docker_server": version.get("Version"),
        "cgroup": f"v{docker_info_cgroup(client)}",
        "python": platform.python_version(),
        "host_ffmpeg": _first_line(["ffmpeg", "-hide_banner", "-version"]),
        "host_chromium": _first_line(["chromium", "--version"]),
        "host_baresip": package_version("baresip-core"),
        "host_janus": package_version("janus"),
        "host_kamailio": package_version("kamailio"),
        "image": image_info(client, image),
    }


def docker_info_cgroup(client: docker.DockerClient) -> str:
    """The daemon's cgroup version ('1' or '2')."""
    return str(client.info().get("CgroupVersion", "?"))
