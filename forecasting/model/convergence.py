"""Rank-normalised split R-hat, bulk and tail ESS and the MCSE of the mean, of many scalars at once.

The same estimators as ArviZ 1 (arviz_stats.base: Vehtari et al. 2021, "Rank-normalization,
folding, and localization"), computed on a (entries, chains, draws) array in blocks instead of
one entry at a time: the gate runs them on every scalar of the posterior (about 1,000 on the
seed data, 4 x 2,000 draws), where ArviZ's per-entry loop took 4.7 s of a refit on a quiet
machine (1.4 s here: docs/performance.md). Ranks and FFTs are batched; Geyer's initial
positive and monotone sequences, sequential in ArviZ, are a first-non-positive-pair search
and a running minimum. tests/test_convergence.py holds the results to az.rhat / az.ess /
az.mcse to 1e-9.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import fft as sp_fft
from scipy import special

_BLOM = 3 / 8  # rank offset of the normal scores (Blom 1958), as ArviZ


def _split(x: np.ndarray) -> np.ndarray:
    """(E, C, D) -> (E, 2C, D // 2): each chain's first and last halves as chains."""
    half = x.shape[-1] // 2
    return np.concatenate((x[..., :half], x[..., -half:]), axis=1)


def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties averaged) along each row: scipy's rankdata, one sort for all rows."""
    order = np.argsort(flat, axis=1)  # ties get their average rank: no need for stability
    ordered = np.take_along_axis(flat, order, axis=1)
    n = flat.shape[1]
    position = np.arange(n)
    starts = np.ones(flat.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(flat.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(flat.shape)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=1)
    return ranks


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks over all chains and draws, per entry."""
    flat = x.reshape(len(x), -1)
    size = flat.shape[1]
    ranks = _average_ranks(flat)
    return special.ndtri((ranks - _BLOM) / (size - 2 * _BLOM + 1)).reshape(x.shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    between = n * np.var(x.mean(axis=-1), axis=-1, ddof=1)
    within = np.var(x, axis=-1, ddof=1).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _autocov(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    centred = x - x.mean(axis=-1, keepdims=True)
    padded = sp_fft.next_fast_len(2 * n)
    spectrum = sp_fft.rfft(centred, n=padded, axis=-1)
    return sp_fft.irfft(spectrum * np.conjugate(spectrum), n=padded, axis=-1)[..., :n] / n


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each entry of (E, M, N) chains, by Geyer's initial monotone sequence."""
    x = np.asarray(x, dtype=float)
    n_entries, n_chain, n_draw = x.shape
    acov = _autocov(x)
    mean_var = acov[:, :, 0].mean(axis=1) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + np.var(x.mean(axis=-1), axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]  # (E, N)
    rho[:, 0] = 1.0
    # pairs (rho[2k], rho[2k+1]); ArviZ examines k = 1, 2, ... while 2k - 1 < n_draw - 3
    last = max((n_draw - 3) // 2, 0)
    pairs = rho[:, 0:2 * last + 2:2] + rho[:, 1:2 * last + 2:2]  # (E, last + 1)
    # k*: the first pair (k >= 1) whose sum is not positive, or `last`; pair 0 not positive: 0
    nonpositive = pairs <= 0
    nonpositive[:, 0] = False
    first = np.where(nonpositive.any(axis=1), nonpositive.argmax(axis=1), last)
    first = np.where(pairs[:, 0] > 0, first, 0)
    monotone = np.minimum.accumulate(pairs, axis=1)  # the initial monotone sequence
    taken = np.arange(pairs.shape[1])[None, :] < first[:, None]
    tail = np.take_along_axis(rho, (2 * first)[:, None], axis=1)[:, 0]
    tau = -1.0 + 2.0 * np.sum(np.where(taken, monotone, 0.0), axis=1) + np.maximum(tail, 0.0)
    total = n_chain * n_draw
    tau = np.maximum(tau, 1 / np.log10(total))
    ess = total / tau
    ess[np.isnan(rho).any(axis=1)] = np.nan
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    ess[constant] = x[0].size
    return ess


# entries per block: a few MB of draws stay in cache through the sorts and FFTs (the whole
# seed posterior at once, 62 MB per temporary, ran 1.8x slower than blocks of 32-128)
BLOCK = 64


def statistics(x: np.ndarray, tail_prob: float) -> dict[str, np.ndarray]:
    """R-hat, bulk ESS, tail ESS and MCSE of the mean of every entry of x (entries, chains,
    draws), as az.rhat / az.ess(method="bulk"), az.ess(method="tail", prob=tail_prob) and
    az.mcse compute them one entry at a time."""
    # numpy's sorts and scipy's FFTs release the GIL: blocks on threads use every core
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        blocks = list(pool.map(lambda i: _statistics(x[i:i + BLOCK], tail_prob),
                               range(0, len(x), BLOCK)))
    return {name: np.concatenate([b[name] for b in blocks]) if blocks else np.empty(0)
            for name in ("r_hat", "ess_bulk", "ess_tail", "mcse_mean")}


def _statistics(x: np.ndarray, tail_prob: float) -> dict[str, np.ndarray]:
    split = _split(x)
    z_bulk = _z_scale(split)  # R-hat's bulk part and bulk ESS share it
    if x.shape[1] < 2:
        r_hat = np.full(len(x), np.nan)
    else:
        folded = np.abs(split - np.median(split.reshape(len(split), -1), axis=1)[:, None, None])
        r_hat = np.maximum(_rhat(z_bulk), _rhat(_z_scale(folded)))
    flat = x.reshape(len(x), -1)
    low, high = sorted((tail_prob, 1 - tail_prob))
    tails = [_ess(_split((x <= np.quantile(flat, p, axis=1)[:, None, None]).astype(float)))
             for p in (low, high)]
    return {
        "r_hat": r_hat,
        "ess_bulk": _ess(z_bulk),
        "ess_tail": np.minimum(*tails),
        "mcse_mean": np.std(flat, axis=1, ddof=1) / np.sqrt(_ess(split)),
    }
