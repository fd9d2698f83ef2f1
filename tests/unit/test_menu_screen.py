"""The menu screen's marker (encode, decode on synthetic frames), the page file and MenuScreen with a fake driver.

The real page in a real Chromium, grabbed from a real X display and coded like the caller's video, is in
tests/integration/test_menu_real.py.
"""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmediagw.gateway import ivr
from sipmediagw.gateway.ivr import MenuView
from sipmediagw.gateway.menu_screen import (
    BAND_HEIGHT,
    CELLS,
    MENU_PAGE,
    Marker,
    MenuScreen,
    MenuScreenError,
    colour,
    decode_cells,
    decode_marker,
    digits_checksum,
    marker_colours,
    read_cells,
)

ROOT = Path(__file__).resolve().parents[2]


def frame_with(cells: list[int], width: int = 1280, height: int = 720, background: tuple[int, int, int] = (0, 0, 0),
               noise: int = 0, seed: int = 1) -> bytes:
    """An RGB24 frame painted as the page does: the band at the bottom, `background` above, optional noise."""
    band_top = round(height * (1 - BAND_HEIGHT))
    band_row = b"".join(bytes(colour(cells[x * CELLS // width])) for x in range(width))
    frame = bytes(background) * (width * band_top) + band_row * (height - band_top)
    if not noise:
        return frame
    rng = random.Random(seed)
    return bytes(max(0, min(255, c + rng.randint(-noise, noise))) for c in frame)


def view(**kw) -> MenuView:  # type: ignore[no-untyped-def]
    return MenuView(**{"stage": ivr.MEETING, "title": "t", "prompt": "p", **kw})


def test_checksum_is_order_sensitive_and_bounded() -> None:
    assert digits_checksum("") == 0
    assert digits_checksum("134") != digits_checksum("143") != digits_checksum("314")
    assert digits_checksum("0") != digits_checksum("00")  # zeros count
    assert all(0 <= digits_checksum(str(n)) < 64 for n in range(5000))


def test_marker_of_a_view() -> None:
    marker = Marker.of(view(digits="134", error="Unknown", platform_index=2))
    assert marker == Marker(ivr.MEETING, True, 3, digits_checksum("134"), 2)
    assert marker.shows("134") and not marker.shows("143") and not marker.shows("13")
    cells = marker.cells()
    assert len(cells) == CELLS and cells[:2] == [5, 2] and cells[-1] == 3
    assert cells[2] == 2 and cells[3] == 1 and cells[4:6] == [0, 3] and cells[8:10] == [0, 2]
    assert marker_colours(view())[0] == "#ff00ff"


def test_decode_a_clean_frame_at_both_sizes() -> None:
    marker = Marker.of(view(digits="1234567", platform_index=9))
    for size in ((1280, 720), (640, 360), (320, 180)):
        assert decode_marker(frame_with(marker.cells(), *size), *size) == marker


def test_decode_survives_noise_and_a_bright_page() -> None:
    marker = Marker.of(view(stage=ivr.PLATFORM, error="x"))
    frame = frame_with(marker.cells(), 320, 180, background=(255, 255, 255), noise=60)
    assert decode_marker(frame, 320, 180) == marker


def test_frames_without_a_marker_decode_to_none() -> None:
    assert decode_marker(bytes(640 * 360 * 3), 640, 360) is None  # black
    assert decode_marker(bytes([128]) * (640 * 360 * 3), 640, 360) is None  # grey: no clear colour
    cells = Marker.of(view(digits="12")).cells()
    broken = list(cells)
    broken[10] = (broken[10] + 1) % 8  # parity
    assert decode_marker(frame_with(broken, 320, 180), 320, 180) is None
    broken = list(cells)
    broken[0] = 7  # guard
    assert decode_marker(frame_with(broken, 320, 180), 320, 180) is None
    assert decode_cells([5, 2, 7, 0, 0, 0, 0, 0, 0, 0, 7, 3]) is None  # stage 7 does not exist
    assert decode_cells(cells[:-1]) is None
    assert decode_cells([None] * CELLS) is None


def test_read_cells_checks_the_frame_size() -> None:
    with pytest.raises(ValueError):
        read_cells(b"\0" * 10, 640, 360)


@settings(max_examples=60, deadline=None)
@given(stage=st.sampled_from(ivr.STAGES), error=st.booleans(), digits=st.text("0123456789", max_size=80),
       platform=st.integers(0, 9))
def test_any_view_round_trips(stage: str, error: bool, digits: str, platform: int) -> None:
    v = view(stage=stage, error="e" if error else "", digits=digits, platform_index=platform)
    marker = Marker.of(v)
    decoded = decode_cells(marker.cells())
    assert decoded == marker
    assert decoded.shows(digits) or len(digits) > 63


# -- the page -------------------------------------------------------------------------------------------------------
def test_page_is_local_and_has_the_render_function() -> None:
    html = MENU_PAGE.read_text(encoding="utf-8")
    assert "window.sipmediagwMenu" in html and "render" in html
    assert "default-src 'none'" in html  # the policy forbids every network request
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(" not in html and "@import" not in html
    assert "repeat(12, 1fr)" in html and f"{BAND_HEIGHT * 100:.4f}vh" in html  # the band the decoder reads


def test_page_and_prompts_are_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sipmediagw"]
    assert "gateway/*.html" in data and "gateway/prompts/*.wav" in data and "gateway/prompts/manifest.json" in data


# -- MenuScreen with a fake driver -----------------------------------------------------------------------------------
class FakeDriver:
    """Renders only after the menu page was loaded; records the calls."""

    def __init__(self, loads_page: bool = True) -> None:
        self.loads_page = loads_page
        self.current_url = "about:blank"
        self.calls: list[tuple] = []

    def execute_script(self, script: str, *args):  # type: ignore[no-untyped-def]
        self.calls.append(("script", args))
        return self.current_url.endswith("menu.html")

    def get(self, url: str) -> None:
        self.calls.append(("get", url))
        if self.loads_page or not url.endswith("menu.html"):
            self.current_url = url


def test_show_loads_the_page_once_then_renders() -> None:
    driver = FakeDriver()
    screen = MenuScreen(driver)
    v = view(digits="12")
    screen.show(v)
    assert [c[0] for c in driver.calls] == ["script", "get", "script"]
    assert driver.calls[1][1] == MENU_PAGE.resolve().as_uri() == screen.url
    data = driver.calls[2][1][0]
    assert data["digits"] == "12" and data["marker"] == marker_colours(v) and data["stage"] == "meeting"
    driver.calls.clear()
    screen.show(view(digits="123"))
    assert [c[0] for c in driver.calls] == ["script"]  # already there
    assert screen.view is not None and screen.view.digits == "123"


def test_show_fails_clearly_when_the_page_does_not_render() -> None:
    with pytest.raises(MenuScreenError, match="did not render"):
        MenuScreen(FakeDriver(loads_page=False)).show(view())


def test_hide_leaves_other_pages_alone() -> None:
    driver = FakeDriver()
    screen = MenuScreen(driver)
    screen.show(view())
    screen.hide()
    assert driver.current_url == "about:blank" and screen.view is None
    driver.current_url = "https://meet.example.org/room"
    screen.hide()
    assert driver.current_url == "https://meet.example.org/room"


def test_show_holds_the_lock() -> None:
    held = []

    class Lock:
        def __enter__(self):  # type: ignore[no-untyped-def]
            held.append(True)

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            held.append(False)

    MenuScreen(FakeDriver(), lock=Lock()).show(view())  # type: ignore[arg-type]
    assert held == [True, False]
