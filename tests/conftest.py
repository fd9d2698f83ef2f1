"""Test tiers and session-wide fixtures.

Tiers: every test under tests/integration/ that is not `e2e` is marked `integration` here (it runs real programs on the
host), so `-m "not integration and not docker and not e2e and not swarm"` needs nothing but Python and the pip dependencies.

The real gateway image is built from this source tree once per session when it is not current.

"Current" is decided by a label: the image carries the SHA-256 of the build context (the allow-list of
sipmediagw/buildcontext.py, with exec bits: the very files `sipmediagw build` sends). An image whose label matches is
reused as is; otherwise it is built from the same tar with the classic builder (docker-py's build API, as
`sipmediagw build` does) and tagged sipmediagw:latest. No test depends on running after another one, nor on
scripts/setup-host having built it.
"""

from __future__ import annotations

import fcntl
import io
import re
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import docker.errors
import pytest

from sipmediagw import buildcontext, dockerops
from sipmediagw.errors import DockerUnavailable
from sipmediagw.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
#: set on images built by the fixture below; a test-side label, apart from the CLI's own org.sipmediagw.* labels
CONTEXT_LABEL = "org.sipmediagw.test.context-sha256"
BUILD_TIMEOUT = 1800  # seconds: a cold build on a 2-core machine takes ~5 min, apt on a slow mirror more
BASE_SCRIPT = ROOT / "docker" / "make-base-image.sh"
INTEGRATION_DIR = ROOT / "tests" / "integration"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker must already be there
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test under tests/integration/ not already `e2e`: a new file there cannot be missed."""
    for item in items:
        if item.path.resolve().is_relative_to(INTEGRATION_DIR) and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.integration)


def gateway_image_tag() -> str:
    """The tag the CLI launches by default (Settings.image): the one the fixture keeps current."""
    return Settings().image


def base_image() -> str:
    """The Dockerfile's default BASE_IMAGE (debian:bookworm-slim)."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "Dockerfile has no `ARG BASE_IMAGE=...` default"
    return match.group(1)


def _label_of(client: docker.DockerClient, tag: str) -> str | None:
    try:
        return (client.images.get(tag).labels or {}).get(CONTEXT_LABEL)
    except docker.errors.ImageNotFound:
        return None


def _ensure_base_image(client: docker.DockerClient) -> None:
    """Make the base image offline (debootstrap + docker import) when missing: the build must not need a registry."""
    base = base_image()
    try:
        client.images.get(base)
        return
    except docker.errors.ImageNotFound:
        pass
    made = subprocess.run([str(BASE_SCRIPT), base], capture_output=True, text=True, timeout=900)
    if made.returncode != 0:
        pytest.fail(f"base image {base} missing and {BASE_SCRIPT.name} failed ({made.returncode}):\n"
                    f"{made.stdout[-2000:]}\n{made.stderr[-2000:]}", pytrace=False)


@pytest.fixture(scope="session")
def current_gateway_labels() -> dict[str, str]:
    """The labels current_gateway_image carries: the build context's hash as this session sees it."""
    return {CONTEXT_LABEL: buildcontext.context_hash(ROOT)}


@pytest.fixture(scope="session")
def current_gateway_image(current_gateway_labels: dict[str, str]) -> str:
    """sipmediagw:latest as built from this source tree: reused when its context label matches, else built once.

    Serialised across concurrent pytest sessions by a lock file, so two runs never build the same tag at once.
    """
    try:
        client = dockerops.connect(docker.from_env(timeout=BUILD_TIMEOUT))
    except DockerUnavailable as exc:  # the tiers that need the image need the daemon: a failure, not a skip
        pytest.fail(str(exc), pytrace=False)
    tag = gateway_image_tag()
    lock_path = Path(tempfile.gettempdir()) / "sipmediagw-test-image-build.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        context = current_gateway_labels[CONTEXT_LABEL]
        if _label_of(client, tag) != context:
            _ensure_base_image(client)
            log: list[str] = []
            started = time.monotonic()
            try:
                for chunk in client.api.build(fileobj=io.BytesIO(buildcontext.context_tar(ROOT)), custom_context=True,
                                              tag=tag, labels=current_gateway_labels, rm=True, forcerm=True,
                                              decode=True):
                    if "error" in chunk:
                        raise DockerUnavailable(chunk["error"].strip())
                    text = chunk.get("stream") or chunk.get("status") or ""
                    log += [line for line in text.splitlines() if line.strip()]
            except (DockerUnavailable, docker.errors.APIError) as exc:
                tail = "\n".join(log[-40:])
                pytest.fail(f"building {tag} from {ROOT} failed: {exc}\n--- last build output ---\n{tail}",
                            pytrace=False)
            print(f"\n{tag}: built from this tree in {time.monotonic() - started:.0f} s (context {context[:12]})")
    client.close()
    return tag
