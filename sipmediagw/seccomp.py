"""The gateway container's seccomp profile: the one home of `docker/seccomp-gateway.json` and of the option that
carries it (``security_opt``).

Why a profile of our own: Docker's default profile refuses the user namespaces Chromium's sandbox is built from
(``clone``/``unshare`` with ``CLONE_NEWUSER`` need CAP_SYS_ADMIN there, ``chroot`` CAP_SYS_CHROOT), so with it the
browser has to run with ``--no-sandbox`` and a room page that finds a renderer bug runs as the gateway user, beside
the account password. This profile allows everything except a list of system calls no gateway process needs, each
with the reason next to it (docs/container.md, "Security"), so Chromium's namespace sandbox works (renderers in their
own user, PID and network namespaces, chrooted into an empty folder, under Chromium's own seccomp filter) while the
calls that mostly serve kernel exploits and container escapes stay closed.

Measured with the image's Chromium 156 (cap_drop ALL, no-new-privileges, user 10001): the sandbox needs ``clone``
with CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET and ``chroot``; it works with every call below denied, ``mount``,
``umount2``, ``pivot_root``, ``setns`` and ``ptrace`` included.

One ``mount`` is let through: the launcher that hides the secret folders from the browser (gateway/isolation.py)
covers them with an empty tmpfs in a mount namespace of its own, with flags exactly MOUNT_FLAGS (read-only, nosuid,
nodev, noexec: no bind, move, remount or propagation change can carry those flags). A mount made in a namespace the
caller owns changes that namespace only; nothing else (``umount2``, ``pivot_root``, ``setns``, the new mount API) is
needed, and the launcher refuses ``mount`` to chromedriver and Chromium with a filter of its own before exec.

``python3 -m sipmediagw.seccomp`` prints the profile (the checked-in file is this output; a unit test compares).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

#: where the profile is checked in, relative to the folder holding docker-compose.yml
PROFILE_PATH = "docker/seccomp-gateway.json"
EPERM = 1

# socket() arguments the rules below compare (linux/socket.h, linux/netlink.h)
AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 2, 10, 16, 17
SOCK_RAW, SOCK_TYPE_MASK = 3, 0xF  # the type argument also carries SOCK_NONBLOCK / SOCK_CLOEXEC
NETLINK_NETFILTER = 12
#: mount()'s flags for the launcher's covers (gateway/isolation.py): MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
MOUNT_FLAGS = 0x1 | 0x2 | 0x4 | 0x8
#: the personality() values a program may still set: PER_LINUX, PER_LINUX32 and UNAME26 (alone or together); a
#: larger one holds a flag that turns exploit mitigations off in the children (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC...)
PERSONALITY_MAX = 0x20008


@dataclasses.dataclass(frozen=True)
class Denied:
    """System calls refused with EPERM (all of them, or only with the given argument conditions), and why."""

    names: tuple[str, ...]
    reason: str
    args: tuple[dict[str, Any], ...] = ()

    def rule(self) -> dict[str, Any]:
        """The rule as Docker's profile format spells it."""
        rule: dict[str, Any] = {"names": list(self.names), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}
        if self.args:
            rule["args"] = [dict(arg) for arg in self.args]
        rule["comment"] = self.reason
        return rule


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


DENIED: tuple[Denied, ...] = (
    Denied(("init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms"),
           "kernel modules: a gateway never loads one; loading one is owning the host"),
    Denied(("kexec_load", "kexec_file_load", "reboot"), "replacing or restarting the kernel"),
    Denied(("bpf",), "eBPF programs: verifier bugs are a classic way from user to kernel; nothing here uses eBPF"),
    Denied(("perf_event_open",), "kernel profiling: a frequent source of kernel bugs and of side channels"),
    Denied(("userfaultfd",), "lets an exploit freeze the kernel mid-copy to win a race; nothing here needs it"),
    Denied(("io_uring_setup", "io_uring_enter", "io_uring_register"),
           "io_uring: a large, often-patched kernel interface none of the gateway's programs uses"),
    Denied(("keyctl", "add_key", "request_key"),
           "the kernel keyring is not namespaced: keys of other containers of the same uid could be read or planted"),
    Denied(("open_by_handle_at", "name_to_handle_at"),
           "file handles open files by inode number, around the container's mount namespace (the classic escape)"),
    Denied(("ptrace", "process_vm_readv", "process_vm_writev"),
           "every process of the container runs as uid 10001: a compromised browser could read the supervisor's "
           "memory (the account password) or write into baresip's"),
    Denied(("umount2", "umount", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
            "fspick", "mount_setattr"),
           "mounting is possible inside a new user namespace (which Chromium's sandbox needs us to allow) and brings "
           "filesystem code within reach; neither the sandbox nor our launcher unmounts, moves or clones a mount"),
    Denied(("mount",), "the one mount the gateway makes is the launcher's empty read-only tmpfs over the secret "
                       "folders, in the browser's own mount namespace (gateway/isolation.py): any other flags (a "
                       "bind, a move, a remount, a propagation change, a writable, executable or set-uid mount) are "
                       "refused; a namespaced mount only changes the namespace its caller owns",
           (_arg(3, "SCMP_CMP_NE", MOUNT_FLAGS),)),
    Denied(("setns",), "joining another process's namespaces: the sandbox only creates new ones"),
    Denied(("swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup", "lookup_dcookie",
            "nfsservctl", "uselib", "iopl", "ioperm", "vm86", "vm86old"),
           "host administration, the kernel log (kernel addresses), raw I/O ports, obsolete interfaces"),
    Denied(("settimeofday", "stime", "clock_settime", "clock_adjtime"), "the clock is the host's, not a gateway's"),
    Denied(("personality",), "flags above UNAME26|PER_LINUX32 turn ASLR off or make reads executable for children",
           (_arg(0, "SCMP_CMP_GT", PERSONALITY_MAX),)),
    Denied(("socket",), "packet sockets: raw access to the network below IP (capable in a new network namespace)",
           (_arg(0, "SCMP_CMP_EQ", AF_PACKET),)),
    *(Denied(("socket",), "raw IP sockets: nothing here builds its own packets (netlink sockets are SOCK_RAW too: "
                          "only IPv4 and IPv6 are refused)",
             (_arg(0, "SCMP_CMP_EQ", family), _arg(1, "SCMP_CMP_MASKED_EQ", SOCK_TYPE_MASK, SOCK_RAW)))
      for family in (AF_INET, AF_INET6)),
    Denied(("socket",), "netfilter over netlink (nf_tables): configurable in a new network namespace, a frequent "
           "source of kernel exploits; routes and addresses (NETLINK_ROUTE) stay allowed for Chromium and baresip",
           (_arg(0, "SCMP_CMP_EQ", AF_NETLINK), _arg(2, "SCMP_CMP_EQ", NETLINK_NETFILTER))),
    Denied(("socketcall",), "the 32-bit socket multiplexer hides its arguments from the rules above"),
)

#: every ABI of the host architecture, so a 32-bit call cannot walk around a rule
ARCH_MAP = (
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
)


def profile() -> dict[str, Any]:
    """The profile as a document of Docker's seccomp format: allow by default, refuse the DENIED calls."""
    return {
        "comment": "sipmediagw gateway: Docker's default refuses the user namespaces of Chromium's sandbox; this one "
                   "allows them and refuses what a gateway never needs. Generated by python3 -m sipmediagw.seccomp; "
                   "reasons in docs/container.md (Security).",
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [dict(arch) for arch in ARCH_MAP],
        "syscalls": [denied.rule() for denied in DENIED],
    }


def profile_json() -> str:
    """The profile as the checked-in file holds it (indented, one trailing newline)."""
    return json.dumps(profile(), indent=2) + "\n"


def security_opt() -> str:
    """The ``security_opt`` entry carrying the profile (the engine API takes the JSON itself, not a path)."""
    return "seccomp=" + json.dumps(profile(), separators=(",", ":"))


def main() -> int:
    """Print the profile (``python3 -m sipmediagw.seccomp > docker/seccomp-gateway.json``)."""
    sys.stdout.write(profile_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
