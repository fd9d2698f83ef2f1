"""Can Chromium's sandbox work in this container? Decided once at start, by trying what the sandbox does.

Chromium's namespace sandbox puts each renderer in new user, PID and network namespaces and chroots it into an empty
folder (measured: denying ``unshare``, ``clone`` with CLONE_NEWUSER or CLONE_NEWNET, or ``chroot`` makes it fail).
Under Docker's default seccomp profile, or an engine that cannot take ours (a swarm service on API < 1.44), those are
refused and Chromium would not start without ``--no-sandbox``: the gateway then runs it so, and says so (log line,
``sandbox`` in state.json). With the project's profile (sipmediagw/seccomp.py) the probe passes and the sandbox is on.

The same probe tries the launcher that hides the secret folders from the browser (gateway/isolation.py: its own user
and mount namespaces, built from the same user namespaces plus the profile's one ``mount``). The browser uses it where
the sandbox is on; where it cannot work the browser sees the secrets as before, and the log line and ``sandbox`` in
state.json say so (``on; secrets NOT hidden from the browser: <why>``; ``off: ...`` always means not hidden either).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Callable, Sequence

from .isolation import IsolationCheck, probe_argv, secret_folders

# A child process first runs the isolation launcher's own trial (it must start from the container's namespaces, which
# this child leaves below), then tries, in the same order, what Chromium's zygote does: new namespaces, then a chroot
# inside them. It runs apart so the supervisor's own namespaces never change.
_PROBE = """
import ctypes, json, os, subprocess, sys
try:
    out = subprocess.run(__ISOLATION__, capture_output=True, text=True, timeout=__TIMEOUT__).stdout.strip()
    print("isolation: " + (out.splitlines()[-1] if out else
                           json.dumps({"isolated": False, "reason": "the isolation probe said nothing"})), flush=True)
except (OSError, subprocess.SubprocessError) as exc:
    print("isolation: " + json.dumps({"isolated": False, "reason": "the isolation probe did not run: %s" % exc}),
          flush=True)
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
ISOLATION_MARK = "isolation: "


@dataclasses.dataclass(frozen=True)
class SandboxCheck:
    """Whether Chromium may run with its sandbox, and why (or why not)."""

    available: bool
    reason: str
    #: whether the browser's launcher hides the secret folders (None: not probed)
    secrets: IsolationCheck | None = None

    @property
    def summary(self) -> str:
        """One line for the state file: ``on``, ``on; secrets NOT hidden from the browser: <why>`` or ``off: <why>``
        (without the sandbox the browser is not isolated either: the reason says so)."""
        if not self.available:
            return f"off: {self.reason}"
        if self.secrets is not None and not self.secrets.available:
            return f"on; secrets NOT hidden from the browser: {self.secrets.reason}"
        return "on"


def probe_sandbox(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
                  euid: Callable[[], int] = os.geteuid, hidden: Sequence[str] | None = None) -> SandboxCheck:
    """Try user/PID/network namespaces and a chroot in them, and the launcher hiding `hidden` (default: the
    gateway's secret folders, isolation.secret_folders), in a child process (about 100 ms)."""
    if euid() == 0:
        return SandboxCheck(False, "running as root: Chromium refuses its sandbox for root; secrets not hidden "
                                   "from the browser either")
    folders = secret_folders(os.environ) if hidden is None else hidden
    script = (_PROBE.replace("__ISOLATION__", repr(probe_argv(folders)))
              .replace("__TIMEOUT__", repr(PROBE_TIMEOUT / 2)))
    try:
        result = run([sys.executable, "-c", script], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return SandboxCheck(False, f"the sandbox probe did not run: {exc}")
    secrets = _isolation_of(result.stdout or "")
    if result.returncode == 0:
        hiding = ""
        if secrets is not None:
            hiding = f"; secrets {'hidden' if secrets.available else 'NOT hidden'} from the browser: {secrets.reason}"
        return SandboxCheck(True, "user, PID and network namespaces and chroot allowed" + hiding, secrets)
    why = (result.stderr or "").strip().splitlines()
    return SandboxCheck(False, (why[-1] if why else f"probe exit {result.returncode}")
                        + " (is the container's seccomp profile docker/seccomp-gateway.json?); secrets not hidden "
                          "from the browser either (that needs the same user namespaces)", secrets)


def _isolation_of(stdout: str) -> IsolationCheck | None:
    """The launcher trial's outcome from the probe's output (None: the probe did not report one)."""
    for line in stdout.splitlines():
        if line.startswith(ISOLATION_MARK):
            try:
                return IsolationCheck.from_json(line[len(ISOLATION_MARK):])
            except (ValueError, KeyError, TypeError):
                return IsolationCheck(False, "unreadable answer from the isolation probe")
    return None
