"""Rolling-origin backtest of the trigger arrival model (forecasting.model.trigger_rates).

At every origin the arrival model is fitted on the triggers coded before it (its window ending
at the origin: nothing was coded between the last of them and the origin) and predicts how
many triggers of each type, and in all, arrive in the next H months. Scored by the log score
of the observed count (-log of the posterior predictive probability: a Poisson mixture over
the draws) and the CRPS (scoringrules), against a naive constant-rate baseline: each type's
own rate over the training window, (count + 0.5) / months, as a plug-in Poisson with no
uncertainty. The same origins score several half-lives of the time weights, which is how
`HALF_LIFE_YEARS` was chosen (docs/horizons.md).

Unlike the restriction backtest's folds (forecasting.evaluation.backtest.make_folds), a
window with no trigger is a test case here (a count of zero is an outcome to forecast), so
origins are placed on the calendar, not on the test episodes; they are dated by the same
trigger dates (`trigger_dates`: a trigger's earliest).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scoringrules as sr
from scipy.special import logsumexp
from scipy.stats import poisson

from forecasting.domain.codebook import Codebook
from forecasting.evaluation.backtest import BACKTEST_SAMPLER, trigger_dates
from forecasting.evaluation.scoring import PROB_FLOOR, paired_bootstrap
from forecasting.model.priors import PriorSet
from forecasting.model.trigger_rates import (
    DAYS_PER_MONTH,
    DRAW_DIM,
    EXPOSURE_BY_TYPE,
    HALF_LIFE_YEARS,
    coded_triggers,
    fit_trigger_rates,
)
from forecasting.settings import SamplerSettings

log = logging.getLogger(__name__)

HALF_LIVES: tuple[float | None, ...] = (None, 20.0, 10.0, 5.0, 3.0, 2.0)
HORIZONS = (6, 12)
BASELINE = "constant_rate"
MODEL = "model"
DRAWS = 2000  # per fold: the mixture's log score is stable to ~0.001 at this many


def _label(half_life: float | None) -> str:
    return "equal_weights" if half_life is None else f"half_life_{half_life:g}y"


def origins(first: pd.Timestamp, end: pd.Timestamp, dates: np.ndarray, step_months: int,
            min_triggers: int, horizon: int) -> list[pd.Timestamp]:
    """Every `step_months` from the day after the `min_triggers`-th trigger, while the
    horizon still ends within the coded window."""
    dates = np.sort(dates)
    if len(dates) < min_triggers:
        return []
    origin = pd.Timestamp(dates[min_triggers - 1]).normalize() + pd.Timedelta(days=1)
    out = []
    while origin + pd.DateOffset(months=horizon) <= end:
        if origin > first:
            out.append(origin)
        origin = origin + pd.DateOffset(months=step_months)
    return out


def _model_scores(rate: np.ndarray, months: int, observed: np.ndarray,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """rate (draws, K) per month; observed (K,) -> per-type and total log scores, CRPS,
    predictive means and 90% intervals."""
    mean = rate * months  # (S, K)
    cols = np.concatenate([mean, mean.sum(axis=1, keepdims=True)], axis=1)
    obs = np.append(observed, observed.sum())
    log_p = logsumexp(poisson.logpmf(obs[None, :], cols), axis=0) - np.log(len(cols))
    counts = rng.poisson(cols)  # predictive draws of the counts
    return {"log": -log_p, "crps": np.asarray(sr.crps_ensemble(obs, counts.T)),
            "mean": cols.mean(axis=0), "lo": np.quantile(counts, 0.05, axis=0),
            "hi": np.quantile(counts, 0.95, axis=0), "observed": obs}


def _baseline_scores(counts: np.ndarray, window_months: float, months: int,
                     observed: np.ndarray) -> dict[str, np.ndarray]:
    mean = (counts + 0.5) / window_months * months
    mean = np.append(mean, mean.sum())
    obs = np.append(observed, observed.sum())
    return {"log": np.asarray(sr.logs_poisson(obs, mean)),
            "crps": np.asarray(sr.crps_poisson(obs, mean)), "mean": mean,
            "lo": poisson.ppf(0.05, mean), "hi": poisson.ppf(0.95, mean), "observed": obs}


def run_rate_backtest(episodes: pd.DataFrame, codebook: Codebook, *, step_months: int = 12,
                      horizons: Sequence[int] = HORIZONS, min_triggers: int = 15,
                      half_lives: Iterable[float | None] = HALF_LIVES, draws: int = DRAWS,
                      seed: int = 0) -> pd.DataFrame:
    """One row per (origin, horizon, trigger type or "all", forecaster): observed count,
    predictive mean and 90% interval, log score and CRPS."""
    frame = episodes.assign(trigger_date=trigger_dates(episodes))
    everything = coded_triggers(frame)
    types = list(codebook.trigger_type_codes)
    rng = np.random.default_rng(seed)
    half_lives = list(half_lives)
    rows = []
    for months in horizons:
        for origin in origins(everything.start, everything.end,
                              everything.table["date"].to_numpy(), step_months, min_triggers,
                              months):
            train = frame[frame["trigger_date"] < origin]
            end = origin + pd.DateOffset(months=months)
            test = everything.table[(everything.table["date"] >= origin)
                                    & (everything.table["date"] < end)]
            observed = (test["trigger_type"].value_counts()
                        .reindex(types, fill_value=0).to_numpy(float))
            scored = {}
            for half_life in half_lives:
                ds = fit_trigger_rates(train, codebook, start=everything.start, end=origin,
                                       half_life_years=half_life, draws=draws, seed=seed)
                rate = ds["rate"].transpose("arrival_draw", "trigger_type").values
                scored[_label(half_life)] = _model_scores(rate, months, observed, rng)
            plain = fit_trigger_rates(train, codebook, start=everything.start, end=origin,
                                      half_life_years=None, draws=10, seed=seed)
            scored[BASELINE] = _baseline_scores(plain["trigger_count"].values,
                                                plain.attrs["window_months"], months, observed)
            for name, s in scored.items():
                for j, kind in enumerate([*types, "all"]):
                    rows.append({"origin": origin.date().isoformat(), "months": months,
                                 "trigger_type": kind, "forecaster": name,
                                 "observed": int(s["observed"][j]), "mean": float(s["mean"][j]),
                                 "lo": float(s["lo"][j]), "hi": float(s["hi"][j]),
                                 "log": float(s["log"][j]), "crps": float(s["crps"][j])})
            log.info("rate backtest: origin %s, %d months, %d triggers observed",
                     origin.date(), months, int(observed.sum()))
    if not rows:
        raise ValueError(f"no backtest origins: {len(everything.table)} coded triggers, "
                         f"min_triggers {min_triggers}; lower --min-triggers")
    return pd.DataFrame(rows)


def summarise_rate_backtest(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per horizon and forecaster: mean log score and CRPS per type and for the total, the
    total's 90% interval coverage; each model's difference to the baseline (per-type log
    score, bootstrapped over origins); and the half-life with the best per-type log score
    averaged over the horizons."""
    out: dict = {"horizons": {}, "origins": int(table["origin"].nunique())}
    per_type_all = {}
    for months, part in table.groupby("months"):
        by_type = part[part["trigger_type"] != "all"]
        total = part[part["trigger_type"] == "all"]
        forecasters = {}
        base = by_type[by_type["forecaster"] == BASELINE].set_index(["origin", "trigger_type"])
        for name, rows in by_type.groupby("forecaster", sort=False):
            t = total[total["forecaster"] == name]
            entry = {"log_per_type": float(rows["log"].mean()),
                     "crps_per_type": float(rows["crps"].mean()),
                     "log_total": float(t["log"].mean()), "crps_total": float(t["crps"].mean()),
                     "coverage90_total": float(((t["observed"] >= t["lo"])
                                                & (t["observed"] <= t["hi"])).mean())}
            if name != BASELINE:
                own = rows.set_index(["origin", "trigger_type"])
                diff = (own["log"] - base.loc[own.index, "log"]).to_numpy()
                entry["log_vs_baseline"] = paired_bootstrap(
                    diff, clusters=own.index.get_level_values("origin").to_numpy(),
                    n_boot=n_boot, seed=seed)
            forecasters[name] = entry
            per_type_all.setdefault(name, []).append(entry["log_per_type"])
        out["horizons"][str(months)] = {
            "origins": int(part["origin"].nunique()), "forecasters": forecasters,
            "per_origin": total[["origin", "forecaster", "observed", "mean", "lo", "hi"]]
            .to_dict("records")}
    models = {k: float(np.mean(v)) for k, v in per_type_all.items() if k != BASELINE}
    out["chosen"] = min(models, key=models.get) if models else None
    out["mean_log_per_type"] = {k: float(np.mean(v)) for k, v in per_type_all.items()}
    return out


def rate_backtest_report(episodes: pd.DataFrame, codebook: Codebook, **options) -> dict:
    """`run_rate_backtest` summarised, with its settings, and the exposure backtest
    (`run_exposure_backtest`, the served half-life) under "exposure"."""
    table = run_rate_backtest(episodes, codebook, **options)
    report = summarise_rate_backtest(table)
    report["settings"] = {k: v for k, v in options.items() if k != "half_lives"} | {
        "half_lives": [_label(h) for h in options.get("half_lives", HALF_LIVES)],
        "baseline": BASELINE}
    report["coded_triggers"] = int(episodes["trigger_id"].nunique())
    report["served"] = _label(HALF_LIFE_YEARS)  # what every fit uses (HALF_LIFE_YEARS)
    report["exposure"] = summarise_exposure_backtest(run_exposure_backtest(
        episodes, codebook, **{k: options[k] for k in ("step_months", "min_triggers")
                               if k in options}))
    report["exposure"]["served"] = EXPOSURE_FORECASTERS[int(EXPOSURE_BY_TYPE)]
    return report


# -- exposure: which partners a trigger puts at stake ----------------------------------------

EXPOSURE_FORECASTERS = ("by_partner", "by_partner_and_type")


def _bernoulli_scores(p: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Log score (floored as scoring.py's) and Brier score of probabilities `p` for 0/1 `y`."""
    p = np.clip(np.asarray(p, float), PROB_FLOOR, 1 - PROB_FLOOR)
    y = np.asarray(y, float)
    return {"log": np.asarray(sr.log_score(y, p)), "brier": np.asarray(sr.brier_score(y, p))}


def run_exposure_backtest(episodes: pd.DataFrame, codebook: Codebook, *, step_months: int = 12,
                          min_triggers: int = 15, half_life: float | None = HALF_LIFE_YEARS,
                          draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """Leave-future-out check of the exposure: at every origin (as `run_rate_backtest`'s, its
    test window `step_months` long so that every trigger is scored once) the arrival model is
    fitted on the earlier triggers, and for each later trigger of a known type and each
    partner forecasts whether the trigger is coded on the partner: P = the posterior mean of
    q_x (one exposure per partner) or of q_{x,k} (by trigger type). One row per (trigger,
    partner) with both forecasts and their log and Brier scores."""
    frame = episodes.assign(trigger_date=trigger_dates(episodes))
    everything = coded_triggers(frame)
    partners = list(codebook.partner_codes)
    rows = []
    for origin in origins(everything.start, everything.end, everything.table["date"].to_numpy(),
                          step_months, min_triggers, step_months):
        end = origin + pd.DateOffset(months=step_months)
        test = everything.table[(everything.table["date"] >= origin)
                                & (everything.table["date"] < end)
                                & everything.table["trigger_type"].isin(
                                    codebook.trigger_type_codes)]
        if test.empty:
            continue
        ds = fit_trigger_rates(frame[frame["trigger_date"] < origin], codebook,
                               start=everything.start, end=origin, half_life_years=half_life,
                               draws=draws, seed=seed, exposure_by_type=True)
        overall = ds["exposure"].mean(DRAW_DIM).to_series()
        by_type = ds["exposure_by_type"].mean(DRAW_DIM).to_pandas()
        coded = set(map(tuple, everything.pairs[["trigger_id", "partner"]].to_numpy()))
        for trigger in test.itertuples():
            for partner in partners:
                rows.append({"origin": origin.date().isoformat(), "trigger_id": trigger.trigger_id,
                             "trigger_type": trigger.trigger_type, "partner": partner,
                             "observed": int((trigger.trigger_id, partner) in coded),
                             "by_partner": float(overall[partner]),
                             "by_partner_and_type": float(
                                 by_type.loc[partner, trigger.trigger_type])})
    if not rows:
        raise ValueError(f"no exposure backtest origins: {len(everything.table)} coded "
                         f"triggers, min_triggers {min_triggers}; lower --min-triggers")
    table = pd.DataFrame(rows)
    for name in EXPOSURE_FORECASTERS:
        for score, values in _bernoulli_scores(table[name], table["observed"]).items():
            table[f"{name}_{score}"] = values
    return table


def summarise_exposure_backtest(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean log and Brier score per (trigger, partner) of each exposure forecaster, and by
    type minus one per partner (bootstrapped over triggers: a trigger's partners share it)."""
    out = {"origins": int(table["origin"].nunique()),
           "triggers": int(table["trigger_id"].nunique()),
           "pairs": int(len(table)), "coded_pairs": int(table["observed"].sum()),
           "forecasters": {name: {"log": float(table[f"{name}_log"].mean()),
                                  "brier": float(table[f"{name}_brier"].mean())}
                           for name in EXPOSURE_FORECASTERS}}
    first, second = EXPOSURE_FORECASTERS
    for score in ("log", "brier"):
        out[f"{score}_by_type_minus_by_partner"] = paired_bootstrap(
            (table[f"{second}_{score}"] - table[f"{first}_{score}"]).to_numpy(),
            clusters=table["trigger_id"].to_numpy(), n_boot=n_boot, seed=seed)
    return out


# -- end to end: P(at least one restriction within H) ----------------------------------------

CLIMATOLOGY = "climatology"
# Reliability bins of the forecast P(within H): most cells are near zero
RELIABILITY_EDGES = (0.0, 0.01, 0.03, 0.1, 1.0)


def _origin_engine(train: pd.DataFrame, codebook: Codebook, priors: PriorSet,
                   sampler: SamplerSettings, label: str):
    """The restriction model fitted on `train` (no extras), as a forecast engine."""
    from forecasting.domain.cells import aggregate
    from forecasting.model.fitting import fit
    from forecasting.model.pymc_model import build_model
    from forecasting.serving.forecasts import ForecastEngine

    tree = fit(build_model(aggregate(train, codebook), priors), sampler, extras=False)
    return ForecastEngine(tree, {"version": label}, codebook, cache=False)


def _restricted_cells(frame: pd.DataFrame) -> pd.Series:
    """Per (partner, intel_type): how many triggers ended in a restriction (level >= 1)."""
    hits = frame[frame["level"] >= 1]
    return hits.groupby(["partner", "intel_type"])["trigger_id"].nunique()


def run_horizon_backtest(episodes: pd.DataFrame, codebook: Codebook, priors: PriorSet, *,
                         step_months: int = 12, horizons: Sequence[int] = HORIZONS,
                         min_triggers: int = 15, sampler: SamplerSettings | None = None,
                         seed: int = 0, progress=None) -> pd.DataFrame:
    """The served quantity backtested: at every origin (as `run_rate_backtest`'s) the
    restriction model (`sampler`, default the restriction backtest's) and the arrival model
    (the served settings) are fitted on the episodes before it, and every partner x type cell
    gets P(at least one restriction within H) as `forecast query --horizon H` computes it
    (forecasting.serving.horizons.horizon_draws, every trigger type, severity and alignment).
    Observed: a restriction (level >= 1) of the cell coded on a trigger in [origin, origin
    + H). The climatology baseline: the cell's own restrictions over the training window,
    (count + 0.5) / months, as a Poisson rate. One row per (origin, H, cell): both forecasts,
    the model's 90% interval of P, their log and Brier scores, and the origin's predictive
    90% interval of how many cells restrict (per draw, cells drawn independently)."""
    from forecasting.serving.horizons import horizon_draws

    sampler = sampler or BACKTEST_SAMPLER
    frame = episodes.assign(trigger_date=trigger_dates(episodes))
    everything = coded_triggers(frame)
    dates = everything.table["date"].to_numpy()
    by_origin: dict[pd.Timestamp, list[int]] = {}
    for months in horizons:
        for origin in origins(everything.start, everything.end, dates, step_months,
                              min_triggers, months):
            by_origin.setdefault(origin, []).append(months)
    if not by_origin:
        raise ValueError(f"no backtest origins: {len(everything.table)} coded triggers, "
                         f"min_triggers {min_triggers}; lower --min-triggers")
    rng = np.random.default_rng(seed)
    rows = []
    for done, (origin, wanted) in enumerate(sorted(by_origin.items())):
        train = frame[frame["trigger_date"] < origin]
        engine = _origin_engine(train, codebook, priors, sampler, f"origin-{origin.date()}")
        arrivals = fit_trigger_rates(train, codebook, start=everything.start, end=origin,
                                     seed=seed)
        cells = [(p, t) for p in engine.partners for t in engine.intel_types]
        hazard = np.stack([horizon_draws(engine, arrivals, p, t)["hazard"].sum(axis=0)
                           for p, t in cells])  # (cells, S)
        past = _restricted_cells(train).reindex(cells, fill_value=0).to_numpy(float)
        window = (origin - everything.start).days / DAYS_PER_MONTH
        for months in wanted:
            test = frame[(frame["trigger_date"] >= origin)
                         & (frame["trigger_date"] < origin + pd.DateOffset(months=months))]
            observed = (_restricted_cells(test).reindex(cells, fill_value=0) > 0).to_numpy()
            p = -np.expm1(-months * hazard)  # (cells, S): `within` of each cell
            count = (rng.random(p.shape) < p).sum(axis=0)  # restricting cells, per draw
            count_lo, count_hi = np.quantile(count, [0.05, 0.95])
            model = p.mean(axis=1)
            lo, hi = np.quantile(p, [0.05, 0.95], axis=1)
            climate = -np.expm1(-months * (past + 0.5) / window)
            scores = {name: _bernoulli_scores(values, observed)
                      for name, values in ((MODEL, model), (CLIMATOLOGY, climate))}
            for i, (partner, intel_type) in enumerate(cells):
                rows.append({"origin": origin.date().isoformat(), "months": months,
                             "partner": partner, "intel_type": intel_type,
                             "observed": int(observed[i]), MODEL: float(model[i]),
                             "lo": float(lo[i]), "hi": float(hi[i]),
                             CLIMATOLOGY: float(climate[i]),
                             **{f"{name}_{score}": float(values[i])
                                for name, s in scores.items() for score, values in s.items()},
                             "count_lo": float(count_lo), "count_hi": float(count_hi)})
        log.info("horizon backtest: origin %s (%d of %d)", origin.date(), done + 1,
                 len(by_origin))
        if progress is not None:
            progress(done + 1, len(by_origin))
    return pd.DataFrame(rows)


def summarise_horizon_backtest(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per horizon: each forecaster's mean log and Brier score per cell, the model minus the
    climatology (bootstrapped over origins: an origin's cells share its triggers), the
    reliability of P by bins, and the coverage of each origin's 90% interval of how many
    cells restrict."""
    out: dict = {"horizons": {}, "origins": int(table["origin"].nunique()),
                 "cells": int(table.groupby("origin").size().iloc[0]) if len(table) else 0}
    for months, part in table.groupby("months"):
        entry = {"origins": int(part["origin"].nunique()),
                 "cases": int(len(part)), "restricted": int(part["observed"].sum()),
                 "forecasters": {name: {"log": float(part[f"{name}_log"].mean()),
                                        "brier": float(part[f"{name}_brier"].mean()),
                                        "expected": float(part[name].sum())}
                                 for name in (MODEL, CLIMATOLOGY)}}
        for score in ("log", "brier"):
            entry[f"{score}_model_minus_climatology"] = paired_bootstrap(
                (part[f"{MODEL}_{score}"] - part[f"{CLIMATOLOGY}_{score}"]).to_numpy(),
                clusters=part["origin"].to_numpy(), n_boot=n_boot, seed=seed)
        bins = pd.cut(part[MODEL], RELIABILITY_EDGES, include_lowest=True)
        entry["reliability"] = [
            {"bin": f"{b.left:g}-{b.right:g}", "cases": int(len(g)),
             "mean_forecast": float(g[MODEL].mean()) if len(g) else None,
             "observed_share": float(g["observed"].mean()) if len(g) else None}
            for b, g in part.groupby(bins, observed=False)]
        per_origin = part.groupby("origin").agg(
            observed=("observed", "sum"), expected=(MODEL, "sum"),
            lo=("count_lo", "first"), hi=("count_hi", "first")).reset_index()
        entry["count_coverage90"] = float(((per_origin["observed"] >= per_origin["lo"])
                                           & (per_origin["observed"] <= per_origin["hi"])).mean())
        entry["per_origin"] = per_origin.to_dict("records")
        out["horizons"][str(months)] = entry
    return out
