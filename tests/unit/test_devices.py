"""Discovery of snd-aloop cards and v4l2loopback devices on fixture trees (tests/fixtures/sysroot-*)."""

from pathlib import Path

import pytest

from sipmediagw.devices import discover, provisioning_commands

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("tree,slots", [("sysroot-empty", 0), ("sysroot-1slot", 1), ("sysroot-4slots", 4),
                                        ("sysroot-odd", 1)])
def test_slot_count(tree, slots):
    assert len(discover(FIXTURES / tree).slots) == slots


def test_four_slots_pair_cards_and_videos_in_order():
    discovery = discover(FIXTURES / "sysroot-4slots")
    assert [([c.index for c in s.cards], s.video.path) for s in discovery.slots] == [
        ([0, 1], "/dev/video0"), ([2, 3], "/dev/video1"), ([4, 5], "/dev/video2"), ([6, 7], "/dev/video3")]
    assert discovery.problems == ()


def test_empty_tree_says_snd_aloop_is_not_loaded():
    discovery = discover(FIXTURES / "sysroot-empty")
    assert discovery.cards == () and discovery.videos == ()
    assert any("snd-aloop is not loaded" in p for p in discovery.problems)


def test_odd_tree_skips_broken_and_foreign_cards():
    discovery = discover(FIXTURES / "sysroot-odd")
    assert [c.index for c in discovery.cards] == [1, 2, 5]  # card 0 is not a loopback, 3 lacks /proc, 4 capture
    assert [v.index for v in discovery.videos] == [1, 7]
    [slot] = discovery.slots
    assert [c.index for c in slot.cards] == [1, 2] and slot.video.path == "/dev/video1"
    problems = " | ".join(discovery.problems)
    assert "card 3 is listed but" in problems and "card 4 has no playback+capture" in problems
    assert "odd one out" in problems


def test_docker_devices_of_a_slot():
    slot = discover(FIXTURES / "sysroot-1slot").slots[0]
    devices = slot.docker_devices()
    assert "/dev/snd/controlC0:/dev/snd/controlC0:rwm" in devices
    assert "/dev/snd/pcmC1D1c:/dev/snd/pcmC1D1c:rwm" in devices
    assert "/dev/snd/timer:/dev/snd/timer:rwm" in devices
    assert devices[-1] == "/dev/video0:/dev/video0:rwm"


def test_provisioning_commands_match_the_seed_for_four_gateways():
    commands = provisioning_commands(4)
    assert 'echo "options snd-aloop enable=1,1,1,1,1,1,1,1 index=0,1,2,3,4,5,6,7" > /etc/modprobe.d/alsa-loopback.conf' in commands
    assert 'echo "options v4l2loopback devices=4 exclusive_caps=1,1,1,1" > /etc/modprobe.d/v4l2loopback.conf' in commands
    assert "modprobe snd-aloop" in commands and "modprobe v4l2loopback" in commands
