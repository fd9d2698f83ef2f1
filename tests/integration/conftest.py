"""Shared by the integration tier: every program a test runs comes from scripts/setup-host."""

from __future__ import annotations

import shutil
from typing import Callable

import pytest

INSTALL_HINT = "run scripts/setup-host"


def _require_programs(*programs: str) -> None:
    """Fail the running test when one of `programs` cannot be run. A bare name is looked up in PATH; give an absolute
    path where a stand-in earlier in PATH must not pass for the real program."""
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} ({INSTALL_HINT})", pytrace=False)


@pytest.fixture(scope="session")
def require_programs() -> Callable[..., None]:
    """`require_programs("Xvfb", "ffmpeg")` at a test's start fails it (never skips) when a program it runs is
    missing: a skip would hide a host that scripts/setup-host did not prepare."""
    return _require_programs
