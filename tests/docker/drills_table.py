"""The fault drills' table (docs/reliability.md): each drill file merges its rows into one JSON file, named by
SIPMEDIAGW_DRILLS_TABLE (default: the pytest temp folder), so the files may run in any order or alone."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def merge_rows(rows: list[dict[str, Any]], default_folder: Path, what: str) -> Path:
    """Write `rows` into the table, replacing earlier rows of the same drills and keeping the others."""
    target = Path(os.environ.get("SIPMEDIAGW_DRILLS_TABLE") or default_folder / "drills.json")
    try:
        existing = json.loads(target.read_text()) if target.exists() else []
    except ValueError:
        existing = []
    mine = {row["drill"] for row in rows}
    kept = [row for row in existing if isinstance(row, dict) and row.get("drill") not in mine] \
        if isinstance(existing, list) else []
    target.write_text(json.dumps(kept + rows, indent=1) + "\n")
    sys.stderr.write(f"\n{what}: {len(rows)} row(s) merged into {target}\n")
    return target
