"""The test bed with real processes: Kamailio + two baresip callers, Janus + two Chromium participants, coturn."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from sipmediagw.testbed.caller import BaresipCaller
from sipmediagw.testbed.coturn import Coturn
from sipmediagw.testbed.janus import JanusServer
from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.network import BridgeKeeper, docker_bridge_ip, free_port, free_port_range
from sipmediagw.testbed.participant import Participant
from sipmediagw.testbed._proc import wait_until
from sipmediagw.testbed.tones import MAKE_TONE_LEVEL_DB, check_tone

pytestmark = pytest.mark.e2e

DOMAIN = "sipmediagw.test"
LOOPBACK = "127.0.0.1"


def require(*binaries: str) -> None:
    """Fail (not skip) when a test-bed tool is missing: CI installs them all."""
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.fail(f"missing test-bed tools: {', '.join(missing)} (see docs/testbed.md)")


def close_to(measured: float | None, expected: float, tolerance: float = 0.05) -> bool:
    return measured is not None and abs(measured - expected) <= expected * tolerance


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    require("kamailio", "kamcmd")
    kam = Kamailio(domain=DOMAIN, listen=[LOOPBACK], port=free_port_range(LOOPBACK), workdir=tmp_path / "kamailio",
                   users={"alice": "alice-Secret-1", "bob": "bob-Secret-2"})
    kam.start()
    try:
        yield kam
    finally:
        kam.stop()


def make_caller(tmp_path: Path, kam: Kamailio, user: str, tone: int, password: str | None) -> BaresipCaller:
    return BaresipCaller(user=user, domain=DOMAIN, registrar=f"{LOOPBACK}:{kam.port}", workdir=tmp_path / user,
                         tone_hz=tone, password=password)


def test_two_callers_register_and_call_each_other_through_kamailio(tmp_path: Path, kamailio: Kamailio) -> None:
    require("baresip", "sox")
    alice = make_caller(tmp_path, kamailio, "alice", 1000, "alice-Secret-1")
    bob = make_caller(tmp_path, kamailio, "bob", 440, "bob-Secret-2")
    try:
        alice.start()
        bob.start()
        alice.wait_registered(30)
        bob.wait_registered(30)
        contacts = kamailio.contacts()
        # Both registered AT Kamailio, each with its own contact: the call below can only go through the proxy.
        assert set(contacts) >= {"alice", "bob"}
        assert str(alice.sip_port) in contacts["alice"] and str(bob.sip_port) in contacts["bob"]

        alice.dial(f"sip:bob@{DOMAIN}")
        out = alice.wait_established(30)
        inc = bob.wait_established(30)
        assert out["direction"] == "outgoing" and inc["direction"] == "incoming"
        assert inc["peeruri"].startswith(f"sip:alice@{DOMAIN}")
        assert alice.received_video_changing(30), alice.tail()
        assert bob.received_video(30), bob.tail()
        # Long enough for the level-over-time check (>= 10 s of each side's recording is judged).
        alice.wait_recorded(12)
        bob.wait_recorded(12)

        alice.hangup()
        bob.wait_closed(30)
        # In-dialog BYE relayed by Kamailio (Record-Route): bob saw the hang-up.
        heard_by_alice = alice.check_heard(440, bob.sent_level())
        heard_by_bob = bob.check_heard(1000, alice.sent_level())
        assert heard_by_alice.ok and close_to(heard_by_alice.hz, 440), heard_by_alice.summary()
        assert heard_by_bob.ok and close_to(heard_by_bob.hz, 1000), heard_by_bob.summary()
    finally:
        alice.stop()
        bob.stop()


def test_register_with_a_wrong_password_is_refused(tmp_path: Path, kamailio: Kamailio) -> None:
    require("baresip")
    mallory = make_caller(tmp_path, kamailio, "alice", 1000, "wrong-password")
    try:
        mallory.start()
        with pytest.raises(Exception, match="not registered"):
            mallory.wait_registered(8)
        assert not kamailio.registered("alice")
    finally:
        mallory.stop()
    assert "wrong-password" not in kamailio.tail(500)


def test_kamailio_survives_a_stale_pidfile_and_stops_cleanly(tmp_path: Path) -> None:
    require("kamailio", "kamcmd")
    kam = Kamailio(domain=DOMAIN, listen=[LOOPBACK], port=free_port_range(LOOPBACK), workdir=tmp_path / "k")
    kam.workdir.mkdir(parents=True)
    kam.pidfile.write_text("999999\n")
    with kam:
        assert kam.alive()
        assert kam.contacts() == {}
        assert DOMAIN in kam.kamcmd("corex.list_aliases")
    assert not kam.alive()


def test_kamailio_with_tls_accepts_a_tls_handshake(tmp_path: Path) -> None:
    require("kamailio", "kamcmd", "openssl")
    if not Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists():
        pytest.fail("Kamailio's TLS module is missing: apt-get install kamailio-tls-modules")
    import ssl
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", f"/CN={DOMAIN}"], check=True, capture_output=True)
    with Kamailio(domain=DOMAIN, listen=[LOOPBACK], port=free_port_range(LOOPBACK), workdir=tmp_path / "k",
                  tls=(cert, key)) as kam:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection((LOOPBACK, kam.tls_port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                assert tls.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(cert.read_text())


@pytest.fixture
def janus(tmp_path: Path) -> Iterator[JanusServer]:
    require("janus", "chromium", "chromedriver", "sox", "docker")
    bridge = BridgeKeeper()
    bridge.start()
    server = JanusServer(listen_ip=docker_bridge_ip(), workdir=tmp_path / "janus", http_port=free_port(LOOPBACK),
                         web_port=free_port(LOOPBACK))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        bridge.stop()


def test_two_participants_hear_and_see_each_other_in_a_janus_room(tmp_path: Path, janus: JanusServer) -> None:
    alice = Participant(base_url=janus.base_url, room=1236, tone_hz=440, name="alice", workdir=tmp_path / "pa")
    bob = Participant(base_url=janus.base_url, room=1236, tone_hz=1000, name="bob", workdir=tmp_path / "pb")
    try:
        alice.join()
        bob.join()
        alice.wait_remote(1, 30)
        bob.wait_remote(1, 30)
        # Each page records 12 s of the other's tone: level and frequency must hold for the whole window (the
        # participants' microphones run without echo cancellation, noise suppression and AGC).
        heard_by_alice = check_tone(alice.record_remote_audio(tmp_path / "alice.wav", 12), 1000, MAKE_TONE_LEVEL_DB,
                                    min_window=10)
        heard_by_bob = check_tone(bob.record_remote_audio(tmp_path / "bob.wav", 12), 440, MAKE_TONE_LEVEL_DB,
                                  min_window=10)
        assert heard_by_alice.ok and close_to(heard_by_alice.hz, 1000), heard_by_alice.summary()
        assert heard_by_bob.ok and close_to(heard_by_bob.hz, 440), heard_by_bob.summary()
        assert alice.remote_video_changing(30)
        assert bob.remote_video_changing(30)
        bob.leave()
        # bob destroyed his session: alice sees him go at once (no ghost publisher).
        assert wait_until(lambda: alice.remote_count() == 0, 20, 0.2)
    finally:
        alice.quit()
        bob.quit()


def test_coturn_starts_with_the_docs_config_and_relays_an_allocation(tmp_path: Path) -> None:
    require("turnserver", "turnutils_uclient")
    turn = Coturn(listen_ip=LOOPBACK, workdir=tmp_path / "coturn", port=free_port_range(LOOPBACK))
    with turn:
        counts = turn.allocate(messages=5)
        assert counts["tot_send_msgs"] > 0
        assert counts["tot_recv_msgs"] == counts["tot_send_msgs"]
        assert counts.get("lost", 0) == 0
    assert not turn.alive()
    assert turn.password not in turn.log_path.read_text()
