"""PSIS-LOO of many observations at once: ArviZ's estimator, batched over the observations.

arviz_stats (1.3) smooths the importance ratios of one observation at a time: sort its
draws, fit a generalised Pareto to the largest (Zhang and Stephens' empirical Bayes fit with
ArviZ's prior on k), replace the tail by the fitted quantiles, normalise; then two
log-sum-exps. The loop in Python over the 636 episodes of the seed data took about 1 s of a
refit (docs/performance.md). Here the sorts, the fit's grid of (m, tail) log1p terms and the
log-sum-exps run on all observations at once; only the fit's few surviving grid weights are
reduced one observation at a time, as ArviZ drops the negligible ones before summing (summing
them as zeros would round differently). Each step keeps ArviZ's arithmetic and order: on the
seed fit the figures are ArviZ's to the last bit (bench/bench_diagnostics.py checks `diagnose`
against its az.loo-based predecessor), and tests/test_psis.py holds them to az.loo to 1e-12.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

_PRIOR_BS = 3  # the fit's prior scale on b and its prior on k (weight 10 at 0.5), as ArviZ
_PRIOR_K = 10
_ROWS_PER_BLOCK = 64  # the fit's (rows, m, tail) temporary stays a few MB


def _logsumexp(a: np.ndarray, b: float | None = None) -> np.ndarray:
    """scipy.special.logsumexp(a, axis=1, b=b) of C-ordered rows by its arithmetic (each row's
    maxima taken out of the sum and counted instead), without its copies of `a`: three of
    them over 8,000 x 636 log likelihoods cost more than the rest of PSIS."""
    a_max = a.max(axis=1, keepdims=True)
    if not np.isfinite(a_max).all():  # scipy's rules for infinite rows
        return logsumexp(a, axis=1, b=b)
    at_max = a == a_max
    terms = np.exp(a - a_max)
    terms[at_max] = 0.0
    if b is None:
        m = at_max.sum(axis=1, keepdims=True, dtype=float)
    else:
        terms *= b
        m = np.where(at_max, b, 0.0).sum(axis=1, keepdims=True)
    s = terms.sum(axis=1, keepdims=True)
    s = np.where(s == 0, s, s / m)
    return (np.log1p(s) + np.log(m) + a_max)[:, 0]


def tail_length(n_draws: int, r_eff: float) -> float:
    """Draws in the smoothed tail (ArviZ's rule; a float, as ArviZ keeps it)."""
    if n_draws * r_eff > 225:
        return np.floor(3 * (n_draws / r_eff) ** 0.5)
    return np.floor(n_draws / 5)


def _gpd_fit(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, sigma) of a generalised Pareto fitted to each row of exceedances sorted ascending
    (arviz_stats' _gpdfit, row by row in its arithmetic)."""
    rows, n = tail.shape  # C order: each row's sums run in the order of a lone row's
    m_est = 30 + int(n**0.5)
    xstar = tail[:, int((n / 4 + 0.5) - 1)]  # first quartile
    grid = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1, dtype=float) - 0.5))
    b = grid[None, :] / (_PRIOR_BS * xstar)[:, None] + (1 / tail[:, -1])[:, None]  # (rows, m)
    k_grid = np.empty_like(b)
    for start in range(0, rows, _ROWS_PER_BLOCK):
        block = slice(start, start + _ROWS_PER_BLOCK)
        with np.errstate(invalid="ignore", divide="ignore"):
            k_grid[block] = np.mean(np.log1p(-b[block, :, None] * tail[block, None, :]), axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        len_scale = n * (np.log(-b / k_grid) - k_grid - 1)
        weights = np.exp(len_scale - logsumexp(len_scale, axis=1, keepdims=True))
    b_post = np.empty(rows)
    for i in range(rows):
        # ArviZ sums only the weights it keeps: as zeros they would round differently
        keep = weights[i] >= 10 * np.finfo(float).eps
        w, b_i = (weights[i], b[i]) if keep.all() else (weights[i][keep], b[i][keep])
        w = w / w.sum()
        b_post[i] = np.sum(b_i * w)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.mean(np.log1p(-b_post[:, None] * tail), axis=1)
        sigma = -kappa / b_post
    kappa = (n * kappa + _PRIOR_K * 0.5) / (n + _PRIOR_K)
    far = xstar <= tail[:, 0]  # far from a generalised Pareto: no fit
    undefined = np.isnan(kappa)
    sigma = np.where(far | undefined, np.nan, sigma)
    kappa = np.where(far, np.nan, np.where(undefined, np.inf, kappa))
    return kappa, sigma


def _gpd_quantiles(probs: np.ndarray, kappa: np.ndarray, sigma: np.ndarray,
                   mu: np.ndarray) -> np.ndarray:
    """(rows, probs) quantiles of generalised Paretos (arviz_stats' _gpinv per row)."""
    kappa, sigma, mu = kappa[:, None], sigma[:, None], mu[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        general = mu + sigma * np.expm1(-kappa * np.log1p(-probs)) / kappa
        exponential = mu - sigma * np.log1p(-probs)
    q = np.where(kappa == 0, exponential, general)
    return np.where(sigma <= 0, np.nan, q)


def smoothed_log_weights(log_ratios: np.ndarray, r_eff: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed, normalised log importance weights of each row of (rows, draws) log
    ratios, and each row's Pareto k (arviz_stats' psislw).

    Raises ValueError, as ArviZ, when a row's tail has no spread."""
    rows, n_draws = log_ratios.shape
    n_tail = tail_length(n_draws, r_eff)
    if n_tail < 5:
        raise ValueError("n_draws_tail must be at least 5")
    lw = log_ratios - np.max(log_ratios, axis=1, keepdims=True)
    order = np.argsort(lw, axis=1)
    tail_ids = np.arange(n_draws - n_tail, n_draws, dtype=int)
    tail = np.take_along_axis(lw, order[:, tail_ids], axis=1)
    cutoff = np.take_along_axis(lw, order[:, tail_ids[:1] - 1], axis=1)[:, 0]
    max_tail, min_tail = tail.max(axis=1), tail.min(axis=1)
    if (abs(max_tail - min_tail) < np.finfo(float).tiny).any():
        raise ValueError("All tail values are the same")
    exp_cutoff = np.exp(cutoff)
    kappa, sigma = _gpd_fit(np.ascontiguousarray(np.exp(tail) - exp_cutoff[:, None]))
    fitted = np.isfinite(kappa)
    if fitted.any():
        probs = np.arange(0.5, n_tail) / n_tail
        with np.errstate(invalid="ignore", divide="ignore"):
            smoothed = np.log(_gpd_quantiles(probs, kappa[fitted], sigma[fitted],
                                             exp_cutoff[fitted]))
        capped = max_tail[fitted, None]
        smoothed = np.where(smoothed > capped, capped, smoothed)
        rows_fitted = np.flatnonzero(fitted)[:, None]
        lw[rows_fitted, order[fitted][:, tail_ids]] = smoothed
    lw -= _logsumexp(lw)[:, None]
    return lw, kappa


def loo(log_lik: np.ndarray, r_eff: float) -> dict[str, np.ndarray]:
    """Pointwise PSIS-LOO of (observations, draws) log-likelihoods: elpd_i, pareto_k and
    p_loo_i, as az.loo's pointwise figures."""
    log_lik = np.ascontiguousarray(log_lik)  # sums along rows as ArviZ's along one array
    log_weights, pareto_k = smoothed_log_weights(-log_lik, r_eff)
    elpd_i = _logsumexp(log_weights + log_lik)
    lppd_i = _logsumexp(log_lik, b=1 / log_lik.shape[1])
    return {"elpd_i": elpd_i, "pareto_k": pareto_k, "p_loo_i": lppd_i - elpd_i}


def summary(elpd_i: np.ndarray, p_loo_i: np.ndarray) -> tuple[float, float, float]:
    """elpd, its standard error and p_loo of pointwise figures (az.loo's totals)."""
    n = len(elpd_i)
    se = np.sqrt(n * np.var(elpd_i, ddof=1)) if n > 1 else 0.0
    return float(np.sum(elpd_i)), float(se), float(np.sum(p_loo_i))
