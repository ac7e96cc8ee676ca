"""Cells + priors -> the PyMC model (the only module besides `fitting` that builds graphs).

Cumulative-logit (ordered logistic) likelihood on aggregated cells: a Potential holding
sum count * log P(level | cell), the multinomial coefficients being a constant of the data,
computed by one fused Op (forecasting.model.likelihood) from two tables, pt_eff and the
trigger x severity x alignment effects, and each cell's entries in them. The fit adds the
observed counts as
`observed_data` and computes the per-cell log likelihood and the predictive draws in numpy
(forecasting.model.fitting). The linear predictor is

    eta = bloc + partner-within-bloc + type + bloc x type + partner x type-within-bloc x type
          + trigger type + beta_severity * (severity - 1.5) + beta_alignment * (alignment - 1.5)

with every effect sum-to-zero because the cutpoints carry the intercept. Partners are nested
in their bloc: their deviations sum to zero *within each bloc* (so `bloc_eff` is the mean of
its partners' effects), and the partner x type deviations sum to zero within each bloc x type
and over types (so `bloc_type_eff` is the mean of its partners' interactions). With
deviations summing to zero over all partners instead, a bloc's effect and its partners' mean
deviation formed a ridge that only the priors resolved, which mixed worse as data grew
(bench/bench_fit.py). The nested deviations are built from orthonormal contrasts
(`contrast_basis`): an i.i.d. Normal on the contrasts is exactly a Normal conditioned to sum
to zero within each group, as `pm.ZeroSumNormal` is for one group.
Each effect is centred or non-centred as the data call for (`choose_parameterization`).

Posterior contract (the forecast engine relies on exactly these names and dims):
`cutpoints` (cutpoint), `pt_eff` (partner, intel_type) = bloc + partner + type + bloc x type +
partner x type, `trigger_eff` (trigger_type), `beta_severity`, `beta_alignment`, and for plots
`partner_eff` (partner, bloc included), `type_eff` (intel_type), `bloc_eff` (bloc).
P(level <= k) = sigmoid(cutpoints[k] - eta). From `SWEEP_MIN_TRIGGERS` coded triggers the
cutpoints, slopes and `trigger_eff` are Deterministics of swept coordinates (`*_swept`,
`trigger_terms_z`: `_trigger_level_terms`), under the same names and priors.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.linalg import helmert
from scipy.special import expit

from forecasting.domain.cells import Cells
from forecasting.model.arithmetic import (
    CENTERS,
    CLUSTERS,
    EFFECTS,
    LEVELS,
    ORDINAL_VALUES,
    SWEPT_SLOPES,
    cluster_layout,
    cluster_sums,
    coordinate_scales,
    linear_predictor,
    partner_type_effects,
    scenario_effects,
    sweep_cluster_means,
    sweep_layout,
)
from forecasting.model.likelihood import level_weights, ordinal_loglik, term_order
from forecasting.model.log_prior import PriorTerm
from forecasting.model.priors import PriorSet, distribution_kwargs

MODEL_NAME = "ordinal-hierarchical"
MODEL_REVISION = 3  # bump when the graph changes in a way that changes the posterior

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

    Episodes of one reaction share its cluster effect, so they count as one: the design
    effect of cluster sampling with the within-cluster correlation taken as 1, the
    conservative end (the seed fit's event sd, about 3 logits, dwarfs the rest). Counted as
    independent episodes, 20,000 simulated episodes centred bloc x type, whose scale then
    mixed in a funnel (min bulk ESS 26, R-hat 1.11).
    """
    info = information_per_episode(cells.level_shares())
    n_reactions = max(len(cells.coords.get("reaction", ())), 1)
    design_effect = max(cells.n_episodes / n_reactions, 1.0)
    per_group = {k: v / design_effect for k, v in cells.episodes_per_group().items()}
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


# Sweeping the trigger-level terms (`_trigger_level_terms`) from this many coded triggers.
# The same posterior, a different geometry: where the triggers are many, the cutpoints, slopes
# and trigger types' effects trade off with the mean of the event effects (a ridge); where
# they are few, the sweep does harm. Unswept -> swept, both with the trigger types' effect
# centred (a sweep needs it), target acceptance 0.95, 4 x 1,000 draws (docs/performance.md):
# the seed data (49 triggers) 7 -> 186 divergences, sampling 3.9 -> 11.5 s; 2,000 simulated
# episodes (154) 36 -> 12 divergences, 5.6 -> 10.7 s (the data-driven choice leaves that
# effect non-centred there: no divergences, unswept). At 20,000 (1,538 triggers) about even:
# min bulk ESS 677 -> 867, ESS per second 10.8 -> 9.8. At 200,000 (15,385 triggers, target
# acceptance 0.8, 2 x 300 draws side by side) the cutpoints' bulk ESS 14, trigger_eff's 20 and
# beta_alignment's 23 unswept; swept, none of them is among the slowest (the whole fit, 4 x
# 1,000 draws: min bulk ESS 496).
SWEEP_MIN_TRIGGERS = 1000

# Partly centring the triggers' mean cluster coordinates (arithmetic.coordinate_scales) from
# this many coded triggers: the same posterior, a different geometry. Swept, target
# acceptance 0.8, 4 x 500 draws after 500, without -> with: 20,000 simulated episodes (1,538
# triggers) sigma_event's bulk ESS 354 -> 919; 200,000 (15,385) 212 -> 474, sigma_event no
# longer the slowest. Below, 4 x 1,000 draws at 0.95, not measured quietly: the seed data
# (49 triggers) min bulk ESS 700 (sigma_event) -> 1,019, 2,000 episodes (154) 360 -> 346;
# both without divergences (docs/performance.md).
CENTRING_MIN_TRIGGERS = 1000
# The scales the centring weights assume: the default priors' (priors/default.toml), near
# the seed fit's and the simulations' posteriors (sigma_event 1.9-2.0, sigma_reaction
# 0.7-0.8 at 20,000 and 200,000 episodes). The weights shape the geometry only.
CENTRING_SCALES = {"sigma_event": 2.0, "sigma_reaction": 1.0}

LIKELIHOOD = "level_counts_loglik"


def contrast_basis(groups: np.ndarray, n_groups: int | None = None,
                   observed: np.ndarray | None = None) -> np.ndarray:
    """Orthonormal columns: "sums to zero within each group" over the observed members,
    and one free column per unobserved member.

    Each contrast column is a Helmert contrast among the observed members of one group.
    `B @ z` with z ~ Normal(0, sigma) i.i.d. gives the observed members a Normal(0, sigma)
    vector conditioned to sum to zero within every group (B has orthonormal columns, so
    B B^T is that projection), and every unobserved member a fresh Normal(0, sigma): a
    partner never coded is a new draw from its bloc, not whatever the constraint leaves
    over (which would put n times the bloc's shrinkage on it).
    """
    groups = np.asarray(groups)
    n_groups = int(groups.max()) + 1 if n_groups is None else n_groups
    observed = np.ones(len(groups), dtype=bool) if observed is None else np.asarray(observed)
    columns = []
    for g in range(n_groups):
        members = np.flatnonzero((groups == g) & observed)
        if len(members) >= 2:
            for row in helmert(len(members)):
                col = np.zeros(len(groups))
                col[members] = row
                columns.append(col)
    for member in np.flatnonzero(~observed):
        col = np.zeros(len(groups))
        col[member] = 1.0
        columns.append(col)
    return np.array(columns).T.reshape(len(groups), len(columns))


def contrast_coords(groups: np.ndarray, labels: list, members: list,
                    observed: np.ndarray | None = None) -> list[str]:
    """Labels of `contrast_basis` columns: "<group>.<k>", then the unobserved members."""
    groups = np.asarray(groups)
    observed = np.ones(len(groups), dtype=bool) if observed is None else np.asarray(observed)
    out = []
    for g, label in enumerate(labels):
        size = int(np.sum((groups == g) & observed))
        out += [f"{label}.{k}" for k in range(1, size)]
    return out + [str(members[i]) for i in np.flatnonzero(~observed)]


def cluster_capacity(n: int) -> int:
    """Slots for n cluster effects: the next power of two, at least 64.

    The sampler's dimension is fixed when the model is compiled; with spare slots (free
    Normal(0, 1) draws that no episode touches, dropped from the stored posterior) a refit
    after a newly coded trigger reuses the compiled model instead of recompiling.
    """
    return max(64, 1 << max(int(n) - 1, 0).bit_length())


def prior_variable(name: str, priors: PriorSet, **kwargs):
    """The random variable `name` with its prior, inside the current model context.

    Prior families carry PyMC's names (forecasting.model.priors.FAMILIES); extra keyword
    arguments (dims, transform, ...) go to the distribution.
    """
    spec = priors[name]
    _record_prior(name, PriorTerm(spec["dist"], distribution_kwargs(spec)))
    return getattr(pm, spec["dist"])(name, **distribution_kwargs(spec), **kwargs)


def _record_prior(name: str, term: PriorTerm) -> None:
    """Note the prior of free variable `name` in the model's `prior_terms`: the fit computes
    the log prior from them in numpy (forecasting.model.log_prior)."""
    model = pm.modelcontext(None)
    if not hasattr(model, "prior_terms"):
        model.prior_terms = {}
    model.prior_terms[name] = term


def _nested_effect(effect: str, form: str, priors: PriorSet, basis: dict[str, np.ndarray]):
    """Partner deviations within bloc, partner x type deviations within bloc x type."""
    spec = EFFECTS[effect]
    dims, name = spec.dims, spec.variable
    sigma = prior_variable(spec.scale, priors)
    raw_dims = spec.contrasts
    if form == "centered":
        raw = pm.Normal(f"{name}_raw", 0.0, sigma, dims=raw_dims)
        _record_prior(raw.name, PriorTerm("Normal", {"mu": 0.0}, sigma=spec.scale))
        scale = 1.0
    else:
        raw = pm.Normal(f"{name}_z", 0.0, 1.0, dims=raw_dims)
        _record_prior(raw.name, PriorTerm("Normal", {"mu": 0.0, "sigma": 1.0}))
        scale = sigma
    value = pt.dot(pt.constant(basis["partner"]), raw)
    if effect == "partner_type":
        value = pt.dot(value, pt.constant(basis["intel_type"].T))
    return pm.Deterministic(name, scale * value, dims=dims)


def _absent(name: str, dims: tuple[str, ...] | str, model_coords: dict):
    """A term left out of a simpler variant: zeros under the same name and dims, so that
    the posterior contract (and the forecasts) hold for every variant."""
    dims = (dims,) if isinstance(dims, str) else dims
    shape = tuple(len(model_coords[d]) for d in dims)
    return pm.Deterministic(name, pt.zeros(shape), dims=dims or None)


def _effect(effect: str, form: str, priors: PriorSet, basis: dict[str, np.ndarray],
            terms: frozenset[str]):
    spec = EFFECTS[effect]
    if effect not in terms:
        return _absent(spec.variable, spec.dims, pm.modelcontext(None).coords)
    if spec.contrasts:
        return _nested_effect(effect, form, priors, basis)
    dims, name = spec.dims, spec.variable
    sigma = prior_variable(spec.scale, priors)
    n_axes = len(dims)
    if form == "centered":
        _record_prior(name, PriorTerm("ZeroSumNormal", sigma=spec.scale, zerosum_axes=n_axes))
        return pm.ZeroSumNormal(name, sigma=sigma, n_zerosum_axes=n_axes, dims=dims)
    _record_prior(f"{name}_z", PriorTerm("ZeroSumNormal", {"sigma": 1.0}, zerosum_axes=n_axes))
    z = pm.ZeroSumNormal(f"{name}_z", sigma=1.0, n_zerosum_axes=n_axes, dims=dims)
    return pm.Deterministic(name, sigma * z, dims=dims)


def _expand(cells: Cells) -> dict[str, np.ndarray]:
    """One row per episode, from the cells (the same data, for the per-episode model)."""
    reps = cells.counts.reshape(-1)
    cell_of = np.repeat(np.arange(cells.n_cells), len(LEVELS))
    level = np.tile(np.arange(len(LEVELS)), cells.n_cells)
    row = np.repeat(cell_of, reps)
    return {"row": row, "level": np.repeat(level, reps)}


TERMS = (*EFFECTS, "slopes", *CLUSTERS)
# Simpler models the served one is compared with (leaving triggers out): what each keeps.
VARIANTS: dict[str, frozenset[str]] = {
    "full": frozenset(TERMS),
    "no_clusters": frozenset(TERMS) - set(CLUSTERS),
    "reaction_only": frozenset(TERMS) - {"event"},  # clusters without the shared event effect
    "main_effects": frozenset({"bloc", "partner", "intel_type", "trigger_type", "slopes"}),
    "intercept": frozenset(),
}


def build_model(cells: Cells, priors: PriorSet,
                parameterization: dict[str, str] | str | None = None,
                aggregated: bool = True, variant: str = "full",
                sweep: bool | None = None, centring: bool | None = None) -> pm.Model:
    """The restriction model for these cells and priors.

    `variant` names a simpler model (`VARIANTS`: the terms it keeps; the others are zeros
    under their usual names) for model comparison; "full" is the served model.

    `parameterization` overrides the data-driven choice per effect (a dict) or for all
    effects ("centered" / "noncentered"). `aggregated=False` builds the per-episode model
    (an OrderedLogistic per episode) on the same data; it exists for the equivalence test.
    `sweep` overrides the data-driven choice (`choose_sweep`) of sampling the trigger-level
    terms swept (`_trigger_level_terms`), `centring` that of partly centring the triggers'
    mean cluster coordinates (`choose_centring`); the posterior is the same either way.
    The model's `forecast_config` attribute records what a fit must store with it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Requested variant '{variant}' but it must be one of "
                         f"{list(VARIANTS)}")
    terms = VARIANTS[variant]
    form = resolve_parameterization(cells, priors, parameterization)
    swept = choose_sweep(cells, terms, form) if sweep is None else bool(sweep)
    if swept and not sweepable(terms, form):
        raise ValueError(f"Requested a swept model but variant '{variant}' with the trigger "
                         f"types' effect {form['trigger_type']} cannot be swept: it needs the "
                         "cluster terms, the slopes and a centred trigger type effect")
    centred = (choose_centring(cells) if centring is None else bool(centring)) and bool(
        set(CLUSTERS) & terms)
    coords = {k: list(v) for k, v in cells.coords.items()}
    if swept:
        coords["swept_term"] = swept_terms(cells)
        coords["trigger_type_contrast"] = [f"c{k}" for k in
                                           range(1, len(coords["trigger_type"]))]
    n_reactions = len(coords["reaction"])
    capacity = {"reaction": cluster_capacity(n_reactions)}
    coords["reaction"] = coords["reaction"] + [f"(spare {k})" for k in
                                               range(n_reactions, capacity["reaction"])]
    del coords["trigger"]  # a trigger's event effect is drawn after sampling (`split_clusters`)
    if aggregated:
        obs_dim = "cell"
        rows = np.arange(cells.n_cells)
    else:
        obs_dim = "episode"
        expanded = _expand(cells)
        rows = expanded["row"]
    coords[obs_dim] = np.arange(len(rows))
    n_types = len(cells.coords["intel_type"])
    observed = cells.observed_partners
    basis = {"partner": contrast_basis(cells.partner_bloc, len(cells.coords["bloc"]), observed),
             "intel_type": contrast_basis(np.zeros(n_types, dtype=int), 1)}
    coords["partner_contrast"] = contrast_coords(cells.partner_bloc, list(cells.coords["bloc"]),
                                                 list(cells.coords["partner"]), observed)
    coords["type_contrast"] = [f"c{k}" for k in range(1, n_types)]

    with pm.Model(coords=coords) as model:
        p_idx = pm.Data("partner_idx", cells.partner_idx[rows], dims=obs_dim)
        t_idx = pm.Data("type_idx", cells.type_idx[rows], dims=obs_dim)
        tt_idx = pm.Data("trigger_idx", cells.trigger_idx[rows], dims=obs_dim)
        pm.Data("event_idx", cells.event_idx[rows], dims=obs_dim)
        r_idx = pm.Data("reaction_idx", cells.reaction_idx[rows], dims=obs_dim)
        # values 0-3, which index the scenario table (arithmetic.scenario_effects)
        severity = pm.Data("severity", cells.severity[rows], dims=obs_dim)
        alignment = pm.Data("alignment", cells.alignment[rows], dims=obs_dim)
        # a constant (the codebook fixes it, and the codebook version is part of the compiled
        # model's key): a data array would cost nutpie's callbacks an accessor each
        partner_bloc = cells.partner_bloc

        if not swept:
            cutpoints, beta_severity, beta_alignment = _trigger_level_terms(priors, terms,
                                                                            coords)
        # swept, the trigger types' effects come with the other trigger-level terms, below
        group_effects = {effect: _effect(effect, form[effect], priors, basis, terms)
                         for effect in EFFECTS if not (swept and effect == "trigger_type")}
        bloc_eff, partner_dev, type_eff, bloc_type_eff, pt_dev = (
            group_effects[e] for e in ("bloc", "partner", "intel_type", "bloc_type",
                                       "partner_type"))
        cluster_eff, shift = _cluster_effects(cells, priors, terms, capacity["reaction"], coords,
                                              swept, centred)
        if swept:
            cutpoints, beta_severity, beta_alignment, trigger_eff = _trigger_level_terms(
                priors, terms, coords, shift)
        else:
            trigger_eff = group_effects["trigger_type"]
        partner_value, pt_value = partner_type_effects(bloc_eff, partner_dev, type_eff,
                                                       bloc_type_eff, pt_dev, partner_bloc)
        pm.Deterministic("partner_eff", partner_value, dims="partner")
        pt_eff = pm.Deterministic("pt_eff", pt_value, dims=("partner", "intel_type"))

        if aggregated:
            # eta of a cell = pt_eff[partner, type] + scenario_eff[trigger type, severity,
            # alignment] + cluster_eff[reaction]: three tables the likelihood kernel gathers
            scenario_eff = scenario_effects(trigger_eff, beta_severity, beta_alignment)
            effects = pt.concatenate([pt_eff.reshape((-1,)), scenario_eff.reshape((-1,)),
                                      cluster_eff])
            # the counts themselves are data for the fit's observed_data group
            pm.Data("counts", cells.counts, dims=("cell", "level"))
            data = {name: pm.Data(name, value)
                    for name, value in likelihood_data(cells).items()}
            weights = data.pop("level_weights")
            pm.Potential(LIKELIHOOD, ordinal_loglik(cutpoints, effects, term_weight=weights[:-1],
                                                    eta_weight=weights[-1], **data))
        else:
            params = {"pt_eff": pt_eff, "trigger_eff": trigger_eff,
                      "beta_severity": beta_severity, "beta_alignment": beta_alignment,
                      "reaction_eff": cluster_eff}
            eta = linear_predictor(params, p_idx, t_idx, tt_idx, severity, alignment,
                                   reaction=r_idx)
            pm.OrderedLogistic("restriction", eta=eta, cutpoints=cutpoints,
                               observed=expanded["level"], dims="episode")

    vocabulary = {k: v for k, v in cells.coords.items()
                  if k not in {cluster.dim for cluster in CLUSTERS.values()}}
    model.forecast_config = {
        "model": MODEL_NAME,
        "revision": MODEL_REVISION,
        "variant": variant,
        "aggregated": aggregated,
        "parameterization": dict(form),
        # only when swept: an unswept model's config (and so its fits' ids) stays as it was
        **({"swept": coords["swept_term"]} if swept else {}),
        **({"centred_triggers": True} if centred else {}),
        "priors_hash": priors.content_hash,
        "severity_center": CENTERS["severity"],
        "alignment_center": CENTERS["alignment"],
        "codebook_version": cells.codebook_version,
        # what the compiled graph depends on besides the data: the vocabulary, which
        # partners are coded (the contrasts), the cluster slots
        "coords": {k: [str(x) for x in v] for k, v in vocabulary.items()},
        "observed_partners": [str(p) for p, seen in zip(cells.coords["partner"], observed,
                                                        strict=True) if seen],
        "cluster_capacity": capacity,
    }
    model.cluster_sizes = {"reaction": n_reactions}
    # stored with the fit's data (group constant_data), for checks that group by bloc
    model.constants = {"partner_bloc": xr.DataArray(
        cells.partner_bloc, dims="partner", coords={"partner": list(cells.coords["partner"])})}
    model.cluster_triggers = {"labels": list(cells.coords["trigger"]),
                              "of_reaction": cells.reaction_event}
    return model


def likelihood_data(cells: Cells) -> dict[str, np.ndarray]:
    """What the aggregated likelihood reads: the cells' weights per level
    (`likelihood.level_weights`: `level_weights` (4, n) holds the three term weights, then
    the eta weight; `level_totals`) and `effect_idx` (3, n), each cell's entries in the
    effects table: its partner x type in pt_eff (row-major), its
    trigger type x severity x alignment in scenario_eff, its reaction in cluster_eff, each
    block after the previous. Cells in the kernel's `term_order` (the likelihood is a sum
    over cells)."""
    n_types = len(cells.coords["intel_type"])
    n_values = len(ORDINAL_VALUES)
    partner_type = cells.partner_idx * n_types + cells.type_idx
    scenario = (cells.trigger_idx * n_values + cells.severity) * n_values + cells.alignment
    offset_scenario = len(cells.coords["partner"]) * n_types
    offset_cluster = offset_scenario + len(cells.coords["trigger_type"]) * n_values * n_values
    effect_idx = np.stack([partner_type, offset_scenario + scenario,
                           offset_cluster + cells.reaction_idx])
    weights = level_weights(cells.counts)
    order = term_order(weights["term_weight"])
    # the term and eta weights in one array: each data array costs nutpie a compiled accessor
    return {"effect_idx": np.ascontiguousarray(effect_idx[:, order], dtype=np.int64),
            "level_weights": np.ascontiguousarray(np.vstack(
                [weights["term_weight"][:, order], weights["eta_weight"][order]])),
            "level_totals": weights["level_totals"]}


def swept_terms(cells: Cells) -> list[str]:
    """The columns of a sweep's design: one per trigger type, then the slopes."""
    return [f"trigger_type:{code}" for code in cells.coords["trigger_type"]] + list(SWEPT_SLOPES)


def _trigger_design(cells: Cells) -> np.ndarray:
    """(trigger, swept_terms): each coded trigger's type (one-hot), severity - 1.5 and
    alignment - 1.5."""
    n_types = len(cells.coords["trigger_type"])
    design = np.zeros((len(cells.coords["trigger"]), n_types + len(SWEPT_SLOPES)))
    design[cells.event_idx, cells.trigger_idx] = 1.0
    design[cells.event_idx, n_types] = cells.severity - CENTERS["severity"]
    design[cells.event_idx, n_types + 1] = cells.alignment - CENTERS["alignment"]
    return design


def _trigger_level_terms(priors: PriorSet, terms: frozenset[str], coords: dict, shift=None):
    """The cutpoints and the two slopes (and, swept, the trigger types' effects), sampled as
    themselves or, given the triggers' share `shift` (arithmetic.sweep_cluster_means' gamma:
    one per trigger type, then severity and alignment), swept.

    Swept, the sampler's coordinates are what the likelihood sees: the cutpoints less the
    mean of the types' shifts (`cutpoints_swept`), the types' effects plus the shifts'
    deviations from that mean (`trigger_eff_swept`, on the effect's contrasts) and the slopes
    plus theirs (`beta_severity_swept`, ...). Their priors are the terms' own, moved by the
    shift (every family on the real line has a location `mu`; a Normal on the contrasts is
    the sum-to-zero Normal), so the terms themselves, Deterministics under their usual
    names, keep their priors exactly; the log prior is recorded for them (`model.swept` maps
    each sampled coordinate to its term).
    """
    ordered = pm.distributions.transforms.ordered
    if shift is None:
        cutpoints = prior_variable("cutpoints", priors, dims="cutpoint", transform=ordered)
        slopes = [prior_variable(name, priors) if "slopes" in terms else _absent(name, (), coords)
                  for name in ("beta_severity", "beta_alignment")]
        return cutpoints, *slopes
    n_types = len(coords["trigger_type"])
    type_shift = shift[:n_types]
    intercept = type_shift.mean()
    cutpoints = _swept_variable("cutpoints", priors, -intercept, dims="cutpoint",
                                transform=ordered)
    slopes = [_swept_variable(name, priors, shift[n_types + i])
              for i, name in enumerate(("beta_severity", "beta_alignment"))]
    trigger_eff = _swept_trigger_effect(priors, type_shift - intercept)
    return cutpoints, *slopes, trigger_eff


def _swept_variable(name: str, priors: PriorSet, offset, dims: str | None = None, **kwargs):
    """`name` = `name`_swept - offset, `name`_swept drawn from name's prior moved by offset."""
    spec = priors[name]
    params = distribution_kwargs(spec)
    _record_prior(name, PriorTerm(spec["dist"], params))
    moved = params | {"mu": np.asarray(params["mu"], dtype=float) + offset}
    swept = getattr(pm, spec["dist"])(f"{name}_swept", **moved, dims=dims, **kwargs)
    _note_swept(swept.name, name)
    return pm.Deterministic(name, swept - offset, dims=dims)


def _swept_trigger_effect(priors: PriorSet, offset):
    """trigger_eff = H c - offset, c ~ Normal(H' offset, sigma) the effect's orthonormal
    contrasts (H), centred, moved by the shift (`offset` sums to zero)."""
    spec = EFFECTS["trigger_type"]
    sigma = prior_variable(spec.scale, priors)
    n_types = len(pm.modelcontext(None).coords["trigger_type"])
    basis = contrast_basis(np.zeros(n_types, dtype=int), 1)
    raw = pm.Normal(f"{spec.variable}_swept", pt.dot(basis.T, offset), sigma,
                    dims="trigger_type_contrast")
    value = pt.dot(basis, raw)
    _record_prior(spec.variable, PriorTerm("ZeroSumNormal", sigma=spec.scale, zerosum_axes=1))
    _note_swept(raw.name, spec.variable)
    return pm.Deterministic(spec.variable, value - offset, dims="trigger_type")


def _note_swept(coordinate: str, term: str) -> None:
    model = pm.modelcontext(None)
    model.swept = getattr(model, "swept", {}) | {coordinate: term}


def sweepable(terms: frozenset[str], form: dict[str, str]) -> bool:
    """A sweep needs the cluster terms (whose mean it moves) and the trigger-level terms
    (which take it), the trigger types' effect centred: non-centred, its standard normal
    coordinates would be moved by shift / sigma_trigger, a funnel (the seed data, swept so,
    gave 32 divergences)."""
    return (bool(set(CLUSTERS) & terms) and {"slopes", "trigger_type"} <= terms
            and form.get("trigger_type") == "centered")


def choose_sweep(cells: Cells, terms: frozenset[str], form: dict[str, str]) -> bool:
    """Sweep the trigger-level terms once the coded triggers are many (`SWEEP_MIN_TRIGGERS`)."""
    return (sweepable(terms, form)
            and len(cells.coords.get("trigger", ())) >= SWEEP_MIN_TRIGGERS)


def centring_weights(cells: Cells, sigma_event: float = CENTRING_SCALES["sigma_event"],
                     sigma_reaction: float = CENTRING_SCALES["sigma_reaction"],
                     iterations: int = 30) -> np.ndarray:
    """Per coded trigger, the weight lambda = I s^2 / (1 + I s^2) with which its mean
    cluster coordinate is centred (arithmetic.coordinate_scales).

    s is the sd of the trigger's mean effect at the assumed scales, I the information its
    episodes carry about it: the trigger's episodes as one binary outcome (any restriction)
    around the data's base rate, shifted by the trigger's effect a ~ N(0, s^2), I their
    Fisher information at a's posterior mode (Newton's method). A trigger with nothing
    restricted holds little information about how low it sits (lambda small, non-centred);
    one with a mixed reaction pins its effect (lambda near 1, centred). For a Normal model
    lambda is 1 - the posterior variance of the non-centred coordinate, the best partial
    centring; on 20,000 simulated episodes these weights correlate 0.96 with that variance
    read off a fit.
    """
    of_reaction = np.asarray(cells.reaction_event)
    n_triggers = len(cells.coords["trigger"])
    if not n_triggers:
        return np.zeros(0)
    episodes = cells.counts.sum(axis=1)
    restricted = cells.counts[:, 1:].sum(axis=1)
    of_cell = of_reaction[cells.reaction_idx]
    n = np.bincount(of_cell, episodes, n_triggers)
    k = np.bincount(of_cell, restricted, n_triggers)
    m = np.maximum(np.bincount(of_reaction, minlength=n_triggers), 1)
    variance = sigma_reaction**2 / m + sigma_event**2
    share = np.clip(k.sum() / max(n.sum(), 1.0), 1e-6, 1 - 1e-6)
    base = np.log(share / (1 - share))
    a = np.zeros(n_triggers)
    for _ in range(iterations):  # the log posterior is concave in a: Newton converges
        p = expit(base + a)
        a += (k - n * p - a / variance) / (n * p * (1 - p) + 1 / variance)
    p = expit(base + a)
    information = n * p * (1 - p)
    return information * variance / (1 + information * variance)


def _scaled_normal_logp(value, inverse_scale, log_scale):
    """log N(value; 0, sd) from log sd and 1 / sd (gathered from a table: no log per value)."""
    return -0.5 * (value * inverse_scale) ** 2 - log_scale - 0.5 * np.log(2.0 * np.pi)


def _scaled_normal(inverse_scale, log_scale, size):
    """Its draws, as a graph (a Python random function would leave numba's object mode)."""
    return pm.Normal.dist(0.0, 1.0, size=size) / inverse_scale


def choose_centring(cells: Cells) -> bool:
    """Partly centre the triggers' mean coordinates once they are many (`CENTRING_MIN_TRIGGERS`)."""
    return len(cells.coords.get("trigger", ())) >= CENTRING_MIN_TRIGGERS


def _cluster_effects(cells: Cells, priors: PriorSet, terms: frozenset[str], slots: int,
                     coords: dict, swept: bool = False, centred: bool = False):
    """cluster_eff[r] = event_eff[trigger of r] + reaction_eff[r], drawn jointly.

    A trigger's episodes share its event effect u ~ N(0, sigma_event), one partner's
    reaction its own v ~ N(0, sigma_reaction). The data see only c_r = u + v_r, whose
    prior within a trigger of m reactions is N(0, sigma_reaction^2 I + sigma_event^2 J).
    Sampling u and every v (m + 1 coordinates for m sums) leaves a ridge the sampler
    crawls along when a trigger has one coded partner (most do); here c is drawn from m
    coordinates in the covariance's eigenbasis (`arithmetic.cluster_sums`). Non-centred,
    since a reaction holds a few episodes at most.
    The event effects are drawn from their conditional given c after sampling
    (`split_clusters`). `centred`: the triggers' mean coordinates are partly centred
    (`centring_weights`, arithmetic.coordinate_scales); the stored `cluster_eff_z` is the
    standard coordinate either way (sampling.add_cluster_sums). Swept, the triggers' mean
    coordinates go through `arithmetic.sweep_cluster_means` (coordinates `trigger_terms_z`),
    and the second value returned is its shift for `_trigger_level_terms` (else None).
    """
    scales = {}
    for name, cluster in CLUSTERS.items():
        scales[name] = prior_variable(cluster.scale, priors) if name in terms else None
    if all(scale is None for scale in scales.values()):
        return _absent("cluster_eff", "reaction", coords), None
    sigma_u = scales["event"] if scales["event"] is not None else pt.constant(0.0)
    sigma_v = scales["reaction"] if scales["reaction"] is not None else pt.constant(0.0)
    # one data array (not one per row): each shared array costs nutpie a compiled accessor
    layout = pm.Data("cluster_layout", cluster_layout(
        cells.reaction_event, slots, centring_weights(cells) if centred else None))
    if centred:
        # a trigger has at most one reaction per partner
        log_scale, inverse_scale = coordinate_scales(sigma_u, sigma_v, layout,
                                                     len(cells.coords["partner"]))
        z = inverse_scale * pm.CustomDist("cluster_eff_z", inverse_scale, log_scale,
                                          dist=_scaled_normal, logp=_scaled_normal_logp,
                                          dims="reaction")
    else:
        z = pm.Normal("cluster_eff_z", 0.0, 1.0, dims="reaction")
    # the prior of the standard coordinate, which the posterior stores
    _record_prior("cluster_eff_z", PriorTerm("Normal", {"mu": 0.0, "sigma": 1.0}))
    shift = None
    if swept:
        # a trigger has at most one reaction per partner: as many size classes as partners
        design, gram_parts = sweep_layout(cells.reaction_event, slots, _trigger_design(cells),
                                          len(cells.coords["partner"]))
        design, gram_parts = pm.Data("sweep_design", design), pm.Data("sweep_gram", gram_parts)
        terms_z = pm.Normal("trigger_terms_z", 0.0, 1.0, dims="swept_term")
        _record_prior("trigger_terms_z", PriorTerm("Normal", {"mu": 0.0, "sigma": 1.0}))
        z, shift = sweep_cluster_means(z, terms_z, sigma_u, sigma_v, layout, design, gram_parts)
    return pm.Deterministic("cluster_eff", cluster_sums(z, sigma_u, sigma_v, layout),
                            dims="reaction"), shift


def split_clusters(posterior: xr.Dataset, model: pm.Model, seed: int) -> xr.Dataset:
    """event_eff (trigger) and reaction_eff (reaction) from the sampled cluster_eff, each
    draw's event effects drawn from their conditional given the sums (the data see only
    the sums): u | c ~ N(sigma_u^2 S / (sigma_v^2 + m sigma_u^2),
    sigma_u^2 sigma_v^2 / (sigma_v^2 + m sigma_u^2)), S the sum of the trigger's c."""
    info = getattr(model, "cluster_triggers", None)
    if info is None or "cluster_eff" not in posterior:
        return posterior
    c = posterior["cluster_eff"].values  # (chain, draw, reaction)
    of_reaction = np.asarray(info["of_reaction"])
    n_triggers = len(info["labels"])
    shape = c.shape[:2]
    s_u = posterior["sigma_event"].values if "sigma_event" in posterior else np.zeros(shape)
    s_v = posterior["sigma_reaction"].values if "sigma_reaction" in posterior \
        else np.zeros(shape)
    m = np.bincount(of_reaction, minlength=n_triggers).astype(float)
    total = np.zeros(shape + (n_triggers,))
    np.add.at(total, (..., of_reaction), c)
    var_u, var_v = (s_u**2)[..., None], (s_v**2)[..., None]
    denom = np.maximum(var_v + m * var_u, 1e-300)
    mean = var_u * total / denom
    sd = np.sqrt(var_u * var_v / denom)
    u = mean + sd * np.random.default_rng(seed).standard_normal(mean.shape)
    return posterior.assign(
        event_eff=(("chain", "draw", "trigger"), u),
        reaction_eff=(("chain", "draw", "reaction"), c - u[..., of_reaction]),
    ).assign_coords(trigger=np.asarray(info["labels"], dtype=object))
