"""Docker HEALTHCHECK: ``python3 -m sipmediagw.gateway.health`` exits 0 when the state file says ready or in-call.

The supervisor rewrites the state file at least every few seconds, so a stale file (a hung supervisor) is unhealthy
too. Prints one line: Docker keeps it in ``docker inspect`` (State.Health.Log).

The cheap form (issue 12): starting Python every 5 s costs ~30-50 ms of CPU each time, about 1 % of a core on its
own, which is the whole budget of an idle pool gateway. So the supervisor also keeps a one-line health file
(HEALTH_FILE_NAME: ``<deadline> <state>``, the deadline in /proc/uptime seconds, 0 when the state is not healthy), and
SHELL_CHECK reads it with shell builtins only (``sh -c``: one process, under 1 ms of CPU): healthy while the state is
healthy and the deadline, pushed forward at every heartbeat, has not passed. Both forms give the same verdicts
(tests/unit/test_health.py).
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
HEALTH_FILE_NAME = "health"
UPTIME = Path("/proc/uptime")  # a clock the shell can read without a process: seconds since boot, not namespaced
#: the HEALTHCHECK command: ``HEALTHCHECK CMD ["sh", "-c", SHELL_CHECK]`` (dash builtins only)
SHELL_CHECK = (
    'd="${SIPMEDIAGW_LOG_DIR:-/var/log/sipmediagw}"; '
    f'read up _ </proc/uptime && read until state <"$d/{HEALTH_FILE_NAME}" 2>/dev/null '
    '|| { echo "no health file in $d"; exit 1; }; '
    '[ "$until" -gt 0 ] || { echo "state $state"; exit 1; }; '
    '[ "${up%.*}" -lt "$until" ] || { echo "state $state not confirmed for a minute (supervisor hung?)"; exit 1; }; '
    'echo "state $state"'
)


def health_line(state: str, uptime: float) -> str:
    """The health file's line for `state` at `uptime` (seconds since boot): healthy until STALE_AFTER from now."""
    deadline = int(uptime + STALE_AFTER) if state in HEALTHY_STATES else 0
    return f"{deadline} {state}\n"


def read_uptime(path: Path = UPTIME) -> float:
    """Seconds since boot (the clock SHELL_CHECK compares the deadline with)."""
    return float(path.read_text(encoding="ascii").split()[0])


def write_health(log_dir: Path, state: str, uptime: float | None = None) -> None:
    """Replace the health file in `log_dir` atomically (a reader never sees half a line); OSError on failure."""
    line = health_line(state, read_uptime() if uptime is None else uptime)
    path = log_dir / HEALTH_FILE_NAME
    tmp = path.with_name(f".{HEALTH_FILE_NAME}.tmp")
    tmp.write_text(line, encoding="ascii")
    os.chmod(tmp, 0o644)  # read by the HEALTHCHECK, which may run as another user
    os.replace(tmp, path)


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
