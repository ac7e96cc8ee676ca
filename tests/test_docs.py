"""The documentation is complete and its links hold.

Every `forecast` command (with its options) is in docs/cli.md, every route in docs/api.md,
every FORECAST_* setting in docs/operations.md; every link in README.md and docs/*.md points
at a file (and heading) inside the repository; README.md stays a newcomer's page.
"""

import re
from pathlib import Path

import click
import pytest

from api import create_app
from forecasting.cli import main
from forecasting.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_BYTES = 10 * 1024
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# Routes flask-openapi3 adds to serve Swagger UI's own files: not ours to document.
ASSET_ROUTES = ("/static/", "/swagger", "/oauth2-redirect")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _page(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


def _word(text: str, token: str) -> bool:
    """`token` appears whole: not as the start of a longer option, code or path."""
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


# ---- the command line -> docs/cli.md -----------------------------------------------------------
def _commands(group: click.Group, path: str = "forecast"):
    for name, command in sorted(group.commands.items()):
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


COMMANDS = dict(_commands(main))
COMMAND_HEADING = re.compile(r"^#{1,6} +`(forecast[^`]*)`\s*$")


def _command_sections(text: str) -> dict[str, str]:
    """Each heading naming a command -> the text under it, up to the next heading."""
    headings = list(re.finditer(r"^#{1,6} .*$", text, re.M))
    sections = {}
    for i, heading in enumerate(headings):
        named = COMMAND_HEADING.match(heading.group(0))
        if named:
            end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
            sections[named.group(1).strip()] = text[heading.end():end]
    return sections


def _documented_params(command: click.Command):
    """Options by their long (or only) names, and arguments by their metavar (FILE, VERSION)."""
    for param in command.params:
        if isinstance(param, click.Option):
            if "--help" in param.opts:
                continue
            names = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
            yield from names or param.opts
        else:
            yield param.human_readable_name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_cli_command_has_a_section_in_cli_md(command):
    sections = _command_sections(_page("cli.md"))
    assert command in sections, f"docs/cli.md has no heading `{command}`"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_and_argument_is_in_its_commands_section(command):
    section = _command_sections(_page("cli.md")).get(command, "")
    missing = [p for p in _documented_params(COMMANDS[command]) if not _word(section, p)]
    assert not missing, f"docs/cli.md, section `{command}`: {missing} not documented"


def test_the_scripts_own_options_are_in_cli_md():
    text = _page("cli.md")
    missing = [p for p in _documented_params(main) if not _word(text, p)]
    assert not missing, f"docs/cli.md does not document {missing}"


def test_cli_md_documents_no_command_that_does_not_exist():
    stale = sorted(set(_command_sections(_page("cli.md"))) - set(COMMANDS))
    assert not stale, f"docs/cli.md documents commands that do not exist: {stale}"


# ---- the API -> docs/api.md ------------------------------------------------------------------
@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> set[tuple[str, str]]:
    """(method, /path/{param}) of every route; listing them needs no model and no data."""
    folder = tmp_path_factory.mktemp("docs") / "instance"
    app = create_app({"SETTINGS": load_settings({"FORECAST_INSTANCE": str(folder)}),
                      "TESTING": True})
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(ASSET_ROUTES):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        found |= {(method, path) for method in rule.methods if method in METHODS}
    app.extensions["forecasting"].database.dispose()
    return found


def test_every_api_route_is_in_api_md(routes):
    text = _page("api.md")
    missing = sorted(f"{m} {p}" for m, p in routes
                     if not re.search(rf"`{m} {re.escape(p)}(?=[`?\s])", text))
    assert not missing, f"routes missing from docs/api.md (as `METHOD /path`): {missing}"


def test_api_md_documents_no_route_that_does_not_exist(routes):
    documented = set(re.findall(rf"`({'|'.join(METHODS)}) (/[^`?\s]*)", _page("api.md")))
    stale = sorted(f"{m} {p}" for m, p in documented - routes)
    assert not stale, f"docs/api.md documents routes that do not exist: {stale}"


# ---- settings -> docs/operations.md ----------------------------------------------------------
def _settings() -> set[str]:
    names = set()
    for folder in ("forecasting", "api"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"""["'](FORECAST_[A-Z0-9_]+)["']""", path.read_text()))
    # the tables whose names are built, not written out: FORECAST_LIMIT_<FIELD>
    from forecasting.settings import GATE_SETTINGS, LIMIT_SETTINGS

    return names | set(LIMIT_SETTINGS) | set(GATE_SETTINGS)


def test_every_setting_is_in_operations_md():
    names = _settings()
    assert "FORECAST_INSTANCE" in names, "no settings found: has the settings module moved?"
    text = _page("operations.md")
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"settings missing from docs/operations.md: {missing}"


def test_operations_md_documents_no_setting_that_does_not_exist():
    documented = set(re.findall(r"`(FORECAST_[A-Z0-9_]+)`", _page("operations.md")))
    stale = sorted(documented - _settings())
    assert not stale, f"docs/operations.md documents settings the code never reads: {stale}"


# ---- links -----------------------------------------------------------------------------------
def _strip_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", _strip_fences(text))


def _links(text: str) -> list[str]:
    prose = _prose(text)
    inline = re.findall(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    defined = re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", prose, flags=re.M)
    return inline + defined


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?)\s*#*\s*$", _strip_fences(path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _broken(page: Path, target: str) -> str | None:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("//"):
        return "points outside the repository (use a relative link to a file in it)"
    file_part, _, anchor = target.partition("#")
    path = (page.parent / file_part).resolve() if file_part else page
    try:
        path.relative_to(ROOT)
    except ValueError:
        return "points outside the repository"
    if not path.exists():
        return "points at a file that does not exist"
    if anchor and path.suffix == ".md" and anchor not in _anchors(path):
        return f"points at a heading #{anchor} that {path.name} does not have"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_points_at_a_file_in_the_repository(page):
    broken = [f"{target}: {why}" for target in _links(page.read_text(encoding="utf-8"))
              if (why := _broken(page, target))]
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_link_check_sees_links_and_skips_code():
    assert _links("see [the model](docs/model.md#priors) and [x][1]\n[1]: api.md\n") == [
        "docs/model.md#priors", "api.md"]
    assert _links("```\n[not](a-link.md)\n```\n`[nor](this.md)`") == []
    assert _broken(README, "docs/no-such-page.md") == "points at a file that does not exist"
    assert _broken(README, "https://example.org").startswith("points outside")
    assert _broken(README, "../outside.md") == "points outside the repository"
    assert "heading" in _broken(README, "docs/model.md#no-such-heading")


# ---- the README ------------------------------------------------------------------------------
def test_readme_stays_a_newcomers_page():
    size = README.stat().st_size
    assert size < README_MAX_BYTES, (
        f"README.md is {size} bytes; keep it under {README_MAX_BYTES} and move detail to docs/")


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve()
              for t in _links(README.read_text(encoding="utf-8"))}
    missing = [f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert DOCS.is_dir() and any(DOCS.glob("*.md")), "docs/ has no pages"
    assert not missing, f"README.md does not link {missing}"


def test_readme_gives_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text
