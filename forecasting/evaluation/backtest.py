"""Rolling-origin, leave-future-out backtests of the hierarchical model against baselines.

For every origin date, every forecaster is fitted on the episodes whose trigger came before
the origin and forecasts the episodes whose trigger falls in [origin, origin + horizon). Folds
are defined once and shared by every forecaster, so per-episode score differences are paired.
Exact refits (no approximate LFO): the model is small and nutpie reuses the compiled graph
through `with_data` when the parameterization does not change between folds.

The unit is the trigger: a trigger's episodes are all on one side of every origin (its date
is its first episode's), the model forecasts held-out episodes as a *new* trigger's (its
event and reaction effects integrated out at each draw's sigma_event and sigma_reaction,
never a training trigger's effects), and score differences are bootstrapped over triggers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from forecasting.domain.codebook import Codebook
from forecasting.evaluation import calibration
from forecasting.evaluation._diagnostics import quick_diagnostics
from forecasting.evaluation.baselines import BASELINES
from forecasting.evaluation.scoring import SCORES, paired_bootstrap, score_episodes
from forecasting.model.arithmetic import (
    CLUSTER_SCALES,
    FORECAST_VARIABLES,
    cluster_sd,
    integrate_clusters,
    linear_predictor,
)
from forecasting.model.priors import PriorSet
from forecasting.settings import SamplerSettings

log = logging.getLogger(__name__)
MODEL = "hierarchical"
# Small but honest: 4 chains for a fair posterior mean, few draws (a fold's forecast is a mean
# over draws; its Monte Carlo error is far below the score differences being compared).
BACKTEST_SAMPLER = SamplerSettings(sampler="nutpie", chains=4, draws=400, tune=400,
                                   target_accept=0.9, seed=20261129)


@dataclass(frozen=True)
class FoldSpec:
    step_months: int = 24
    horizon_months: int = 24
    min_train: int = 200
    first_origin: str | None = None  # ISO date; default: the first origin with min_train episodes


@dataclass(frozen=True)
class Fold:
    origin: pd.Timestamp
    end: pd.Timestamp
    train: np.ndarray  # row positions into the frame
    test: np.ndarray


def trigger_dates(frame: pd.DataFrame) -> np.ndarray:
    """Each episode's trigger date, the same for every episode of one trigger (its earliest,
    should a trigger's episodes disagree), so that no fold splits a trigger."""
    dates = pd.to_datetime(frame["trigger_date"])
    if "trigger_id" in frame:
        dates = dates.groupby(frame["trigger_id"].to_numpy()).transform("min")
    return dates.to_numpy()


def make_folds(frame: pd.DataFrame, spec: FoldSpec = FoldSpec()) -> list[Fold]:
    """Origins every `step_months` from the first date with `min_train` earlier episodes.

    Episodes are placed by their trigger's date (`trigger_dates`): a trigger is either
    wholly before an origin (training) or wholly after it."""
    if spec.step_months < 1 or spec.horizon_months < 1 or spec.min_train < 1:
        raise ValueError("step_months, horizon_months and min_train must be positive")
    dates = trigger_dates(frame)
    if len(dates) == 0:
        return []
    order = np.sort(dates)
    if spec.first_origin is not None:
        origin = pd.Timestamp(spec.first_origin)
    else:
        if len(order) <= spec.min_train:
            return []
        # the first day after the min_train-th earliest trigger date
        origin = pd.Timestamp(order[spec.min_train - 1]).normalize() + pd.Timedelta(days=1)
    last = pd.Timestamp(order[-1])
    folds = []
    while origin <= last:
        end = origin + pd.DateOffset(months=spec.horizon_months)
        train = np.flatnonzero(dates < origin.to_datetime64())
        test = np.flatnonzero((dates >= origin.to_datetime64()) & (dates < end.to_datetime64()))
        if len(train) >= spec.min_train and len(test) > 0:
            folds.append(Fold(origin=origin, end=end, train=train, test=test))
        origin = origin + pd.DateOffset(months=spec.step_months)
    return folds


def predictive_probs(posterior: xr.Dataset, frame: pd.DataFrame,
                     coords: Mapping[str, list]) -> np.ndarray:
    """Posterior predictive P(level = k) of each episode as a new trigger's (rows x 4): per
    draw, the cluster terms integrated out at its sigma_event and sigma_reaction (absent in a
    model without clusters: none), then the mean over draws.

    Whatever the episodes' trigger ids, no coded trigger's event or reaction effect is used:
    held-out triggers are new to the fit."""
    p = pd.Index(coords["partner"]).get_indexer(frame["partner"])
    t = pd.Index(coords["intel_type"]).get_indexer(frame["intel_type"])
    tt = pd.Index(coords["trigger_type"]).get_indexer(frame["trigger_type"])
    if (p < 0).any() or (t < 0).any() or (tt < 0).any():
        raise ValueError("episodes with codes outside the model's coords")
    params = {name: posterior[name].values for name in FORECAST_VARIABLES}
    eta = linear_predictor(params, p, t, tt, frame["severity"].to_numpy(np.int64),
                           frame["alignment"].to_numpy(np.int64))  # (chain, draw, rows)
    scales = [posterior[name].values if name in posterior else np.zeros(eta.shape[:-1])
              for name in CLUSTER_SCALES]
    sd = cluster_sd(*scales)[..., None]  # (chain, draw, 1)
    probs = integrate_clusters(eta, params["cutpoints"][..., None, :], sd)
    return probs.mean(axis=(0, 1))


def hierarchical_forecaster(codebook: Codebook, priors: PriorSet,
                            sampler: SamplerSettings = BACKTEST_SAMPLER,
                            parameterization: dict | str | None = None) -> Callable:
    """fit_predict for the served model: fit on `train` (no extras), forecast `test` as new
    triggers (`predictive_probs`)."""
    from forecasting.domain.cells import aggregate
    from forecasting.model.fitting import fit
    from forecasting.model.pymc_model import build_model

    def fit_predict(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        cells = aggregate(train, codebook)
        model = build_model(cells, priors, parameterization)
        tree = fit(model, sampler, extras=False)
        fit_predict.last_diagnostics = quick_diagnostics(tree)
        return predictive_probs(tree["posterior"].to_dataset(), test, cells.coords)

    fit_predict.last_diagnostics = {}
    return fit_predict


def run_backtest(frame: pd.DataFrame, forecasters: Mapping[str, Callable],
                 spec: FoldSpec = FoldSpec(), progress: Callable | None = None) -> pd.DataFrame:
    """Every forecaster on every fold: one row per (fold, test episode) with each forecaster's
    level probabilities (`<name>_p0..p3`), its scores (`<name>_<score>`), and timing per fold."""
    frame = frame.reset_index(drop=True)
    folds = make_folds(frame, spec)
    if not folds:
        raise ValueError(f"no backtest folds: {len(frame)} episodes, {spec}; lower min_train")
    parts = []
    for i, fold in enumerate(folds):
        train, test = frame.iloc[fold.train], frame.iloc[fold.test]
        out = pd.DataFrame({
            "fold": i, "origin": fold.origin.date().isoformat(), "n_train": len(train),
            "trigger_id": test["trigger_id"].to_numpy() if "trigger_id" in test else fold.test,
            "partner": test["partner"].to_numpy(), "intel_type": test["intel_type"].to_numpy(),
            "level": test["level"].to_numpy(np.int64)})
        for name, fit_predict in forecasters.items():
            t0 = time.perf_counter()
            probs = np.asarray(fit_predict(train, test), float)
            seconds = time.perf_counter() - t0
            for k in range(4):
                out[f"{name}_p{k}"] = probs[:, k]
            for score, values in score_episodes(probs, out["level"].to_numpy()).items():
                out[f"{name}_{score}"] = values.to_numpy()
            out[f"{name}_seconds"] = seconds
            diag = getattr(fit_predict, "last_diagnostics", None)
            if diag:
                for key, value in diag.items():
                    out[f"{name}_{key}"] = value
        log.info("fold %d (origin %s): %d train, %d test", i, fold.origin.date(), len(train),
                 len(test))
        if progress:
            progress(i + 1, len(folds))
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def summarise_backtest(table: pd.DataFrame, model: str = MODEL,
                       baselines: list[str] | None = None, n_boot: int = 2000, ci: float = 0.9,
                       seed: int = 0) -> dict:
    """Mean scores per forecaster; model - baseline differences with trigger-clustered bootstrap
    intervals; calibration of P(any restriction) and the PIT of the ordinal outcome."""
    names = [c.removesuffix("_p0") for c in table.columns if c.endswith("_p0")]
    baselines = [b for b in (baselines or names) if b != model and b in names]
    y_any = (table["level"].to_numpy() >= 1).astype(float)
    clusters = table["trigger_id"].astype(str).to_numpy()
    forecasters = {}
    for name in names:
        probs = table[[f"{name}_p{k}" for k in range(4)]].to_numpy()
        pit = calibration.randomized_pit(probs, table["level"].to_numpy(), seed=seed)
        forecasters[name] = {
            "scores": {s: float(table[f"{name}_{s}"].mean()) for s in SCORES},
            "reliability": calibration.reliability(1 - probs[:, 0], y_any),
            "pit": calibration.pit_summary(pit),
            "mean_forecast_any": float((1 - probs[:, 0]).mean()),
        }
    comparisons = {}
    if model in names:
        for base in baselines:
            comparisons[base] = {
                s: paired_bootstrap(table[f"{model}_{s}"].to_numpy() - table[f"{base}_{s}"].to_numpy(),
                                    clusters, n_boot=n_boot, ci=ci, seed=seed)
                for s in SCORES}
    folds = (table.groupby("fold")
             .agg(origin=("origin", "first"), n_train=("n_train", "first"),
                  n_test=("level", "size"), observed_any=("level", lambda v: float((v >= 1).mean())))
             .reset_index())
    per_fold = {name: table.groupby("fold")[[f"{name}_{s}" for s in SCORES]].mean()
                .rename(columns=lambda c, n=name: c.removeprefix(f"{n}_")).to_dict("index")
                for name in names}
    fold_rows = []
    for row in folds.to_dict("records"):
        row["scores"] = {name: {s: float(v) for s, v in per_fold[name][row["fold"]].items()}
                         for name in names}
        for extra in ("max_rhat", "min_ess_bulk", "divergences", "seconds"):
            col = f"{model}_{extra}"
            if col in table:
                value = table.loc[table["fold"] == row["fold"], col].iloc[0]
                row[f"{model}_{extra}"] = None if pd.isna(value) else float(value)
        fold_rows.append(row)
    return {
        "model": model, "baselines": baselines, "scores": list(SCORES),
        "n_episodes": int(len(table)), "n_folds": int(table["fold"].nunique()),
        "observed_any": float(y_any.mean()),
        "forecasters": forecasters, "comparisons": comparisons, "folds": fold_rows,
        "orientation": "losses: lower is better; differences are model - baseline",
    }


def default_forecasters(codebook: Codebook, priors: PriorSet,
                        sampler: SamplerSettings = BACKTEST_SAMPLER,
                        parameterization: dict | str | None = None) -> dict[str, Callable]:
    return {MODEL: hierarchical_forecaster(codebook, priors, sampler, parameterization),
            **BASELINES}
