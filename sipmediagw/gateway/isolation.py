"""The secret folders hidden from the browser: chromedriver, and so Chromium, runs in user and mount namespaces of its
own, where the account file's folder and baresip's config folder are covered by empty read-only tmpfs.

Why: every process of the container runs as uid 10001, so without this the browser process (the part of Chromium
outside its sandbox) could read ``/run/secrets/sipmediagw-account`` and baresip's ``accounts`` file like baresip does.
The launcher below is what Selenium starts instead of chromedriver (``python3 -I isolation.py --hide DIR ... --
/usr/bin/chromedriver ARGS``; stdlib only, run as a file so it needs no import path). Before exec'ing chromedriver it:

1. ``unshare(CLONE_NEWUSER | CLONE_NEWNS)`` and maps its uid/gid to 0, the one mapping an unprivileged process may
   write: it is root of a user namespace it owns, which may mount in its own mount namespace and nowhere else;
2. mounts an empty read-only tmpfs over each folder (flags exactly ``MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC``, the
   only ``mount`` the container's seccomp profile lets through: sipmediagw/seccomp.py);
3. ``unshare(CLONE_NEWUSER)`` again and maps 0 back to 10001: Chromium refuses to run as root with its sandbox on,
   and the browser then holds no capability over the mount namespace, so it cannot unmount the covers (a namespace it
   makes itself copies them locked: mount_namespaces(7); ``umount2`` is refused by the profile anyway);
4. adds a seccomp filter of its own refusing ``mount`` altogether (every ABI): the profile's one allowed mount is the
   launcher's, and the browser, the process a room page attacks, keeps no more of the mount code than before;
5. checks the covers (each folder lists empty) and that a process of the container's namespaces is out of reach
   (reading its ``/proc/<pid>/environ`` is refused), then execs chromedriver (same pid: Selenium's process).

Around the covers: ``/proc/<pid>/root``, ``environ``, ``mem`` and ``fd`` of baresip or the supervisor need
ptrace access, and the kernel refuses it to a process of a child user namespace (commoncap: the same user namespace
or CAP_SYS_PTRACE over the target's), whatever the uid. Processes of the container (the supervisor, ``docker exec``)
still see into the browser's: its namespaces belong to their uid.

Every step is first tried in a forked child. When that fails (Docker's default seccomp refuses user namespaces, as
for a swarm service; a profile without our ``mount`` rule; a kernel without user namespaces; root), the launcher execs
chromedriver as before (its mount filter added where it can be) and says why in its report; the gateway never fails
for it. ``--probe`` only tries (the
gateway's start-time check, gateway/sandbox.py).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import errno
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
#: the one set of mount flags the gateway's seccomp profile allows: a new read-only filesystem, nothing executable or
#: set-uid on it (a bind, move or remount needs other flags, so none of them is possible)
MOUNT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
COVER_OPTIONS = b"size=4k,nr_inodes=2,mode=0555"  # empty and read-only: nothing can be put there either

#: GatewayConfig's defaults (config.py), read from the same variables so an override moves the covers too
DEFAULT_ACCOUNT_FILE = "/run/secrets/sipmediagw-account"
DEFAULT_RUN_DIR = "/tmp/sipmediagw"
BARESIP_CONFIG = "baresip"  # the folder of the run dir baresip's config (with its `accounts` file) is rendered into


def secret_folders(env: Mapping[str, str]) -> tuple[str, ...]:
    """The folders the browser must not see: the account file's (the SIP account line and the secret room options)
    and baresip's config folder (its ``accounts`` file carries the same line). A folder holding what the browser
    needs (its profile and the PulseAudio socket under the run dir, the temp dir) or the root is never covered."""
    run_dir = Path(env.get("SIPMEDIAGW_RUN_DIR") or DEFAULT_RUN_DIR)
    account_folder = Path(env.get("SIPMEDIAGW_ACCOUNT_FILE") or DEFAULT_ACCOUNT_FILE).parent
    needed = (run_dir, Path(tempfile.gettempdir()), Path("/usr"), Path("/etc"))
    folders = []
    for folder in (account_folder, run_dir / BARESIP_CONFIG):
        if folder == Path("/") or any(folder == keep or folder in keep.parents for keep in needed):
            continue
        folders.append(str(folder))
    return tuple(folders)


@dataclasses.dataclass(frozen=True)
class IsolationCheck:
    """Whether the browser runs with the secret folders hidden from it, and why (or why not)."""

    available: bool
    reason: str
    hidden: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, text: str) -> IsolationCheck:
        """The launcher's report (one JSON object)."""
        data = json.loads(text)
        return cls(bool(data["isolated"]), str(data["reason"]), tuple(data.get("hidden") or ()))

    def to_json(self) -> str:
        return json.dumps({"isolated": self.available, "reason": self.reason, "hidden": list(self.hidden)})


class IsolationError(Exception):
    """A step of the isolation was refused: the message says which and why."""


def launcher_argv(chromedriver: str, hidden: Sequence[str], report: str | None = None,
                  python: str = sys.executable) -> list[str]:
    """The command that runs chromedriver isolated (its own arguments follow). ``-I``: the launcher imports nothing
    from the environment, PYTHONPATH or the current folder."""
    argv = [python, "-I", str(Path(__file__).resolve())]
    for folder in hidden:
        argv += ["--hide", str(folder)]
    if report:
        argv += ["--report", report]
    return argv + ["--", chromedriver]


def probe_argv(hidden: Sequence[str], python: str = sys.executable) -> list[str]:
    """The command that only tries the isolation and prints its IsolationCheck as JSON."""
    return [python, "-I", str(Path(__file__).resolve()), "--probe", *[a for f in hidden for a in ("--hide", f)]]


# --- the launcher (runs in its own process: the namespaces it enters are for good) -------------------------------

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return _libc


def _unshare(flags: int, what: str) -> None:
    if _c().unshare(flags) != 0:
        raise IsolationError(f"{what} refused: {os.strerror(ctypes.get_errno())}")


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(text)
    except OSError as exc:
        raise IsolationError(f"writing {path} ({text.strip()!r}) refused: {exc.strerror}") from None


def _map_ids(inside_uid: int, outside_uid: int, inside_gid: int, outside_gid: int) -> None:
    # setgroups must be denied before an unprivileged process may write its gid_map (user_namespaces(7))
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inside_uid} {outside_uid} 1\n")
    _write("/proc/self/gid_map", f"{inside_gid} {outside_gid} 1\n")


def _cover(folder: str) -> None:
    if _c().mount(b"sipmediagw-hidden", folder.encode(), b"tmpfs", MOUNT_FLAGS, COVER_OPTIONS) != 0:
        raise IsolationError(f"mounting a tmpfs over {folder} refused: {os.strerror(ctypes.get_errno())}")


def isolate(folders: Sequence[str]) -> tuple[str, ...]:
    """Enter the browser's namespaces with `folders` covered (this process, for good); return the folders covered.
    Raises IsolationError at the first refused step."""
    uid, gid = os.getuid(), os.getgid()
    if os.geteuid() == 0:
        raise IsolationError("running as root: nothing to map back to (Chromium refuses its sandbox for root)")
    present = tuple(f for f in folders if os.path.isdir(f))
    _unshare(CLONE_NEWUSER | CLONE_NEWNS, "new user and mount namespaces")
    _map_ids(0, uid, 0, gid)
    for folder in present:
        _cover(folder)
    _unshare(CLONE_NEWUSER, "a nested user namespace")
    _map_ids(uid, 0, gid, 0)
    deny_mount()
    return present


# A classic-BPF seccomp filter: refuse mount() with EPERM, allow everything else (the container's profile still
# applies: filters stack, the strictest answer wins). Offsets of struct seccomp_data: nr at 0, arch at 4.
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_AND_K, _BPF_RET_K = 0x20, 0x15, 0x54, 0x06
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM
_X32_BIT = 0x40000000  # x32 calls come as x86-64 ones with this bit set
#: (AUDIT_ARCH_*, mount's number there)
_MOUNT_NUMBERS = ((0xC000003E, 165), (0x40000003, 21), (0xC00000B7, 40), (0x40000028, 21))
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def mount_filter() -> list[tuple[int, int, int, int]]:
    """The filter's instructions (code, jt, jf, k): for each known ABI, its mount number gets EPERM."""
    program = [(_BPF_LD_W_ABS, 0, 0, 4)]  # A = arch
    for arch, number in _MOUNT_NUMBERS:
        # arch matches: load nr, drop the x32 bit, compare with mount's number; else try the next arch
        program += [(_BPF_JEQ_K, 0, 5, arch), (_BPF_LD_W_ABS, 0, 0, 0), (_BPF_AND_K, 0, 0, 0xFFFFFFFF ^ _X32_BIT),
                    (_BPF_JEQ_K, 0, 1, number), (_BPF_RET_K, 0, 0, _RET_EPERM), (_BPF_RET_K, 0, 0, _RET_ALLOW),
                    (_BPF_LD_W_ABS, 0, 0, 4)]
    program[-1] = (_BPF_RET_K, 0, 0, _RET_ALLOW)  # no arch matched
    return program


def deny_mount() -> None:
    """Install mount_filter() on this process (inherited by chromedriver and Chromium across exec)."""
    program = mount_filter()
    instructions = (_SockFilter * len(program))(*[_SockFilter(*i) for i in program])
    fprog = _SockFprog(len(program), instructions)
    # no_new_privs is what lets an unprivileged process add a filter (the container has it set already)
    if _c().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise IsolationError(f"no_new_privs refused: {os.strerror(ctypes.get_errno())}")
    if _c().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise IsolationError(f"the seccomp filter refusing mount was refused: {os.strerror(ctypes.get_errno())}")


def verify(covered: Sequence[str], outside_pid: int) -> None:
    """Check from inside: every covered folder lists empty, and `outside_pid` (a process of the container's user
    namespace, running as our uid) is out of reach through /proc."""
    if os.getuid() == 0:
        raise IsolationError("still root after the nested user namespace")
    for folder in covered:
        if os.listdir(folder):
            raise IsolationError(f"{folder} is still visible")
    try:
        with open(f"/proc/{outside_pid}/environ", "rb") as handle:
            handle.read(1)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM):
            raise IsolationError(f"/proc/{outside_pid}/environ: unexpected {exc.strerror}") from None
    else:
        raise IsolationError(f"/proc/{outside_pid}/environ is readable from the browser's namespaces")


def trial(folders: Sequence[str], fork: Callable[[], int] = os.fork) -> IsolationCheck:
    """Try every step in a forked child (this process keeps its namespaces) and say whether it all worked."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = fork()
    if pid == 0:  # the child: isolate, verify, report on the pipe, never return
        code = 1
        try:
            os.close(read_end)
            covered = isolate(folders)
            verify(covered, parent)
            message = json.dumps({"covered": list(covered)})
            code = 0
        except IsolationError as exc:
            message = json.dumps({"error": str(exc)})
        except BaseException as exc:  # anything unexpected is a refusal too: the parent falls back
            message = json.dumps({"error": f"{exc.__class__.__name__}: {exc}"})
        try:
            os.write(write_end, message.encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        answer = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        answer = {}
    if "covered" in answer:
        covered = tuple(answer["covered"])
        return IsolationCheck(True, "own user and mount namespaces, secret folders covered: "
                                    + (", ".join(covered) or "none present"), covered)
    return IsolationCheck(False, answer.get("error") or "the isolation trial died")


def _write_report(path: str | None, check: IsolationCheck) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(check.to_json())


def main(argv: Sequence[str] | None = None) -> int:
    """The launcher: isolate (or fall back), then exec the command after ``--``."""
    parser = argparse.ArgumentParser(prog="isolation.py", description=__doc__.splitlines()[0])
    parser.add_argument("--hide", action="append", default=[], help="a folder the command must not see")
    parser.add_argument("--report", help="write the outcome (JSON) here before exec'ing the command")
    parser.add_argument("--probe", action="store_true", help="only try, print the outcome (JSON), exit 0")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    check = trial(args.hide)
    if args.probe:
        print(check.to_json())
        return 0
    if not command:
        parser.error("no command after --")
    if check.available:
        try:
            isolate(args.hide)
        except IsolationError as exc:  # the trial passed a moment ago: half-isolated now, chromedriver cannot run
            print(f"isolation failed after a successful trial: {exc}", file=sys.stderr)
            return 1
    else:
        try:  # not isolated, but the profile's one mount is still not the browser's to make
            deny_mount()
        except IsolationError:
            pass
    _write_report(args.report, check)
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
