"""`pip install <clone>` (not editable, into a fresh virtualenv) gives a working `sipmediagw` from any folder: it builds
the gateway image from the files shipped in the package, runs `doctor`, answers `--help`.

The clone is a clean copy of this working tree (the files git would commit: no .venv, no logs, no accounts file),
with an accounts file dropped into its baresip/ as an operator would: it must reach neither the installed package nor
the image. pip fetches the dependencies and the build backend from PyPI. The virtualenv, the copy and the test tag
are removed by the fixtures, pass or fail.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import docker
import docker.errors
import pytest

from sipmediagw import buildcontext

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SECRET = "auth_pass=INSTALL-TEST-NEVER-SHIPPED"
PIP_TIMEOUT = 900  # seconds: the dependencies (selenium, docker-py...) from PyPI on a slow link
BUILD_TIMEOUT = 1800  # as tests/conftest.py: a cold build takes minutes; with the fixture's layers cached, seconds


def _run(argv: list[str], *, timeout: float, cwd: Path | str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _check(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return result


@dataclasses.dataclass(frozen=True)
class Install:
    """A fresh virtualenv holding sipmediagw installed from `source`, and the environment to run it with."""

    source: Path  # the clean copy pip installed from
    bin: Path  # the virtualenv's bin/
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The installed `sipmediagw` console script, from /tmp: no source tree around it."""
        return _run([str(self.bin / "sipmediagw"), *args], timeout=timeout, cwd="/tmp", env=self.env)

    def python(self, code: str) -> str:
        """Run `code` with the virtualenv's interpreter, from /tmp; its stdout."""
        return _check(_run([str(self.bin / "python"), "-c", code], timeout=60, cwd="/tmp", env=self.env),
                      f"python -c {code!r}").stdout


def _clean_copy(target: Path) -> None:
    """The working tree as a clone would hold it: tracked and untracked-but-not-ignored files (git decides)."""
    listed = _check(_run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         timeout=60), "git ls-files").stdout
    for relative in sorted(set(filter(None, listed.split("\0")))):
        source = ROOT / relative
        if source.is_file() and not source.is_symlink():  # a tracked file deleted in the work tree is not there
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


@pytest.fixture(scope="module")
def installed() -> Iterator[Install]:
    """sipmediagw pip-installed (non-editable) into a new virtualenv from a clean copy of this tree."""
    work = Path(tempfile.mkdtemp(prefix="sipmediagw-install-"))
    try:
        source = work / "clone"
        _clean_copy(source)
        (source / "baresip" / "accounts").write_text(f"<sip:gw1@example.org;transport=tcp>;{SECRET}\n")
        venv = work / "venv"
        # the interpreter running the tests: on a Debian python3 its venv module is python3-venv (scripts/setup-host)
        _check(_run([sys.executable, "-m", "venv", str(venv)], timeout=300), "python -m venv")
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("SIPMEDIAGW_", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
        config = work / "empty.yaml"  # no sipmediagw.yaml of this host's user may change the defaults under test
        config.write_text("")
        (work / "config").mkdir()
        env.update(SIPMEDIAGW_CONFIG=str(config), XDG_CONFIG_HOME=str(work / "config"),
                   XDG_STATE_HOME=str(work / "state"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
        started = time.monotonic()
        _check(_run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                     str(source)], timeout=PIP_TIMEOUT, env=env), "pip install <clone>")
        print(f"\npip install <clone> into a fresh virtualenv: {time.monotonic() - started:.0f} s")
        yield Install(source, venv / "bin", env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def install_tag(docker_client: docker.DockerClient) -> Iterator[str]:
    """A tag for the image the installed CLI builds; removed at teardown (its layers are the fixture image's)."""
    tag = f"sipmediagw-test-install:{uuid.uuid4().hex[:10]}"
    yield tag
    try:
        docker_client.images.remove(tag)
    except docker.errors.ImageNotFound:
        pass  # the build failed before tagging


def test_the_installed_package_runs_from_its_own_files(installed: Install) -> None:
    """Not the source tree: the package, its drivers and templates all come from the virtualenv."""
    out = installed.python(
        "import json, sipmediagw\n"
        "from sipmediagw import buildcontext, settings\n"
        "s = settings.Settings()\n"
        "print(json.dumps({'package': sipmediagw.__file__, 'checkout': str(buildcontext.source_checkout()),\n"
        "  'hash': buildcontext.context_hash(), 'browsing': str(s.browsing_dir), 'baresip': str(s.baresip_dir),\n"
        "  'logs': str(s.logs_dir)}))\n")
    found = json.loads(out)
    venv = installed.bin.parent
    assert Path(found["package"]).is_relative_to(venv) and found["checkout"] == "None", found
    assert Path(found["browsing"]).is_relative_to(venv) and (Path(found["browsing"]) / "janus.py").is_file()
    assert (Path(found["baresip"]) / "config_default").is_file()
    assert found["logs"] == installed.env["XDG_STATE_HOME"] + "/sipmediagw/logs"
    # the same context, byte for byte, as the tree it was installed from: nothing missing from the package
    assert found["hash"] == buildcontext.context_hash(installed.source)


def test_no_accounts_file_is_packaged(installed: Install) -> None:
    venv = installed.bin.parent
    leaked = [str(path) for path in venv.rglob("*") if path.is_file() and "sipmediagw" in str(path)
              and SECRET.encode() in path.read_bytes()]
    assert not leaked
    bundle = next(venv.rglob(f"sipmediagw/{buildcontext.BUNDLE_DIR_NAME}"))
    assert sorted(p.name for p in (bundle / "baresip").iterdir()) == ["config_default"]


def test_help_and_version_from_any_folder(installed: Install) -> None:
    result = installed.run("--help")
    assert result.returncode == 0 and "Usage: sipmediagw" in result.stdout, result.stderr
    assert "build" in result.stdout and "doctor" in result.stdout
    version = installed.run("--version")
    assert version.returncode == 0 and installed.python("import sipmediagw; print(sipmediagw.__version__)").strip() \
        in version.stdout


def test_build_and_doctor_from_any_folder(installed: Install, install_tag: str, current_gateway_image: str,
                                          docker_client: docker.DockerClient) -> None:
    """`sipmediagw build` from /tmp: the shipped context gives the fixture's image (its layers, from the cache)."""
    started = time.monotonic()
    built = installed.run("build", "--image", install_tag, timeout=BUILD_TIMEOUT)
    took = time.monotonic() - started
    assert built.returncode == 0, f"{built.stdout[-2000:]}\n{built.stderr[-4000:]}"
    assert f"built {install_tag}" in built.stdout and "Traceback" not in built.stderr
    print(f"\nsipmediagw build (installed, from /tmp): {took:.0f} s")
    ours, fixture = docker_client.images.get(install_tag), docker_client.images.get(current_gateway_image)
    # the fixture adds only a label (no layer): equal layers mean the installed package sent the tree's very files
    assert ours.attrs["RootFS"]["Layers"] == fixture.attrs["RootFS"]["Layers"], "the installed build differs"
    listed = docker_client.containers.run(install_tag, entrypoint=["ls", "/opt/sipmediagw/baresip"],
                                          network_mode="none", remove=True)
    assert listed.decode().split() == ["config_default"]

    doctor = installed.run("doctor", "--image", install_tag, timeout=300)
    output = doctor.stdout + doctor.stderr
    assert doctor.returncode in (0, 1) and "Traceback" not in output, output  # 1: a failing check, e.g. no accounts
    for check in ("docker", "image", "accounts"):
        assert any(line.startswith(("[ ok ]", "[warn]", "[FAIL]")) and f"] {check}:" in line
                   for line in doctor.stdout.splitlines()), output
    # found (a warning is fine: on a swarm manager doctor also asks for a registry the other nodes can pull from)
    image_lines = [line for line in doctor.stdout.splitlines() if line.startswith(("[ ok ] image:", "[warn] image:"))]
    assert image_lines and install_tag in image_lines[0], output
    assert "gateway(s) can run on this" in doctor.stdout, output
