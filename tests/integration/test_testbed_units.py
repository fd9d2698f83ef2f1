"""Test-bed helpers that need no daemon: tone measurement with sox, addresses, config rendering."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import pytest

from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.janus import JanusServer
from sipmediagw.testbed.kamailio import KAMAILIO_CFG, Kamailio
from sipmediagw.testbed.network import docker_bridge_ip, interface_of
from sipmediagw.testbed.tones import dominant_frequency, make_tone


@pytest.mark.parametrize("freq", [440, 1000])
def test_dominant_frequency_finds_the_tone(tmp_path: Path, freq: int, require_programs: Callable[..., None]) -> None:
    require_programs("sox")
    wav = make_tone(tmp_path / "t.wav", freq, seconds=5)
    assert abs(dominant_frequency(wav) - freq) <= freq * 0.02


def test_dominant_frequency_above_the_low_pass_needs_it_off(
    tmp_path: Path, require_programs: Callable[..., None]
) -> None:
    require_programs("sox")
    wav = make_tone(tmp_path / "t.wav", 2500, seconds=5)
    assert abs(dominant_frequency(wav, lowpass_hz=None) - 2500) <= 50


def test_dominant_frequency_ignores_high_frequency_codec_noise(
    tmp_path: Path, require_programs: Callable[..., None]
) -> None:
    """Opus leaves noise far above our test tones; sox's rough estimate drifts up with it unless low-passed."""
    require_programs("sox")
    tone = make_tone(tmp_path / "tone.wav", 440, seconds=5)
    noise = tmp_path / "noise.wav"
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", "-b", "16", str(noise), "synth", "5", "sine", "9000",
                    "vol", "0.08"], check=True, capture_output=True)
    mixed = tmp_path / "mixed.wav"
    subprocess.run(["sox", "-m", str(tone), str(noise), str(mixed)], check=True, capture_output=True)
    assert dominant_frequency(mixed, lowpass_hz=None) > 440 * 1.05  # what misled the first Opus measurements
    assert abs(dominant_frequency(mixed) - 440) <= 440 * 0.02


def test_dominant_frequency_of_stereo_is_not_halved(tmp_path: Path, require_programs: Callable[..., None]) -> None:
    require_programs("sox")
    wav = make_tone(tmp_path / "t.wav", 1000, seconds=5, channels=2)
    assert abs(dominant_frequency(wav) - 1000) <= 20


def test_dominant_frequency_names_the_file_on_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(RuntimeError, match="missing.wav"):
        dominant_frequency(missing)


def test_docker_bridge_ip_is_on_the_bridge_interface() -> None:
    ip = docker_bridge_ip()
    assert interface_of(ip) == "docker0"


def test_caller_config_uses_stereo_sine_and_video_only_avformat(tmp_path: Path) -> None:
    caller = BaresipCaller(user="alice", domain="sip.test", registrar="127.0.0.1:5060", workdir=tmp_path,
                           tone_hz=1234, password="s3cret")
    config = caller.config_text()
    assert "audio_source\tausine,1234" in config
    assert "ausrc_channels\t2" in config
    assert "video_source\tavformat,lavfi,testsrc" in config
    assert "net_interface\t127.0.0.1" in config
    assert "s3cret" not in config  # the password lives only in the 0600 accounts file
    assert ";auth_pass=s3cret" in caller.account_line()


def test_caller_without_video_is_a_phone_with_no_video_module(tmp_path: Path) -> None:
    caller = BaresipCaller(user="a", domain="d", registrar="127.0.0.1:5060", workdir=tmp_path, video=False)
    config = caller.config_text()
    assert not [m for m in ("avformat", "vp8", "avcodec", "fakevideo", "snapshot") if f"\t{m}.so" in config]
    assert "\topus.so" in config and "\tausine.so" in config


@pytest.mark.parametrize("defines", [[], ["-A", "WITH_AUTH"], ["-A", "WITH_DEBUG"]])
def test_kamailio_cfg_checks(tmp_path: Path, defines: list[str], require_programs: Callable[..., None]) -> None:
    require_programs("kamailio")
    kam = Kamailio(domain="sip.test", listen=["127.0.0.1"], port=5990, workdir=tmp_path)
    proc = subprocess.run(kam.argv() + defines + ["-c"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_kamailio_domain_is_set_in_one_place() -> None:
    text = KAMAILIO_CFG.read_text()
    assert text.count('#!define SIP_DOMAIN') == 1
    assert "alias=SIP_DOMAIN" in text


def test_janus_config_keeps_ice_on_the_listen_address_and_no_stun(tmp_path: Path) -> None:
    janus = JanusServer(listen_ip="172.17.0.1", workdir=tmp_path, http_port=8188, web_port=8100)
    janus.render_config()
    main = (tmp_path / "conf" / "janus.jcfg").read_text()
    assert 'ice_enforce_list = "172.17.0.1"' in main
    assert "stun_server" not in main
    assert "libjanus_websockets.so" in main  # disabled: only the HTTP transport listens
    http = (tmp_path / "conf" / "janus.transport.http.jcfg").read_text()
    assert 'ip = "172.17.0.1"' in http and "port = 8188" in http
    rooms = (tmp_path / "conf" / "janus.plugin.videoroom.jcfg").read_text()
    assert all(f"room-{n}:" in rooms for n in range(1234, 1241))
    settings = (tmp_path / "www" / "settings.js").read_text()
    assert 'var server = "http://172.17.0.1:8188/janus"' in settings
    assert "var iceServers = [];" in settings and "var token" in settings and "var apisecret" in settings
    assert (tmp_path / "www" / "videoroom.html").is_file()
    assert (tmp_path / "www" / "javascript" / "janus-gateway" / "janus.min.js").exists()
