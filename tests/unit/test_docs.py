"""docs/ stays in sync with the code: the CLI reference is generated from --help; resources.md quotes the fixes.

Regenerate the CLI reference with: python -m sipmediagw.cli --docs > docs/cli.md
"""

import dataclasses
from pathlib import Path

import pytest

from sipmediagw.cli import SETTING_DOCS, cli, cli_reference, format_size, setting_default
from sipmediagw.devices import provisioning_commands
from sipmediagw.settings import Settings, load_settings, parse_size, project_root

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_cli_reference_is_in_sync_with_help():
    assert (DOCS / "cli.md").read_text() == cli_reference(), (
        "docs/cli.md is stale: run `python -m sipmediagw.cli --docs > docs/cli.md`")


def settings_table() -> dict[str, tuple[str, str]]:
    """docs/cli.md's settings table: YAML key -> (environment variable, default) as the page shows them."""
    rows = {}
    for line in (DOCS / "cli.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[1].startswith("`SIPMEDIAGW_"):
            rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2])
    return rows


def test_every_command_and_setting_is_documented():
    text = (DOCS / "cli.md").read_text()
    for name in cli.commands:
        assert f"## sipmediagw {name}" in text
    assert set(SETTING_DOCS) == {f.name for f in dataclasses.fields(Settings)}
    assert set(settings_table()) == set(SETTING_DOCS)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Settings)])
def test_documented_default_is_the_dataclass_default(field: str, tmp_path: Path) -> None:
    """The page's default, given back as a setting, yields exactly what Settings() holds (paths, sizes, numbers)."""
    env_var, shown = settings_table()[field]
    assert env_var == f"SIPMEDIAGW_{field.upper()}"
    assert shown == setting_default(field)
    value = {"(none)": ""}.get(shown, shown.replace("<project>", str(project_root())))
    empty_config = tmp_path / "sipmediagw.yaml"
    empty_config.write_text("")
    assert getattr(load_settings(empty_config, env={}, overrides={field: value}), field) == getattr(Settings(), field)


@pytest.mark.parametrize("size", [1, 1000, 1024, 1536 * 1024, 768 * 1024**2, 1024**3, 3 * 1024**4])
def test_sizes_are_shown_as_parse_size_reads_them(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_resources_page_gives_the_same_fixes_as_doctor():
    text = (DOCS / "resources.md").read_text()
    for command in provisioning_commands(4):
        assert command in text, command


def test_every_test_file_has_a_basename_of_its_own():
    """pytest imports test modules by basename (no __init__.py in most tiers): two files of one name in different
    folders fail the whole run at collection ("import file mismatch")."""
    tests = Path(__file__).resolve().parents[1]
    names = sorted(path.name for path in tests.rglob("test_*.py"))
    assert not [name for name in set(names) if names.count(name) > 1]
