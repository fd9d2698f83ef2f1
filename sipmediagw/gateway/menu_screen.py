"""The keypad menu's screen: menu.html in the gateway's Chromium, and the marker it draws for machines.

What the room display shows is the video the SIP caller receives (baresip grabs it), so the menu is a local page
(no network) filled from :class:`~.ivr.MenuView` by :class:`MenuScreen`. Along the bottom edge the page draws a
band of solid colour cells encoding the menu state (:class:`Marker`); :func:`decode_marker` reads it back from any
RGB frame of that video, scaled and lossily coded as it may be, so a test proves the menu is on the caller's screen
and in which state. One implementation of the format, here, for the page (colours computed in Python), the
integration tests and the e2e tier.

Marker format (docs/dialplan.md, "Keypad menu"): the bottom ``BAND_HEIGHT`` of the frame (48 px of 720), split into
``CELLS`` (12) equal cells across the full width. Each cell is one of 8 saturated colours = a value 0-7, the RGB
bits (black 0, blue 1, green 2, cyan 3, red 4, magenta 5, yellow 6, white 7). Cells: 0-1 guards (magenta, green),
2 stage (1 platform, 2 meeting, 3 joining, 4 ended, 5 notice), 3 flags (bit 0: an error line is shown), 4-5 number of digits
shown (high, low octal digit), 6-7 checksum of the digits (:func:`digits_checksum`), 8-9 chosen platform's 1-based
index (0: none), 10 parity (sum of cells 2-9 mod 8), 11 guard (cyan).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, ContextManager, Sequence

from .ivr import ENDED, JOINING, MEETING, NOTICE, PLATFORM, MenuView

MENU_PAGE = Path(__file__).with_name("menu.html")

CELLS = 12
BAND_HEIGHT = 48 / 720  # of the frame height, at the bottom
GUARDS = {0: 5, 1: 2, 11: 3}
STAGE_CODES = {PLATFORM: 1, MEETING: 2, JOINING: 3, ENDED: 4, NOTICE: 5}
MAX_FIELD = 63  # two octal cells

# A channel's mean must be clearly dark or clearly bright: codecs smear colours at cell edges (we sample the centre)
# and shift levels a little (limited-range YUV), never by this much.
_DARK, _BRIGHT = 80, 175

_RENDER_JS = "const menu = window.sipmediagwMenu; return menu ? menu.render(arguments[0]) : false;"


class MenuScreenError(RuntimeError):
    """The menu page could not be loaded or did not render."""


def digits_checksum(digits: str) -> int:
    """0-63, order-sensitive (x7 is invertible mod 64: no digit's contribution ever vanishes)."""
    value = 0
    for char in digits:
        value = (value * 7 + (ord(char) - 47)) % 64
    return value


def colour(value: int) -> tuple[int, int, int]:
    """RGB of a cell value 0-7."""
    return (255 if value & 4 else 0, 255 if value & 2 else 0, 255 if value & 1 else 0)


@dataclasses.dataclass(frozen=True)
class Marker:
    """The menu state the band encodes."""

    stage: str
    error: bool
    digit_count: int
    checksum: int
    platform_index: int

    @classmethod
    def of(cls, view: MenuView) -> "Marker":
        """What the band shows for `view` (digit count and platform index are capped at 63)."""
        return cls(view.stage, bool(view.error), min(len(view.digits), MAX_FIELD), digits_checksum(view.digits),
                   min(view.platform_index, MAX_FIELD))

    def cells(self) -> list[int]:
        """The 12 cell values, guards and parity included."""
        payload = [STAGE_CODES[self.stage], int(self.error), *divmod(self.digit_count, 8), *divmod(self.checksum, 8),
                   *divmod(self.platform_index, 8)]
        return [GUARDS[0], GUARDS[1], *payload, sum(payload) % 8, GUARDS[11]]

    def shows(self, digits: str) -> bool:
        """True when the band is consistent with `digits` being the digits on screen."""
        return self.digit_count == min(len(digits), MAX_FIELD) and self.checksum == digits_checksum(digits)


def marker_colours(view: MenuView) -> list[str]:
    """The band's cells for `view` as CSS colours (what the page paints)."""
    return ["#%02x%02x%02x" % colour(value) for value in Marker.of(view).cells()]


def read_cells(frame: bytes, width: int, height: int) -> list[int | None]:
    """The band's cell values in an RGB24 frame (None: the cell is no clear palette colour)."""
    if len(frame) < width * height * 3:
        raise ValueError(f"an RGB24 frame of {width}x{height} needs {width * height * 3} bytes, got {len(frame)}")
    band = height * BAND_HEIGHT
    # The middle half of each cell, both ways: far from the edges a codec blurs.
    y0 = int(height - band * 0.75)
    y1 = max(int(height - band * 0.25), y0 + 1)
    values: list[int | None] = []
    for cell in range(CELLS):
        left, right = width * cell / CELLS, width * (cell + 1) / CELLS
        x0 = int(left + (right - left) / 4)
        x1 = max(int(right - (right - left) / 4), x0 + 1)
        sums, count = [0, 0, 0], 0
        for y in range(y0, y1, max(1, (y1 - y0) // 8)):
            row = y * width * 3
            for x in range(x0, x1, max(1, (x1 - x0) // 16)):
                i = row + x * 3
                sums[0] += frame[i]
                sums[1] += frame[i + 1]
                sums[2] += frame[i + 2]
                count += 1
        means = [s / count for s in sums]
        if any(_DARK < m < _BRIGHT for m in means):
            values.append(None)
        else:
            values.append(sum(bit for bit, m in zip((4, 2, 1), means) if m >= _BRIGHT))
    return values


def decode_cells(cells: Sequence[int | None]) -> Marker | None:
    """The Marker of 12 cell values, None when guards, parity or a field do not check out."""
    if len(cells) != CELLS or any(c is None for c in cells):
        return None
    v = [int(c) for c in cells]  # type: ignore[arg-type]
    if any(v[i] != g for i, g in GUARDS.items()) or sum(v[2:10]) % 8 != v[10]:
        return None
    stages = {code: stage for stage, code in STAGE_CODES.items()}
    if v[2] not in stages or v[3] > 1:
        return None
    return Marker(stages[v[2]], bool(v[3]), v[4] * 8 + v[5], v[6] * 8 + v[7], v[8] * 8 + v[9])


def decode_marker(frame: bytes, width: int, height: int) -> Marker | None:
    """The menu state drawn in an RGB24 frame (e.g. the caller's decoded video), or None when there is no marker."""
    return decode_cells(read_cells(frame, width, height))


class MenuScreen:
    """Shows the keypad menu in the gateway's browser: show(view) loads menu.html when it is not the page shown,
    then renders the view; hide() leaves it for about:blank.

    `driver` is a Selenium WebDriver; pass `lock` (Browser.lock) when another thread also drives that browser.
    """

    def __init__(self, driver: Any, *, lock: ContextManager[Any] | None = None, page: Path = MENU_PAGE) -> None:
        self.driver = driver
        self.lock: ContextManager[Any] = lock if lock is not None else contextlib.nullcontext()
        self.page = page
        self.view: MenuView | None = None  # the view last shown

    @property
    def url(self) -> str:
        """The page's file:// URL."""
        return self.page.resolve().as_uri()

    def show(self, view: MenuView) -> None:
        """Render `view` (loading the page first if another page is shown); raise MenuScreenError if it cannot."""
        data = {**view.as_dict(), "marker": marker_colours(view)}
        with self.lock:
            if not self.driver.execute_script(_RENDER_JS, data):
                self.driver.get(self.url)
                if not self.driver.execute_script(_RENDER_JS, data):
                    raise MenuScreenError(f"the menu page {self.url} did not render (is window.sipmediagwMenu there?)")
        self.view = view

    def hide(self) -> None:
        """Replace the menu by about:blank; another page (the room) is left alone."""
        with self.lock:
            if self.driver.current_url.split("#", 1)[0] == self.url:
                self.driver.get("about:blank")
        self.view = None
