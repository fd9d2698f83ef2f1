"""Can Chromium's sandbox work in this container? Decided once at start, by trying what the sandbox does.

Chromium's namespace sandbox puts each renderer in new user, PID and network namespaces and chroots it into an empty
folder (measured: denying ``unshare``, ``clone`` with CLONE_NEWUSER or CLONE_NEWNET, or ``chroot`` makes it fail).
Under Docker's default seccomp profile, or an engine that cannot take ours (a swarm service on API < 1.44), those are
refused and Chromium would not start without ``--no-sandbox``: the gateway then runs it so, and says so (log line,
``sandbox`` in state.json). With the project's profile (sipmediagw/seccomp.py) the probe passes and the sandbox is on.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Callable

# A child process tries, in the same order, what Chromium's zygote does: new namespaces, then a chroot inside them.
# It runs apart so the supervisor's own namespaces never change.
_PROBE = """
import ctypes, os, sys
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET) != 0:
    sys.exit("new user/PID/network namespaces refused: " + os.strerror(ctypes.get_errno()))
try:
    os.chroot("/")
except OSError as exc:
    sys.exit("chroot in a new user namespace refused: " + exc.strerror)
"""
PROBE_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class SandboxCheck:
    """Whether Chromium may run with its sandbox, and why (or why not)."""

    available: bool
    reason: str

    @property
    def summary(self) -> str:
        """One line for the log and the state file: ``on`` or ``off: <why>``."""
        return "on" if self.available else f"off: {self.reason}"


def probe_sandbox(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
                  euid: Callable[[], int] = os.geteuid) -> SandboxCheck:
    """Try user/PID/network namespaces and a chroot in them, in a child process (about 50 ms)."""
    if euid() == 0:
        return SandboxCheck(False, "running as root: Chromium refuses its sandbox for root")
    try:
        result = run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return SandboxCheck(False, f"the sandbox probe did not run: {exc}")
    if result.returncode == 0:
        return SandboxCheck(True, "user, PID and network namespaces and chroot allowed")
    why = (result.stderr or "").strip().splitlines()
    return SandboxCheck(False, (why[-1] if why else f"probe exit {result.returncode}")
                        + " (is the container's seccomp profile docker/seccomp-gateway.json?)")
