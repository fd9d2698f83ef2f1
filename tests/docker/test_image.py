"""The gateway image: builds from Debian packages only (classic builder, offline base), is configured per the
container contract, and holds everything the container side imports - nothing the host side needs.

The image under test is the `real_gateway_image` fixture: SIPMEDIAGW_TEST_IMAGE, else sipmediagw:latest built from
this source tree by tests/conftest.py (once per session, only when stale). No test here builds it or must run first.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
BASE_SCRIPT = ROOT / "docker" / "make-base-image.sh"


def _docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def image(real_gateway_image: str) -> str:
    """The image these tests inspect and run."""
    return real_gateway_image


def _run(image: str, script: str, *, user: str | None = None) -> str:
    args = ["run", "--rm", "--network", "none", "--entrypoint", "sh"]
    if user:
        args += ["--user", user]
    return _docker(*args, image, "-c", script, timeout=120).stdout


def test_image_builds(image: str, request: pytest.FixtureRequest, record_property: pytest.RecordProperty) -> None:
    """The fixture's image: built from this source tree (its context label says so) and of a sane size."""
    inspect = json.loads(_docker("image", "inspect", image).stdout)[0]
    if not os.environ.get("SIPMEDIAGW_TEST_IMAGE"):  # an image given from outside makes no promise of being current
        expected = request.getfixturevalue("current_gateway_labels")
        labels = inspect["Config"]["Labels"] or {}
        assert {key: labels.get(key) for key in expected} == expected, f"{image} is not this source tree's build"
    size = int(inspect["Size"])
    record_property("image_size_bytes", size)
    print(f"{image}: {size / 1e6:.0f} MB")
    assert size < 1_300_000_000  # ~1.0 GB today: catch an accidental doubling (recommends, build tools...)


def test_image_configuration_matches_the_container_contract(image: str) -> None:
    config = json.loads(_docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "gw"
    assert config["Entrypoint"] == ["python3", "-m", "sipmediagw.gateway"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python3", "-m", "sipmediagw.gateway.health"]
    assert "5060/udp" in config["ExposedPorts"]
    assert not any("pass" in entry.lower() for entry in config["Env"])


def test_user_and_folders(image: str) -> None:
    out = _run(image, "id -u; id -g; stat -c '%U %a' /var/log/sipmediagw /run/secrets /tmp/.X11-unix")
    assert out.split() == ["10001", "10001", "gw", "755", "root", "755", "root", "1777"]


def test_debian_packages_and_matching_chromium_driver(image: str) -> None:
    out = _run(image, "chromium --version; chromedriver --version; baresip -h 2>&1 | head -1; "
               "ls /usr/lib/baresip/modules; for c in Xvfb pulseaudio pactl ffmpeg xdotool; do command -v $c; done")
    lines = out.splitlines()
    chromium_version = lines[0].split()[1]
    chromedriver_version = lines[1].split()[1]
    assert chromium_version.split(".")[0] == chromedriver_version.split(".")[0], (chromium_version,
                                                                                 chromedriver_version)
    assert "baresip v1.0" in lines[2]
    for module in ("ctrl_tcp.so", "menu.so", "pulse.so", "x11grab.so", "x11.so", "avcodec.so", "opus.so"):
        assert module in lines
    assert len([line for line in lines if line.startswith("/usr/bin/")]) == 5
    # no compilers and no pip-installed packages: Debian packages only
    assert _run(image, "for c in gcc cc pip pip3; do command -v $c; done; true").strip() == ""


def test_container_side_imports_with_only_the_image_python_packages(image: str) -> None:
    modules = ["sipmediagw.gateway.__main__", "sipmediagw.gateway.supervisor", "sipmediagw.gateway.health",
               "sipmediagw.gateway.baresip", "sipmediagw.gateway.controller", "sipmediagw.gateway.browser",
               "sipmediagw.gateway.mjpeg", "sipmediagw.gateway.media", "sipmediagw.room", "sipmediagw.state"]
    script = ("import importlib, sys, selenium\n"
              f"for m in {modules!r}: importlib.import_module(m)\n"
              "print(selenium.__version__)\n"
              "bad = [m for m in ('click', 'docker') if m in sys.modules]\n"
              "print('host-only imported:', bad)\n"
              "import importlib.util as u\n"
              "print('available:', [m for m in ('click', 'docker') if u.find_spec(m)])\n")
    out = _run(image, f"python3 -c \"{script}\"")
    assert out.splitlines() == ["4.8.3", "host-only imported: []", "available: []"]


def test_health_module_reports_unhealthy_without_a_state_file(image: str) -> None:
    result = _docker("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-m",
                     "sipmediagw.gateway.health", check=False, timeout=120)
    assert result.returncode == 1
    assert "no state file" in result.stdout


def test_make_base_image_is_a_no_op_when_the_tag_exists() -> None:
    assert _docker("image", "inspect", "debian:bookworm-slim", check=False).returncode == 0
    result = subprocess.run([str(BASE_SCRIPT), "debian:bookworm-slim"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "already exists, nothing to do" in result.stdout


def test_make_base_image_builds_a_usable_bookworm_image_offline() -> None:
    tag = f"sipmediagw-test/base:{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run([str(BASE_SCRIPT), tag], capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"imported {tag}" in result.stdout
        out = _docker("run", "--rm", "--network", "none", tag, "sh", "-c",
                      ". /etc/os-release; echo $VERSION_CODENAME; for c in apt-get dpkg; do command -v $c; done", timeout=120).stdout
        assert out.split() == ["bookworm", "/usr/bin/apt-get", "/usr/bin/dpkg"]
        # a second run finds it and does nothing
        again = subprocess.run([str(BASE_SCRIPT), tag], capture_output=True, text=True, timeout=60)
        assert "already exists" in again.stdout
    finally:
        _docker("rmi", "-f", tag, check=False)
