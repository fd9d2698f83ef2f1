"""The gateway image's build context is an allow-list: the Dockerfile, the package, the drivers, the baresip template
and the PulseAudio scripts enter it; an accounts file, lab files, tarballs and build litter never do. The same list
serves a source tree and an installed package (byte for byte), `sipmediagw build`, and `.dockerignore`."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from docker.utils.build import exclude_paths

from sipmediagw import buildcontext, settings
from sipmediagw.buildcontext import Sources, context_files, context_hash, context_sources, context_tar
from sipmediagw.cli import cli
from sipmediagw.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "auth_pass=NEVER-IN-THE-IMAGE"

#: what the fake tree's context must be, exactly
EXPECTED = [
    "Dockerfile",
    "baresip/config_default",
    "browsing/janus.py",
    "browsing/jitsi.py",
    "docker/pulse/kernel.pa",
    "docker/pulse/userspace.pa",
    "sipmediagw/__init__.py",
    "sipmediagw/gateway/__init__.py",
    "sipmediagw/gateway/inject.js",
    "sipmediagw/gateway/prompts/joining.wav",
]


def write(path: Path, text: str = "", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A source tree with every file the image needs, and next to them what must never enter it."""
    root = tmp_path / "tree"
    write(root / "Dockerfile", "FROM scratch\n")
    write(root / "browsing" / "janus.py", "class Janus: pass\n")
    write(root / "browsing" / "jitsi.py", "class Jitsi: pass\n")
    write(root / "baresip" / "config_default", "module ctrl_tcp.so\n")
    write(root / "docker" / "pulse" / "kernel.pa", "load-module a\n")
    write(root / "docker" / "pulse" / "userspace.pa", "load-module b\n")
    write(root / "sipmediagw" / "__init__.py", "__version__ = '0'\n")
    write(root / "sipmediagw" / "gateway" / "__init__.py")
    write(root / "sipmediagw" / "gateway" / "inject.js", "// camera\n")
    write(root / "sipmediagw" / "gateway" / "prompts" / "joining.wav", "RIFF")
    # never in the context:
    write(root / "baresip" / "accounts", f"<sip:gw1@example.org>;{SECRET}\n", 0o600)
    write(root / "baresip" / "gw2.account", f"<sip:gw2@example.org>;{SECRET}\n", 0o600)
    write(root / "baresip" / "accounts.example", "<sip:user@example.org>;auth_pass=...\n")
    write(root / "browsing" / "README.md", "# drivers\n")
    write(root / "browsing" / "__pycache__" / "janus.cpython-311.pyc", "bytecode")
    write(root / "docker" / "lab" / "docker-compose.yml", f"# swarm lab {SECRET}\n")
    write(root / "docker" / "lab" / "pulse" / "x.pa", "lab\n")
    write(root / "docker" / "bookworm.tar", "a base image tarball")
    write(root / "docker" / "make-base-image.sh", "#!/bin/sh\n", 0o755)
    write(root / "sipmediagw" / "__pycache__" / "__init__.cpython-311.pyc", "bytecode")
    write(root / "sipmediagw" / "gateway" / "stale.pyc", "bytecode")
    write(root / "sipmediagw" / ".inject.js.swp", "editor swap")
    write(root / "sipmediagw" / "_bundle" / "Dockerfile", "an old bundle")
    write(root / "sipmediagw.egg-info" / "PKG-INFO", "Name: sipmediagw\n")
    write(root / "logs" / "gw1" / "app.log", SECRET)
    write(root / "README.md", "# sipmediagw\n")
    return root


def installed_copy(tree: Path, target: Path) -> Sources:
    """The tree as `pip install` lays it out: the package in site-packages, the other files in its _bundle."""
    package = target / "site-packages" / "sipmediagw"
    shutil.copytree(tree / "sipmediagw", package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    bundle = package / buildcontext.BUNDLE_DIR_NAME
    for relative in context_files(tree):
        if not relative.startswith("sipmediagw/"):
            write(bundle / relative, (tree / relative).read_text())
    write(package / "__pycache__" / "buildcontext.cpython-311.pyc", "bytecode")  # what pip's compile step adds
    write(bundle / "browsing" / "__pycache__" / "janus.cpython-311.pyc", "bytecode")
    return Sources(bundle, package)


def test_the_context_is_exactly_the_allow_list(tree: Path) -> None:
    assert context_files(tree) == EXPECTED


def test_no_accounts_file_lab_file_or_tarball_reaches_the_tar(tree: Path) -> None:
    data = context_tar(tree)
    assert SECRET.encode() not in data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = sorted(member.name for member in tar.getmembers() if member.isfile())
    assert files == EXPECTED
    assert not any(name.startswith(("baresip/acc", "docker/lab", "logs")) or name.endswith(".tar") for name in files)


def test_the_tar_is_normalised_and_complete(tree: Path) -> None:
    """Owners, times and modes (but the exec bit) are fixed, so the builder's cache does not depend on who built."""
    os.chmod(tree / "browsing" / "janus.py", 0o600)  # an operator's umask
    os.chmod(tree / "docker" / "pulse" / "kernel.pa", 0o700)
    with tarfile.open(fileobj=io.BytesIO(context_tar(tree))) as tar:
        names = [member.name for member in tar.getmembers()]
        members = {member.name: member for member in tar.getmembers()}
        for name in EXPECTED:
            assert tar.extractfile(members[name]).read() == (tree / name).read_bytes()
    assert {m.uid for m in members.values()} == {0} and {m.gid for m in members.values()} == {0}
    assert {m.mtime for m in members.values()} == {0}
    assert members["browsing/janus.py"].mode == 0o644 and members["docker/pulse/kernel.pa"].mode == 0o755
    # parent folders come first, so a plain extraction (what the daemon does) recreates them with a fixed mode
    assert names.index("sipmediagw/gateway") < names.index("sipmediagw/gateway/prompts/joining.wav")
    assert all(members[name].mode == 0o755 for name in ("browsing", "sipmediagw/gateway/prompts"))


def test_same_tree_same_bytes(tree: Path) -> None:
    assert context_tar(tree) == context_tar(tree)


@pytest.mark.parametrize("relative", ["Dockerfile", "browsing/janus.py", "baresip/config_default",
                                      "docker/pulse/kernel.pa", "sipmediagw/gateway/inject.js"])
def test_the_hash_changes_when_a_context_file_changes(tree: Path, relative: str) -> None:
    before = context_hash(tree)
    with open(tree / relative, "a") as file:
        file.write("# changed\n")
    assert context_hash(tree) != before


def test_the_hash_follows_the_exec_bit_and_new_files(tree: Path) -> None:
    before = context_hash(tree)
    os.chmod(tree / "browsing" / "janus.py", 0o755)
    executable = context_hash(tree)
    assert executable != before
    write(tree / "browsing" / "bigbluebutton.py", "class BBB: pass\n")
    assert context_hash(tree) not in (before, executable)


def test_the_hash_ignores_what_never_enters_the_context(tree: Path) -> None:
    before = context_hash(tree)
    write(tree / "baresip" / "accounts", "<sip:gw9@example.org>;auth_pass=other\n")
    write(tree / "docker" / "lab" / "new.yml", "lab: 2\n")
    write(tree / "sipmediagw" / "__pycache__" / "cli.cpython-311.pyc", "bytecode")
    write(tree / "logs" / "gw2" / "app.log", "log")
    assert context_hash(tree) == before


def test_an_installed_package_gives_the_same_context_as_its_tree(tree: Path, tmp_path: Path) -> None:
    installed = installed_copy(tree, tmp_path)
    assert context_files(installed) == EXPECTED
    assert context_hash(installed) == context_hash(tree)
    assert context_tar(installed) == context_tar(tree)


def test_locate_prefers_the_checkout_then_the_installed_bundle(tree: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert buildcontext.source_checkout() == ROOT  # these tests run from a clone
    assert buildcontext.locate() == Sources(ROOT, ROOT / "sipmediagw")
    installed = installed_copy(tree, tmp_path)
    monkeypatch.setattr(buildcontext, "package_dir", lambda: installed.package_dir)
    assert buildcontext.source_checkout() is None
    assert buildcontext.locate() == installed
    assert context_hash() == context_hash(tree)


def test_installed_defaults_point_at_the_shipped_files_and_a_writable_state_folder(
        tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = installed_copy(tree, tmp_path)
    monkeypatch.setattr(buildcontext, "package_dir", lambda: installed.package_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    defaults = settings.Settings()
    assert defaults.browsing_dir == installed.data_dir / "browsing"
    assert (defaults.browsing_dir / "janus.py").is_file()
    assert (defaults.baresip_dir / "config_default").is_file()
    assert defaults.logs_dir == tmp_path / "state" / "sipmediagw" / "logs"
    assert defaults.accounts_file == tmp_path / "baresip" / "accounts"  # the operator's folder, never site-packages
    home = {"HOME": "/home/op"}
    assert settings.default_logs_dir(home) == Path("/home/op/.local/state/sipmediagw/logs")
    assert settings.default_logs_dir({**home, "XDG_STATE_HOME": "relative"}) == Path(
        "/home/op/.local/state/sipmediagw/logs")  # the XDG spec: a relative value is ignored


def test_checkout_defaults_are_unchanged() -> None:
    defaults = settings.Settings()
    assert (defaults.browsing_dir, defaults.baresip_dir, defaults.logs_dir) == (
        ROOT / "browsing", ROOT / "baresip", ROOT / "logs")


def test_an_install_without_its_build_files_says_so(tmp_path: Path) -> None:
    package = tmp_path / "sipmediagw"
    write(package / "__init__.py")
    with pytest.raises(ConfigError, match="no Dockerfile"):
        context_sources(Sources(package / buildcontext.BUNDLE_DIR_NAME, package))


def test_the_real_tree_holds_the_dockerfile_drivers_and_template_but_no_secret() -> None:
    files = context_files(ROOT)
    drivers = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "browsing").glob("*.py"))
    assert drivers and set(drivers) <= set(files)
    assert {"Dockerfile", "baresip/config_default", "sipmediagw/__init__.py", "sipmediagw/buildcontext.py"} <= set(
        files)
    assert [f for f in files if f.startswith("baresip/")] == ["baresip/config_default"]
    assert not [f for f in files if f.startswith("docker/") and not f.startswith("docker/pulse/")]


def test_every_dockerfile_copy_source_is_in_the_context() -> None:
    """A COPY of something outside the allow-list would fail the build: catch it here instead."""
    files = context_files(ROOT)
    sources = [line.split()[1:-1] for line in (ROOT / "Dockerfile").read_text().splitlines()
               if re.match(r"\s*(COPY|ADD)\s", line)]
    assert sources, "the Dockerfile copies nothing?"
    for source in (s.rstrip("/") for group in sources for s in group if not s.startswith("--")):
        assert any(f == source or f.startswith(source + "/") for f in files), f"COPY {source}: not in the context"


@pytest.mark.parametrize("root", ["tree", "repository"])
def test_dockerignore_lets_through_the_same_files(root: str, tree: Path) -> None:
    """A plain `docker build .` (scripts/setup-host) sends what `sipmediagw build` sends."""
    folder = ROOT if root == "repository" else tree
    if folder is tree:
        shutil.copy(ROOT / ".dockerignore", tree / ".dockerignore")
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    sent = sorted(p for p in exclude_paths(str(folder), patterns, dockerfile="Dockerfile")
                  if not (folder / p).is_dir() and p != ".dockerignore")  # always sent, never copied by COPY
    assert sent == context_files(folder)


class RecordingDocker:
    """The part of docker-py's client `sipmediagw build` uses: records what it was asked to build."""

    def __init__(self) -> None:
        self.api = self
        self.builds: list[dict] = []

    def build(self, **kwargs: object) -> list[dict]:
        self.builds.append(kwargs)
        return [{"stream": "Step 1/1 : FROM scratch\n"}]


def test_build_sends_the_allow_list_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no Dockerfile here: the command must not need one
    for key in [k for k in os.environ if k.startswith("SIPMEDIAGW_")]:
        monkeypatch.delenv(key)
    fake = RecordingDocker()
    result = CliRunner().invoke(cli, ["build", "--image", "sipmediagw-test:unit"], obj={"docker_factory": lambda: fake})
    assert result.exit_code == 0, result.output
    assert "built sipmediagw-test:unit" in result.stdout
    (call,) = fake.builds
    assert call["custom_context"] is True and "path" not in call and call["tag"] == "sipmediagw-test:unit"
    assert call["fileobj"].read() == context_tar()


def test_build_path_still_sends_a_folder(tree: Path) -> None:
    fake = RecordingDocker()
    result = CliRunner().invoke(cli, ["build", "--path", str(tree)], obj={"docker_factory": lambda: fake})
    assert result.exit_code == 0, result.output
    assert fake.builds[0]["path"] == str(tree) and "fileobj" not in fake.builds[0]
