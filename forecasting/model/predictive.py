"""What a fit's draws imply for the data: level probabilities per cell, the log likelihood,
replicated counts (prior and posterior predictive), in numpy from the draws.

No PyMC function is compiled for these (they took 6 s and 10 s of every refit on the seed
data when PyMC computed them); the maths is forecasting.model.arithmetic's. Free of PyMC, so
that the registry recomputes a lean version's groups with these same functions in web
workers.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from forecasting.model.arithmetic import (
    CLUSTER_SCALES,
    FORECAST_VARIABLES,
    level_log_probability,
    level_probabilities,
    linear_predictor,
    log_multinomial_coef,
)

OBSERVED = "level_counts"
# A fit computes its per-cell groups (log likelihood, posterior and prior predictive) and the
# diagnostics that read them (per-episode LOO, posterior predictive checks) on at most this
# many (draw, cell) values, thinning the draws evenly beyond: 4 x 2,000 draws of 200,000
# cells would be 13 GB per group. Since revision 3 a cell is an episode: the seed data (636)
# keeps all 8,000 draws, 20,000 episodes 2,000, 200,000 episodes 200. The draws used are
# stated in the tree's attrs (`extras_draws`) and in the diagnostics (`draws`).
EXTRAS_MAX_VALUES = 40_000_000
# (draw, cell) values computed at once: the level probabilities of a block are 4 floats each
EXTRAS_BLOCK_VALUES = 2_000_000


def _cell_eta(params: xr.Dataset, const: xr.Dataset, cells=slice(None)) -> np.ndarray:
    """eta (chain, draw, cell) of the fit's cells (or a subset) under draws `params`, their
    cluster terms included."""
    values = {name: params[name].values for name in FORECAST_VARIABLES}
    # the sampled sum of a cell's event and reaction effects (pymc_model._cluster_effects)
    values["reaction_eff"] = params["cluster_eff"].values
    return linear_predictor(values, const["partner_idx"].values[cells],
                            const["type_idx"].values[cells], const["trigger_idx"].values[cells],
                            const["severity"].values[cells].astype(int),
                            const["alignment"].values[cells].astype(int),
                            reaction=const["reaction_idx"].values[cells])


def cell_eta(tree: xr.DataTree, params: xr.Dataset | None = None) -> np.ndarray:
    """eta (chain, draw, cell) of every cell of the fit under the posterior draws or `params`."""
    params = tree.posterior.to_dataset() if params is None else params
    return _cell_eta(params, tree.constant_data.to_dataset())


def cell_level_probabilities(tree: xr.DataTree, params: xr.Dataset | None = None,
                             eta: np.ndarray | None = None) -> np.ndarray:
    """P(level = k) per draw and cell, (chain, draw, cell, level), as the model defines it.

    From the posterior draws, or from `params` (e.g. prior draws) with the same names;
    `eta`: their `cell_eta`, when the caller has it already.
    """
    params = tree.posterior.to_dataset() if params is None else params
    eta = cell_eta(tree, params) if eta is None else eta
    probs = level_probabilities(eta, params["cutpoints"].values[..., None, :])
    return np.clip(probs, 1e-12, 1.0)  # far in the tails a difference can round to 0: no log(0)


def observed_counts(tree: xr.DataTree) -> xr.DataArray:
    return tree.observed_data[OBSERVED].transpose("cell", "level")


def one_episode_per_cell(tree: xr.DataTree) -> bool:
    """Every cell holds one episode (model revision 3 on: a cell is an episode)."""
    return bool((tree.observed_data[OBSERVED].values.sum(axis=-1) == 1).all())


def log_likelihood(tree: xr.DataTree, params: xr.Dataset | None = None,
                   probs: np.ndarray | None = None, eta: np.ndarray | None = None
                   ) -> xr.Dataset:
    """The per-cell multinomial log likelihood (the model's density), (chain, draw, cell),
    of the posterior draws or of `params` (e.g. a block of them); `probs`, `eta`: their
    cell_level_probabilities and cell_eta, when the caller has them already.

    With one episode per cell it is log P(its level), computed in log space as the
    per-episode LOO computes it (`episode_log_likelihood`: the same numbers, so that LOO
    reads them from this group), exact in the tails where a difference of probabilities
    would round to zero."""
    params = tree.posterior.to_dataset() if params is None else params
    counts = observed_counts(tree)
    if one_episode_per_cell(tree):
        eta = cell_eta(tree, params) if eta is None else eta
        ll = level_log_probability(eta, params["cutpoints"].values,
                                   counts.values.argmax(axis=-1))
    else:
        log_coef = log_multinomial_coef(counts.values)
        probs = cell_level_probabilities(tree, params, eta) if probs is None else probs
        ll = log_coef + np.einsum("...cl,cl->...c", np.log(probs),
                                  counts.values.astype(float))
    return xr.Dataset(
        {OBSERVED: (("chain", "draw", "cell"), ll)},
        coords={"chain": params.coords["chain"].values, "draw": params.coords["draw"].values,
                "cell": counts.coords["cell"].values})


def add_log_likelihood(tree: xr.DataTree, probs: np.ndarray | None = None) -> None:
    """The per-cell log likelihood of every posterior draw, as group log_likelihood."""
    tree["log_likelihood"] = log_likelihood(tree, probs=probs)


def episode_log_likelihood(tree: xr.DataTree, max_draws: int | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """log P(level) of every observed (cell, level) pair per draw (at most `max_draws`,
    thinned evenly in each chain), and its episode count.

    Episodes of one cell with the same level are exchangeable, so one column stands for
    all of them: leaving one of them out is what per-episode LOO does.
    """
    post = thin(tree.posterior.to_dataset(), max_draws)
    counts = tree.observed_data[OBSERVED].values
    cell, level = np.nonzero(counts)
    eta = _cell_eta(post, tree.constant_data.to_dataset(), cell)
    ll = level_log_probability(eta, post["cutpoints"].values, level)
    return ll, counts[cell, level]


def replicate_counts(params: xr.Dataset, tree: xr.DataTree, seed: int = 0,
                     rng: np.random.Generator | None = None,
                     probs: np.ndarray | None = None) -> xr.Dataset:
    """Level counts per cell replicated from every draw of `params` (numpy multinomial), from
    `rng` or a generator seeded with `seed`; `probs`: the draws' cell_level_probabilities,
    when the caller has them already."""
    counts = observed_counts(tree)
    probs = cell_level_probabilities(tree, params) if probs is None else probs
    probs = probs / probs.sum(axis=-1, keepdims=True)
    rng = np.random.default_rng(seed) if rng is None else rng
    n = np.broadcast_to(counts.values.sum(axis=-1), probs.shape[:-1])
    # counts per cell are small (one episode per cell since revision 3): a signed 16-bit (or
    # wider, when needed) integer keeps the predictive groups a quarter of int64's size, and
    # differences of counts stay signed
    dtype = np.promote_types(np.min_scalar_type(int(n.max(initial=0))), np.int16)
    if (n == 1).all():  # one episode per cell: a categorical draw, 5x faster than multinomial
        cdf = np.cumsum(probs[..., :-1], axis=-1)
        level = (rng.random(n.shape)[..., None] >= cdf).sum(axis=-1)
        rep = (level[..., None] == np.arange(probs.shape[-1])).astype(dtype)
    else:
        rep = rng.multinomial(n, probs).astype(dtype)
    return xr.Dataset(
        {OBSERVED: (("chain", "draw", "cell", "level"), rep)},
        coords={"chain": params.coords["chain"].values, "draw": params.coords["draw"].values,
                "cell": counts.coords["cell"].values, "level": counts.coords["level"].values})


def add_posterior_predictive(tree: xr.DataTree, seed: int = 0,
                             probs: np.ndarray | None = None) -> None:
    """Replicated level counts per cell and draw, as group posterior_predictive."""
    tree["posterior_predictive"] = replicate_counts(tree.posterior.to_dataset(), tree, seed,
                                                    probs=probs)


# Gauss-Hermite rule for the cluster integrals of `trigger_log_likelihood`
_TRIGGER_NODES, _TRIGGER_WEIGHTS = np.polynomial.hermite_e.hermegauss(15)
_TRIGGER_LOG_WEIGHTS = np.log(_TRIGGER_WEIGHTS / _TRIGGER_WEIGHTS.sum())


def trigger_log_likelihood(tree: xr.DataTree, max_draws: int | None = 1000
                           ) -> tuple[np.ndarray, list[str]]:
    """log p(a coded trigger's episodes | parameters), its cluster terms integrated out:
    (draws, trigger), thinned evenly to `max_draws`, and the trigger labels.

        log integral N(u; 0, sigma_event) prod_{partners p} integral N(v; 0, sigma_reaction)
                    prod_{episodes i of p} P(level_i | eta_i + u + v) dv du

    This is the predictive density of a trigger left out (a new event's u and v are fresh
    draws), the unit of leave-one-trigger-out: summing the conditional per-episode terms
    instead would keep the left-out trigger's own u and v, fitted to it. Gauss-Hermite
    quadrature, 15 x 15 nodes per draw.
    """
    post = tree.posterior.to_dataset()
    const = tree.constant_data.to_dataset()
    counts = tree.observed_data[OBSERVED].values
    cell, level = np.nonzero(counts)
    weight = counts[cell, level].astype(float)
    flat = {name: post[name].values.reshape(-1, *post[name].shape[2:])
            for name in (*FORECAST_VARIABLES, *CLUSTER_SCALES) if name in post}
    for name in CLUSTER_SCALES:  # a variant without clusters: nothing to integrate
        flat.setdefault(name, np.zeros(flat["cutpoints"].shape[0]))
    n = flat["cutpoints"].shape[0]
    keep = evenly(n, max_draws)
    params = {name: value[keep] for name, value in flat.items()}
    eta = linear_predictor(params, const["partner_idx"].values[cell],
                           const["type_idx"].values[cell], const["trigger_idx"].values[cell],
                           const["severity"].values[cell].astype(int),
                           const["alignment"].values[cell].astype(int))  # (S, pairs)
    nodes, log_weights = _TRIGGER_NODES, _TRIGGER_LOG_WEIGHTS
    if not (params["sigma_event"].any() or params["sigma_reaction"].any()):
        # a variant without clusters: one node at zero is the exact integral (225x less work)
        nodes, log_weights = np.zeros(1), np.zeros(1)
    event = const["event_idx"].values[cell]
    reaction = const["reaction_idx"].values[cell]
    labels = [str(t) for t in post.coords["trigger"].values]
    # episodes grouped by trigger, then by reaction (partner): the kernel walks the groups
    order = np.lexsort((reaction, event))
    trigger_bounds = np.searchsorted(event[order], np.arange(len(labels) + 1))
    reaction_starts = np.flatnonzero(np.r_[True, np.diff(reaction[order]) != 0]
                                     | np.isin(np.arange(len(order)), trigger_bounds))
    reaction_bounds = np.unique(np.r_[reaction_starts, len(order)])
    from forecasting.model.trigger_quadrature import trigger_quadrature

    out = trigger_quadrature(
        np.ascontiguousarray(eta[:, order]), np.ascontiguousarray(params["cutpoints"]),
        level[order].astype(np.int64), weight[order],
        params["sigma_event"].astype(float), params["sigma_reaction"].astype(float),
        nodes, log_weights, trigger_bounds.astype(np.int64), reaction_bounds.astype(np.int64))
    return out, labels


def extras_max_draws(n_cells: int, max_values: int | None = None) -> int:
    """How many draws the per-cell groups may hold for `n_cells` cells (at least 100)."""
    max_values = EXTRAS_MAX_VALUES if max_values is None else max_values
    return max(100, max_values // max(n_cells, 1))


def in_blocks(compute, params: xr.Dataset, n_cells: int,
              block_values: int = EXTRAS_BLOCK_VALUES) -> list:
    """compute(draws) over blocks of about `block_values` (draw, cell) pairs, chain by chain
    and in draw order (one random stream through the blocks draws what one call on all the
    draws would), joined along draw and chain. `compute` returns a Dataset or a tuple."""
    step = max(1, block_values // max(n_cells, 1))
    chains = []
    for chain in range(params.sizes["chain"]):
        blocks = [compute(params.isel(chain=[chain], draw=slice(start, start + step)))
                  for start in range(0, params.sizes["draw"], step)]
        if not isinstance(blocks[0], tuple):
            blocks = [(b,) for b in blocks]
        chains.append([xr.concat(parts, dim="draw") for parts in zip(*blocks, strict=True)])
    return [xr.concat(parts, dim="chain") for parts in zip(*chains, strict=True)]


def evenly(n: int, most: int | None) -> np.ndarray:
    """Indices of at most `most` of n draws, evenly spaced (all of them when most is None)."""
    return (np.unique(np.linspace(0, n - 1, most).round().astype(int))
            if most and n > most else np.arange(n))


def thin(ds: xr.Dataset, max_draws: int | None) -> xr.Dataset:
    """At most `max_draws` draws: the same number from each chain, evenly spaced in it."""
    chains, draws = ds.sizes["chain"], ds.sizes["draw"]
    if max_draws is None or chains * draws <= max_draws:
        return ds
    if max_draws < 1:
        raise ValueError(f"max_draws: must be at least 1, got {max_draws}")
    if chains > max_draws:
        ds, chains = ds.isel(chain=slice(0, max_draws)), max_draws
    return ds.isel(draw=evenly(draws, max_draws // chains))
