"""Docker HEALTHCHECK: ``python3 -m sipmediagw.gateway.health`` exits 0 when the state file says ready or in-call.

The supervisor rewrites the state file at least every few seconds, so a stale file (a hung supervisor) is unhealthy
too. Prints one line: Docker keeps it in ``docker inspect`` (State.Health.Log).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path

from ..state import STATE_FILE_NAME, GatewayState

HEALTHY_STATES = (GatewayState.READY.value, GatewayState.IN_CALL.value)
STALE_AFTER = 60.0  # seconds without a state-file update; the supervisor heartbeats every 5 s


def check(log_dir: Path, now: _dt.datetime | None = None) -> tuple[bool, str]:
    """(healthy, one-line reason) from the state file in `log_dir`."""
    path = log_dir / STATE_FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no state file yet ({path})"
    except (OSError, ValueError) as exc:
        return False, f"unreadable state file {path}: {exc}"
    state = data.get("state")
    now = now or _dt.datetime.now(_dt.timezone.utc)
    try:
        age = (now - _dt.datetime.fromisoformat(data["updated"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return False, "state file has no valid 'updated' time"
    if age > STALE_AFTER:
        return False, f"state file not updated for {age:.0f} s (supervisor hung?)"
    if state not in HEALTHY_STATES:
        reason = data.get("last_error")
        return False, f"state {state}" + (f": {reason}" if reason else "")
    return True, f"state {state}"


def main() -> int:
    """Entry point of the HEALTHCHECK; exit status 0 healthy, 1 unhealthy."""
    healthy, reason = check(Path(os.environ.get("SIPMEDIAGW_LOG_DIR") or "/var/log/sipmediagw"))
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
