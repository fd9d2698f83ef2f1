"""The gateway's seccomp profile: one source (sipmediagw/seccomp.py), the checked-in file, the launcher's option and
the docs agree; what Chromium's sandbox needs stays allowed. The profile at work is tested in tests/docker."""

from __future__ import annotations

import json
from pathlib import Path

from sipmediagw import seccomp

ROOT = Path(__file__).resolve().parents[2]


def _rules() -> list[dict]:
    return seccomp.profile()["syscalls"]


def test_the_checked_in_file_is_the_generated_profile() -> None:
    assert (ROOT / seccomp.PROFILE_PATH).read_text() == seccomp.profile_json(), \
        "regenerate it: python3 -m sipmediagw.seccomp > docker/seccomp-gateway.json"


def test_the_security_option_carries_the_profile_itself() -> None:
    key, _, value = seccomp.security_opt().partition("=")
    assert key == "seccomp" and json.loads(value) == seccomp.profile()  # the engine API takes JSON, not a path


def test_everything_is_allowed_but_the_denied_calls_each_with_its_reason() -> None:
    profile = seccomp.profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    for rule in _rules():
        assert rule["action"] == "SCMP_ACT_ERRNO" and rule["errnoRet"] == 1
        assert len(rule["comment"]) > 20 and rule["names"]
    # every ABI of the architecture: a 32-bit call must not walk around a rule
    x86 = next(a for a in profile["archMap"] if a["architecture"] == "SCMP_ARCH_X86_64")
    assert set(x86["subArchitectures"]) == {"SCMP_ARCH_X86", "SCMP_ARCH_X32"}


def test_what_chromiums_sandbox_needs_stays_allowed() -> None:
    # measured: the sandbox fails when clone/unshare with new namespaces or chroot are refused
    denied = {name for rule in _rules() for name in rule["names"]}
    assert not denied & {"clone", "clone3", "unshare", "chroot", "seccomp", "prctl"}


def test_the_calls_exploits_rely_on_are_denied_whatever_their_arguments() -> None:
    unconditional = {name for rule in _rules() if "args" not in rule for name in rule["names"]}
    assert {"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "keyctl", "add_key", "request_key",
            "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "init_module", "finit_module",
            "open_by_handle_at", "umount2", "pivot_root", "setns", "reboot", "swapon", "acct",
            "settimeofday", "clock_settime"} <= unconditional
    # mount: only the read-only tmpfs that hides the secrets from the browser (test_isolation.py checks the flags)
    assert "mount" not in unconditional


def test_conditional_rules_compare_one_argument_each_or_different_ones() -> None:
    # runc turns two conditions on the same argument into two rules (OR): "deny if a AND b" must use two arguments
    for rule in _rules():
        indexes = [arg["index"] for arg in rule.get("args", [])]
        assert len(indexes) == len(set(indexes)), rule


def test_sockets_keep_what_the_gateway_uses() -> None:
    socket_rules = [rule["args"] for rule in _rules() if rule["names"] == ["socket"]]
    families = {arg["value"] for args in socket_rules for arg in args if arg["index"] == 0}
    assert seccomp.AF_PACKET in families and seccomp.AF_NETLINK in families
    netlink = next(args for args in socket_rules if {"index": 0, "value": seccomp.AF_NETLINK, "valueTwo": 0,
                                                      "op": "SCMP_CMP_EQ"} in args)
    assert {"index": 2, "value": seccomp.NETLINK_NETFILTER, "valueTwo": 0, "op": "SCMP_CMP_EQ"} in netlink
    # raw sockets are refused only for IPv4/IPv6: netlink (Chromium's address tracking, udev) is SOCK_RAW too
    raw = [args for args in socket_rules if any(arg["index"] == 1 for arg in args)]
    assert sorted(next(a["value"] for a in args if a["index"] == 0) for args in raw) == [seccomp.AF_INET,
                                                                                         seccomp.AF_INET6]


def test_the_docs_give_the_reason_of_every_denied_call() -> None:
    docs = (ROOT / "docs" / "container.md").read_text()
    section = docs[docs.index("## Security"):]
    for rule in _rules():
        for name in rule["names"]:
            assert f"`{name}`" in section, f"docs/container.md (Security) does not mention {name}"
