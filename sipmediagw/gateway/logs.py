"""Gateway logging: ``[timestamp] component: message`` lines to app.log, err.log and stdout, secrets masked.

app.log gets everything (INFO and above), err.log WARNING and above plus children's stderr, stdout mirrors app.log
(so ``docker logs`` shows it). Child output goes through :func:`line_sink`, which strips ANSI colour codes and masks
secrets before anything is written.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import sys
from pathlib import Path
from typing import Callable

from ..redaction import redact

LogSink = Callable[[str], None]

APP_LOG = "app.log"
ERR_LOG = "err.log"
_ROOT = "sipmediagw.gw"  # every gateway logger lives under this name; the component is the last part

# CSI (colours, cursor moves), OSC (titles) and the two-byte escapes; baresip and chromium emit all three.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences (colours, cursor control) and carriage returns."""
    return _ANSI.sub("", text).replace("\r", "")


class _LineFormatter(logging.Formatter):
    """``[2026-11-26T03:40:12.345Z] component: message`` with secrets masked, whatever the caller logged."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
        when = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
        component = record.name.rsplit(".", 1)[-1] if record.name.startswith(_ROOT + ".") else record.name
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        lines = strip_ansi(redact(message)).splitlines() or [""]
        return "\n".join(f"[{when}] {component}: {line}" for line in lines)


class _ErrLogFilter(logging.Filter):
    """err.log: WARNING and above, plus lines a child wrote on its stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or getattr(record, "stderr", False)


#: app.log and err.log are each rotated when they would grow past LOG_MAX_BYTES, keeping LOG_BACKUPS older files
#: (app.log.1, app.log.2): a gateway that runs for months keeps at most 3 x 5 MiB of each in its log folder
LOG_MAX_BYTES = 5 * 1024**2
LOG_BACKUPS = 2


def setup_logging(log_dir: Path, *, stdout: bool = True) -> None:
    """Send every gateway logger to ``log_dir``/app.log and err.log, both rotated (and stdout); safe to call again."""
    from logging.handlers import RotatingFileHandler

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger(_ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    root.propagate = False
    formatter = _LineFormatter()
    app = RotatingFileHandler(log_dir / APP_LOG, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    app.setLevel(logging.INFO)
    err = RotatingFileHandler(log_dir / ERR_LOG, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    err.setLevel(logging.DEBUG)
    err.addFilter(_ErrLogFilter())
    handlers: list[logging.Handler] = [app, err]
    if stdout:
        out = logging.StreamHandler(sys.stdout)
        out.setLevel(logging.INFO)
        handlers.append(out)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)


def get_logger(component: str) -> logging.Logger:
    """The logger whose lines read ``[ts] component: message``."""
    return logging.getLogger(f"{_ROOT}.{component}")


class _LineSink:
    """A LogSink for one component; ``.err(line)`` logs a child's stderr line (which also lands in err.log)."""

    def __init__(self, component: str, level: int) -> None:
        self._logger = get_logger(component)
        self._level = level

    def __call__(self, line: str) -> None:
        self._logger.log(self._level, strip_ansi(redact(line)))

    def err(self, line: str) -> None:
        self._logger.log(self._level, strip_ansi(redact(line)), extra={"stderr": True})


def line_sink(component: str, level: int = logging.INFO) -> LogSink:
    """A callable taking one line of a child's output and logging it under `component`."""
    return _LineSink(component, level)
