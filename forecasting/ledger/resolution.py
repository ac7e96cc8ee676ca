"""Scoring frozen forecasts against coded outcomes, and the live record's scorecard (pure).

One implementation of each score: the per-forecast scores are
forecasting.evaluation.scoring's (`score_episodes`: Brier, log, RPS and their "any
restriction" forms), the intervals its trigger-clustered `paired_bootstrap`, the reliability
diagram forecasting.evaluation.calibration's; the baselines were frozen beside the model's
forecast (forecasting.evaluation.baselines, fitted on the episodes coded at the time).

The 90% interval coverage of an ordinal forecast is the backtest's: the share of the
randomised PIT in [0.05, 0.95] (calibration.randomized_pit). Here it is taken in
expectation over the randomisation, so that a stored score does not depend on a seed: the
part of the outcome's PIT interval [F(y - 1), F(y)] inside [0.05, 0.95].
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from forecasting.evaluation import calibration
from forecasting.evaluation.scoring import SCORES, paired_bootstrap, score_episodes

MODEL = "model"
# horizons of the scorecard: days from a forecast to the coding of its outcome
LEAD_BUCKETS = ((0, 1, "under 1 day"), (1, 7, "1-7 days"), (7, 30, "7-30 days"),
                (30, 91, "30-90 days"), (91, float("inf"), "90 days or more"))
MISS_LEVEL_PROBABILITY = 0.10  # a forecast that gave the observed level less than this missed
DECIMALS = 6


def level_probabilities(forecast: Mapping[str, Any]) -> list[float]:
    """P(level = k), k = 0..3, of a served forecast: its posterior means, renormalised (they
    are rounded to 4 decimals when served, so their sum is off by up to 2e-4)."""
    means = np.array([float(forecast["levels"][str(k)]["mean"]) for k in range(4)])
    means = np.clip(means, 0.0, None)
    return (means / means.sum()).round(DECIMALS).tolist()


def expected_coverage(probs: Sequence[float], level: int, central: float = 0.9) -> float:
    """E over the PIT's randomisation of 1{PIT in the central interval}: for a discrete
    outcome, the part of [F(y - 1), F(y)] inside [(1 - c)/2, (1 + c)/2], over p(y)."""
    probs = np.asarray(probs, float)
    low, high = (1 - central) / 2, (1 + central) / 2
    below = float(probs[:level].sum())
    width = float(probs[level])
    if width <= 0:
        return float(low <= below <= high)
    return max(0.0, min(below + width, high) - max(below, low)) / width


def score_forecast(forecasters: Mapping[str, Sequence[float]], level: int) -> dict[str, Any]:
    """Every forecaster's scores (losses) and expected 90% coverage on one outcome."""
    names = list(forecasters)
    probs = np.array([forecasters[n] for n in names], float)
    probs = probs / probs.sum(axis=1, keepdims=True)
    table = score_episodes(probs, np.full(len(names), int(level)))
    return {
        "scores": {n: {s: round(float(table[s].iloc[i]), DECIMALS) for s in SCORES}
                   for i, n in enumerate(names)},
        "coverage90": {n: round(expected_coverage(probs[i], level), DECIMALS)
                       for i, n in enumerate(names)},
    }


def lead_days(made: str, coded: str) -> float:
    """Days from a forecast to the coding of its outcome (its horizon)."""
    delta = dt.datetime.fromisoformat(coded) - dt.datetime.fromisoformat(made)
    return round(delta.total_seconds() / 86400, 3)


def is_miss(probs: Sequence[float], level: int) -> bool:
    """On the wrong side of 50% on "any restriction", or the observed level given < 10%."""
    p_any = 1 - float(probs[0])
    return (p_any >= 0.5) != (level >= 1) or float(probs[level]) < MISS_LEVEL_PROBABILITY


def _summary(rows: list[dict], names: list[str], n_boot: int, seed: int) -> dict[str, Any]:
    clusters = np.array([r["trigger_id"] for r in rows])
    means = {n: {s: round(float(np.mean([r["scores"][n][s] for r in rows])), DECIMALS)
                 for s in SCORES} for n in names if all(n in r["scores"] for r in rows)}
    coverage = {n: round(float(np.mean([r["coverage90"][n] for r in rows])), DECIMALS)
                for n in means}
    comparisons = {}
    for base in means:
        if base == MODEL or MODEL not in means:
            continue
        comparisons[base] = {s: paired_bootstrap(
            np.array([r["scores"][MODEL][s] - r["scores"][base][s] for r in rows]), clusters,
            n_boot=n_boot, seed=seed) for s in SCORES}
    return {"n": len(rows), "triggers": int(len(set(clusters.tolist()))), "scores": means,
            "coverage90": coverage, "comparisons": comparisons}


def scorecard(rows: list[dict], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The live record. `rows`: one per scored forecast (its current score), each with
    trigger_id, partner, intel_type, model_version, made (ISO time), lead_days, probs (the
    model's), level, scores {forecaster: {score: loss}}, coverage90 {forecaster: share}.

    Overall, per model version, per month the forecasts were made and per horizon (days from
    the forecast to the coding of its outcome, LEAD_BUCKETS): mean losses and
    coverage per forecaster; model - baseline differences with 90% intervals from a bootstrap
    over triggers (a trigger's forecasts share its news: resampled together); the
    reliability of P(any restriction); the misses, listed.
    """
    names = sorted({n for r in rows for n in r["scores"]}, key=lambda n: (n != MODEL, n))
    card: dict[str, Any] = {
        "orientation": "losses: lower is better; differences are model - baseline",
        "scores": list(SCORES), "forecasters": names,
        "overall": _summary(rows, names, n_boot, seed) if rows else {"n": 0, "triggers": 0},
        "by_version": {}, "by_month": {}, "by_lead": {}, "reliability": None, "misses": []}
    for version in sorted({r["model_version"] for r in rows}):
        card["by_version"][version] = _summary(
            [r for r in rows if r["model_version"] == version], names, n_boot, seed)
    for month in sorted({r["made"][:7] for r in rows}):
        card["by_month"][month] = _summary([r for r in rows if r["made"][:7] == month], names,
                                           n_boot, seed)
    for low, high, label in LEAD_BUCKETS:
        bucket = [r for r in rows if low <= r["lead_days"] < high]
        if bucket:
            card["by_lead"][label] = _summary(bucket, names, n_boot, seed)
    if rows:
        p_any = np.array([1 - r["probs"][0] for r in rows])
        y_any = np.array([r["level"] >= 1 for r in rows], float)
        card["reliability"] = calibration.reliability(p_any, y_any, bins=min(10, len(rows)))
    card["misses"] = [
        {key: r[key] for key in ("seq", "trigger_id", "partner", "intel_type", "model_version",
                                 "made", "level")}
        | {"p_any": round(1 - r["probs"][0], 4), "p_observed": round(r["probs"][r["level"]], 4)}
        for r in rows if is_miss(r["probs"], r["level"])]
    return card


def reliability_png(card: Mapping[str, Any]) -> bytes:
    """The live record's reliability diagram of P(any restriction)."""
    curves = {"live record": card["reliability"]} if card.get("reliability") else {}
    return calibration.plot_reliability(
        curves, title=f"Live record: P(any restriction), {card['overall']['n']} forecasts")
