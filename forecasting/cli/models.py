"""Model commands: fit, models, promote, diagnose, query."""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, fail, main, out, pass_context
from forecasting.services import models as model_service
from forecasting.services.forecasts import explained_forecast, live_forecast, refuse_scenario
from forecasting.serving.forecasts import ForecastEngine, Scenario

FIT_FAILED_GATE = 3  # exit code of `forecast fit` when the gate fails


def _elpd(loo: dict | None) -> str | None:
    if not loo:
        return None
    return loo.get("error") or f"{loo['elpd']:.1f} ({loo['se']:.1f}) over {loo['n_points']}"


def _influential(loo: dict | None) -> str | None:
    if not loo or "influential" not in loo:
        return None
    shown = ", ".join(f"{name} ({k:.2f})" for name, k in loo["influential"].items())
    return f"[bold red]{loo['n_influential']}[/]: {shown}" if shown else "none"


def _ppc_rows(ppc: dict) -> list[tuple[str, str]]:
    """Posterior predictive checks: each headline check, then the per-group count."""
    if not ppc.get("headline"):
        return [("posterior predictive checks", "not available")]
    rows = [(f"ppc {name}", f"{r['observed']:.4g} vs {r['mean']:.4g} [{r['lower']:.4g}, "
                            f"{r['upper']:.4g}], p = {r['p']:.2g}")
            for name, r in ppc["headline"].items()]
    rows.append((f"ppc per-group checks outside {ppc['prob']:.0%}",
                 f"{ppc.get('group_outside')} of {ppc.get('group_checks')}"))
    return rows


def _print_diagnostics(mv) -> None:
    d = mv.metadata.get("diagnostics", {})
    loo = d.get("loo") or {}
    table = Table("check", "value", title=f"diagnostics of {mv.version}", title_justify="left")
    rows = [
        ("chains x draws", f"{d.get('chains')} x {d.get('draws')}"),
        ("max R-hat (rank-normalised)", d.get("max_rhat")),
        ("min bulk ESS", d.get("min_ess_bulk")),
        ("min tail ESS", d.get("min_ess_tail")),
        ("max relative MCSE", d.get("max_mcse_relative")),
        ("divergences", d.get("divergences")),
        ("tree-depth saturation", d.get("treedepth_fraction")),
        ("min E-BFMI", d.get("min_ebfmi")),
        ("PSIS-LOO per episode elpd (se)", _elpd(loo)),
        ("max Pareto k per episode (not gated)", loo.get("max_pareto_k")),
        ("Pareto k counts per episode", loo.get("pareto_k_counts")),
        ("leave-one-trigger-out elpd (se)", _elpd(d.get("loo_trigger"))),
        ("max Pareto k per trigger", (d.get("loo_trigger") or {}).get("max_pareto_k")),
        ("influential triggers (Pareto k > 0.7)", _influential(d.get("loo_trigger"))),
        *_ppc_rows(d.get("ppc") or {}),
        ("parameterisation", d.get("parameterization")),
        ("sampling seconds", (d.get("timings") or {}).get("sampling")),
    ]
    for name, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        table.add_row(name, shown)
    out.print(table)
    verdict = mv.verdict
    out.print(f"verdict: [{'green' if verdict == 'pass' else 'red'}]{verdict}[/]")
    for reason in mv.reasons:
        out.print(f"  - {reason}")


def _print_fit(outcome) -> None:
    mv = outcome.version
    colour = "green" if mv.passed else "red"
    out.print(f"model version {mv.version}: [{colour}]{mv.verdict}[/] on {mv.episodes} episodes"
              + (" (identical fit already stored)" if outcome.reused else ""))
    _print_diagnostics(mv)
    if outcome.promoted:
        out.print(f"promoted {mv.version}: it is now the current model")
    elif not mv.passed:
        out.print("[red]not promoted[/]: the previous current version (if any) keeps serving")


@main.command()
@click.option("--no-promote", is_flag=True, help="Store the version but do not make it current.")
@pass_context
def fit(ctx: CliContext, no_promote: bool) -> None:
    """Fit the model to every stored episode, gate it, and promote it if it passes."""
    from forecasting.services.fits import fit_and_register

    database = ctx.database()
    if database.episodes.count() == 0:
        fail("the database holds no episodes; `forecast import FILE` first")
    s = ctx.settings.sampler
    err.print(f"fitting with {s.sampler}: {s.chains} chains x {s.draws} draws "
              f"(+{s.tune} tuning) ...")
    outcome = fit_and_register(ctx.settings, database, ctx.registry, ctx.codebook,
                               promote=not no_promote, actor=ctx.actor,
                               progress=err.is_terminal)
    _print_fit(outcome)
    if not outcome.version.passed:
        sys.exit(FIT_FAILED_GATE)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(click_ctx: click.Context, as_json: bool) -> None:
    """List model versions, newest first, with their verdicts.

    `forecast models compare` scores a version's model against simpler ones by leaving
    triggers out; `forecast models prune` deletes the versions the retention policy does
    not keep.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(CliContext)
    current = ctx.registry.current_or_none()
    rows = [model_service.model_summary(mv, current.version if current else None)
            for mv in ctx.registry.versions()]
    if as_json:
        echo_json(rows)
        return
    table = Table("", "version", "fitted_at", "episodes", "verdict", "reasons")
    for r in rows:
        table.add_row("*" if r["current"] else "", r["version"], r["fitted_at"],
                      str(r["episodes"]), r["verdict"], "; ".join(r["reasons"]))
    out.print(table)


@models.command("compare")
@click.argument("version", default="current")
@click.option("--variants", multiple=True, metavar="NAMES",
              help="Variants to compare with the served model, comma-separated or repeated "
                   "(default: every variant the model defines).")
@click.option("--max-refits", type=click.IntRange(0), default=None,
              help="Exact refits per model of the triggers whose Pareto k exceeds 0.7, the "
                   "highest k first (default 10); used when models are fitted.")
@click.option("--recompute", is_flag=True, help="Fit every model again; ignore a stored result.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def compare_models(ctx: CliContext, version: str, variants: tuple[str, ...],
                   max_refits: int | None, recompute: bool, as_json: bool) -> None:
    """Leave-one-trigger-out comparison of VERSION's model (default: the current one) with
    simpler variants; computed once (minutes), then read from where it is stored."""
    from forecasting.cli.evaluation import print_comparison
    from forecasting.evaluation.reports import comparison_report

    names = [n for v in variants for n in v.split(",") if n.strip()] or None
    try:
        report = comparison_report(ctx.settings, ctx.database(), ctx.codebook,
                                   registry=ctx.registry, version=version, variants=names,
                                   recompute=recompute, max_refits=max_refits,
                                   progress=lambda message: err.print(message, highlight=False))
    except ValueError as exc:  # an unknown variant, too few triggers
        fail(str(exc))
    if as_json:
        echo_json(report)
        return
    print_comparison(report)


@models.command("prune")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@pass_context
def prune_models(ctx: CliContext, dry_run: bool, as_json: bool) -> None:
    """Delete the model versions the retention policy does not keep (audited).

    Kept: the current version, the newest FORECAST_KEEP_PASSING passing and
    FORECAST_KEEP_FAILED failed ones, every version evaluation results or a refit in
    progress refer to, and any being read. Lists each version with the reason and the bytes
    freed.
    """
    report = model_service.prune(ctx.settings, ctx.registry, ctx.database(), ctx.actor,
                                 dry_run=dry_run)
    if as_json:
        echo_json(report)
        return
    table = Table("version", "verdict", "fitted_at", "MB", "action", "why")
    for d in report["versions"]:
        action = d["action"] if not dry_run or d["action"] == "keep" else "would delete"
        colour = "green" if d["action"] == "keep" else "red"
        table.add_row(d["version"], d["verdict"], d["fitted_at"], f"{d['bytes'] / 1e6:.1f}",
                      f"[{colour}]{action}[/]", "; ".join(d["reasons"]))
    out.print(table)
    n, mb = len(report["deleted"]), report["bytes_freed"] / 1e6
    versions = "version" if n == 1 else "versions"
    out.print(f"would delete {n} {versions} ({mb:.1f} MB); nothing was deleted" if dry_run
              else f"deleted {n} {versions}, freed {mb:.1f} MB")


@main.command()
@click.argument("version")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option("--actor", default=None, help="Who is promoting (default: cli:USER).")
@click.option("--json", "as_json", is_flag=True, help="Print the version as the API answers.")
@pass_context
def promote(ctx: CliContext, version: str, reason: str, actor: str | None,
            as_json: bool) -> None:
    """Make a passing VERSION current (also how to roll back)."""
    mv = model_service.promote(ctx.settings, ctx.registry, ctx.database(), version,
                               actor or ctx.actor, reason)
    if as_json:
        echo_json(model_service.model_summary(mv, mv.version))
        return
    out.print(f"{mv.version} is now the current model")


@main.command()
@click.argument("version", default="current")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def diagnose(ctx: CliContext, version: str, as_json: bool) -> None:
    """Show the diagnostics and verdict of VERSION (default: the current one)."""
    mv = ctx.registry.get(version)
    if as_json:
        echo_json({"version": mv.version, "verdict": mv.verdict, "reasons": mv.reasons,
                   "diagnostics": mv.metadata.get("diagnostics", {})})
        return
    _print_diagnostics(mv)


@main.command()
@click.argument("partner")
@click.argument("intel_type")
@click.option("--trigger-type", default=Scenario.trigger_type, show_default=True)
@click.option("--severity", type=click.IntRange(0, 3), default=Scenario.severity,
              show_default=True)
@click.option("--alignment", type=click.IntRange(0, 3), default=Scenario.alignment,
              show_default=True)
@click.option("--trigger-id", default=None, metavar="ID",
              help="A coded trigger: condition on its reactions coded so far, under the scenario "
                   "it is coded with (no --trigger-type, --severity or --alignment then).")
@click.option("--horizon", type=click.IntRange(1, 36), default=None, metavar="MONTHS",
              help="P(at least one restriction within MONTHS months, 1-36): triggers arriving "
                   "at their coded rates; --trigger-type, --severity, --alignment given "
                   "restrict them, left out mix over the coded ones.")
@click.option("--explain", is_flag=True,
              help="Also the forecast's terms (log-odds, and what each moves P(any restriction) "
                   "by) and the coded episodes it rests on.")
@click.option("--evidence-limit", type=click.IntRange(0, 100), default=10, show_default=True,
              help="With --explain: at most this many episodes of each kind of evidence.")
@click.option("--version", default="current", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def query(ctx: CliContext, partner, intel_type, trigger_type, severity, alignment, trigger_id,
          horizon, explain, evidence_limit, version, as_json) -> None:
    """Forecast for PARTNER restricting INTEL_TYPE under a scenario, or after a coded trigger."""
    if trigger_id is not None:  # the trigger's coding fixes the scenario
        given = click.get_current_context().get_parameter_source
        refuse_scenario(name for name in ("trigger_type", "severity", "alignment")
                        if given(name) != ParameterSource.DEFAULT)
    # the draws the API answers from (FORECAST_LIMIT_MAX_DRAWS): the same answer on both faces
    engine = ForecastEngine.from_version(ctx.registry, version, ctx.codebook,
                                         max_draws=ctx.settings.limits.max_draws)
    if horizon is not None:
        if explain:
            fail("--explain explains the forecast given a trigger; leave it out with --horizon")
        _horizon_query(ctx, engine, partner, intel_type, horizon, trigger_id, as_json)
        return
    if explain:
        scenario = None if trigger_id else {"trigger_type": trigger_type, "severity": severity,
                                            "alignment": alignment}
        forecast = explained_forecast(engine, ctx.database(), ctx.codebook, partner,
                                      intel_type, scenario, trigger_id, evidence_limit)
    elif trigger_id is None:
        forecast = engine.forecast(partner, intel_type, trigger_type, severity, alignment)
    else:
        forecast = live_forecast(engine, ctx.database(), ctx.codebook, partner, intel_type,
                                 trigger_id)
    if as_json:
        echo_json(forecast)
        return
    scenario = forecast["scenario"]
    out.print(f"[bold]{partner} restricting {intel_type}[/] after "
              + (f"trigger {trigger_id}, a " if trigger_id else "a ")
              + f"{scenario['trigger_type']} (severity {scenario['severity']}, "
              f"alignment {scenario['alignment']})")
    table = Table("outcome", "mean", "median", "50% interval", "90% interval")
    names = {k: v["name"] for k, v in ctx.codebook.levels.items()}
    for label, stats in [("any restriction", forecast["any_restriction"])] + [
            (f"level {k} ({names[int(k)]})", v) for k, v in forecast["levels"].items()]:
        table.add_row(label, f"{stats['mean']:.3f}", f"{stats['median']:.3f}",
                      "[{:.3f}, {:.3f}]".format(*stats["ci50"]),
                      "[{:.3f}, {:.3f}]".format(*stats["ci90"]))
    out.print(table)
    if trigger_id is not None:
        _print_conditioning(forecast, names)
    if explain:
        _print_explanation(forecast["explanation"])
        _print_evidence(forecast["evidence"], names)
    m = forecast["model"]
    out.print(f"model {m['version']} fitted {m['fitted_at']} on {m['episodes']} episodes, "
              f"verdict {m['verdict']}")


def _interval(stats: dict, digits: int = 3) -> list[str]:
    return [f"{stats['mean']:+.{digits}f}", "[{:+.{d}f}, {:+.{d}f}]".format(*stats["ci50"], d=digits),
            "[{:+.{d}f}, {:+.{d}f}]".format(*stats["ci90"], d=digits)]


def _print_explanation(explanation: dict) -> None:
    """The terms of `forecast query --explain`: log-odds and the shift each makes."""
    table = Table("term", "log-odds mean", "50%", "90%", "shift in P(any) mean", "90%",
                  title=f"why: the linear predictor term by term ({explanation['draws']} draws; "
                        "shift = P(any restriction) minus P with the term at 0)",
                  title_justify="left")
    for t in explanation["terms"]:
        logodds, shift = _interval(t["log_odds"], 2), _interval(t["any_restriction_shift"])
        table.add_row(t["label"], *logodds, shift[0], shift[2])
    table.add_section()
    table.add_row("linear predictor (the model terms)",
                  *_interval(explanation["linear_predictor"], 2), "", "")
    table.add_row("with the cluster terms (effective)",
                  *_interval(explanation["effective_linear_predictor"], 2), "", "")
    table.add_row("cutpoint 0|1", *_interval(explanation["cutpoint"], 2), "", "")
    out.print(table)
    for t in explanation["terms"]:
        if t.get("note"):
            out.print(f"note ({t['term']}): {t['note']}")
    check = explanation["check"]
    out.print(f"the terms add up to the linear predictor draw by draw (largest difference "
              f"{check['max_abs_difference']:.1e}); P(any restriction) = sigmoid(effective - "
              f"cutpoint) is the served forecast")


def _print_evidence(evidence: dict, names: dict[int, str]) -> None:
    """The episodes behind `forecast query --explain`."""
    counts, restricted = evidence["counts"], evidence["restricted"]
    out.print(("[bold]direct evidence[/]" if evidence["direct"]
               else "[bold red]no direct evidence[/]") + f": {evidence['note']}")
    out.print("episodes: " + "; ".join(f"{k.replace('_', ' ')} {n} ({restricted[k]} "
                                        f"restricted)" for k, n in counts.items()))
    out.print(evidence["store"]["note"])
    if not evidence["episodes"]:
        return
    table = Table("relation", "trigger_id", "trigger_type", "trigger_date", "partner",
                  "intel_type", "level", "confidence",
                  title=f"the episodes closest to the cell (at most {evidence['limit']} of each "
                        "kind, most recent first)", title_justify="left")
    table.add_column("sources", overflow="ellipsis", no_wrap=True, max_width=60)
    for e in evidence["episodes"]:
        table.add_row(e["relation"], e["trigger_id"], e["trigger_type"], e["trigger_date"],
                      e["partner"], e["intel_type"], f"{e['level']} ({names[e['level']]})",
                      e["confidence"], " | ".join(e["sources"]))
    out.print(table)


def _print_conditioning(forecast: dict, names: dict[int, str]) -> None:
    """What a live forecast rests on: the cell's own coded level, the episodes conditioned on."""
    observed = forecast["observed_level"]
    out.print(f"{forecast['partner']} {forecast['intel_type']} itself: " + (
        "not coded yet" if observed is None
        else f"coded level {observed} ({names[observed]}), left out of the conditioning"))
    episodes = forecast["conditioned_on"]
    if not episodes:
        out.print(f"no other episode of trigger {forecast['trigger_id']} is coded: the forecast "
                  f"is that of a new trigger of its kind ({forecast['draws_used']} draws)")
        return
    table = Table("partner", "intel_type", "level", "trigger_date", "confidence",
                  title=f"conditioned on {len(episodes)} coded episodes of trigger "
                        f"{forecast['trigger_id']} ({forecast['draws_used']} draws)",
                  title_justify="left")
    # one line per episode: --json has every source whole
    table.add_column("sources", overflow="ellipsis", no_wrap=True, max_width=80)
    for e in episodes:
        table.add_row(e["partner"], e["intel_type"], f"{e['level']} ({names[e['level']]})",
                      e["trigger_date"], e["confidence"], " | ".join(e["sources"]))
    out.print(table)


def _horizon_query(ctx: CliContext, engine: ForecastEngine, partner: str, intel_type: str,
                   months: int, trigger_id: str | None, as_json: bool) -> None:
    """`forecast query ... --horizon MONTHS`: the scenario options given on the command line
    restrict the triggers counted; those left at their defaults mix over the coded ones."""
    from forecasting.services.horizons import horizon

    if trigger_id is not None:
        fail("--horizon counts triggers yet to come; it does not take --trigger-id")
    source = click.get_current_context().get_parameter_source
    params = click.get_current_context().params
    given = {name: params[name] for name in ("trigger_type", "severity", "alignment")
             if source(name) != ParameterSource.DEFAULT}
    answer = horizon(engine, ctx.registry, partner, intel_type, months=months, **given)
    if as_json:
        echo_json(answer)
        return
    point, arrivals = answer["curve"][0], answer["arrivals"]
    scope = ", ".join(f"{k} {v}" for k, v in given.items()) or "every coded kind of trigger"
    out.print(f"[bold]{partner} restricting {intel_type} within {months} months[/] ({scope})")

    def cells(stats: dict, digits: int = 3) -> list[str]:
        return [f"{stats['mean']:.{digits}f}", f"{stats['median']:.{digits}f}",
                "[{:.{d}f}, {:.{d}f}]".format(*stats["ci50"], d=digits),
                "[{:.{d}f}, {:.{d}f}]".format(*stats["ci90"], d=digits)]

    table = Table("quantity", "mean", "median", "50% interval", "90% interval")
    table.add_row(f"P(any restriction within {months} months)", *cells(point["any_restriction"]))
    table.add_row(f"triggers putting {partner} at stake in {months} months",
                  *cells(point["expected_triggers"], 2))
    table.add_row("P(any restriction) per such trigger",
                  *cells(answer["per_trigger"]["any_restriction"]))
    table.add_row(f"P(a trigger puts {partner} at stake)", *cells(arrivals["exposure"]))
    table.add_row("triggers per month (any partner)", *cells(arrivals["triggers_per_month"]))
    out.print(table)
    window, h = arrivals["window"], arrivals["half_life_years"]
    out.print(f"arrivals from {window['coded_triggers']} coded triggers, {window['start']} to "
              f"{window['end']}" + (f", half-life {h:g} years" if h else ", equal weights"))
    m = answer["model"]
    out.print(f"model {m['version']} fitted {m['fitted_at']} on {m['episodes']} episodes, "
              f"verdict {m['verdict']}")
