"""What the SIP caller receives: its video frame rate, from baresip's own status line.

While a call is up, baresip 1.0.0 rewrites a status line on its console (the caller's `baresip.log`) several times a
second: `[0:00:21] audio=68105/64915 video=60975/87305 (bit/s) efps=15.5/15.0`, where `efps` is the video stream's
effective frame rate, sent/received. The received half over a window is the caller's receive rate. (`callstat`
over ctrl_tcp would carry the decoder's frame count, but 1.0.0 cuts its reply before the video section.)
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

_STATUS = re.compile(r"\[\d+:\d\d:\d\d\] audio=\d+/\d+ video=\d+/\d+ \(bit/s\) efps=([\d.]+)/([\d.]+)")


def log_path(caller: Any) -> Path:
    """The caller's console log (sipmediagw.testbed writes baresip's stdout there)."""
    return Path(caller.workdir) / "baresip.log"


def log_offset(caller: Any) -> int:
    """Where the caller's log ends now: the start of a window."""
    path = log_path(caller)
    return path.stat().st_size if path.exists() else 0


def received_fps_since(caller: Any, offset: int) -> dict[str, Any] | None:
    """The caller's received video frame rate over the status lines written after `offset`: median, min, samples
    (None: no status line, e.g. no video stream)."""
    path = log_path(caller)
    if not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    rates = [float(m.group(2)) for m in _STATUS.finditer(text)]
    if not rates:
        return None
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1), "samples": len(rates)}


def median_fps(reading: dict[str, Any] | None) -> float | None:
    """The median of a reading (None stays None)."""
    return reading["median"] if reading else None
