"""docs/ stays in sync with the code: the CLI reference is generated from --help; resources.md quotes the fixes.

Regenerate the CLI reference with: python -m sipmediagw.cli --docs > docs/cli.md
"""

import dataclasses
from pathlib import Path

from sipmediagw.cli import SETTING_DOCS, cli, cli_reference
from sipmediagw.devices import provisioning_commands
from sipmediagw.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_cli_reference_is_in_sync_with_help():
    assert (DOCS / "cli.md").read_text() == cli_reference(), (
        "docs/cli.md is stale: run `python -m sipmediagw.cli --docs > docs/cli.md`")


def test_every_command_and_setting_is_documented():
    text = (DOCS / "cli.md").read_text()
    for name in cli.commands:
        assert f"## sipmediagw {name}" in text
    assert set(SETTING_DOCS) == {f.name for f in dataclasses.fields(Settings)}
    defaults = Settings()
    for key in ("image", "platform", "media", "stop_timeout", "shm_size"):
        assert str(getattr(defaults, key)) == SETTING_DOCS[key][0]


def test_resources_page_gives_the_same_fixes_as_doctor():
    text = (DOCS / "resources.md").read_text()
    for command in provisioning_commands(4):
        assert command in text, command
