"""Discovery of the kernel virtual devices (snd-aloop cards, v4l2loopback devices) under a sysroot -> Slots.

A slot = two ALSA loopback cards (caller->room, room->caller) + one loopback video device, paired in index order
as in the seed (8 cards + 4 video devices -> 4 slots). The sysroot lets tests use fixture trees and lets the CLI run
where the host's /proc and /sys are mounted elsewhere; device paths handed to Docker are always the host's /dev.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

_CARD_LINE = re.compile(r"^\s*(\d+)\s+\[([^\]]+)\]:\s*(\S+)\s+-\s+(.*)$")
_PCM_DIR = re.compile(r"^pcm(\d+)([pc])$")
_VIDEO_DIR = re.compile(r"^video(\d+)$")
LOOPBACK_DRIVER = "Loopback"  # driver name snd-aloop registers its cards with


@dataclasses.dataclass(frozen=True)
class SoundCard:
    """One ALSA loopback card."""

    index: int
    card_id: str
    pcm: tuple[str, ...]  # e.g. ("pcm0p", "pcm0c", "pcm1p", "pcm1c")

    def device_paths(self) -> list[str]:
        """The /dev/snd nodes a container needs for this card."""
        paths = [f"/dev/snd/controlC{self.index}"]
        for name in self.pcm:
            found = _PCM_DIR.match(name)
            if found:
                paths.append(f"/dev/snd/pcmC{self.index}D{found.group(1)}{found.group(2)}")
        return paths


@dataclasses.dataclass(frozen=True)
class VideoDevice:
    """One v4l2loopback device."""

    index: int
    name: str

    @property
    def path(self) -> str:
        """Its /dev node."""
        return f"/dev/video{self.index}"


@dataclasses.dataclass(frozen=True)
class Slot:
    """What one kernel-media gateway uses: two loopback cards and one loopback camera."""

    index: int
    cards: tuple[SoundCard, SoundCard]
    video: VideoDevice

    def docker_devices(self) -> list[str]:
        """docker-py ``devices`` entries: host:container:perms; the camera appears as /dev/video0 inside."""
        paths = [p for card in self.cards for p in card.device_paths()] + ["/dev/snd/timer"]
        return [f"{p}:{p}:rwm" for p in paths] + [f"{self.video.path}:/dev/video0:rwm"]


@dataclasses.dataclass(frozen=True)
class Discovery:
    """Result of a device scan: the slots, the raw finds, and what looked wrong (human sentences)."""

    cards: tuple[SoundCard, ...]
    videos: tuple[VideoDevice, ...]
    slots: tuple[Slot, ...]
    problems: tuple[str, ...]


def find_loopback_cards(sysroot: Path, problems: list[str]) -> list[SoundCard]:
    """snd-aloop cards listed in <sysroot>/proc/asound/cards, with their PCM devices."""
    asound = sysroot / "proc" / "asound"
    try:
        listing = (asound / "cards").read_text(encoding="utf-8", errors="replace")
    except OSError:
        problems.append(f"no ALSA ({asound / 'cards'} missing): snd-aloop is not loaded")
        return []
    cards: list[SoundCard] = []
    for line in listing.splitlines():
        match = _CARD_LINE.match(line)
        if not match or match.group(3) != LOOPBACK_DRIVER:
            continue  # continuation lines and other sound cards
        index, card_id = int(match.group(1)), match.group(2).strip()
        card_dir = asound / f"card{index}"
        if not card_dir.is_dir():
            problems.append(f"loopback card {index} is listed but {card_dir} is missing: ignored")
            continue
        pcm = tuple(sorted(p.name for p in card_dir.iterdir() if _PCM_DIR.match(p.name)))
        if not any(n.endswith("p") for n in pcm) or not any(n.endswith("c") for n in pcm):
            problems.append(f"loopback card {index} has no playback+capture PCM in {card_dir}: ignored")
            continue
        cards.append(SoundCard(index, card_id, pcm))
    return sorted(cards, key=lambda c: c.index)


def find_loopback_videos(sysroot: Path, problems: list[str]) -> list[VideoDevice]:
    """v4l2loopback devices: they register under <sysroot>/sys/devices/virtual/video4linux."""
    base = sysroot / "sys" / "devices" / "virtual" / "video4linux"
    if not base.is_dir():
        return []
    videos: list[VideoDevice] = []
    for entry in base.iterdir():
        match = _VIDEO_DIR.match(entry.name)
        if not match:
            continue
        try:
            name = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            problems.append(f"{entry} has no readable 'name': ignored")
            continue
        videos.append(VideoDevice(int(match.group(1)), name))
    return sorted(videos, key=lambda v: v.index)


def discover(sysroot: str | Path = "/") -> Discovery:
    """Scan `sysroot` for loopback cards and video devices and pair them into slots."""
    root = Path(sysroot)
    problems: list[str] = []
    cards = find_loopback_cards(root, problems)
    videos = find_loopback_videos(root, problems)
    count = min(len(cards) // 2, len(videos))
    slots = tuple(Slot(i, (cards[2 * i], cards[2 * i + 1]), videos[i]) for i in range(count))
    if len(cards) % 2:
        problems.append(f"{len(cards)} loopback cards: an odd one out is unused (2 per gateway)")
    if len(cards) // 2 != len(videos) and (cards or videos):
        problems.append(
            f"{len(cards)} loopback cards (= {len(cards) // 2} pairs) but {len(videos)} loopback video devices: "
            f"{count} slot(s)"
        )
    return Discovery(tuple(cards), tuple(videos), slots, tuple(problems))


def provisioning_commands(gateways: int) -> list[str]:
    """The seed README's lines that create the devices for `gateways` gateways (run as root on the host)."""
    cards = 2 * gateways
    enable = ",".join(["1"] * cards)
    index = ",".join(str(i) for i in range(cards))
    caps = ",".join(["1"] * gateways)
    return [
        "apt-get install linux-image-extra-virtual v4l2loopback-dkms v4l2loopback-utils",
        f'echo "options snd-aloop enable={enable} index={index}" > /etc/modprobe.d/alsa-loopback.conf',
        'echo "snd-aloop" >> /etc/modules',
        "modprobe snd-aloop",
        f'echo "options v4l2loopback devices={gateways} exclusive_caps={caps}" > /etc/modprobe.d/v4l2loopback.conf',
        'echo "v4l2loopback" >> /etc/modules',
        "modprobe v4l2loopback",
    ]
