"""Every command, route and setting a user relies on is documented in the README."""

import re
from pathlib import Path

import pytest

from forecasting.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands(group, prefix="forecast"):
    for name, command in group.commands.items():
        yield f"{prefix} {name}"
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix} {name}")


@pytest.mark.parametrize("command", sorted(_commands(main)))
def test_every_cli_command_is_in_the_readme(command):
    assert f"`{command}" in README, f"{command} is not documented in README.md"


def test_every_api_route_is_in_the_readme(app):
    routes = {re.sub(r"<(?:int:)?(\w+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/v1") or rule.rule in ("/health", "/ready")}
    missing = [r for r in sorted(routes) if r not in README]
    assert not missing, f"routes missing from README.md: {missing}"


def test_every_setting_is_in_the_readme():
    source = (Path(__file__).resolve().parent.parent / "forecasting" / "settings.py").read_text()
    names = set(re.findall(r'"(FORECAST_[A-Z_]+)"', source))
    assert names, "no settings found"
    missing = sorted(n for n in names if n not in README)
    assert not missing, f"settings missing from README.md: {missing}"
