"""End to end through a third-party page: the gateway joins the Janus room through the unmodified
``videoroomtest.html`` of Debian's janus-demos (only its settings.js is the test bed's: the server's address), chosen
with ``--room-option page=videoroomtest.html``. Media is measured both ways as in test_gateway_call.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmediagw.demo import run_test_call
from sipmediagw.testbed.janus import DEMOS
from sipmediagw.testbed.stack import LocalStack

from .conftest import Cli, assert_media_both_ways

pytestmark = pytest.mark.e2e

ROOM = "1237"


def test_the_gateway_joins_through_the_upstream_demo_page_media_both_ways(stack: LocalStack, cli: Cli,
                                                                           tmp_path: Path) -> None:
    assert (DEMOS / "videoroomtest.html").is_file(), "Debian's janus-demos is not installed (scripts/setup-host)"
    cli.launched.append("e2e-upstream")
    out = cli.run("launch", "-r", ROOM, "-g", "e2e-upstream", "--room-option", "page=videoroomtest.html",
                  "--timeout", "180")
    gateway_uri = stack.gateway_uri(0)
    assert gateway_uri in out.stdout, out.stdout

    def while_in_call() -> None:
        entry = cli.wait_state("e2e-upstream", "in-call")
        assert entry["room"] == ROOM

    report = run_test_call(stack, gateway_uri, ROOM, tmp_path / "call", during_call=while_in_call,
                           container="sipmediagw-e2e-upstream")
    tails = cli.log_tails("e2e-upstream")
    # the page the gateway opened is the upstream demo, not the test bed's own room page
    app_log = (cli.logs_dir / "e2e-upstream" / "app.log").read_text(errors="replace")
    assert "janus: opening http://" in app_log and "/videoroomtest.html\n" in app_log, tails
    assert_media_both_ways(report, tails)
    cli.wait_state("e2e-upstream", "ready")
