"""Doctor checks with fakes: each failure carries its exact fix."""

from pathlib import Path

from sipmediagw.doctor import FAIL, OK, WARN, render_report, run_checks
from sipmediagw.errors import DockerUnavailable
from sipmediagw.resources import HostResources
from sipmediagw.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HOST = HostResources(2, 24 * 1024**3, 20 * 1024**3)


def no_docker():
    raise DockerUnavailable("cannot reach the Docker daemon")


def checks_by_name(report):
    return {c.name: c for c in report.checks}


def test_everything_missing(tmp_path):
    settings = Settings(accounts_file=tmp_path / "accounts", sysroot=FIXTURES / "sysroot-empty", media="kernel",
                        browsing_dir=tmp_path, baresip_dir=tmp_path)
    report = run_checks(settings, connect=no_docker, host_sampler=lambda: HOST)
    checks = checks_by_name(report)
    assert checks["docker"].status == FAIL and "systemctl start docker   # or: dockerd &" in checks["docker"].fix
    assert "image" not in checks  # cannot be checked without the daemon
    assert checks["accounts"].status == FAIL and "accounts.example" in checks["accounts"].fix[0]
    assert checks["devices"].status == FAIL  # kernel mode forced: devices are required
    assert "modprobe v4l2loopback" in checks["devices"].fix
    assert not report.healthy and report.gateways_possible == 0
    text = render_report(report)
    assert "[FAIL] docker" in text and "fix:" in text and "=> 0 gateway(s)" in text


def test_userspace_host_without_devices_only_warns(tmp_path):
    (tmp_path / "accounts").write_text("<sip:a@h>\n<sip:b@h>\n<sip:c@h>\n")
    settings = Settings(accounts_file=tmp_path / "accounts", sysroot=FIXTURES / "sysroot-1slot", media="userspace",
                        browsing_dir=tmp_path, baresip_dir=tmp_path, cpu_per_gateway=0.5)
    report = run_checks(settings, connect=no_docker, host_sampler=lambda: HOST)
    checks = checks_by_name(report)
    assert checks["devices"].status == WARN and "1 kernel slot(s)" in checks["devices"].detail
    assert 'echo "options v4l2loopback devices=3 exclusive_caps=1,1,1" > /etc/modprobe.d/v4l2loopback.conf' \
        in checks["devices"].fix
    assert checks["budget"].status == OK and "4 gateway(s) fit" in checks["budget"].detail
    assert report.gateways_possible == 3  # min(3 accounts, 4 fit)


def test_budget_that_fits_nothing_fails(tmp_path):
    settings = Settings(accounts_file=tmp_path / "a", sysroot=FIXTURES / "sysroot-empty", cpu_per_gateway=4.0)
    checks = checks_by_name(run_checks(settings, connect=no_docker, host_sampler=lambda: HOST))
    assert checks["budget"].status == FAIL and "0 gateway(s) fit" in checks["budget"].detail
