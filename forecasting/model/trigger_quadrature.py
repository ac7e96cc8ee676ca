"""The leave-one-trigger-out density's quadrature as a numba kernel (predictive.trigger_log_likelihood).

Its own module so that importing forecasting.model.predictive (as the registry does in web
workers) does not load numba: only a fit or an evaluation computes trigger LOO.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _log_expit(x):
    return -np.log1p(np.exp(-x)) if x >= 0 else x - np.log1p(np.exp(x))


@numba.njit(inline="always")
def _level_log_probability(eta, cut, level):
    """log P(level | eta): the scalar form of arithmetic.level_log_probability."""
    top = cut.shape[0]
    log_up = _log_expit(cut[level] - eta) if level < top else 0.0
    if level == 0:
        return log_up
    log_lo = _log_expit(cut[level - 1] - eta)
    return log_up + np.log1p(-np.exp(min(log_lo - log_up, -1e-12)))


@numba.njit(inline="always")
def _logsumexp(values):
    top = values.max()
    if not np.isfinite(top):
        return top
    return top + np.log(np.exp(values - top).sum())


@numba.njit(parallel=True, cache=True)
def trigger_quadrature(eta, cut, level, weight, sigma_event, sigma_reaction, nodes,
                        log_weights, trigger_bounds, reaction_bounds):
    """(draws, triggers) of `trigger_log_likelihood`: episodes sorted by trigger then
    reaction; trigger g spans [trigger_bounds[g], trigger_bounds[g + 1]), and the reactions
    start at reaction_bounds. One draw per thread; no (draws x nodes x nodes x episodes)
    temporaries."""
    n_draws, n_triggers, k = eta.shape[0], len(trigger_bounds) - 1, len(nodes)
    out = np.zeros((n_draws, n_triggers))
    for s in numba.prange(n_draws):
        over_v = np.empty(k)
        over_u = np.empty(k)
        r = 0
        for g in range(n_triggers):
            start, stop = trigger_bounds[g], trigger_bounds[g + 1]
            if start == stop:
                continue
            while reaction_bounds[r] < start:
                r += 1
            first_reaction = r
            for iu in range(k):
                u = sigma_event[s] * nodes[iu]
                total = log_weights[iu]
                r = first_reaction
                while reaction_bounds[r] < stop:
                    lo, hi = reaction_bounds[r], reaction_bounds[r + 1]
                    for iv in range(k):
                        shift = u + sigma_reaction[s] * nodes[iv]
                        acc = log_weights[iv]
                        for i in range(lo, hi):
                            acc += weight[i] * _level_log_probability(eta[s, i] + shift,
                                                                      cut[s], level[i])
                        over_v[iv] = acc
                    total += _logsumexp(over_v)
                    r += 1
                over_u[iu] = total
            out[s, g] = _logsumexp(over_u)
    return out
