"""The gateway image's build context: an allow-list of files, the one definition `sipmediagw build`, the test
fixture that keeps the image current, `.dockerignore` (checked by a test) and the package build (setup.py) agree on.

Only named files enter the context, never a whole folder: ``baresip/`` usually holds the operator's accounts file
(SIP passwords) and ``docker/`` holds lab files and base-image tarballs, none of which belongs in the image.

The files come from a source checkout when this package runs from one, else from the copies the installed package
ships in ``sipmediagw/_bundle`` (setup.py puts them there at build time).

Standard library and ``.errors`` only: setup.py imports this module while building the package, before any
dependency is installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

from .errors import ConfigError

#: the installed package's folder holding the non-package files of the context (see setup.py)
BUNDLE_DIR_NAME = "_bundle"
PACKAGE_NAME = "sipmediagw"
#: non-package files of the context, as globs relative to the folder holding the Dockerfile. `*` never crosses a
#: folder, so docker/lab/ or a second file in baresip/ cannot match.
DATA_PATTERNS: tuple[str, ...] = (
    "Dockerfile",
    "browsing/*.py",  # the room drivers (README.md is for people, not for the image)
    "baresip/config_default",  # the baresip template only: the accounts file next to it holds passwords
    "docker/pulse/*.pa",  # PulseAudio scripts the gateway loads (gateway/media.py)
    "docker/pulse/daemon.conf",  # PulseAudio's daemon settings: 48 kHz end to end, no resampling (gateway/media.py)
)
#: build litter inside the package folder that must not change the image (nor its hash)
_SKIPPED_DIRS = ("__pycache__", BUNDLE_DIR_NAME)
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
#: every entry of the tar gets these, so the same files give the same bytes (and the builder's cache hits) whether
#: they come from a checkout, an installed package, or another user's umask
_MTIME = 0
_FILE_MODE, _EXEC_MODE, _DIR_MODE = 0o644, 0o755, 0o755


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where the context's files are: `data_dir` holds the Dockerfile, browsing/, baresip/ and docker/;
    `package_dir` is the sipmediagw package copied whole into the image."""

    data_dir: Path
    package_dir: Path

    @classmethod
    def checkout(cls, root: Path) -> Sources:
        """The layout of a source tree: everything under `root`."""
        return cls(Path(root), Path(root) / PACKAGE_NAME)


def package_dir() -> Path:
    """The folder of this (running) sipmediagw package."""
    return Path(__file__).resolve().parent


def source_checkout() -> Path | None:
    """The source tree this package runs from (a clone, an editable install), or None when installed."""
    root = package_dir().parent
    # both: a site-packages folder could hold some unrelated `browsing` package, never also a Dockerfile
    return root if (root / "Dockerfile").is_file() and (root / "browsing").is_dir() else None


def locate() -> Sources:
    """The sources this sipmediagw uses: its source checkout, else the copies shipped in the installed package."""
    root = source_checkout()
    if root is not None:
        return Sources.checkout(root)
    return Sources(package_dir() / BUNDLE_DIR_NAME, package_dir())


def _sources(where: Sources | Path | None) -> Sources:
    if where is None:
        return locate()
    return where if isinstance(where, Sources) else Sources.checkout(where)


def _package_files(folder: Path) -> list[str]:
    """Every file of the package folder, relative to it, minus build litter and hidden files (editor swap files)."""
    found = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith(".")
                   and not d.endswith(_SKIPPED_SUFFIXES)]
        for name in files:
            if not name.startswith(".") and not name.endswith(_SKIPPED_SUFFIXES):
                found.append((Path(current) / name).relative_to(folder).as_posix())
    return found


def context_sources(where: Sources | Path | None = None) -> dict[str, Path]:
    """The context as {path in the context: file on disk}, sorted by path. `where`: a source tree, Sources, or None
    for :func:`locate`. ConfigError when the Dockerfile or the package is missing (a broken install)."""
    sources = _sources(where)
    if not (sources.data_dir / "Dockerfile").is_file():
        raise ConfigError(f"no Dockerfile in {sources.data_dir}: this sipmediagw was installed without its build "
                          "files (reinstall it with `pip install <clone>`, or give `sipmediagw build --path`)")
    if not (sources.package_dir / "__init__.py").is_file():
        raise ConfigError(f"no sipmediagw package in {sources.package_dir}")
    mapping: dict[str, Path] = {}
    for pattern in DATA_PATTERNS:
        for path in sources.data_dir.glob(pattern):
            if not path.is_dir():
                mapping[path.relative_to(sources.data_dir).as_posix()] = path
    for relative in _package_files(sources.package_dir):
        mapping[f"{PACKAGE_NAME}/{relative}"] = sources.package_dir / relative
    return dict(sorted(mapping.items()))


def context_files(where: Sources | Path | None = None) -> list[str]:
    """The paths the context holds, relative to its root, sorted."""
    return list(context_sources(where))


def _executable(path: Path) -> bool:
    return not path.is_symlink() and bool(path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def _content(path: Path) -> bytes:
    # a symlink enters as a link, as `docker build` sends it: its target's content (maybe a secret) never does
    return os.readlink(path).encode() if path.is_symlink() else path.read_bytes()


def context_hash(where: Sources | Path | None = None) -> str:
    """SHA-256 over the context's paths, exec bits and contents: it changes exactly when the built image would."""
    digest = hashlib.sha256()
    for relative, path in context_sources(where).items():
        content = _content(path)
        digest.update(f"{relative}\0{int(_executable(path))}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def _entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, size, link, _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def context_tar(where: Sources | Path | None = None) -> bytes:
    """The context as an uncompressed tar, for docker-py's ``api.build(fileobj=..., custom_context=True)``.

    Owners, times and modes are normalised (only the exec bit survives): the classic builder's cache key includes
    them, and a checkout and an installed package must give the same image layers.
    """
    buffer = io.BytesIO()
    folders: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative, path in context_sources(where).items():
            parents = Path(relative).parents
            for folder in reversed([p.as_posix() for p in parents if p.as_posix() != "."]):
                if folder not in folders:
                    folders.add(folder)
                    tar.addfile(_entry(folder, tarfile.DIRTYPE, _DIR_MODE))
            if path.is_symlink():
                tar.addfile(_entry(relative, tarfile.SYMTYPE, 0o777, link=os.readlink(path)))
                continue
            content = path.read_bytes()
            mode = _EXEC_MODE if _executable(path) else _FILE_MODE
            tar.addfile(_entry(relative, tarfile.REGTYPE, mode, len(content)), io.BytesIO(content))
    return buffer.getvalue()
