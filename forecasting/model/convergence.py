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


def _normal_scores(size: int) -> np.ndarray:
    """The normal score of every rank an entry of `size` draws can have, indexed by twice the
    rank minus 2: ranks are 1-based, and tied draws share their average, a half-integer."""
    ranks = np.arange(2 * size - 1) / 2 + 1
    return special.ndtri((ranks - _BLOM) / (size - 2 * _BLOM + 1))


def _sorted_scores(ordered: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The normal score of each value of rows sorted ascending (scipy's rankdata: ties get
    their average rank). Ties are few (the folded draws' two middle ones, say): only their
    runs are looked at."""
    n = ordered.shape[1]
    out = np.broadcast_to(scores[::2], ordered.shape)  # untied: rank = position + 1
    row, col = np.nonzero(ordered[:, 1:] == ordered[:, :-1])  # col ties with col + 1
    if not len(row):
        return out
    starts = np.r_[True, np.diff(row * n + col) != 1]  # each run of tied pairs
    ends = np.r_[starts[1:], True]
    run = np.cumsum(starts) - 1
    shared = scores[col[starts] + col[ends] + 1][run]  # first + last position of its run
    out = out.copy()
    out[row, col] = shared
    out[row, col + 1] = shared
    return out


def _unsort(order: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Values given in sorted order (order: the argsort of each row) put back in place."""
    out = np.empty((shape[0], values.shape[1]))
    np.put_along_axis(out, order, values, axis=1)
    return out.reshape(shape)


def _median(ordered: np.ndarray) -> np.ndarray:
    """np.median of each row of rows sorted ascending, by its arithmetic."""
    n = ordered.shape[1]
    return ordered[:, n // 2] if n % 2 else (ordered[:, n // 2 - 1] + ordered[:, n // 2]) / 2


def _quantile(ordered: np.ndarray, p: float) -> np.ndarray:
    """np.quantile(row, p) (its default, linear method, by its arithmetic) of each row of
    rows sorted ascending."""
    n = ordered.shape[1]
    virtual = (n - 1) * p
    below = min(int(np.floor(virtual)), n - 1)
    above = min(below + 1, n - 1)
    gamma = virtual - np.floor(virtual)
    a, b = ordered[:, below], ordered[:, above]
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


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
    scores = _normal_scores(2 * (x.shape[-1] // 2) * x.shape[1])  # shared by every entry
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        blocks = list(pool.map(lambda i: _statistics(x[i:i + BLOCK], tail_prob, scores),
                               range(0, len(x), BLOCK)))
    return {name: np.concatenate([b[name] for b in blocks]) if blocks else np.empty(0)
            for name in ("r_hat", "ess_bulk", "ess_tail", "mcse_mean")}


def _statistics(x: np.ndarray, tail_prob: float, scores: np.ndarray) -> dict[str, np.ndarray]:
    split = _split(x)
    flat_split = split.reshape(len(split), -1)
    # one sort of each entry's draws gives the bulk ranks, the median and the tail quantiles
    order = np.argsort(flat_split, axis=1)
    ordered = np.take_along_axis(flat_split, order, axis=1)
    z_bulk = _unsort(order, _sorted_scores(ordered, scores), split.shape)
    if x.shape[1] < 2:
        r_hat = np.full(len(x), np.nan)
    else:
        # the folded draws in the same order fall, then rise: a stable sort (a merge of two
        # runs) orders them three times faster than sorting anew
        folded = np.abs(ordered - _median(ordered)[:, None])
        by_fold = np.argsort(folded, axis=1, kind="stable")
        z_folded = _unsort(np.take_along_axis(order, by_fold, axis=1),
                           _sorted_scores(np.take_along_axis(folded, by_fold, axis=1), scores),
                           split.shape)
        r_hat = np.maximum(_rhat(z_bulk), _rhat(z_folded))
    flat = x.reshape(len(x), -1)
    # the split halves hold every draw unless the draws are odd (the middle one left out)
    every = ordered if x.shape[-1] % 2 == 0 else np.sort(flat, axis=1)
    low, high = sorted((tail_prob, 1 - tail_prob))
    tails = [_ess(_split((x <= _quantile(every, p)[:, None, None]).astype(float)))
             for p in (low, high)]
    out = {
        "r_hat": r_hat,
        "ess_bulk": _ess(z_bulk),
        "ess_tail": np.minimum(*tails),
        "mcse_mean": np.std(flat, axis=1, ddof=1) / np.sqrt(_ess(split)),
    }
    # a NaN draw (sorted last) leaves every figure undefined, as in ArviZ
    undefined = np.isnan(ordered[:, -1]) | np.isnan(every[:, -1])
    return {name: np.where(undefined, np.nan, values) for name, values in out.items()}
