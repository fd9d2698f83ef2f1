"""The test bed's Kamailio wrapper never hands kamcmd an argument it would read as an option (a password starting
with '-' once made a whole e2e stack fail to start: "Unknown option `-o'")."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmediagw.testbed.kamailio import Kamailio
from sipmediagw.testbed.stack import _password


def test_an_argument_starting_with_a_dash_is_refused_before_kamcmd_runs(tmp_path: Path) -> None:
    kam = Kamailio(domain="sip.test", listen=["127.0.0.1"], workdir=tmp_path)
    with pytest.raises(ValueError, match="taken for an option"):
        kam.kamcmd("htable.sets", "users", "alice", "-otMk0jDurhw9CYV")


def test_stack_passwords_never_start_with_a_dash() -> None:
    assert not any(_password().startswith("-") for _ in range(2000))
