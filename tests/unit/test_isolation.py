"""The launcher that hides the secret folders from the browser (gateway/isolation.py): its decisions with small fakes,
one real run as an unprivileged user on this host, and how the browser and the start-time probe use it. The launcher
inside the real container: tests/docker/test_secret_isolation.py."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sipmediagw import seccomp
from sipmediagw.gateway import browser, isolation
from sipmediagw.gateway.isolation import IsolationCheck, IsolationError
from sipmediagw.gateway.sandbox import probe_sandbox

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by an unprivileged user (this test's interpreter may live in /root)
NOBODY = 65534


# --- which folders ---------------------------------------------------------------------------------------------

def test_the_secret_folders_are_the_account_files_and_baresips_config() -> None:
    assert isolation.secret_folders({}) == ("/run/secrets", "/tmp/sipmediagw/baresip")
    moved = {"SIPMEDIAGW_ACCOUNT_FILE": "/srv/acct/line", "SIPMEDIAGW_RUN_DIR": "/var/run/gw"}
    assert isolation.secret_folders(moved) == ("/srv/acct", "/var/run/gw/baresip")


def test_a_folder_the_browser_needs_is_never_covered() -> None:
    # the account file at the root, in the temp dir, or in the run dir (the browser's profile and PulseAudio socket)
    for account in ("/account", "/tmp/account", "/tmp/sipmediagw/account"):
        assert isolation.secret_folders({"SIPMEDIAGW_ACCOUNT_FILE": account}) == ("/tmp/sipmediagw/baresip",), account


# --- the launcher's decisions ----------------------------------------------------------------------------------

class FakeLibc:
    """unshare/mount that succeed (or fail with `refuse[name]`), recording the calls."""

    def __init__(self, refuse: dict[str, int] | None = None) -> None:
        self.refuse = refuse or {}
        self.calls: list[tuple[Any, ...]] = []

    def _answer(self, name: str) -> int:
        if name in self.refuse:
            ctypes.set_errno(self.refuse[name])
            return -1
        return 0

    def unshare(self, flags: int) -> int:
        self.calls.append(("unshare", flags))
        return self._answer("unshare")

    def mount(self, source: bytes, target: bytes, fstype: bytes, flags: int, data: bytes) -> int:
        self.calls.append(("mount", target.decode(), fstype, flags))
        return self._answer("mount")

    def prctl(self, option: int, *args: Any) -> int:
        self.calls.append(("prctl", option))
        return self._answer("prctl")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:  # tmp_path first: it needs getuid
    libc, writes = FakeLibc(), []
    monkeypatch.setattr(isolation, "_libc", libc)
    monkeypatch.setattr(isolation, "_write", lambda path, text: writes.append((path, text)))
    monkeypatch.setattr(os, "geteuid", lambda: 10001)
    monkeypatch.setattr(os, "getuid", lambda: 10001)
    monkeypatch.setattr(os, "getgid", lambda: 10002)
    return {"libc": libc, "writes": writes}


def test_isolate_maps_to_root_covers_the_folders_then_maps_back(fake: dict[str, Any], tmp_path: Path) -> None:
    present = tmp_path / "secrets"
    present.mkdir()
    covered = isolation.isolate([str(present), str(tmp_path / "absent")])
    assert covered == (str(present),)  # nothing to hide where there is no folder
    assert fake["libc"].calls == [
        ("unshare", isolation.CLONE_NEWUSER | isolation.CLONE_NEWNS),
        ("mount", str(present), b"tmpfs", isolation.MOUNT_FLAGS),
        ("unshare", isolation.CLONE_NEWUSER),
        ("prctl", isolation.PR_SET_NO_NEW_PRIVS), ("prctl", isolation.PR_SET_SECCOMP),  # then mount is refused
    ]
    assert fake["writes"] == [
        ("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", "0 10001 1\n"), ("/proc/self/gid_map", "0 10002 1\n"),
        ("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", "10001 0 1\n"), ("/proc/self/gid_map", "10002 0 1\n"),
    ]


def test_the_covers_flags_are_the_one_mount_the_seccomp_profile_allows() -> None:
    [rule] = [r for r in seccomp.profile()["syscalls"] if r["names"] == ["mount"]]
    assert rule["args"] == [{"index": 3, "value": isolation.MOUNT_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_NE"}]
    assert isolation.MOUNT_FLAGS == seccomp.MOUNT_FLAGS == 0xF  # read-only, nosuid, nodev, noexec; no bind/move
    unconditional = {n for r in seccomp.profile()["syscalls"] if "args" not in r for n in r["names"]}
    assert {"umount2", "umount", "pivot_root", "setns", "move_mount", "open_tree", "fsmount"} <= unconditional


def test_each_refusal_is_named(fake: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake["libc"].refuse = {"unshare": errno.EPERM}
    with pytest.raises(IsolationError, match="new user and mount namespaces refused: Operation not permitted"):
        isolation.isolate([str(tmp_path)])
    fake["libc"].refuse = {"mount": errno.EPERM}
    with pytest.raises(IsolationError, match=f"mounting a tmpfs over {tmp_path} refused: Operation not permitted"):
        isolation.isolate([str(tmp_path)])
    fake["libc"].refuse = {"prctl": errno.EINVAL}
    with pytest.raises(IsolationError, match="no_new_privs refused: Invalid argument"):
        isolation.isolate([str(tmp_path)])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    fake["libc"].calls.clear()
    with pytest.raises(IsolationError, match="running as root"):
        isolation.isolate([str(tmp_path)])
    assert fake["libc"].calls == []  # root is refused before anything changes


def _run_filter(program: list[tuple[int, int, int, int]], nr: int, arch: int) -> int:
    """A tiny interpreter of the classic-BPF subset the filter uses, on seccomp_data {nr, arch}."""
    data = {0: nr, 4: arch}
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:
            a = data[k]
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x06:
            return k
        pc += 1


def test_the_browsers_own_filter_refuses_mount_on_every_abi_and_nothing_else() -> None:
    program = isolation.mount_filter()
    eperm, allow = 0x00050000 | errno.EPERM, 0x7FFF0000
    x86_64, i386, aarch64, arm = 0xC000003E, 0x40000003, 0xC00000B7, 0x40000028
    for arch, mount in ((x86_64, 165), (x86_64, 165 | 0x40000000), (i386, 21), (aarch64, 40), (arm, 21)):
        assert _run_filter(program, mount, arch) == eperm, (hex(arch), mount)
    for arch, other in ((x86_64, 166), (x86_64, 0), (x86_64, 272), (i386, 52), (aarch64, 39), (arm, 52),
                        (0x12345678, 165)):
        assert _run_filter(program, other, arch) == allow, (hex(arch), other)


def test_verify_wants_empty_covers_and_the_outside_out_of_reach(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 10001)
    (tmp_path / "accounts").write_text("x")
    with pytest.raises(IsolationError, match="still visible"):
        isolation.verify([str(tmp_path)], os.getpid())
    # this process can read its own environ: the check that the kernel refuses it from inside must notice
    with pytest.raises(IsolationError, match="environ is readable"):
        isolation.verify([], os.getpid())
    monkeypatch.setattr(os, "getuid", lambda: 0)
    with pytest.raises(IsolationError, match="still root"):
        isolation.verify([], os.getpid())


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """main() with the trial, the isolation and exec replaced by recorders."""
    seen: dict[str, Any] = {"trial": IsolationCheck(True, "covered", ("/run/secrets",)), "isolated": None,
                            "exec": None}

    def isolate(folders: Any) -> tuple[str, ...]:
        seen["isolated"] = list(folders)
        if isinstance(seen.get("isolate_error"), IsolationError):
            raise seen["isolate_error"]
        return tuple(folders)

    monkeypatch.setattr(isolation, "trial", lambda folders: seen["trial"])
    monkeypatch.setattr(isolation, "isolate", isolate)
    monkeypatch.setattr(isolation, "deny_mount", lambda: seen.update(filtered=True))
    monkeypatch.setattr(os, "execv", lambda path, argv: seen.update(exec=list(argv)))
    return seen


def test_a_successful_trial_isolates_then_execs_chromedriver(launcher: dict[str, Any], tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    isolation.main(["--hide", "/run/secrets", "--report", str(report), "--", "/usr/bin/chromedriver", "--port=1"])
    assert launcher["isolated"] == ["/run/secrets"]
    assert launcher["exec"] == ["/usr/bin/chromedriver", "--port=1"]
    assert IsolationCheck.from_json(report.read_text()) == launcher["trial"]


def test_a_failed_trial_execs_chromedriver_as_before_and_reports_why(launcher: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    launcher["trial"] = IsolationCheck(False, "new user and mount namespaces refused: Operation not permitted")
    report = tmp_path / "report.json"
    isolation.main(["--hide", "/run/secrets", "--report", str(report), "--", "/usr/bin/chromedriver"])
    assert launcher["isolated"] is None  # no namespace was entered by the process that becomes chromedriver
    assert launcher["filtered"]  # but mount is refused to the browser all the same
    assert launcher["exec"] == ["/usr/bin/chromedriver"]
    assert json.loads(report.read_text()) == {"isolated": False, "hidden": [],
                                              "reason": "new user and mount namespaces refused: "
                                                        "Operation not permitted"}


def test_a_failure_after_a_successful_trial_stops_instead_of_running_half_isolated(launcher: dict[str, Any]) -> None:
    launcher["isolate_error"] = IsolationError("mounting a tmpfs over /run/secrets refused: Operation not permitted")
    assert isolation.main(["--hide", "/run/secrets", "--", "/usr/bin/chromedriver"]) == 1
    assert launcher["exec"] is None


def test_the_probe_only_tries(launcher: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert isolation.main(["--probe", "--hide", "/run/secrets"]) == 0
    assert IsolationCheck.from_json(capsys.readouterr().out) == launcher["trial"]
    assert launcher["isolated"] is None and launcher["exec"] is None


def test_the_real_trial_leaves_this_process_as_it_was() -> None:
    before = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("user", "mnt")}
    check = isolation.trial(["/nonexistent-folder"])
    assert check.reason  # root here: refused with a reason; elsewhere it may pass
    assert {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("user", "mnt")} == before


# --- the real launcher, as an unprivileged user on this host --------------------------------------------------

def _as_nobody(argv: list[str]) -> subprocess.CompletedProcess[str]:
    assert Path(SYSTEM_PYTHON).exists(), "the system python3 runs the launcher as an unprivileged user"
    return subprocess.run(argv, user=NOBODY, group=NOBODY, capture_output=True, text=True, timeout=30)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder an unprivileged user can read, with a secret folder in it."""
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"isolation-test-{os.getpid()}-{tmp_path.name}"
    (root / "secret").mkdir(parents=True)
    (root / "secret" / "accounts").write_text("auth_pass=TOPSECRET\n")
    for path in (root, root / "secret", root / "secret" / "accounts"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    for path in (root / "secret" / "accounts", root / "secret", root / "report.json", root):
        if path.is_dir():
            path.rmdir()
        elif path.exists():
            path.unlink()


def test_the_real_launcher_hides_the_folder_and_the_outside_processes(shared: Path) -> None:
    secret = shared / "secret"
    report = shared / "report.json"
    shared.chmod(0o777)  # the launcher (as nobody) writes its report here
    outside = subprocess.Popen(["sleep", "30"], user=NOBODY, group=NOBODY)  # same uid as the launcher, outside
    try:
        script = ("import ctypes, json, os, sys\n"
                  "def get(path):\n"
                  "    try:\n        return open(path).read()\n"
                  "    except OSError as exc:\n        return exc.strerror\n"
                  "def mount():\n"  # in namespaces of its own, as the launcher did: refused by its filter
                  "    libc = ctypes.CDLL(None, use_errno=True)\n"
                  "    uid = os.getuid()\n"
                  "    if libc.unshare(0x10000000 | 0x20000) != 0: return 'unshare: ' + os.strerror(ctypes.get_errno())\n"
                  "    open('/proc/self/uid_map', 'w').write(f'0 {uid} 1')\n"
                  f"    if libc.mount(b'x', {str(secret).encode()!r}, b'tmpfs', ctypes.c_ulong(15), b'') != 0:\n"
                  "        return os.strerror(ctypes.get_errno())\n"
                  "    return 'mounted'\n"
                  f"print(json.dumps({{'uid': os.getuid(), 'listing': os.listdir({str(secret)!r}),"
                  f" 'environ': get('/proc/{outside.pid}/environ'),"
                  f" 'through root': get('/proc/{outside.pid}/root{secret}/accounts'), 'mount': mount()}}))\n")
        argv = isolation.launcher_argv(SYSTEM_PYTHON, [str(secret)], str(report), python=SYSTEM_PYTHON)
        result = _as_nobody(argv + ["-I", "-c", script])
    finally:
        outside.kill()
        outside.wait()
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {"uid": NOBODY, "listing": [], "environ": "Permission denied", "through root": "Permission denied",
                    "mount": "Operation not permitted"}
    check = IsolationCheck.from_json(report.read_text())
    assert check.available and check.hidden == (str(secret),), check
    assert (secret / "accounts").read_text() == "auth_pass=TOPSECRET\n"  # untouched outside


def test_the_real_launcher_falls_back_when_it_cannot_isolate(shared: Path) -> None:
    # as root (this test process), "nothing to map back to": the command still runs, in our namespaces
    assert os.geteuid() == 0, "the unit tier runs as root on these machines (it also switches to nobody above)"
    report = shared / "report.json"
    argv = isolation.launcher_argv(sys.executable, [str(shared / "secret")], str(report))
    result = subprocess.run(argv + ["-c", "import os; print(os.listdir(%r))" % str(shared / "secret")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "['accounts']", result
    check = IsolationCheck.from_json(report.read_text())
    assert not check.available and "running as root" in check.reason


# --- the browser and the start-time probe ----------------------------------------------------------------------

def test_the_browser_starts_chromedriver_through_the_launcher_where_the_sandbox_works() -> None:
    sandboxed = browser.Browser(display=":0", env={}, camera_url=None, sandbox=True, hidden=["/run/secrets"])
    assert sandboxed.isolate and sandboxed.hidden == ("/run/secrets",)
    unsandboxed = browser.Browser(display=":0", env={}, camera_url=None)
    assert not unsandboxed.isolate  # no user namespaces for the sandbox: none for the launcher either
    assert browser.Browser(display=":0", env={}, camera_url=None, sandbox=True).hidden == \
        isolation.secret_folders(os.environ)


def test_the_launcher_service_runs_the_launcher_before_chromedrivers_arguments() -> None:
    argv = isolation.launcher_argv("/usr/bin/chromedriver", ["/run/secrets"], "/tmp/r.json")
    service = browser._LauncherService(argv, service_args=["--log-level=WARNING"], env={})
    args = service.command_line_args()
    assert service.path == sys.executable
    assert args[:2] == ["-I", str(Path(isolation.__file__).resolve())]
    assert args[args.index("--"):][:2] == ["--", "/usr/bin/chromedriver"]
    chromedrivers = args[args.index("--") + 2:]  # current selenium adds switches of its own
    assert f"--port={service.port}" in chromedrivers and chromedrivers[-1] == "--log-level=WARNING"
    assert args[2:args.index("--")] == ["--hide", "/run/secrets", "--report", "/tmp/r.json"]


def test_a_missing_report_counts_as_not_isolated(tmp_path: Path) -> None:
    check = browser.Browser._read_isolation(tmp_path / "none.json")
    assert not check.available and "no report" in check.reason


def _probe_said(isolation_line: str | None, code: int = 0, stderr: str = "") -> Any:
    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert "--probe" in argv[-1] and "unshare" in argv[-1]  # one child: the launcher's trial, then the sandbox's
        stdout = "" if isolation_line is None else "isolation: " + isolation_line + "\n"
        return subprocess.CompletedProcess(argv, code, stdout, stderr)
    return run


def test_the_state_file_says_when_the_secrets_are_not_hidden() -> None:
    hidden = IsolationCheck(True, "own user and mount namespaces, secret folders covered: /run/secrets",
                            ("/run/secrets",)).to_json()
    check = probe_sandbox(run=_probe_said(hidden), euid=lambda: 10001, hidden=["/run/secrets"])
    assert check.summary == "on" and check.secrets is not None and check.secrets.available
    assert "secrets hidden from the browser: own user and mount namespaces" in check.reason  # the log line's

    refused = IsolationCheck(False, "mounting a tmpfs over /run/secrets refused: Operation not permitted").to_json()
    check = probe_sandbox(run=_probe_said(refused), euid=lambda: 10001, hidden=["/run/secrets"])
    assert check.available  # Chromium's sandbox does not depend on it
    assert check.summary == ("on; secrets NOT hidden from the browser: mounting a tmpfs over /run/secrets refused: "
                             "Operation not permitted")

    # Docker's default profile (a swarm service): neither the sandbox nor the launcher; the state file says both
    check = probe_sandbox(run=_probe_said(None, 1, "new user/PID/network namespaces refused: Operation not permitted"),
                          euid=lambda: 10001, hidden=["/run/secrets"])
    assert check.summary.startswith("off: new user/PID/network namespaces refused: Operation not permitted")
    assert check.summary.endswith("secrets not hidden from the browser either (that needs the same user namespaces)")


def test_an_unreadable_isolation_answer_is_a_refusal() -> None:
    check = probe_sandbox(run=_probe_said("{not json"), euid=lambda: 10001, hidden=[])
    assert check.summary == "on; secrets NOT hidden from the browser: unreadable answer from the isolation probe"
