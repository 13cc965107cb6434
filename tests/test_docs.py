"""The README documents what a user can set and type: every setting and every command."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from webapp.cli import cli
from webapp.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert re.search(rf"^\| `{name.upper()}` \|", README, re.MULTILINE), (
        f"README.md's settings table has no row for {name.upper()}"
    )


def _commands(group: click.Group, prefix: str = "memory-admin") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix} {name}")
        else:
            names.append(f"{prefix} {name}")
    return names


@pytest.mark.parametrize("command", _commands(cli))
def test_every_command_is_documented(command: str) -> None:
    assert command in README, f"README.md never shows `{command}`"


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)
    assert "memory-admin serve" in blocks[0]
    assert "pytest" in blocks[1]
