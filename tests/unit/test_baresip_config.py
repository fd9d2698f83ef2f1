"""baresip config rendering: the template's values, validation errors, the 0600 accounts file, the account line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sipmediagw.errors import ConfigError, FileLineError
from sipmediagw.gateway.baresip import (
    account_aor,
    baresip_argv,
    parse_size,
    prepare_account_line,
    read_account_file,
    render_baresip_config,
)

TEMPLATES = Path(__file__).resolve().parents[2] / "baresip"
SECRET = "s3cr3t-Pa55"
ACCOUNT = f"<sip:gw1@sip.example.org;transport=tcp>;auth_pass={SECRET};medianat=turn;stunpass=turnS3cret"


def render(tmp_path: Path, **overrides: object) -> Path:
    kwargs: dict[str, object] = dict(
        account_line=ACCOUNT,
        audio_player="pulse,to_room",
        audio_source="pulse,from_room.monitor",
        video_source="x11grab,:99",
        video_display="x11,nil",
        video_size=(1280, 720),
        fps=25,
    )
    kwargs.update(overrides)
    return render_baresip_config(TEMPLATES, tmp_path / "cfg", **kwargs)  # type: ignore[arg-type]


def settings(config: Path) -> list[tuple[str, str]]:
    """The active (key, value) pairs of a baresip config, in order."""
    pairs = []
    for line in config.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.replace("\t", " ").partition(" ")
            pairs.append((key, value.strip()))
    return pairs


def test_rendered_config_has_devices_ports_size_and_modules(tmp_path: Path) -> None:
    out = render(tmp_path, sip_port=5070, ctrl_port=4450, net_interface="eth0")
    pairs = settings(out / "config")
    values = dict(pairs)
    assert values["sip_listen"] == "0.0.0.0:5070"
    assert values["ctrl_tcp_listen"] == "127.0.0.1:4450"
    assert values["audio_player"] == "pulse,to_room"
    assert values["audio_source"] == "pulse,from_room.monitor"
    assert values["video_source"] == "x11grab,:99"
    assert values["video_display"] == "x11,nil"
    assert values["video_size"] == "1280x720"
    assert values["video_fps"] == "25.00"
    assert values["net_interface"] == "eth0"
    assert values["call_max_calls"] == "1"
    modules = [v for k, v in pairs if k in ("module", "module_app", "module_tmp")]
    for needed in ["ctrl_tcp.so", "menu.so", "account.so", "pulse.so", "x11grab.so", "x11.so", "avcodec.so",
                   "vp8.so", "opus.so", "g711.so", "g722.so", "stun.so", "turn.so", "ice.so", "srtp.so",
                   "dtls_srtp.so"]:
        assert needed in modules, needed
    assert modules.count("pulse.so") == 1
    assert "$" not in (out / "config").read_text()
    assert baresip_argv(out) == ["baresip", "-f", str(out)]


@pytest.mark.integration  # reads the installed baresip's module folder
def test_every_module_named_exists_on_this_machine(tmp_path: Path) -> None:
    module_dir = Path("/usr/lib/baresip/modules")
    if not module_dir.is_dir():
        pytest.fail("baresip is not installed (apt-get install baresip-core baresip-ffmpeg baresip-x11)")
    pairs = settings(render(tmp_path) / "config")
    for key, value in pairs:
        if key.startswith("module") and key != "module_path":
            assert (module_dir / value).is_file(), value


def test_accounts_file_is_private_and_forces_answermode(tmp_path: Path) -> None:
    out = render(tmp_path)
    accounts = out / "accounts"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    assert accounts.read_text() == ACCOUNT + ";answermode=auto\n"
    assert SECRET not in (out / "config").read_text()


def test_accounts_file_becomes_private_even_if_it_existed(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "accounts").write_text("old")
    (tmp_path / "cfg" / "accounts").chmod(0o644)
    out = render(tmp_path)
    assert stat.S_IMODE((out / "accounts").stat().st_mode) == 0o600


def test_answermode_set_by_the_line_is_kept() -> None:
    line = "<sip:a@b>;answermode=manual;auth_pass=x"
    assert prepare_account_line(line) == line
    assert prepare_account_line('"Gate Way" <sip:a@b>') == '"Gate Way" <sip:a@b>;answermode=auto'
    assert account_aor('"Gate Way" <sip:a@b;transport=tcp>;auth_pass=x') == "sip:a@b;transport=tcp"


@pytest.mark.parametrize("line", ["", "sip:a@b", "<a@b>;x=1", "<sip:a@b>\n<sip:c@d>", f"junk auth_pass={SECRET}"])
def test_bad_account_lines_are_refused_without_echoing_secrets(line: str) -> None:
    with pytest.raises(ConfigError) as info:
        prepare_account_line(line)
    assert SECRET not in str(info.value)


def test_account_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "account"
    path.write_text(f"# gateway account\n\nnot-an-account auth_pass={SECRET}\n")
    with pytest.raises(FileLineError) as info:
        read_account_file(path)
    assert info.value.line == 3 and str(path) in str(info.value)
    assert SECRET not in str(info.value)
    path.write_text("<sip:a@b>\n<sip:c@d>\n")
    with pytest.raises(FileLineError, match=r":2: more than one account"):
        read_account_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no account line"):
        read_account_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_account_file(tmp_path / "missing")
    path.write_text(f"\n{ACCOUNT}\n")
    assert read_account_file(path) == ACCOUNT + ";answermode=auto"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"sip_port": "5060"}, "sip_port"),
        ({"sip_port": 70000}, "sip_port"),
        ({"ctrl_port": True}, "ctrl_port"),
        ({"ctrl_port": 5061}, "collides"),
        ({"video_size": (1280,)}, "video_size"),
        ({"video_size": (1281, 720)}, "even size"),
        ({"video_size": ("1280", "720")}, "video_size"),
        ({"fps": 0}, "fps"),
        ({"fps": 25.0}, "fps"),
        ({"audio_player": "pulse, sink"}, "audio_player"),
        ({"audio_player": "ausine,440"}, "unknown driver 'ausine'"),
        ({"video_source": "x11grab,:99\nmodule evil.so"}, "video_source"),
        ({"video_display": "x11grab,:0"}, "video_display"),
        ({"net_interface": "eth0; rm"}, "net_interface"),
        ({"extra": {"Bad Key": "1"}}, "invalid key"),
        ({"extra": {"snd_path": "/tmp\nmodule x.so"}}, "single line"),
        ({"account_line": "nonsense"}, "not a baresip account line"),
    ],
)
def test_invalid_values_are_refused_and_nothing_written(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render(tmp_path, **overrides)
    assert not (tmp_path / "cfg").exists()


def test_extra_replaces_settings_appends_new_ones_and_snd_path_loads_sndfile(tmp_path: Path) -> None:
    out = render(tmp_path, extra={"sip_listen": "127.0.0.1:5999", "ausrc_channels": "2", "snd_path": "/rec",
                                  "module": "vidinfo.so"})
    pairs = settings(out / "config")
    assert [v for k, v in pairs if k == "sip_listen"] == ["127.0.0.1:5999"]
    assert ("ausrc_channels", "2") in pairs and ("snd_path", "/rec") in pairs
    modules = [v for k, v in pairs if k == "module"]
    assert "sndfile.so" in modules and "vidinfo.so" in modules


def test_template_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "config_default").write_text("poll_method epoll\nsip_listen ${sip_listn}\n")
    with pytest.raises(FileLineError) as info:
        render_baresip_config(tmp_path / "tpl", tmp_path / "cfg", account_line="<sip:a@b>", audio_player="pulse",
                              audio_source="pulse", video_source="x11grab,:1", video_display="x11,nil",
                              video_size=(640, 360), fps=15)
    assert info.value.line == 2 and "sip_listn" in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        render(tmp_path, template="config_missing")


def test_parse_size() -> None:
    assert parse_size("1280x720") == (1280, 720)
    assert parse_size(" 640X360 ") == (640, 360)
    for bad in ["1280", "x720", "-1x2", "1280x720x3", "99999x1"]:
        with pytest.raises(ConfigError, match="size"):
            parse_size(bad)


def test_the_gateway_answermode_replaces_the_lines_own() -> None:
    """The gateway renders answermode=manual whatever the operator wrote: it answers after reading callstat."""
    for line in ("<sip:a@b>;auth_pass=x;answermode=auto;regint=60", "<sip:a@b>;auth_pass=x", "<sip:a@b>;ANSWERMODE=early"):
        prepared = prepare_account_line(line, answermode="manual")
        assert prepared.lower().count("answermode=") == 1 and prepared.endswith(";answermode=manual")
        assert "auth_pass=x" in prepared or "auth_pass" not in line
    with pytest.raises(ConfigError, match="answermode must be"):
        prepare_account_line("<sip:a@b>", answermode="sometimes")
