"""The start-time decision whether Chromium runs with its sandbox (gateway/sandbox.py)."""

from __future__ import annotations

import subprocess
from typing import Any

from sipmediagw.gateway.sandbox import probe_sandbox


def _ran(code: int, stderr: str = "") -> Any:
    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert kwargs["timeout"] > 0 and "unshare" in argv[-1] and "chroot" in argv[-1]
        return subprocess.CompletedProcess(argv, code, "", stderr)
    return run


def test_namespaces_and_chroot_allowed_turn_the_sandbox_on() -> None:
    check = probe_sandbox(run=_ran(0), euid=lambda: 10001)
    assert check.available and check.summary == "on"


def test_a_refusal_turns_it_off_and_says_why() -> None:
    check = probe_sandbox(run=_ran(1, "Traceback...\nnew user/PID/network namespaces refused: Operation not permitted\n"),
                          euid=lambda: 10001)
    assert not check.available
    assert check.summary.startswith("off: new user/PID/network namespaces refused: Operation not permitted")
    assert "seccomp-gateway.json" in check.reason


def test_root_never_gets_the_sandbox() -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no probe as root")
    assert not probe_sandbox(run=never, euid=lambda: 0).available


def test_a_probe_that_cannot_run_means_no_sandbox() -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise subprocess.TimeoutExpired("python3", 10)
    check = probe_sandbox(run=broken, euid=lambda: 10001)
    assert not check.available and "did not run" in check.reason


def test_the_real_probe_answers_here() -> None:
    # whatever this host allows, the probe answers quickly with a reason and changes nothing of this process
    import os
    before = os.readlink("/proc/self/ns/user")
    check = probe_sandbox()
    assert check.reason and os.readlink("/proc/self/ns/user") == before
