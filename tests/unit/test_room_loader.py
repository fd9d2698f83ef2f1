"""load_room_driver: finds the three drivers, refuses bad names and bad modules with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmediagw.errors import ConfigError
from sipmediagw.room import Room, load_room_driver

BROWSING = Path(__file__).resolve().parents[2] / "browsing"


@pytest.mark.parametrize("platform", ["janus", "jitsi", "bigbluebutton"])
def test_shipped_drivers_load(platform: str) -> None:
    cls = load_room_driver(platform, BROWSING)
    assert issubclass(cls, Room) and cls.platform == platform


@pytest.mark.parametrize("platform", ["../janus", "Janus", "ja nus", "", "1x", "janus.py", "a" * 40])
def test_invalid_platform_names(platform: str) -> None:
    with pytest.raises(ConfigError, match="invalid platform name"):
        load_room_driver(platform, BROWSING)


def test_missing_driver_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_room_driver("teams", BROWSING)
    assert "teams" in str(err.value) and "janus" in str(err.value) and "jitsi" in str(err.value)


def test_module_must_define_exactly_one_room(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("X = 1\n")
    (tmp_path / "two.py").write_text(
        "from sipmediagw.room import Room\n"
        "class A(Room):\n    def url(self): return ''\n    def join(self, n): pass\n    def leave(self): pass\n"
        "class B(A):\n    pass\n")
    with pytest.raises(ConfigError, match="empty.py: expected exactly one Room subclass, found 0"):
        load_room_driver("empty", tmp_path)
    with pytest.raises(ConfigError, match="found 2"):
        load_room_driver("two", tmp_path)


def test_a_site_can_add_its_own_driver(tmp_path: Path) -> None:
    (tmp_path / "mysite.py").write_text(
        "from sipmediagw.room import Room, url_path_segment\n"
        "class MySite(Room):\n    platform = 'mysite'\n"
        "    def url(self): return f'{self.base_url}/r/{url_path_segment(self.room)}'\n"
        "    def join(self, n): self.driver.get(self.url())\n    def leave(self): pass\n")
    cls = load_room_driver("mysite", tmp_path)
    assert cls(None, "https://x.org/", "a b").url() == "https://x.org/r/a%20b"
