"""Packaging hooks; the project's metadata lives in pyproject.toml.

`sipmediagw build` needs the gateway image's build context (the Dockerfile, the room drivers, the baresip template,
the PulseAudio scripts) wherever the package is installed, but those files stay at the top of the repository, where
the Dockerfile and docker-compose.yml expect them. So a build copies them into the package as ``sipmediagw/_bundle``,
choosing them with the same allow-list the image uses (sipmediagw/buildcontext.py): an accounts file in baresip/
can never be packaged.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the allow-list module of the tree being built, not some installed sipmediagw
from sipmediagw import buildcontext  # noqa: E402  (standard library only, see its docstring)


def bundled_files() -> dict[str, Path]:
    """The context's non-package files of this tree, {relative path: file}; the package itself ships as usual."""
    prefix = buildcontext.PACKAGE_NAME + "/"
    return {name: path for name, path in buildcontext.context_sources(HERE).items() if not name.startswith(prefix)}


def copy_files(files: dict[str, Path], target: Path) -> list[str]:
    """Copy `files` under `target`, keeping their relative paths (and exec bits); return the paths written."""
    written = []
    for relative, source in files.items():
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        # sdist's release tree hard-links the files it already lists: writing through such a link would rewrite
        # the source tree's own file, so replace the link instead
        destination.unlink(missing_ok=True)
        shutil.copy2(source, destination)
        written.append(str(destination))
    return written


class BuildWithBundle(build_py):
    """build_py that also writes the build context's non-package files to sipmediagw/_bundle in the wheel."""

    def run(self) -> None:
        super().run()
        # an editable install runs from the checkout, where buildcontext finds the files in place
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / buildcontext.PACKAGE_NAME / buildcontext.BUNDLE_DIR_NAME
            shutil.rmtree(target, ignore_errors=True)  # a stale build/ must not keep a file the allow-list dropped
            self._bundled = copy_files(bundled_files(), target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *getattr(self, "_bundled", [])]


class SdistWithBundle(sdist):
    """sdist that carries the same top-level files, so a wheel built from it bundles them too."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        copy_files(bundled_files(), Path(base_dir))


setup(cmdclass={"build_py": BuildWithBundle, "sdist": SdistWithBundle})
