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
from forecasting.evaluation.backtest import trigger_dates
from forecasting.evaluation.scoring import paired_bootstrap
from forecasting.model.trigger_rates import HALF_LIFE_YEARS, coded_triggers, fit_trigger_rates

log = logging.getLogger(__name__)

HALF_LIVES: tuple[float | None, ...] = (None, 20.0, 10.0, 5.0, 3.0, 2.0)
HORIZONS = (6, 12)
BASELINE = "constant_rate"
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
    """`run_rate_backtest` summarised, with its settings."""
    table = run_rate_backtest(episodes, codebook, **options)
    report = summarise_rate_backtest(table)
    report["settings"] = {k: v for k, v in options.items() if k != "half_lives"} | {
        "half_lives": [_label(h) for h in options.get("half_lives", HALF_LIVES)],
        "baseline": BASELINE}
    report["coded_triggers"] = int(episodes["trigger_id"].nunique())
    report["served"] = _label(HALF_LIFE_YEARS)  # what every fit uses (HALF_LIFE_YEARS)
    return report
