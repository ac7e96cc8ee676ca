"""Proper scoring rules for ordinal forecasts, and paired bootstrap comparisons (pure numpy).

Every score is a loss (lower is better), per episode:

- ``brier``: multi-category Brier score, sum_k (p_k - 1{y = k})^2, in [0, 2];
- ``log``: -log p_y (natural log), in [0, inf);
- ``rps``: ranked probability score, sum_k (P(Y <= k) - 1{y <= k})^2 over the 4 levels
  (the last term is always 0), in [0, 3]; unlike Brier it rewards putting mass near y;
- ``brier_any`` / ``log_any``: the same two on "any restriction" (level >= 1). The RPS of a
  binary outcome is its Brier score, so there is no ``rps_any``.

The Brier, binary log and RPS formulas come from `scoringrules` (one-hot encoded, because its
category codes are 1-based and silently accept 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_LEVELS = 4
SCORES = ("brier", "log", "rps", "brier_any", "log_any")
# log(0) would make one confident miss dominate every mean; probabilities are floored here
PROB_FLOOR = 1e-9


def _check(probs: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=float)
    levels = np.asarray(levels)
    if probs.ndim != 2 or probs.shape[1] != N_LEVELS:
        raise ValueError(f"probs must have shape (n, {N_LEVELS}), got {probs.shape}")
    if levels.shape != (probs.shape[0],):
        raise ValueError(f"levels must have shape ({probs.shape[0]},), got {levels.shape}")
    if not np.isin(levels, np.arange(N_LEVELS)).all():
        raise ValueError(f"levels must be whole numbers 0-{N_LEVELS - 1}")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6) or (probs < -1e-12).any():
        raise ValueError("every row of probs must be a probability vector (>= 0, sums to 1)")
    return np.clip(probs, 0.0, 1.0), levels.astype(np.int64)


def score_episodes(probs: np.ndarray, levels: np.ndarray) -> pd.DataFrame:
    """One row per episode, one column per score in SCORES (losses: lower is better)."""
    # imported here: scoringrules compiles its numba kernels on import (about 3 s), and the
    # ledger's error classes put this module on every CLI command's and web worker's path
    import scoringrules as sr

    probs, levels = _check(probs, levels)
    onehot = np.eye(N_LEVELS)[levels]
    p_any = np.clip(1.0 - probs[:, 0], 0.0, 1.0)
    y_any = (levels >= 1).astype(float)
    p_floor = np.clip(p_any, PROB_FLOOR, 1 - PROB_FLOOR)
    return pd.DataFrame({
        "brier": np.asarray(sr.brier_score(onehot, probs)).sum(axis=1),
        "log": -np.log(np.maximum(probs[np.arange(len(levels)), levels], PROB_FLOOR)),
        "rps": np.asarray(sr.rps_score(onehot, probs, onehot=True)),
        "brier_any": np.asarray(sr.brier_score(y_any, p_any)),
        "log_any": np.asarray(sr.log_score(y_any, p_floor)),
    })


def paired_bootstrap(diff: np.ndarray, clusters: np.ndarray | None = None, n_boot: int = 2000,
                     ci: float = 0.9, seed: int = 0) -> dict:
    """Mean of paired per-episode differences with a percentile bootstrap interval.

    `clusters` (e.g. trigger ids) resamples whole clusters: episodes of one trigger share
    their news and their coder, so resampling them one by one would make intervals too narrow.
    `p_below_zero` is the bootstrap share of means below zero (for model - baseline on a loss:
    how often the model wins).
    """
    diff = np.asarray(diff, dtype=float)
    if diff.size == 0:
        raise ValueError("no differences to bootstrap")
    rng = np.random.default_rng(seed)
    if clusters is None:
        clusters = np.arange(diff.size)
    codes, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=diff, minlength=len(codes))
    sizes = np.bincount(inverse, minlength=len(codes)).astype(float)
    pick = rng.integers(0, len(codes), (n_boot, len(codes)))
    # ratio of resampled totals: the mean over the episodes of the resampled clusters
    means = sums[pick].sum(axis=1) / sizes[pick].sum(axis=1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return {"mean": float(diff.mean()), "lo": float(lo), "hi": float(hi), "ci": ci,
            "p_below_zero": float((means < 0).mean()), "n": int(diff.size),
            "clusters": int(len(codes)), "n_boot": int(n_boot)}
