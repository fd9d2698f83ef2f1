"""Gateway logs: line format, app/err split, ANSI stripping and secret masking."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from sipmediagw.gateway import logs
from sipmediagw.gateway.logs import get_logger, line_sink, setup_logging, strip_ansi
from sipmediagw.redaction import add_secret

LINE = re.compile(r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] (?P<component>[\w-]+): (?P<message>.*)$")


@pytest.fixture
def log_dir(tmp_path: Path):
    setup_logging(tmp_path, stdout=False)
    yield tmp_path
    for handler in list(logging.getLogger("sipmediagw.gw").handlers):
        handler.close()
        logging.getLogger("sipmediagw.gw").removeHandler(handler)


def _lines(path: Path) -> list[re.Match[str]]:
    text = path.read_text().splitlines()
    matches = [LINE.match(line) for line in text]
    assert all(matches), text
    return matches  # type: ignore[return-value]


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[1;32mOK\x1b[0m done\r") == "OK done"
    assert strip_ansi("\x1b]0;title\x07text") == "text"


def test_lines_have_timestamp_component_and_message(log_dir: Path) -> None:
    get_logger("supervisor").info("hello %s", "world")
    matches = _lines(log_dir / "app.log")
    assert [(m["component"], m["message"]) for m in matches] == [("supervisor", "hello world")]


def test_err_log_gets_warnings_and_child_stderr_only(log_dir: Path) -> None:
    get_logger("supervisor").info("just info")
    get_logger("supervisor").warning("careful")
    sink = line_sink("baresip")
    sink("stdout line")
    sink.err("stderr line")  # type: ignore[attr-defined]
    app = [(m["component"], m["message"]) for m in _lines(log_dir / "app.log")]
    err = [(m["component"], m["message"]) for m in _lines(log_dir / "err.log")]
    assert app == [("supervisor", "just info"), ("supervisor", "careful"), ("baresip", "stdout line"),
                   ("baresip", "stderr line")]
    assert err == [("supervisor", "careful"), ("baresip", "stderr line")]


def test_secrets_never_reach_the_files(log_dir: Path) -> None:
    line_sink("baresip")("\x1b[33maccount: <sip:a@b>;auth_pass=TopSecret99\x1b[0m")
    get_logger("supervisor").error("bad line %s", "stunpass=AlsoSecret")
    for name in ("app.log", "err.log"):
        text = (log_dir / name).read_text()
        assert "TopSecret99" not in text and "AlsoSecret" not in text and "\x1b" not in text
    assert "auth_pass=***" in (log_dir / "app.log").read_text()


def test_multiline_messages_keep_the_prefix_on_every_line(log_dir: Path) -> None:
    try:
        raise ValueError("inner")
    except ValueError:
        get_logger("supervisor").exception("failed")
    matches = _lines(log_dir / "err.log")
    assert matches[0]["message"] == "failed"
    assert any("ValueError: inner" in m["message"] for m in matches)


def test_setup_twice_does_not_duplicate_lines(tmp_path: Path) -> None:
    setup_logging(tmp_path, stdout=False)
    setup_logging(tmp_path, stdout=False)
    get_logger("x").info("once")
    assert (tmp_path / "app.log").read_text().count("once") == 1
    for handler in list(logging.getLogger("sipmediagw.gw").handlers):
        handler.close()
        logging.getLogger("sipmediagw.gw").removeHandler(handler)
    assert logs.APP_LOG == "app.log"
