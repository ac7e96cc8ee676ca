"""The ordinal model's arithmetic, once: what every other module computes from named parameters.

Pure numpy-style code with no PyMC import, so that the web workers, the simulator and the
evaluation can use it without loading a sampler. The functions use only indexing, `+` and
`*`, so they build PyTensor graphs as well (the PyMC model calls them on tensors) and numpy
arrays (forecasts, diagnostics, the simulator) from the same lines.

Parameters are named as in the posterior contract; sample axes (chain, draw, ...) come
first, written `...` below:

    eta = pt_eff[..., partner, type] + scenario_eff[..., trigger type, severity, alignment]
          + event_eff[..., trigger] + reaction_eff[..., trigger x partner]
    pt_eff = bloc + partner-within-bloc + type + bloc x type + partner x type
    scenario_eff = trigger_eff + beta_severity * (severity - 1.5)
                   + beta_alignment * (alignment - 1.5)
    P(level <= k) = sigmoid(cutpoints[k] - eta),  k = 0, 1, 2
    P(any restriction) = P(level >= 1) = 1 - P(level = 0)

The last two terms (revision 3) are the clusters: one coded trigger touches several partners
(event_eff, shared by all of them, sd sigma_event) and one partner's reaction to it spans
several types (reaction_eff, sd sigma_reaction). A forecast for a new trigger integrates
both out: their sum is Normal(0, sigma_event^2 + sigma_reaction^2) (`cluster_sd`,
`integrate_clusters`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln, log_expit

# -- the outcome and the covariates ---------------------------------------------------------

LEVELS = (0, 1, 2, 3)  # 0 none, 1 selective, 2 reduced, 3 suspended
LEVEL_LABELS = tuple(str(k) for k in LEVELS)  # keys of the forecast shape's "levels"
N_CUTPOINTS = len(LEVELS) - 1
CUTPOINT_LABELS = tuple(f"{k}|{k + 1}" for k in LEVELS[:-1])
ORDINAL_VALUES = (0, 1, 2, 3)  # severity and alignment are coded 0-3
# Covariates enter centred, so that the cutpoints describe a middling trigger.
CENTERS = {"severity": 1.5, "alignment": 1.5}
SLOPES = {"severity": "beta_severity", "alignment": "beta_alignment"}


def covariate_offsets(covariate: str) -> np.ndarray:
    """value - centre for every value 0-3 a covariate can take."""
    return np.asarray(ORDINAL_VALUES, dtype=float) - CENTERS[covariate]


# -- the effects and the parameters ---------------------------------------------------------


@dataclass(frozen=True)
class GroupEffect:
    """One partially pooled effect: its dims, the scale parameter, its posterior variable.

    `contrasts` names the dims of the unconstrained draws of a nested effect (deviations that
    sum to zero within a group); plain effects sum to zero over all their dims.
    """

    dims: tuple[str, ...]
    scale: str
    variable: str
    contrasts: tuple[str, ...] = ()


EFFECTS: dict[str, GroupEffect] = {
    "bloc": GroupEffect(("bloc",), "sigma_bloc", "bloc_eff"),
    "partner": GroupEffect(("partner",), "sigma_partner", "partner_dev", ("partner_contrast",)),
    "intel_type": GroupEffect(("intel_type",), "sigma_type", "type_eff"),
    "bloc_type": GroupEffect(("bloc", "intel_type"), "sigma_bloc_type", "bloc_type_eff"),
    "partner_type": GroupEffect(("partner", "intel_type"), "sigma_pt", "pt_dev",
                                ("partner_contrast", "type_contrast")),
    "trigger_type": GroupEffect(("trigger_type",), "sigma_trigger", "trigger_eff"),
}


@dataclass(frozen=True)
class ClusterEffect:
    """One cluster term: a Normal(0, scale) draw per coded trigger (or trigger x partner)."""

    dim: str
    scale: str
    variable: str


CLUSTERS: dict[str, ClusterEffect] = {
    "event": ClusterEffect("trigger", "sigma_event", "event_eff"),
    "reaction": ClusterEffect("reaction", "sigma_reaction", "reaction_eff"),
}
SCALES = {effect.scale: name for name, effect in EFFECTS.items()}  # scale -> effect


@dataclass(frozen=True)
class Parameter:
    """A top-level parameter, the one kind a prior file sets: its vector size, what it scales."""

    size: int | None = None  # None: a scalar
    effect: str | None = None  # the group effect a scale belongs to
    positive: bool = False


PARAMETERS: dict[str, Parameter] = {
    "cutpoints": Parameter(size=N_CUTPOINTS),
    **{slope: Parameter() for slope in SLOPES.values()},
    **{effect.scale: Parameter(effect=name, positive=True) for name, effect in EFFECTS.items()},
    **{cluster.scale: Parameter(positive=True) for cluster in CLUSTERS.values()},
}
# Derived quantities every fit stores (the forecasts read the first five, plots the rest).
FORECAST_VARIABLES = ("cutpoints", "pt_eff", "trigger_eff", *SLOPES.values())
CLUSTER_SCALES = tuple(cluster.scale for cluster in CLUSTERS.values())
SUMMARY_EFFECTS = ("bloc_eff", "partner_eff", "type_eff", "trigger_eff", "pt_eff")


# -- the linear predictor ---------------------------------------------------------------------


def _tensor(x):
    """numpy arrays and PyTensor variables as they are; Python numbers and lists as arrays."""
    return x if hasattr(x, "ndim") else np.asarray(x, dtype=float)


def _trailing(x, n: int):
    """x with n new trailing axes (scalar slopes broadcast against tables)."""
    return _tensor(x)[(..., *([None] * n))]


# The terms of eta, in the order the predictor adds them (forecasting.serving.explain reports
# each): the partner x type's five, then the scenario's three, then the clusters.
PARTNER_TYPE_TERMS = ("bloc", "partner", "intel_type", "bloc_type", "partner_type")
SCENARIO_TERMS = ("trigger_type", "severity", "alignment")
TERMS = PARTNER_TYPE_TERMS + SCENARIO_TERMS


def partner_type_terms(bloc_eff, partner_dev, type_eff, bloc_type_eff, pt_dev,
                       partner_bloc: np.ndarray) -> dict:
    """The five terms of pt_eff, each over its own dims: bloc (..., P) (each partner's bloc's),
    partner (..., P), intel_type (..., T), bloc_type (..., P, T) (each partner's bloc's row),
    partner_type (..., P, T)."""
    return {"bloc": bloc_eff[..., partner_bloc], "partner": partner_dev, "intel_type": type_eff,
            "bloc_type": bloc_type_eff[..., partner_bloc, :], "partner_type": pt_dev}


def partner_type_effects(bloc_eff, partner_dev, type_eff, bloc_type_eff, pt_dev,
                         partner_bloc: np.ndarray):
    """(partner_eff (..., P), pt_eff (..., P, T)): every partner x type's part of eta, the sum
    of `partner_type_terms`."""
    terms = partner_type_terms(bloc_eff, partner_dev, type_eff, bloc_type_eff, pt_dev,
                               partner_bloc)
    partner_eff = terms["bloc"] + terms["partner"]
    pt_eff = (partner_eff[..., :, None] + terms["intel_type"][..., None, :]
              + terms["bloc_type"] + terms["partner_type"])
    return partner_eff, pt_eff


def scenario_terms(trigger_eff, beta_severity, beta_alignment) -> dict:
    """The scenario's three terms as tables that broadcast to (..., trigger type, severity,
    alignment): trigger_type (..., TT, 1, 1), severity (..., 1, 4, 1), alignment (..., 1, 1, 4)."""
    return {"trigger_type": _tensor(trigger_eff)[..., :, None, None],
            "severity": _trailing(beta_severity, 3) * covariate_offsets("severity")[:, None],
            "alignment": _trailing(beta_alignment, 3) * covariate_offsets("alignment")[None, :]}


def scenario_effects(trigger_eff, beta_severity, beta_alignment):
    """(..., trigger type, severity, alignment): the scenario's part of eta, a 6 x 4 x 4 table,
    the sum of `scenario_terms`."""
    terms = scenario_terms(trigger_eff, beta_severity, beta_alignment)
    return terms["trigger_type"] + terms["severity"] + terms["alignment"]


def cell_terms(terms: dict, partner: int, intel_type: int, trigger_type: int, severity: int,
               alignment: int) -> dict:
    """Each term's value (...) for one cell and scenario (indices; severity and alignment
    0-3), from `partner_type_terms` and `scenario_terms` merged: they add up to eta."""
    index = {"bloc": (partner,), "partner": (partner,), "intel_type": (intel_type,),
             "bloc_type": (partner, intel_type), "partner_type": (partner, intel_type),
             "trigger_type": (trigger_type, 0, 0), "severity": (0, severity, 0),
             "alignment": (0, 0, alignment)}
    return {name: terms[name][(..., *index[name])] for name in TERMS}


def linear_predictor(params: Mapping[str, Any], partner, intel_type, trigger_type, severity,
                     alignment, trigger=None, reaction=None) -> np.ndarray:
    """eta (..., n) for rows given by their indices (partner, type, trigger type) and 0-3 values.

    `params` holds the forecast variables (`FORECAST_VARIABLES`), sample axes first. With
    `trigger` and `reaction` (indices into event_eff and reaction_eff), the rows are coded
    episodes and their cluster terms are added; without, eta is a new trigger's, before its
    cluster terms (see `integrate_clusters`).
    """
    table = scenario_effects(params["trigger_eff"], params["beta_severity"],
                             params["beta_alignment"])
    eta = (params["pt_eff"][..., partner, intel_type]
           + table[..., trigger_type, severity, alignment])
    if trigger is not None:
        eta = eta + params["event_eff"][..., trigger]
    if reaction is not None:
        eta = eta + params["reaction_eff"][..., reaction]
    return eta


# -- the cluster terms as sampled --------------------------------------------------------------

# Rows of the cluster layout (`cluster_layout`): per reaction slot, where its trigger's group
# starts and ends (last member), the group's size, its position in the group, and the weight
# of its Helmert contrast, 1 / sqrt(k (k + 1)) for position k >= 1 (0 for a first reaction),
# and the weight with which its coordinate is centred (`coordinate_scales`).
CLUSTER_LAYOUT_ROWS = ("start", "last", "size", "position", "contrast_weight", "centring")
# The trigger-level slopes a swept model moves (`sweep_cluster_means`); the trigger types'
# columns come first in its design
SWEPT_SLOPES = ("severity", "alignment")


def _trigger_groups(reaction_event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first reaction, one past the last) of each trigger: reactions come sorted by trigger."""
    reaction_event = np.asarray(reaction_event)
    if not len(reaction_event):
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    group_start = np.flatnonzero(np.r_[True, reaction_event[1:] != reaction_event[:-1]])
    return group_start, np.r_[group_start[1:], len(reaction_event)]


def cluster_layout(reaction_event: np.ndarray, slots: int,
                   centring: np.ndarray | None = None) -> np.ndarray:
    """(CLUSTER_LAYOUT_ROWS, slots) float array for `cluster_sums`: reactions come sorted by
    trigger; spare slots (beyond the coded reactions) are groups of one. `centring` (one
    weight in [0, 1] per trigger, rounded to a multiple of 1 / CENTRING_STEPS) goes to the
    slot of each trigger's mean coordinate; the contrasts and the spare slots stay
    non-centred (0), as every slot does without it."""
    group_start, group_end = _trigger_groups(reaction_event)
    n = len(reaction_event)
    start = np.arange(slots)
    end = np.arange(1, slots + 1)
    if n:
        group = np.repeat(np.arange(len(group_start)), group_end - group_start)
        start[:n] = group_start[group]
        end[:n] = group_end[group]
    position = np.arange(slots) - start
    weight = np.where(position > 0, 1.0 / np.sqrt(np.maximum(position * (position + 1.0), 1.0)),
                      0.0)
    centred = np.zeros(slots)
    if centring is not None and n:  # rounded: `coordinate_scales` reads a table of weights
        weights = np.rint(np.clip(centring, 0.0, 1.0) * CENTRING_STEPS) / CENTRING_STEPS
        centred[group_start] = weights[np.asarray(reaction_event)[group_start]]
    return np.stack([start, end - 1, end - start, position, weight, centred]).astype(float)


def sweep_layout(reaction_event: np.ndarray, slots: int, trigger_design: np.ndarray,
                 size_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """What `sweep_cluster_means` reads besides the cluster layout: the design (terms, slots),
    each trigger's row of `trigger_design` (trigger, terms) in the slot of its mean coordinate
    (its first reaction) and 0 elsewhere; and per trigger size m, [m, sum of x x' over the
    triggers of m reactions] (size_classes rows, the unused ones [1, 0...]): the Gram matrix
    the sweep needs is their sum weighted by 1 / s(m)^2, a few numbers per gradient instead
    of a pass over the slots per term."""
    trigger_design = np.asarray(trigger_design, dtype=float)
    k = trigger_design.shape[1]
    design = np.zeros((k, slots))
    gram_parts = np.zeros((size_classes, 1 + k * k))
    gram_parts[:, 0] = 1.0
    first, end = _trigger_groups(reaction_event)
    size = end - first
    rows = trigger_design[np.asarray(reaction_event)[first]]
    design[:, first] = rows.T
    for j, m in enumerate(np.unique(size)):
        of_size = rows[size == m]
        gram_parts[j] = np.r_[m, (of_size.T @ of_size).ravel()]
    return design, gram_parts


def _mean_scale(sigma_u, sigma_v, size):
    """sd of a trigger's mean cluster effect, m reactions: sqrt(sigma_v^2 / m + sigma_u^2)."""
    return (sigma_v**2 + size * sigma_u**2) ** 0.5 / size**0.5


# A trigger's centring weight is rounded to a multiple of 1 / CENTRING_STEPS, so that the
# sampler's scales s^lambda come from a table over (trigger size, weight): a gather per slot.
# A power and a log per slot cost a third more per gradient at 20,000 episodes (0.76 -> 1.01
# ms) and a quarter more at 200,000 (7.8 -> 9.8 ms); the table, about nothing at 200,000.
CENTRING_STEPS = 16


def _backend(x):
    """numpy for numpy values, pytensor.tensor for a graph's variables (imported only then:
    the web workers never build a graph); both spell log, linalg.cholesky and linalg.solve
    alike."""
    if isinstance(x, np.ndarray | float):
        return np
    import pytensor.tensor as pt

    return pt


def coordinate_scales(sigma_event, sigma_reaction, layout, max_size: int):
    """(log sd, 1 / sd), each (..., slots), of the sampler's cluster coordinates: s^lambda on a
    trigger's mean coordinate (s the sd of its mean effect, lambda its `centring` weight), 1
    elsewhere; triggers of up to `max_size` reactions.

    Partial centring (Papaspiliopoulos, Roberts & Skold 2007): the sampler draws
    x ~ N(0, s^lambda) and the model reads w = x / s^lambda, N(0, 1) as before, so the
    posterior is unchanged; the mean effect is s w = s^(1 - lambda) x. lambda = 0 is the
    non-centred form (the prior dominates), 1 the centred one (the data do). With 15,000
    triggers, non-centred mean coordinates of triggers the data pin tie sigma_event to every
    one of them; each trigger takes the lambda a Normal model would make best,
    I s^2 / (1 + I s^2), I its data's information (pymc_model.centring_weights).
    """
    sigma_u, sigma_v = _trailing(sigma_event, 1), _trailing(sigma_reaction, 1)
    steps = np.arange(CENTRING_STEPS + 1) / CENTRING_STEPS
    sd = _trailing(_mean_scale(sigma_u, sigma_v, np.arange(1.0, max_size + 1)), 1)
    tables = (_backend(sd).log(sd) * steps, sd ** -steps)  # (..., size, weight)
    index = ((layout[2] - 1) * (CENTRING_STEPS + 1) + layout[5] * CENTRING_STEPS)
    if isinstance(index, np.ndarray):
        return tuple(t.reshape(*t.shape[:-2], -1)[..., index.astype(int)] for t in tables)
    return tuple(t.flatten()[index.astype("int64")] for t in tables)


def cluster_sums(z, sigma_event, sigma_reaction, layout):
    """cluster_eff (..., slots): each reaction's event + reaction effect from its standard
    normal coordinates z (..., slots), numpy draws or the PyMC graph alike.

    Within a trigger of m reactions the sums c = u + v have covariance sigma_reaction^2 I +
    sigma_event^2 J, drawn in its eigenbasis: the group mean (eigenvalue sigma_reaction^2 +
    m sigma_event^2), whose coordinate sits on the group's first reaction, and Helmert
    contrasts within the group (sigma_reaction^2); contrast k (the k-th reaction, k >= 1)
    weighs 1/sqrt(k(k+1)) on the reactions before it and -k/sqrt(k(k+1)) on itself.
    A swept model's coordinates go through `sweep_cluster_means` first.
    """
    start, last = (layout[i].astype("int64") for i in (0, 1))
    size, position, weight = layout[2], layout[3], layout[4]
    sigma_u, sigma_v = _trailing(sigma_event, 1), _trailing(sigma_reaction, 1)
    mean_scale = _mean_scale(sigma_u, sigma_v, size)
    mean_part = (mean_scale * z)[..., start]
    a = z * weight
    running = a.cumsum(axis=-1)
    after = running[..., last] - running  # the weighted contrasts of the group's later members
    return mean_part + sigma_v * (after - position * a)


def sweep_cluster_means(z, swept, sigma_event, sigma_reaction, layout, design, gram_parts):
    """(z with the triggers' mean coordinates swept, shift (..., terms)).

    The trigger-level terms (the trigger types' effects, with the cutpoints' intercept, and
    the severity and alignment slopes) trade off with the mean of many triggers' event
    effects: with 15,000 triggers the data pin their sum and the priors alone part them, a
    ridge that a diagonal mass matrix crosses slowly. Sweeping (hierarchical centring)
    samples that share of the event effects as the terms themselves. With w the triggers'
    mean coordinates (N(0, I)), s their sds and X their design rows (`sweep_layout`: one
    column per trigger type, then severity - 1.5 and alignment - 1.5), the mean effects s w
    have their projection on X, X gamma, drawn apart:

        w = Xs gamma + (I - P) w,    Xs = X / s,  P = Xs (Xs' Xs)^-1 Xs',
        gamma ~ N(0, (Xs' Xs)^-1)    (gamma = L^-T swept, L L' = Xs' Xs, swept ~ N(0, I))

    exactly the same N(0, I) for w (P w replaced by an independent draw with its
    distribution). The likelihood sees the terms plus X gamma, which the model samples as
    one coordinate per term (pymc_model._trigger_level_terms), and (I - P) w, free of the
    ridge.
    """
    k = design.shape[-2]
    sigma_u, sigma_v = _trailing(sigma_event, 1), _trailing(sigma_reaction, 1)
    inverse_scale = 1.0 / _mean_scale(sigma_u, sigma_v, layout[2])  # (..., slots)
    weight = _mean_scale(sigma_u, sigma_v, gram_parts[:, 0]) ** -2  # (..., size classes)
    gram = (weight[..., :, None, None] * gram_parts[:, 1:].reshape((-1, k, k))).sum(axis=-3)
    linalg = _backend(gram).linalg  # numpy's stacks over leading axes
    projected = linalg.solve(gram, design @ (inverse_scale * z)[..., None])  # (..., k, 1)
    root = linalg.cholesky(gram)
    root_t = root.swapaxes(-1, -2) if isinstance(root, np.ndarray) else root.T
    shift = linalg.solve(root_t, _tensor(swept)[..., None])  # (..., k, 1)
    swept_z = z + inverse_scale * (design.T @ (shift - projected))[..., 0]
    return swept_z, shift[..., 0]


# -- from eta to the levels -------------------------------------------------------------------


def level_probabilities(eta: np.ndarray, cutpoints: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(level = k), k = 0..3, on a new axis `axis` of the result.

    `cutpoints` must broadcast against eta with a cutpoint axis inserted at `axis`: with
    eta (chain, draw, n) and axis -1 pass cutpoints (chain, draw, 1, 3); with samples last,
    eta (..., S) and axis -2, pass cutpoints (3, S).
    """
    eta = np.asarray(eta)
    axis = axis if axis >= 0 else eta.ndim + 1 + axis
    # sigmoid(c - eta) = 1 / (1 + exp(eta) exp(-c)): one exp per eta, not one per cutpoint;
    # an overflow to inf gives the right limit, P(level <= k) = 0
    with np.errstate(over="ignore"):
        cdf = np.expand_dims(np.exp(eta), axis) * np.exp(-np.asarray(cutpoints))
    cdf += 1.0
    np.reciprocal(cdf, out=cdf)  # P(level <= k), in place: forecast grids are large

    def at(index):  # cdf[..., index, ...] along `axis`
        return (slice(None),) * axis + (index,)

    # the levels are written where the cutpoints were, in the caller's memory layout (the
    # forecast engine keeps samples last and contiguous for its sorts)
    shape = list(cdf.shape)
    shape[axis] = len(LEVELS)
    probs = np.empty(shape, dtype=cdf.dtype)
    probs[at(0)] = cdf[at(0)]
    np.subtract(cdf[at(slice(1, None))], cdf[at(slice(None, -1))], out=probs[at(slice(1, -1))])
    np.subtract(1.0, cdf[at(-1)], out=probs[at(-1)])
    return probs


def level_log_probability(eta: np.ndarray, cutpoints: np.ndarray, level: np.ndarray
                          ) -> np.ndarray:
    """log P(level | eta), stable in the tails: eta (..., n), cutpoints (..., 3), level (n,).

    log(F(upper) - F(lower)) = log F(upper) + log1p(-exp(log F(lower) - log F(upper))).
    """
    level = np.asarray(level)
    cutpoints = np.asarray(cutpoints)
    top = len(LEVELS) - 1
    upper = np.where(level < top, np.take(cutpoints, np.minimum(level, top - 1), axis=-1) - eta,
                     np.inf)
    lower = np.where(level > 0, np.take(cutpoints, np.maximum(level - 1, 0), axis=-1) - eta,
                     -np.inf)
    log_up, log_lo = log_expit(upper), log_expit(lower)
    with np.errstate(divide="ignore"):
        return log_up + np.log1p(-np.exp(np.minimum(log_lo - log_up, -1e-12)))


# E[f(Z)], Z ~ Normal(0, 1), by the trapezoid rule on [-6.5, 6.5] with step 0.25 (53 nodes).
# f is a logistic of eta + sd * Z, analytic with poles pi / sd away from the real axis, so
# the trapezoid rule converges geometrically: within 2e-5 of the exact value for sd up to 7
# (the seed fit's cluster sd is about 3). A 15-node Gauss-Hermite rule, a polynomial fit,
# was off by up to 0.015 there.
_NODES = np.arange(-6.5, 6.5 + 1e-9, 0.25)
_WEIGHTS = np.exp(-0.5 * _NODES**2)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def cluster_sd(sigma_event, sigma_reaction):
    """sd of a new trigger's cluster terms, event + reaction, for one cell."""
    return np.sqrt(np.square(sigma_event) + np.square(sigma_reaction))


def integrate_clusters(eta: np.ndarray, cutpoints: np.ndarray, sd: np.ndarray, axis: int = -1
                       ) -> np.ndarray:
    """P(level = k) for a new trigger: level probabilities averaged over eta + sd * Z.

    `sd` broadcasts against eta (per draw); the layout is `level_probabilities`'.
    """
    probs = None
    # Python floats keep the caller's dtype (the forecast engine's draws are float32)
    for node, weight in zip(_NODES.tolist(), _WEIGHTS.tolist(), strict=True):
        term = level_probabilities(eta + sd * node, cutpoints, axis=axis)
        term *= weight
        if probs is None:
            probs = term
        else:
            probs += term
    return probs


def any_restriction(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(level >= 1) from level probabilities with levels on `axis`."""
    return 1.0 - np.take(probs, 0, axis=axis)


def log_multinomial_coef(counts: np.ndarray) -> np.ndarray:
    """log(n! / prod k_i!) per cell: constant in the parameters, so computed once, in numpy."""
    counts = np.asarray(counts)
    return gammaln(counts.sum(axis=-1) + 1) - gammaln(counts + 1).sum(axis=-1)
