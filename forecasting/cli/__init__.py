"""The `forecast` console script: parses arguments, calls the service layer, prints results.

No domain logic lives here: every command is a thin face over a library function that
the API calls too, and every error is printed as forecasting.services.errors says.
The commands live in modules by concern: data (init, import, export, vocab, episodes),
models (fit, models, promote, diagnose, query), priors, tokens, serving (serve, worker,
run, refits) and evaluation (backtest, sbc, sensitivity).
"""

from __future__ import annotations

import getpass
import json
import logging
import sys
from typing import NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from forecasting.domain.codebook import Codebook, load_codebook
from forecasting.registry import Registry
from forecasting.services import errors
from forecasting.services.setup import open_database
from forecasting.settings import Settings, load_settings
from forecasting.store import Database

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


class CliContext:
    """Settings and lazily opened resources, shared by the subcommands of one invocation."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._codebook: Codebook | None = None
        self._database: Database | None = None
        self._registry: Registry | None = None
        self._refits = None

    @property
    def actor(self) -> str:
        """Who is acting, as the audit log records a command-line user."""
        return f"cli:{getpass.getuser()}"

    @property
    def codebook(self) -> Codebook:
        if self._codebook is None:
            self._codebook = load_codebook(self.settings.codebook_path)
        return self._codebook

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings.registry_path)
        return self._registry

    def database(self) -> Database:
        """The database, refusing one that `forecast init` has not brought up to date."""
        if self._database is None:
            database = open_database(self.settings)
            try:
                database.ensure_current()
            except BaseException:
                database.dispose()
                raise
            self._database = database
        return self._database

    def refits(self):
        """The refit queue, built as the API builds it: queueing needs no running worker."""
        from forecasting.refits import RefitService

        if self._refits is None:
            self._refits = RefitService.from_settings(self.settings, self.database(),
                                                      registry=self.registry,
                                                      codebook=self.codebook)
        return self._refits

    def close(self) -> None:
        if self._database is not None:
            self._database.dispose()


pass_context = click.make_pass_decorator(CliContext)


def fail(message: str) -> NoReturn:
    """Print `message` on standard error and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(errors.EXIT_CODE)


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2))


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)


def print_stats(database: Database) -> None:
    stats = database.episodes.stats()
    out.print(f"the database holds {stats['episodes']} episodes ({stats['restricted']} with a "
              f"restriction) on {stats['partners']} partners, {stats['intel_types']} intelligence "
              f"types and {stats['triggers']} triggers")


class ForecastGroup(click.Group):
    """Prints the project's known errors (services.errors) as messages, not tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except errors.EXPECTED as exc:
            fail(str(exc))


@click.group(cls=ForecastGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress of library code.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Forecasts of partners restricting intelligence shared with the US.

    The database and model registry live under $FORECAST_INSTANCE (default ./instance);
    see the README for every setting.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ValueError as exc:  # a malformed FORECAST_* variable
        fail(str(exc))
    ctx.obj = CliContext(settings)
    ctx.call_on_close(ctx.obj.close)


# the commands register themselves on `main`
from forecasting.cli import (  # noqa: E402,F401
    coding,
    data,
    evaluation,
    ledger,
    models,
    priors,
    serving,
    tokens,
)
