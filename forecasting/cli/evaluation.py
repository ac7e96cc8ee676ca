"""Evaluation commands: backtest, sbc, sensitivity (their results are stored with the version)."""

from __future__ import annotations

import click

from forecasting.cli import CliContext, echo_json, err, fail, main, out, pass_context
from forecasting.cli import progress_bar as make_progress


def print_comparison(report: dict) -> None:
    """A leave-one-trigger-out comparison (`forecast models compare`) as a table and its
    conclusions."""
    from rich.table import Table

    table = Table("model", "elpd_loo (SE)", "diff to best (SE)", "P(worse)", "p_loo", "weight",
                  "k > {:g}: refitted / kept PSIS".format(report["settings"]["k_threshold"]),
                  "verdict", title=f"leaving triggers out: model version {report['version']}, "
                  f"{report['n_triggers']} triggers, {report['n_episodes']} episodes",
                  title_justify="left")
    for row in report["table"]:
        table.add_row(row["model"], f"{row['elpd_loo']:.1f} ({row['se']:.1f})",
                      f"{row['elpd_diff']:+.1f} ({row['dse']:.1f})",
                      "" if row.get("p_worse") is None else f"{row['p_worse']:.2f}",
                      f"{row['p_loo']:.1f}",
                      f"{row['weight']:.2f}",
                      f"{row['n_high_k']}: {row['refits']} / {row['high_k_kept_psis']}",
                      row["verdict"])
    out.print(table)
    for line in report["conclusions"]:
        out.print(f"- {line}", highlight=False)
    out.print(f"rule: {report['rule']}", highlight=False)
    sampler = report["settings"]["sampler"]
    seconds = sum(m["seconds"]["total"] for m in report["models"].values())
    err.print(f"{sampler['chains']} chains x {sampler['draws']} draws per fit; "
              f"{seconds:.0f} s of fitting and refitting; computed {report['created_at']}"
              + ("" if report.get("data_matches_version", True)
                 else "; [yellow]the episodes differ from those the version was fitted on[/]"))


def _print_report(report: dict, tables, as_json: bool) -> None:
    """An evaluation report as JSON, or as tables and where it was stored."""
    if as_json:
        echo_json(report)
        return
    for table in tables(report):
        out.print(table)
    err.print(f"stored in {report['stored_in']}" if report.get("stored_in")
              else "no model version: results not stored")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--version", default="current", show_default=True,
              help="Model version whose priors are backtested; results are stored with it.")
@click.option("--step", "step_months", type=click.IntRange(1), default=24, show_default=True,
              help="Months between forecast origins.")
@click.option("--horizon", "horizon_months", type=click.IntRange(1), default=24,
              show_default=True, help="Months forecast after each origin.")
@click.option("--min-train", type=click.IntRange(1), default=200, show_default=True,
              help="Episodes before the first origin.")
@pass_context
def backtest(ctx: CliContext, as_json: bool, version: str, step_months: int,
             horizon_months: int, min_train: int) -> None:
    """Rolling-origin backtest: the model's scores beside baselines' on the same folds."""
    from forecasting.evaluation import cli_format
    from forecasting.evaluation.reports import backtest_report

    database = ctx.database()
    try:
        with make_progress() as progress:
            task = progress.add_task("backtest folds", total=None)
            report = backtest_report(
                ctx.settings, database, ctx.codebook, registry=ctx.registry, version=version,
                step_months=step_months, horizon_months=horizon_months, min_train=min_train,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
    except (ValueError, LookupError) as exc:  # too few episodes for the folds asked, ...
        fail(str(exc))
    _print_report(report, cli_format.backtest_tables, as_json)


@main.command("backtest-rates")
@click.option("--step", "step_months", type=click.IntRange(1), default=12, show_default=True,
              help="Months between forecast origins.")
@click.option("--horizons", default="6,12", show_default=True, metavar="MONTHS",
              help="Comma-separated horizons in months: triggers counted after each origin.")
@click.option("--min-triggers", type=click.IntRange(1), default=15, show_default=True,
              help="Coded triggers before the first origin.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def backtest_rates(ctx: CliContext, step_months: int, horizons: str, min_triggers: int,
                   as_json: bool) -> None:
    """Rolling-origin backtest of the trigger arrival model: predicted vs observed trigger
    counts after each origin, log score and CRPS beside a constant-rate baseline, for each
    half-life of the time weights; then the exposure (which partners a trigger puts at
    stake) by trigger type against one per partner (numpy only: a minute or two on the seed
    data)."""
    from forecasting.evaluation.cli_format import rate_backtest_tables
    from forecasting.evaluation.trigger_backtest import rate_backtest_report

    try:
        months = tuple(int(h) for h in horizons.split(",") if h.strip())
        if not months or min(months) < 1:
            raise ValueError
    except ValueError:
        fail(f"--horizons: give whole numbers of months separated by commas, got {horizons!r}")
    try:
        report = rate_backtest_report(ctx.database().episodes.frame(), ctx.codebook,
                                      step_months=step_months, horizons=months,
                                      min_triggers=min_triggers)
    except ValueError as exc:  # too few triggers for the origins asked
        fail(str(exc))
    if as_json:
        echo_json(report)
        return
    for table in rate_backtest_tables(report):
        out.print(table)
    out.print(f"best per-type log score: {report['chosen']}; every fit uses "
              f"{report['served']} (docs/horizons.md says why)", highlight=False)
    exposure = report["exposure"]
    diff = exposure["log_by_type_minus_by_partner"]
    out.print(f"exposure, log score per trigger x partner ({exposure['triggers']} triggers "
              f"after {exposure['origins']} origins): " + ", ".join(
                  f"{name} {scores['log']:.4f}"
                  for name, scores in exposure["forecasters"].items())
              + f"; by type - by partner {diff['mean']:+.4f} [{diff['lo']:+.4f}, "
              f"{diff['hi']:+.4f}]; every fit uses {exposure['served']}", highlight=False)


@main.command()
@click.option("--sims", "n_sims", type=click.IntRange(1), default=100, show_default=True,
              help="Number of simulations.")
@click.option("--episodes", "n_episodes", type=click.IntRange(10), default=600,
              show_default=True, help="Episodes per simulated data set.")
@click.option("--jobs", "n_jobs", type=click.IntRange(1), default=None,
              help="Worker processes (default: one per core).")
@click.option("--version", default="current", show_default=True,
              help="Model version whose priors are checked; results are stored with it.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def sbc(ctx: CliContext, n_sims: int, n_episodes: int, n_jobs: int | None, version: str,
        seed: int, as_json: bool) -> None:
    """Simulation-based calibration: rank-uniformity tests and interval coverage."""
    from forecasting.evaluation import cli_format
    from forecasting.evaluation.reports import sbc_report

    try:
        report = sbc_report(ctx.settings, ctx.codebook, registry=ctx.registry, version=version,
                            n_sims=n_sims, n_episodes=n_episodes, n_jobs=n_jobs, seed=seed)
    except (ValueError, LookupError, RuntimeError) as exc:  # bad settings, a failed simulation
        fail(str(exc))
    _print_report(report, cli_format.sbc_tables, as_json)


@main.command()
@click.argument("version", default="current")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--recompute", is_flag=True, help="Ignore a stored result.")
@pass_context
def sensitivity(ctx: CliContext, version: str, as_json: bool, recompute: bool) -> None:
    """Power-scaling prior/likelihood sensitivity of VERSION (default: the current one)."""
    from forecasting.evaluation import cli_format
    from forecasting.evaluation.reports import sensitivity_report

    try:
        report = sensitivity_report(ctx.settings, ctx.registry, version, recompute=recompute)
    except (LookupError, ValueError) as exc:  # a stored fit without a group it needs, ...
        fail(str(exc))
    if as_json:
        echo_json(report)
        return
    for table in cli_format.sensitivity_tables(report):
        out.print(table)
