"""Forecasts for a coded trigger, conditioned on the reactions coded so far (pure numpy).

"Israel has already compartmentalised after this trigger: how likely is Saudi Arabia to?"
Per posterior draw, the trigger's event effect u and each partner's reaction effect v have
the posterior

    p(u, v_1..v_m | coded episodes) ~ N(u; 0, sigma_event) prod_p N(v_p; 0, sigma_reaction)
                                       prod_{coded episodes i of p} P(level_i | eta_i + u + v_p)

which depends on the rest of the model only through the draw (the cutpoints, the cells'
linear predictors, the two scales). On a grid of u and v (quadrature, no refit) the
partners' reactions integrate out one by one; a cell of a partner already coded conditions
on its own reaction v too, a partner not yet coded draws a fresh one. The same holds for a
trigger the model was fitted on (its u is then informed by the same episodes through the
draws) and for one coded since: both use the episodes coded now.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from forecasting.model.arithmetic import level_log_probability, level_probabilities

GRID_POINTS = 25  # per effect, on [-5, 5] sd: the weights are smooth on this scale
GRID_HALF_WIDTH = 5.0
# draws used per live answer (thinned evenly): the grid multiplies the work by 625, and 500
# draws put the Monte Carlo error of a served probability near 0.005
MAX_DRAWS = 500


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal grid points and log weights (trapezoid rule times the density)."""
    z = np.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS)
    log_w = -0.5 * z**2
    return z, log_w - logsumexp(log_w)


@dataclass(frozen=True)
class CodedReactions:
    """The coded episodes of one trigger: per episode its partner's position among the
    trigger's coded partners, its linear predictor before clusters (S,), and its level."""

    reaction: np.ndarray  # (n,) int: which coded partner
    eta: np.ndarray  # (n, S)
    level: np.ndarray  # (n,) int


def conditional_level_probabilities(eta: np.ndarray, cutpoints: np.ndarray,
                                    sigma_event: np.ndarray, sigma_reaction: np.ndarray,
                                    coded: CodedReactions, reaction: int | None) -> np.ndarray:
    """P(level = k) of cells of one partner (m, S) -> (m, 4, S), given the coded episodes.

    `eta` (m, S): the cells' linear predictors before clusters; `cutpoints` (3, S);
    `reaction`: the queried partner's position among the coded partners, or None if it has
    no coded episode (its reaction effect is then a fresh draw).
    """
    weights = conditioning_weights(cutpoints, sigma_event, sigma_reaction, coded, reaction)
    return weighted_level_probabilities(eta, cutpoints, weights)


@dataclass(frozen=True)
class Conditioning:
    """The posterior of (u, v) on the grid, per draw: what every cell conditioned on the same
    episodes with the same reaction effect shares (one partner's cells; or the cells of every
    partner not yet coded)."""

    u: np.ndarray  # (G, S) grid values of the event effect
    v: np.ndarray  # (G, S) grid values of the reaction effect
    weight: np.ndarray  # (Gu, Gv, S), summing to 1 per draw


def grid_values(sigma_event: np.ndarray, sigma_reaction: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The (G, S) grid values of u and of v per draw."""
    z, _ = _grid()
    return z[:, None] * sigma_event[None, :], z[:, None] * sigma_reaction[None, :]


def episode_log_likelihood(eta: np.ndarray, level: int, cutpoints: np.ndarray, u: np.ndarray,
                           v: np.ndarray) -> np.ndarray:
    """log P(level | eta + u + v) of one coded episode on the (u, v) grid: (Gu, Gv, S)."""
    shifted = eta[None, None, :] + u[:, None, :] + v[None, :, :]
    # level_log_probability takes samples first: cutpoints (S, 3)
    return level_log_probability(shifted, cutpoints.T, level)


def conditioning_weights(cutpoints: np.ndarray, sigma_event: np.ndarray,
                         sigma_reaction: np.ndarray, coded: CodedReactions,
                         reaction: int | None, *, loglik: np.ndarray | None = None
                         ) -> Conditioning:
    """The (u, v) posterior given the coded episodes, for cells of the partner at position
    `reaction` among the coded partners (None: a partner not coded, whose v is fresh).

    `loglik` (P, Gu, Gv, S): each coded partner's episodes' log-likelihood on the grid, summed
    from zero in episode order (what this function computes when it is None), if already at
    hand: a live grid sums each episode's once for many sets of cells.
    """
    z, log_w = _grid()
    u, v = grid_values(sigma_event, sigma_reaction)
    if loglik is None:
        n_partners = int(coded.reaction.max()) + 1 if len(coded.reaction) else 0
        loglik = np.zeros((n_partners, len(z), len(z), u.shape[-1]))
        for i in range(len(coded.level)):
            loglik[coded.reaction[i]] += episode_log_likelihood(coded.eta[i], coded.level[i],
                                                                cutpoints, u, v)
    # each coded partner's reaction integrated out: (P, Gu, S)
    marginal = logsumexp(loglik + log_w[None, None, :, None], axis=2)
    others = marginal.sum(axis=0) - (marginal[reaction] if reaction is not None else 0.0)
    log_u = log_w[:, None] + others  # (Gu, S)
    if reaction is None:
        log_joint = log_u[:, None, :] + log_w[None, :, None]  # fresh v
    else:
        log_joint = log_u[:, None, :] + log_w[None, :, None] + loglik[reaction]
    weight = np.exp(log_joint - logsumexp(log_joint, axis=(0, 1), keepdims=True))  # (Gu, Gv, S)
    return Conditioning(u=u, v=v, weight=weight)


def weighted_level_probabilities(eta: np.ndarray, cutpoints: np.ndarray,
                                 conditioning: Conditioning) -> np.ndarray:
    """(m, S) linear predictors -> (m, 4, S) level probabilities averaged over the (u, v)
    posterior. Rows are independent: a row's numbers do not depend on the others (a live grid
    computes many cells in one call and serves the per-cell answers' numbers)."""
    u, v, weight = conditioning.u, conditioning.v, conditioning.weight
    out = np.zeros(eta.shape[:-1] + (4, eta.shape[-1]))
    for a in range(u.shape[0]):  # every v at once for one u: (Gv, m, 4, S)
        shifted = eta[None] + (u[a][None, :] + v)[:, None, :]
        probs = level_probabilities(shifted, cutpoints, axis=-2)
        out += np.einsum("bs,bmks->mks", weight[a], probs)
    return out
