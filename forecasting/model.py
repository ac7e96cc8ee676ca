"""Cells + priors -> the PyMC model (the only module besides `fitting` that builds graphs).

Cumulative-logit (ordered logistic) likelihood on aggregated cells. The linear predictor is

    eta = bloc + partner-within-bloc + type + bloc x type + partner x type + trigger type
          + beta_severity * (severity - 1.5) + beta_alignment * (alignment - 1.5)

with every effect sum-to-zero (`pm.ZeroSumNormal`) because the cutpoints carry the intercept.
Each effect is centred or non-centred as the data call for (`choose_parameterization`).

Posterior contract (the forecast engine relies on exactly these names and dims):
`cutpoints` (cutpoint), `pt_eff` (partner, intel_type) = bloc + partner + type + bloc x type +
partner x type, `trigger_eff` (trigger_type), `beta_severity`, `beta_alignment`, and for plots
`partner_eff` (partner, bloc included), `type_eff` (intel_type), `bloc_eff` (bloc).
P(level <= k) = sigmoid(cutpoints[k] - eta).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln

from .cells import LEVELS, Cells
from .priors import PriorSet, make_rv

SEVERITY_CENTER = 1.5
ALIGNMENT_CENTER = 1.5
MODEL_NAME = "ordinal-hierarchical"
MODEL_REVISION = 1  # bump when the graph changes in a way that changes the posterior

# effect -> (dims, scale parameter, name of the effect variable)
EFFECTS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "bloc": (("bloc",), "sigma_bloc", "bloc_eff"),
    "partner": (("partner",), "sigma_partner", "partner_dev"),
    "intel_type": (("intel_type",), "sigma_type", "type_eff"),
    "bloc_type": (("bloc", "intel_type"), "sigma_bloc_type", "bloc_type_eff"),
    "partner_type": (("partner", "intel_type"), "sigma_pt", "pt_dev"),
    "trigger_type": (("trigger_type",), "sigma_trigger", "trigger_eff"),
}
PARAMETERIZATIONS = ("centered", "noncentered")
# Fisher information (logit^-2) a weakly observed group's data must carry before its effect
# is centred. With 20 units the data alone pin a group effect to about +-0.22 logits, well
# inside the prior scale of the effects (0.3-0.5), so the effects no longer follow their
# scale into a funnel. Measured on seed-like data (800 episodes): a threshold of 4 centred
# the 5 blocs and 6 trigger types and left 5-10 divergences; 20 gives none.
CENTERED_MIN_INFORMATION = 40.0


def information_per_episode(level_shares: np.ndarray) -> float:
    """Fisher information of one ordinal observation about a location shift: (1 - sum p^3)/3.

    For a binary outcome this is p(1 - p); with 80% in level 0 it is about 0.16.
    """
    p = np.asarray(level_shares, dtype=float)
    if p.sum() <= 0:
        return 0.0
    p = p / p.sum()
    return float((1.0 - np.sum(p**3)) / 3.0)


def choose_parameterization(cells: Cells, min_information: float = CENTERED_MIN_INFORMATION,
                            ) -> dict[str, str]:
    """Effect -> "centered" | "noncentered", from how much information each group carries.

    Centred where most groups are well observed (the likelihood dominates), non-centred
    where they are not (the prior dominates and a centred form has a funnel). Unseen groups
    count as zero, so a vocabulary with many unseen partners stays non-centred longer.
    """
    info = information_per_episode(cells.level_shares())
    per_group = cells.episodes_per_group()
    return {effect: "centered" if group_information(per_group[effect], info) >= min_information
            else "noncentered" for effect in EFFECTS}


def group_information(episodes_per_group: np.ndarray, info_per_episode: float) -> float:
    """Information of a typical weakly observed group: the lower quartile over groups.

    A quartile rather than the mean: a few heavily coded partners must not make the effect
    centred while most partners (and the unseen ones) still sit in the prior's funnel.
    """
    return float(np.quantile(episodes_per_group, 0.25) * info_per_episode)


def resolve_parameterization(cells: Cells, priors: PriorSet,
                             parameterization: dict[str, str] | str | None = None,
                             ) -> dict[str, str]:
    """Data-driven choice, then the priors' `centered` flags, then explicit overrides."""
    chosen = choose_parameterization(cells) | priors.centered_overrides()
    if isinstance(parameterization, str):
        parameterization = dict.fromkeys(EFFECTS, parameterization)
    for effect, form in (parameterization or {}).items():
        if effect not in EFFECTS:
            raise ValueError(f"Requested parameterization for '{effect}' but the effects are "
                             f"{list(EFFECTS)}")
        if form not in PARAMETERIZATIONS:
            raise ValueError(f"Requested parameterization '{form}' for '{effect}' but it must "
                             f"be one of {list(PARAMETERIZATIONS)}")
        chosen[effect] = form
    return chosen


def ordered_logistic_probs(eta, cutpoints):
    """P(level = k) for k = 0..3, with P(y <= k) = sigmoid(c_k - eta) (pm.OrderedLogistic's).

    Written level by level (not as a padded cumulative difference) so that every shape is
    static, which JAX (numpyro) needs, and the top level uses sigmoid(eta - c) rather than
    1 - sigmoid(c - eta).
    """
    cdf = [pm.math.sigmoid(cutpoints[k] - eta) for k in range(3)]
    probs = pt.stack([cdf[0], cdf[1] - cdf[0], cdf[2] - cdf[1],
                      pm.math.sigmoid(eta - cutpoints[2])], axis=-1)
    # clipped: far in the tails two sigmoids round to the same float and log(0) has no gradient
    return pt.clip(probs, 1e-12, 1.0)


def log_multinomial_coef(counts: np.ndarray) -> np.ndarray:
    """log(n! / prod k_i!) per cell: constant in the parameters, so computed once, in numpy."""
    counts = np.asarray(counts)
    return gammaln(counts.sum(axis=-1) + 1) - gammaln(counts + 1).sum(axis=-1)


def _multinomial_logp(value, n, p, log_coef):
    # pm.Multinomial's density, but with the data-only term precomputed: its gammaln calls
    # were half the cost of every gradient evaluation (measured: 317 vs 171 us, 762 cells)
    return log_coef + pt.sum(value * pt.log(p), axis=-1)


def _multinomial_random(n, p, log_coef, rng=None, size=None):
    p = np.asarray(p) / np.sum(p, axis=-1, keepdims=True)
    n = np.asarray(n)
    if size is not None:
        n = np.broadcast_to(n, size)
        p = np.broadcast_to(p, (*size, p.shape[-1]))
    return rng.multinomial(n, p)


def _effect(effect: str, form: str, priors: PriorSet):
    dims, scale_name, name = EFFECTS[effect]
    sigma = make_rv(scale_name, priors[scale_name])
    n_axes = len(dims)
    if form == "centered":
        return pm.ZeroSumNormal(name, sigma=sigma, n_zerosum_axes=n_axes, dims=dims)
    z = pm.ZeroSumNormal(f"{name}_z", sigma=1.0, n_zerosum_axes=n_axes, dims=dims)
    return pm.Deterministic(name, sigma * z, dims=dims)


def _expand(cells: Cells) -> dict[str, np.ndarray]:
    """One row per episode, from the cells (the same data, for the per-episode model)."""
    reps = cells.counts.reshape(-1)
    cell_of = np.repeat(np.arange(cells.n_cells), len(LEVELS))
    level = np.tile(np.arange(len(LEVELS)), cells.n_cells)
    row = np.repeat(cell_of, reps)
    return {"row": row, "level": np.repeat(level, reps)}


def build_model(cells: Cells, priors: PriorSet,
                parameterization: dict[str, str] | str | None = None,
                aggregated: bool = True) -> pm.Model:
    """The restriction model for these cells and priors.

    `parameterization` overrides the data-driven choice per effect (a dict) or for all
    effects ("centered" / "noncentered"). `aggregated=False` builds the per-episode model
    (an OrderedLogistic per episode) on the same data; it exists for the equivalence test.
    The model's `forecast_config` attribute records what a fit must store with it.
    """
    form = resolve_parameterization(cells, priors, parameterization)
    coords = {k: list(v) for k, v in cells.coords.items()}
    if aggregated:
        obs_dim = "cell"
        rows = np.arange(cells.n_cells)
    else:
        obs_dim = "episode"
        expanded = _expand(cells)
        rows = expanded["row"]
    coords[obs_dim] = np.arange(len(rows))

    with pm.Model(coords=coords) as model:
        p_idx = pm.Data("partner_idx", cells.partner_idx[rows], dims=obs_dim)
        t_idx = pm.Data("type_idx", cells.type_idx[rows], dims=obs_dim)
        tt_idx = pm.Data("trigger_idx", cells.trigger_idx[rows], dims=obs_dim)
        severity = pm.Data("severity", cells.severity[rows].astype(float), dims=obs_dim)
        alignment = pm.Data("alignment", cells.alignment[rows].astype(float), dims=obs_dim)
        # data, not a constant, so that the posterior predictive check can group by bloc
        partner_bloc = pm.Data("partner_bloc", cells.partner_bloc, dims="partner")

        cutpoints = make_rv("cutpoints", priors["cutpoints"], dims="cutpoint",
                            transform=pm.distributions.transforms.ordered)
        beta_severity = make_rv("beta_severity", priors["beta_severity"])
        beta_alignment = make_rv("beta_alignment", priors["beta_alignment"])

        bloc_eff = _effect("bloc", form["bloc"], priors)
        partner_dev = _effect("partner", form["partner"], priors)
        type_eff = _effect("intel_type", form["intel_type"], priors)
        bloc_type_eff = _effect("bloc_type", form["bloc_type"], priors)
        pt_dev = _effect("partner_type", form["partner_type"], priors)
        trigger_eff = _effect("trigger_type", form["trigger_type"], priors)

        partner_eff = pm.Deterministic("partner_eff", bloc_eff[partner_bloc] + partner_dev,
                                       dims="partner")
        pt_eff = pm.Deterministic(
            "pt_eff",
            partner_eff[:, None] + type_eff[None, :] + bloc_type_eff[partner_bloc] + pt_dev,
            dims=("partner", "intel_type"))

        eta = (pt_eff[p_idx, t_idx] + trigger_eff[tt_idx]
               + beta_severity * (severity - SEVERITY_CENTER)
               + beta_alignment * (alignment - ALIGNMENT_CENTER))
        if aggregated:
            counts = pm.Data("counts", cells.counts, dims=("cell", "level"))
            log_coef = pm.Data("log_multinomial_coef", log_multinomial_coef(cells.counts),
                               dims="cell")
            pm.CustomDist("level_counts", counts.sum(axis=-1),
                          ordered_logistic_probs(eta, cutpoints), log_coef,
                          logp=_multinomial_logp, random=_multinomial_random,
                          signature="(),(k),()->(k)", observed=counts, dtype="int64",
                          dims=("cell", "level"))
        else:
            pm.OrderedLogistic("restriction", eta=eta, cutpoints=cutpoints,
                               observed=expanded["level"], dims="episode")

    model.forecast_config = {
        "model": MODEL_NAME,
        "revision": MODEL_REVISION,
        "aggregated": aggregated,
        "parameterization": dict(form),
        "priors_hash": priors.content_hash,
        "severity_center": SEVERITY_CENTER,
        "alignment_center": ALIGNMENT_CENTER,
        "codebook_version": cells.codebook_version,
        "coords": {k: [str(x) for x in v] for k, v in cells.coords.items()},
    }
    return model


def data_for(cells: Cells) -> dict[str, np.ndarray]:
    """The pm.Data values of the aggregated model for these cells (for `with_data` reuse)."""
    return {
        "partner_idx": cells.partner_idx,
        "type_idx": cells.type_idx,
        "trigger_idx": cells.trigger_idx,
        "severity": cells.severity.astype(float),
        "alignment": cells.alignment.astype(float),
        "counts": cells.counts,
        "log_multinomial_coef": log_multinomial_coef(cells.counts),
        "partner_bloc": cells.partner_bloc,
    }
