"""Simple forecasters the hierarchical model must beat, scored on the same folds.

Each baseline is `fit_predict(train, test) -> (len(test), 4)` level probabilities, from the
training episodes only (pure numpy/scipy: no PyMC).

- ``climatology``: overall level frequencies, add-one (Laplace) smoothed;
- ``partner`` / ``intel_type``: level frequencies per partner (per type), add-one smoothed
  per level, so an unseen partner gets (1, 1, 1, 1) / 4;
- ``no_pooling``: cumulative-logit (proportional odds) regression on the model's predictors
  (partner, intel_type, trigger_type, severity, alignment) with independent fixed effects:
  no hierarchy, no learnt scales; a fixed weak Normal(0, 2.5) penalty on every effect
  (MAP by L-BFGS) keeps the MLE finite for groups with no restriction at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from forecasting.model.arithmetic import (
    CENTERS,
    LEVELS,
    level_log_probability,
    level_probabilities,
)

N_LEVELS = len(LEVELS)
NO_POOLING_PRIOR_SD = 2.5


def _counts(levels: np.ndarray, groups: np.ndarray | None = None, n_groups: int = 1) -> np.ndarray:
    groups = np.zeros(len(levels), dtype=np.int64) if groups is None else groups
    out = np.zeros((n_groups, N_LEVELS))
    np.add.at(out, (groups, np.asarray(levels, dtype=np.int64)), 1.0)
    return out


def climatology(train: pd.DataFrame, test: pd.DataFrame, alpha: float = 1.0) -> np.ndarray:
    counts = _counts(train["level"].to_numpy())[0] + alpha
    return np.tile(counts / counts.sum(), (len(test), 1))


def _per_group(column: str, alpha: float = 1.0) -> Callable:
    def fit_predict(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        codes = pd.Index(pd.unique(pd.concat([train[column], test[column]])))
        counts = _counts(train["level"].to_numpy(), codes.get_indexer(train[column]), len(codes))
        counts += alpha
        probs = counts / counts.sum(axis=1, keepdims=True)
        return probs[codes.get_indexer(test[column])]

    fit_predict.__name__ = f"per_{column}"
    return fit_predict


def _design(frame: pd.DataFrame, vocab: dict[str, pd.Index]) -> np.ndarray:
    blocks = []
    for column, codes in vocab.items():
        block = np.zeros((len(frame), len(codes)))
        idx = codes.get_indexer(frame[column])
        known = idx >= 0  # a code unseen in training gets the reference (all-zero) effect
        block[np.flatnonzero(known), idx[known]] = 1.0
        blocks.append(block)
    for covariate, centre in CENTERS.items():  # centred as the model centres them
        blocks.append((frame[covariate].to_numpy(float) - centre)[:, None])
    return np.hstack(blocks)


def _cutpoints(theta: np.ndarray) -> np.ndarray:
    return np.cumsum(np.concatenate([theta[:1], np.exp(theta[1:3])]))


def no_pooling(train: pd.DataFrame, test: pd.DataFrame,
               prior_sd: float = NO_POOLING_PRIOR_SD) -> np.ndarray:
    """Proportional-odds logistic regression with independent fixed effects (MAP)."""
    vocab = {c: pd.Index(sorted(pd.unique(train[c])))
             for c in ("partner", "intel_type", "trigger_type")}
    x = _design(train, vocab)
    y = train["level"].to_numpy(np.int64)
    shares = np.clip(_counts(y)[0].cumsum()[:3] / len(y), 0.02, 0.98)
    c0 = np.log(shares / (1 - shares))
    theta0 = np.concatenate([[c0[0]], np.log(np.maximum(np.diff(c0), 0.1)), np.zeros(x.shape[1])])

    def neg_log_post(theta):
        cut, beta = _cutpoints(theta), theta[3:]
        lp = level_log_probability(x @ beta, cut, y)
        return -(lp.sum() - 0.5 * np.sum(beta**2) / prior_sd**2)

    res = minimize(neg_log_post, theta0, method="L-BFGS-B", options={"maxiter": 2000})
    cut, beta = _cutpoints(res.x), res.x[3:]
    return np.clip(level_probabilities(_design(test, vocab) @ beta, cut), 1e-12, 1.0)


BASELINES: dict[str, Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]] = {
    "climatology": climatology,
    "partner": _per_group("partner"),
    "intel_type": _per_group("intel_type"),
    "no_pooling": no_pooling,
}
