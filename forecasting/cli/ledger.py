"""Ledger commands (issue 19): register a trigger, update, list, show, score, scorecard,
verify, correct. Each calls one function of forecasting.services.ledger, as the API does."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, main, out, pass_context
from forecasting.services import errors
from forecasting.services import ledger as ledger_service
from forecasting.serving.forecasts import ForecastEngine


def _codes(values: tuple[str, ...]) -> list[str]:
    """Codes given as repeated options, each possibly a comma-separated list."""
    return [code.strip() for value in values for code in value.split(",") if code.strip()]


def _engine(ctx: CliContext) -> ForecastEngine:
    # the draws the API answers from (FORECAST_LIMIT_MAX_DRAWS): the same frozen numbers
    return ForecastEngine.from_version(ctx.registry, "current", ctx.codebook,
                                       max_draws=ctx.settings.limits.max_draws)


def _pct(p: float | None) -> str:
    return "" if p is None else f"{100 * p:.1f}%"


def _print_frozen(entries: list[dict]) -> None:
    table = Table("seq", "partner", "intel_type", "P(any)", "90% interval", "version")
    for e in entries:
        any_ = e["payload"]["forecast"]["any_restriction"]
        table.add_row(str(e["seq"]), e["partner"], e["intel_type"], _pct(any_["mean"]),
                      f"{_pct(any_['ci90'][0])} - {_pct(any_['ci90'][1])}", e["model_version"])
    out.print(table)


@main.group()
def ledger() -> None:
    """The forecast ledger: forecasts frozen before outcomes are known, scored when coded."""


@ledger.command(name="register")
@click.argument("trigger_id")
@click.option("--partner", "partners", multiple=True, required=True,
              help="A partner at stake (repeat, or comma-separate).")
@click.option("--intel-type", "intel_types", multiple=True,
              help="An intelligence type at stake (repeat, or comma-separate); default: all.")
@click.option("--trigger-type", default=None, help="Required unless the trigger is coded.")
@click.option("--date", "trigger_date", default=None, metavar="YYYY-MM-DD",
              help="The trigger's date; required unless the trigger is coded.")
@click.option("--severity", type=click.IntRange(0, 3), default=None)
@click.option("--alignment", type=click.IntRange(0, 3), default=None)
@click.option("--description", default="")
@click.option("--source", "sources", multiple=True, help="A public source (repeat).")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_register(ctx: CliContext, trigger_id, partners, intel_types, trigger_type,
                    trigger_date, severity, alignment, description, sources, as_json) -> None:
    """Register TRIGGER_ID and freeze the current forecast of every open cell at stake."""
    registration = ledger_service.Registration(
        trigger_id=trigger_id, partners=_codes(partners), intel_types=_codes(intel_types),
        trigger_type=trigger_type, trigger_date=trigger_date, severity=severity,
        alignment=alignment, description=description, sources=list(sources))
    done = ledger_service.register(ctx.database(), _engine(ctx), ctx.codebook, registration,
                                   actor=ctx.actor)
    if as_json:
        echo_json(done)
        return
    trigger = done["trigger"]
    out.print(f"trigger {trigger_id} registered as ledger entry {trigger['seq']}: "
              f"{len(done['forecasts'])} forecasts frozen")
    skipped = trigger["payload"]["coded_before_registration"]
    if skipped:
        out.print(f"not frozen (outcome coded already): "
                  f"{', '.join('/'.join(c) for c in skipped)}")
    _print_frozen(done["forecasts"])


@ledger.command(name="update")
@click.argument("trigger_id", required=False)
@click.option("--all", "every", is_flag=True,
              help="Every registered trigger with an open cell (for a scheduled job).")
@click.option("--note", default="", help="Why the forecasts are updated now (recorded).")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_update(ctx: CliContext, trigger_id: str | None, every: bool, note: str,
                  as_json: bool) -> None:
    """Forecast TRIGGER_ID's open cells again (the current version, the reactions coded now)
    and append those that changed."""
    if every == (trigger_id is not None):
        raise click.UsageError("give a TRIGGER_ID or --all, not both")
    database, engine = ctx.database(), _engine(ctx)
    updates = (ledger_service.update_open(database, engine, ctx.codebook, ctx.actor, note)
               if every else [ledger_service.update(database, engine, ctx.codebook, trigger_id,
                                                    actor=ctx.actor, note=note)])
    if as_json:
        echo_json(updates if every else updates[0])
        return
    for done in updates:
        out.print(f"{done['trigger_id']}: {len(done['forecasts'])} forecasts appended, "
                  f"{len(done['unchanged'])} unchanged, {len(done['resolved'])} cells resolved")
        if done["forecasts"]:
            _print_frozen(done["forecasts"])


@ledger.command(name="list")
@click.option("--status", type=click.Choice(ledger_service.STATUSES), default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_list(ctx: CliContext, status: str | None, as_json: bool) -> None:
    """Registered cells, open or resolved: the latest frozen forecast, outcome and score."""
    listed = ledger_service.list_forecasts(ctx.database(), status)
    if as_json:
        echo_json(listed)
        return
    table = Table("trigger", "partner", "intel_type", "status", "frozen", "P(any)", "level",
                  "brier", "miss")
    for r in listed["forecasts"]:
        latest, outcome, score = r["latest"] or {}, r["outcome"] or {}, r["score"] or {}
        table.add_row(r["trigger_id"] + (" (voided)" if r["voided"] else ""), r["partner"],
                      r["intel_type"], r["status"], str(r["forecasts"]),
                      _pct(latest.get("p_any")), str(outcome.get("level", "")),
                      f"{score['brier']:.3f}" if score else "",
                      ("yes" if score["miss"] else "no") if score else "")
    out.print(table)
    out.print(f"{listed['triggers']} triggers: {listed['open']} open, "
              f"{listed['resolved']} resolved")


def _describe(kind: str, p: dict) -> str:
    if kind == "trigger":
        return (f"{p['trigger_type']} severity {p['severity']} alignment {p['alignment']} "
                f"on {p['trigger_date']}")
    if kind == "forecast":
        return f"P(any) {_pct(p['forecast']['any_restriction']['mean'])} ({p['reason']})"
    if kind == "score":
        return (f"level {p['outcome']['level']} (revision {p['outcome']['revision']}): brier "
                f"{p['scores']['model']['brier']:.3f}" + (", a miss" if p["miss"] else ""))
    return ("voids " if p["void"] else "corrects ") + f"{p['corrects']}: {p['reason']}"


@ledger.command(name="show")
@click.argument("trigger_id")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_show(ctx: CliContext, trigger_id: str, as_json: bool) -> None:
    """Every ledger entry of TRIGGER_ID, oldest first."""
    shown = ledger_service.show(ctx.database(), trigger_id)
    if as_json:
        echo_json(shown)
        return
    table = Table("seq", "kind", "recorded_at", "actor", "cell", "version", "what")
    for e in shown["entries"]:
        what = _describe(e["kind"], e["payload"])
        cell = f"{e['partner']}/{e['intel_type']}" if e["partner"] else ""
        table.add_row(str(e["seq"]), e["kind"], e["recorded_at"][:19], e["actor"], cell,
                      e["model_version"] or "", what)
    out.print(table)


@ledger.command(name="score")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_score(ctx: CliContext, as_json: bool) -> None:
    """Score what coded outcomes resolve now (imports do this already; nothing is owed twice)."""
    scored = ledger_service.resolve(ctx.database(), actor=ctx.actor)
    if as_json:
        echo_json(scored)
        return
    out.print(f"{len(scored)} forecasts scored")


@ledger.command(name="scorecard")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the reliability diagram of the live record (PNG) here.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_scorecard(ctx: CliContext, plot: Path | None, as_json: bool) -> None:
    """The live record: mean scores beside the baselines, with intervals, the misses."""
    card = ledger_service.scorecard(ctx.database())
    if plot is not None:
        plot.write_bytes(ledger_service.reliability_plot(ctx.database()))
        err.print(f"reliability diagram written to {plot}")
    if as_json:
        echo_json(card)
        return
    overall = card["overall"]
    out.print(f"{overall['n']} scored forecasts on {overall['triggers']} triggers "
              f"({card['orientation']})")
    if not overall["n"]:
        return
    table = Table("forecaster", *card["scores"], "90% coverage")
    for name, scores in overall["scores"].items():
        table.add_row(name, *(f"{scores[s]:.3f}" for s in card["scores"]),
                      f"{overall['coverage90'][name]:.2f}")
    out.print(table)
    for base, by_score in overall["comparisons"].items():
        c = by_score["brier"]
        out.print(f"model - {base} (brier): {c['mean']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]")
    for m in card["misses"]:
        out.print(f"miss: entry {m['seq']} {m['trigger_id']} {m['partner']}/{m['intel_type']}: "
                  f"P(any) {_pct(m['p_any'])}, level {m['level']} given {_pct(m['p_observed'])}")


@ledger.command(name="verify")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_verify(ctx: CliContext, as_json: bool) -> None:
    """Recompute the hash chain: exit 0 when intact, non-zero naming the first broken entry."""
    check = ledger_service.verify(ctx.database())
    if as_json:
        echo_json(check.as_dict())
    elif check.intact:
        out.print(f"the ledger's {check.entries} entries are intact; head {check.head}")
    if not check.intact:
        err.print(f"[bold red]error:[/] ledger entry {check.broken_seq} (row id "
                  f"{check.broken_id}) breaks the chain: {check.problem}", highlight=False,
                  soft_wrap=True)
        sys.exit(errors.EXIT_CODE)


@ledger.command(name="correct")
@click.argument("seq", type=int)
@click.option("--reason", required=True, help="Why the entry is corrected (recorded).")
@click.option("--void", is_flag=True,
              help="Withdraw a trigger's registration or a forecast from the scorecard.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ledger_correct(ctx: CliContext, seq: int, reason: str, void: bool, as_json: bool) -> None:
    """Append a correction of entry SEQ (nothing is edited or deleted)."""
    entry = ledger_service.correct(ctx.database(), seq, ctx.actor, reason, void=void)
    if as_json:
        echo_json(entry)
        return
    out.print(f"entry {entry['seq']} corrects entry {seq}" + (" (voided)" if void else ""))
