"""What a prior set implies before any data: the prior predictive on the outcome scale.

`prior_predictive` (the prior check: `forecast priors check`, `POST /v1/priors/check`) draws
every parameter in numpy (`draw_prior`): the families' own draws
(forecasting.model.priors.FAMILIES), the cutpoints from the family restricted to increasing
vectors (the density PyMC's `ordered` transform gives them), and each group effect as the
model builds it (a Normal conditioned to sum to zero, over all its members or within each
bloc over the coded partners). No PyMC graph is compiled, so a check costs a fraction of a
second instead of the 3-13 s of CPU it took to compile one graph per distinct prior set, and
this module imports no PyMC at all unless `sample_prior` is called. tests/test_prior_predictive.py
holds the numpy draws to the PyMC model's own prior within Monte Carlo error.

`sample_prior` draws from a built PyMC model (the prior group a fit stores,
forecasting.model.predictive): PyMC's forward graph for every variable, and for a variable
with the `ordered` transform (the cutpoints) the density that transform gives, the family
restricted to increasing vectors. `pm.draw` and `pm.sample_prior_predictive` ignore
transforms: they return independent draws, unordered in about 60% of draws of the old
default, whose level probabilities went negative.

`prior_predictive` states what the priors imply for forecasts as they are served, for a *new*
trigger (its event and reaction effects integrated out, `arithmetic.integrate_clusters`):
P(any restriction) of a typical cell, the share of episodes restricted over the scenarios
(the base rate a data set would show), how far apart the most and least guarded partner of
one bloc, type, bloc and trigger type are in odds, how much events of the same kind differ,
and the interval of a partner nobody has coded. priors/default.toml quotes these numbers and
tests/test_prior_predictive.py holds them to it. Every number of the summary is finite: a
prior whose draws would make one NaN or infinite is a PriorConfigError naming the parameter.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from scipy.special import expit

from forecasting.domain.cells import Cells, empty_cells
from forecasting.domain.codebook import Codebook
from forecasting.model.arithmetic import (  # the quadrature's nodes: _new_trigger_p_any
    _NODES,
    _WEIGHTS,
    CLUSTERS,
    EFFECTS,
    FORECAST_VARIABLES,
    LEVELS,
    PARAMETERS,
    any_restriction,
    cluster_sd,
    covariate_offsets,
    integrate_clusters,
    level_probabilities,
    linear_predictor,
    partner_type_effects,
    scenario_effects,
)
from forecasting.model.priors import (
    PriorConfigError,
    PriorProblem,
    PriorSet,
    draw,
    draw_ordered_many,
)

if TYPE_CHECKING:
    import pymc as pm

PRIOR_PREDICTIVE_DRAWS = 500
# A check's work is linear in its draws (about 1 ms of CPU per 4 draws on the vocabulary):
# the bound keeps one call of any caller to a few seconds.
MAX_DRAWS = 20_000
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# The scenario set's share of restricted episodes is averaged over this many scenarios of
# the vocabulary's grid (17,664 partner x type x trigger type x severity x alignment cells)
VOCABULARY_SCENARIOS = 256
# An uncoded partner's interval is shown for a bloc whose typical cell (new trigger) restricts
# with this probability: the seed data's share of episodes with any restriction (6.8%)
REFERENCE_RATE = 0.07
Z90 = 1.6448536269514722  # the 95th percentile of a standard normal


# -- prior draws in numpy (the check) ----------------------------------------------------------


def _centre(x: np.ndarray, axes: int = 1) -> np.ndarray:
    """x minus its mean over each of its last `axes` axes: an i.i.d. Normal made a
    ZeroSumNormal (PyMC draws it the same way)."""
    for ax in range(1, axes + 1):
        x = x - x.mean(axis=-ax, keepdims=True)
    return x


def within_group_projection(groups: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """P (n, n): P @ z is z with each group's mean over its observed members taken from
    those members; unobserved members unchanged.

    For z i.i.d. Normal(0, sigma) this is the distribution pymc_model.contrast_basis gives
    (B z' with B's orthonormal columns, covariance sigma^2 B B^T = sigma^2 P): coded partners
    sum to zero within their bloc, a partner never coded is a free draw from its bloc.
    """
    groups, observed = np.asarray(groups), np.asarray(observed, dtype=bool)
    n = len(groups)
    projection = np.eye(n)
    for g in np.unique(groups):
        members = np.flatnonzero((groups == g) & observed)
        if len(members):
            projection[np.ix_(members, members)] -= 1.0 / len(members)
    return projection


def unit_effects(cells: Cells, rng: np.random.Generator, draws: int) -> dict[str, np.ndarray]:
    """The group effects at unit scale, (draws, ...): standard Normals made sum-to-zero as
    the model builds each effect (over all members, or within each bloc over the coded
    partners). `scale_effects` multiplies them by the scales' draws. Kept apart so that the
    elicitation (forecasting.model.elicitation) reuses one set of them for every candidate
    prior (common random numbers)."""
    coords = cells.coords
    n_blocs, n_partners, n_types, n_trigger_types = (
        len(coords[k]) for k in ("bloc", "partner", "intel_type", "trigger_type"))
    within = within_group_projection(cells.partner_bloc, cells.observed_partners)
    units = {"bloc": _centre(rng.standard_normal((draws, n_blocs)))}
    units["partner"] = rng.standard_normal((draws, n_partners)) @ within.T
    units["intel_type"] = _centre(rng.standard_normal((draws, n_types)))
    units["bloc_type"] = _centre(rng.standard_normal((draws, n_blocs, n_types)), 2)
    units["partner_type"] = _centre(np.einsum(
        "ij,sjt->sit", within, rng.standard_normal((draws, n_partners, n_types))))
    units["trigger_type"] = _centre(rng.standard_normal((draws, n_trigger_types)))
    return units


def scale_effects(d: dict[str, np.ndarray], units: dict[str, np.ndarray], cells: Cells) -> None:
    """Add to `d` (the parameters' draws) the group effects: `unit_effects` times each
    effect's scale, and the partner and partner x type sums `outcome_samples` reads."""

    def scale(name):  # a (draws,) scale against (draws, ...) unit draws
        return d[EFFECTS[name].scale].reshape(-1, *([1] * len(EFFECTS[name].dims)))

    for name, units_of in units.items():
        d[EFFECTS[name].variable] = scale(name) * units_of
    d["partner_eff"], d["pt_eff"] = partner_type_effects(
        d["bloc_eff"], d["partner_dev"], d["type_eff"], d["bloc_type_eff"], d["pt_dev"],
        np.asarray(cells.partner_bloc))


def draw_prior(cells: Cells, priors: PriorSet, draws: int, seed: int = 0
               ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """`draws` draws (draws, ...) of every parameter of the model and the group effects that
    `outcome_samples` reads, from the priors, in numpy; and the share of the cutpoint
    family's draws that were increasing ({"cutpoints": share}).

    The same prior as the PyMC model (forecasting.model.pymc_model.build_model) for these
    cells: which partners are coded decides the partner contrasts.
    """
    rng = np.random.default_rng(seed)
    d: dict[str, np.ndarray] = {}
    d["cutpoints"], acceptance = draw_ordered_many(priors["cutpoints"], rng, draws)
    for name in PARAMETERS:
        if name != "cutpoints":
            d[name] = np.broadcast_to(draw(priors[name], rng, draws), (draws,)).astype(float)
    scale_effects(d, unit_effects(cells, rng, draws), cells)
    if bad := [name for name in PARAMETERS if not np.all(np.isfinite(d[name]))]:
        raise PriorConfigError([PriorProblem(name, "some prior draws are not finite: the "
                                                   "family's tail is too heavy; choose a "
                                                   "lighter one") for name in bad])
    return d, {"cutpoints": acceptance}


# -- prior draws from a PyMC model (the prior group a fit stores) -----------------------------


def _is_ordered(transform) -> bool:
    import pymc as pm

    if isinstance(transform, pm.distributions.transforms.Ordered):
        return True
    return any(_is_ordered(t) for t in getattr(transform, "transform_list", ()))


def _increasing(x: np.ndarray) -> np.ndarray:
    """Per row (last axis a vector): strictly increasing?"""
    return np.all(np.diff(x, axis=-1) > 0, axis=-1)


def ordered_variables(model: pm.Model) -> list[str]:
    """Free variables of `model` sampled with the `ordered` transform (the cutpoints)."""
    return [rv.name for rv in model.free_RVs if _is_ordered(model.rvs_to_transforms.get(rv))]


def _draw_ordered(rv, draws: int, rng: np.random.Generator, name: str,
                  max_batches: int = 1000) -> tuple[np.ndarray, float]:
    """`draws` draws of the ordered variable `name` (random variable `rv`, of the model or a
    family with its parameters) from its density under the transform: PyMC's own
    distribution, drawn in batches, increasing rows kept (exact rejection).

    Exact for a variable whose parameters are constants and which no other variable drawn
    depends on (`sample_prior` checks both): then it is independent of the rest of the prior.
    Returns the draws and the share of the family's draws that were increasing.
    """
    import pymc as pm
    from pymc.distributions.shape_utils import change_dist_size

    kept, n_drawn = [], 0
    batch = max(2 * draws, 1000)
    resized = change_dist_size(rv, new_size=(batch,), expand=True)
    fn = pm.pytensorf.compile([], resized, random_seed=int(rng.integers(2**31)))
    for _ in range(max_batches):
        x = np.asarray(fn())
        n_drawn += len(x)
        kept.append(x[_increasing(x)])
        if sum(len(k) for k in kept) >= draws:
            break
    else:
        raise RuntimeError(f"{name}: fewer than {draws} increasing draws in "
                           f"{n_drawn} draws of its prior")
    values = np.concatenate(kept)
    return values[:draws], float(len(values) / n_drawn)


@contextlib.contextmanager
def _quiet_potential():
    """The likelihood is a Potential (forecasting.model.pymc_model): prior draws rightly
    ignore it, and PyMC says so on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Potential", category=UserWarning)
        yield


def sample_prior(model: pm.Model, draws: int, seed: int,
                 var_names: list[str] | None = None) -> xr.Dataset:
    """Prior draws (chain, draw, ...) of `var_names` (default: every free variable and
    deterministic) from the model's own prior, ordered transforms included.

    PyMC draws every variable forward; each ordered variable is then redrawn from the family
    restricted to increasing vectors, which is what its transform gives the sampler. That is
    exact when the ordered variable's parameters are constants and nothing drawn depends on
    it, as for the cutpoints (they enter only the likelihood); anything else is refused, not
    drawn wrongly. A swept model's ordered coordinate (its term less a forward-drawn shift,
    `model.swept`) is drawn through its term, whose parameters are constants. The share of the
    family's draws that were increasing is the variable's attribute `ordered_acceptance`.
    """
    import pymc as pm
    from pytensor.graph.traversal import ancestors

    names = var_names or [v.name for v in model.free_RVs + model.deterministics]
    ordered = ordered_variables(model)
    # a swept ordered coordinate (pymc_model._swept_variable) is its term less a shift: drawn
    # through the term, whose prior has constant parameters
    swept = {s: t for s, t in getattr(model, "swept", {}).items() if s in ordered}
    wanted = names
    names = list(dict.fromkeys(names + [n for s, t in swept.items() if {s, t} & set(names)
                                        for n in (s, t)]))
    random = set(model.basic_RVs)
    for name in [n for n in ordered if n not in swept]:
        rv = model[name]
        if random & (set(ancestors(rv.owner.inputs)) - {rv}):
            raise NotImplementedError(f"{name}: an ordered variable with random parameters")
        dependents = [n for n in names if n != name and rv in ancestors([model[n]])]
        if dependents:
            raise NotImplementedError(f"{name}: ordered, and {dependents} depend on it")
    rng = np.random.default_rng(seed)
    with _quiet_potential():
        tree = pm.sample_prior_predictive(draws=draws, model=model, var_names=names,
                                          random_seed=int(rng.integers(2**31)))
    prior = tree["prior"].to_dataset()
    for name in ordered:
        if name not in prior:
            continue
        if name in swept:
            term = swept[name]
            term_prior = model.prior_terms[term]
            family = getattr(pm, term_prior.dist).dist(**term_prior.kwargs)
            values, acceptance = _draw_ordered(family, draws, rng, term)
            shift = prior[term] - prior[name]  # the sweep's shift, drawn forward
            prior[term] = prior[term].copy(data=values.reshape(prior[term].shape))
            prior[name] = prior[term] - shift
            prior[term].attrs["ordered_acceptance"] = acceptance
        else:
            values, acceptance = _draw_ordered(model[name], draws, rng, name)
            prior[name] = prior[name].copy(data=values.reshape(prior[name].shape))
        prior[name].attrs["ordered_acceptance"] = acceptance
    return prior[wanted]


# -- what the draws imply on the outcome scale -------------------------------------------------


def _flat(prior: xr.Dataset, name: str) -> np.ndarray:
    """(S, ...) with chain and draw stacked."""
    values = prior[name].values
    return values.reshape(-1, *values.shape[2:])


def _scenarios(cells: Cells, rng: np.random.Generator, n: int) -> tuple[tuple, np.ndarray]:
    """(partner, type, trigger type, severity, alignment) indices and weights: the data's
    cells weighted by their episodes, or `n` scenarios drawn from the vocabulary's grid."""
    if cells.n_episodes > 0:
        index = (cells.partner_idx, cells.type_idx, cells.trigger_idx, cells.severity,
                 cells.alignment)
        return index, cells.n_per_cell / cells.n_per_cell.sum()
    c = cells.coords
    index = (rng.integers(0, len(c["partner"]), n), rng.integers(0, len(c["intel_type"]), n),
             rng.integers(0, len(c["trigger_type"]), n), rng.integers(0, 4, n),
             rng.integers(0, 4, n))
    return index, np.full(n, 1.0 / n)


def _new_trigger_p_any(eta: np.ndarray, cutpoints: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(any restriction) for a new trigger: eta (S, ...), cutpoints (S, 3), sd (S,).

    1 - E[P(level 0 | eta + sd Z)]: `arithmetic.integrate_clusters`' quadrature on the first
    cutpoint alone (one logistic per node instead of four levels: the check's hot loop).
    """
    extra = eta.ndim - 1
    c0 = cutpoints[:, 0].reshape(-1, *([1] * extra))
    sd = np.asarray(sd).reshape(-1, *([1] * extra))
    level_0 = np.zeros(np.broadcast_shapes(eta.shape, c0.shape, sd.shape))
    for node, weight in zip(_NODES.tolist(), _WEIGHTS.tolist(), strict=True):
        level_0 += weight * expit(c0 - eta - sd * node)
    return 1.0 - level_0


def _eta_at(rate: float, cutpoints: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Per draw, the eta whose new-trigger P(any restriction) is `rate` (bisection).

    The bracket covers every cutpoint the prior bounds allow (20 logits plus 5 sds of 10).
    """
    lo = np.full(len(sd), -100.0)
    hi = np.full(len(sd), 100.0)
    for _ in range(64):
        mid = (lo + hi) / 2
        above = _new_trigger_p_any(mid, cutpoints, sd) > rate
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return (lo + hi) / 2


def largest_bloc(cells: Cells) -> int:
    """The bloc with the most partners in the vocabulary (its spread is the widest)."""
    return int(np.argmax(np.bincount(cells.partner_bloc, minlength=len(cells.coords["bloc"]))))


def outcome_samples(prior: xr.Dataset | dict[str, np.ndarray], cells: Cells, seed: int = 0,
                    reference_rate: float = REFERENCE_RATE) -> dict[str, np.ndarray]:
    """Per prior draw, what a forecast for a new trigger would say (see QUANTITIES).

    `prior`: `draw_prior`'s draws (draws, ...), or a PyMC prior group (chain, draw, ...).
    """
    rng = np.random.default_rng(seed)
    d = ({name: _flat(prior, name) for name in prior.data_vars}
         if isinstance(prior, xr.Dataset) else dict(prior))
    cut = d["cutpoints"]
    n = len(cut)
    sd = cluster_sd(d["sigma_event"], d["sigma_reaction"])
    params = {name: d[name] for name in FORECAST_VARIABLES}
    out: dict[str, np.ndarray] = {}

    # a typical cell: every effect at its average (they sum to zero), covariates centred
    typical = integrate_clusters(np.zeros(n), cut, sd)  # (S, 4)
    out["typical_cell"] = any_restriction(typical)
    out["typical_restricted_suspended"] = typical[:, 3] / np.maximum(out["typical_cell"], 1e-300)
    # the cutpoints alone: a typical cell of a coded trigger whose event and reaction effects
    # are zero (the number the cutpoint prior used to be documented by)
    out["eta_zero"] = 1.0 - expit(cut[:, 0])

    # one scenario per draw (a forecast for an arbitrary cell), and the scenario set's share
    (p_i, t_i, tt_i, sev, ali), weight = _scenarios(cells, rng, VOCABULARY_SCENARIOS)
    pick = rng.choice(len(weight), n, p=weight)
    rows = np.arange(n)
    table = scenario_effects(params["trigger_eff"], params["beta_severity"],
                             params["beta_alignment"])
    eta_one = (params["pt_eff"][rows, p_i[pick], t_i[pick]]
               + table[rows, tt_i[pick], sev[pick], ali[pick]])
    levels = integrate_clusters(eta_one, cut, sd)
    out["any_restriction"] = any_restriction(levels)
    for k in LEVELS:
        out[f"level_{k}"] = levels[:, k]
    eta_all = linear_predictor(params, p_i, t_i, tt_i, sev, ali)  # (S, scenarios)
    out["share_restricted"] = _new_trigger_p_any(eta_all, cut, sd) @ weight

    # spread, in odds of any restriction for the same event (one group per draw, so that
    # the draws stay independent): the most against the least guarded member
    bloc_of = np.asarray(cells.partner_bloc)
    n_partners, n_types = d["pt_eff"].shape[1:]
    bloc = largest_bloc(cells)
    members = np.flatnonzero(bloc_of == bloc)
    one_type = rng.integers(0, n_types, n)
    in_bloc = d["pt_eff"][rows[:, None], members[None, :], one_type[:, None]]
    out["partners_in_bloc_odds_ratio"] = np.exp(np.ptp(in_bloc, axis=1))
    one_partner = rng.integers(0, n_partners, n)
    out["types_odds_ratio"] = np.exp(np.ptp(d["pt_eff"][rows, one_partner], axis=1))
    out["main_types_odds_ratio"] = np.exp(np.ptp(d["type_eff"], axis=1))
    # how far one partner x type cell departs from partner + type (bloc x type and
    # partner x type together), a ratio of odds either way
    interaction = (d["pt_eff"][rows, one_partner, one_type] - d["partner_eff"][rows, one_partner]
                   - d["type_eff"][rows, one_type])
    out["interaction_odds_ratio"] = np.exp(np.abs(interaction))
    out["blocs_odds_ratio"] = np.exp(np.ptp(d["bloc_eff"], axis=1))
    out["trigger_types_odds_ratio"] = np.exp(np.ptp(d["trigger_eff"], axis=1))
    steps = covariate_offsets("severity")[-1] - covariate_offsets("severity")[0]
    out["severity_odds_ratio"] = np.exp(steps * d["beta_severity"])
    out["alignment_odds_ratio"] = np.exp(steps * d["beta_alignment"])
    # events of the same kind: a 95th- against a 5th-percentile event, same partner and type
    out["events_odds_ratio"] = np.exp(2 * Z90 * sd)
    out["triggers_odds_ratio"] = np.exp(2 * Z90 * d["sigma_event"])  # shared by partners
    spread = sd * Z90
    out["typical_cell_event_5"] = any_restriction(level_probabilities(-spread, cut))
    out["typical_cell_event_95"] = any_restriction(level_probabilities(spread, cut))

    # a partner nobody has coded, in a bloc whose typical cell restricts at reference_rate:
    # its effect is a fresh draw from the bloc, partner deviation plus its own partner x
    # type deviation (a Normal summing to zero over the types: variance sigma_pt^2 (T-1)/T),
    # as pymc_model.contrast_basis gives an unobserved partner
    dev = (d["sigma_partner"] * rng.standard_normal(n)
           + d["sigma_pt"] * np.sqrt((n_types - 1) / n_types) * rng.standard_normal(n))
    out["uncoded_partner"] = _new_trigger_p_any(_eta_at(reference_rate, cut, sd) + dev, cut, sd)
    return out


# -- one quantity a modeler states something about (forecasting.model.elicitation) -------------

# name -> (what it is, its scale: "probability" in (0, 1) or "ratio" > 0, the targets it takes)
STATEMENT_QUANTITIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "any_restriction": ("P(any restriction) of a cell after a new trigger (a partner, or a "
                        "typical partner of a bloc; a type or the average type; a trigger "
                        "type, severity and alignment, or their averages)", "probability",
                        ("partner", "bloc", "intel_type", "trigger_type", "severity",
                         "alignment")),
    "share_restricted": ("share of episodes restricted over the vocabulary's scenarios (the "
                         "base rate)", "probability", ()),
    "partners_odds_ratio": ("odds ratio, most vs least guarded partner of a bloc, one type",
                            "ratio", ("bloc", "intel_type")),
    "types_odds_ratio": ("odds ratio, most vs least guarded type of one partner", "ratio",
                         ("partner",)),
    "blocs_odds_ratio": ("odds ratio, most vs least guarded bloc", "ratio", ()),
    "trigger_types_odds_ratio": ("odds ratio, most vs least weighty trigger type", "ratio", ()),
    "severity_odds_ratio": ("odds ratio, grave vs minor trigger (severity 3 vs 0)", "ratio", ()),
    "alignment_odds_ratio": ("odds ratio, alignment 3 vs 0", "ratio", ()),
    "events_odds_ratio": ("odds ratio, 95th vs 5th-percentile event (same cell)", "ratio", ()),
}


def _index(cells: Cells, dim: str, code: str | None) -> int | None:
    return None if code is None else list(cells.coords[dim]).index(code)


def statement_samples(d: dict[str, np.ndarray], cells: Cells, quantity: str,
                      where: dict[str, Any], rng: np.random.Generator,
                      scenarios: int = VOCABULARY_SCENARIOS) -> np.ndarray:
    """Per prior draw (`draw_prior`'s draws, or any with the same keys), the value of one
    `STATEMENT_QUANTITIES` quantity at `where` (codes, severity, alignment). The terms and
    the new-trigger integral are those of `outcome_samples`; here the bloc, partner, type and
    scenario are the statement's instead of the largest bloc or a random cell. `rng` picks
    the type (or partner) of a draw when the statement names none, as `outcome_samples` does.
    `scenarios`: how many of the vocabulary's scenarios the base rate averages over (fewer:
    cheaper and noisier; the elicitation's solver).
    """
    cut = d["cutpoints"]
    n = len(cut)
    rows = np.arange(n)
    sd = cluster_sd(d["sigma_event"], d["sigma_reaction"])
    n_partners, n_types = d["pt_eff"].shape[1:]
    if quantity == "any_restriction":
        p = _index(cells, "partner", where.get("partner"))
        b = _index(cells, "bloc", where.get("bloc"))
        t = _index(cells, "intel_type", where.get("intel_type"))
        tt = _index(cells, "trigger_type", where.get("trigger_type"))
        # effects sum to zero over their members: leaving one out is taking its average
        if p is not None:
            eta = d["pt_eff"][:, p, t] if t is not None else d["partner_eff"][:, p]
        elif b is not None:  # a typical partner of the bloc: its deviation at its average, 0
            eta = d["bloc_eff"][:, b] + (0.0 if t is None else d["type_eff"][:, t]
                                         + d["bloc_type_eff"][:, b, t])
        else:
            eta = np.zeros(n) if t is None else d["type_eff"][:, t]
        if tt is not None:
            eta = eta + d["trigger_eff"][:, tt]
        for covariate, slope in (("severity", "beta_severity"), ("alignment", "beta_alignment")):
            if where.get(covariate) is not None:
                eta = eta + d[slope] * covariate_offsets(covariate)[int(where[covariate])]
        return _new_trigger_p_any(eta, cut, sd)
    if quantity == "share_restricted":
        # one fixed set of the vocabulary's scenarios (the quantity must not change with the
        # caller's draws); fewer `scenarios` take its first ones
        index, weight = _scenarios(cells, np.random.default_rng(0), VOCABULARY_SCENARIOS)
        if cells.n_episodes == 0 and scenarios < VOCABULARY_SCENARIOS:
            index, weight = tuple(i[:scenarios] for i in index), np.full(scenarios, 1 / scenarios)
        p_i, t_i, tt_i, sev, ali = index
        params = {name: d[name] for name in FORECAST_VARIABLES}
        eta_all = linear_predictor(params, p_i, t_i, tt_i, sev, ali)
        return _new_trigger_p_any(eta_all, cut, sd) @ weight
    if quantity == "partners_odds_ratio":
        b = _index(cells, "bloc", where["bloc"])
        members = np.flatnonzero(np.asarray(cells.partner_bloc) == b)
        t = _index(cells, "intel_type", where.get("intel_type"))
        types = rng.integers(0, n_types, n) if t is None else np.full(n, t)
        return np.exp(np.ptp(d["pt_eff"][rows[:, None], members[None, :], types[:, None]],
                             axis=1))
    if quantity == "types_odds_ratio":
        p = _index(cells, "partner", where.get("partner"))
        partners = rng.integers(0, n_partners, n) if p is None else np.full(n, p)
        return np.exp(np.ptp(d["pt_eff"][rows, partners], axis=1))
    steps = covariate_offsets("severity")[-1] - covariate_offsets("severity")[0]
    simple = {"blocs_odds_ratio": lambda: np.exp(np.ptp(d["bloc_eff"], axis=1)),
              "trigger_types_odds_ratio": lambda: np.exp(np.ptp(d["trigger_eff"], axis=1)),
              "severity_odds_ratio": lambda: np.exp(steps * d["beta_severity"]),
              "alignment_odds_ratio": lambda: np.exp(steps * d["beta_alignment"]),
              "events_odds_ratio": lambda: np.exp(2 * Z90 * sd)}
    if quantity not in simple:
        raise ValueError(f"Requested quantity '{quantity}' but it must be one of "
                         f"{list(STATEMENT_QUANTITIES)}")
    return simple[quantity]()


# What each sample means (the check's table lists them in this order).
QUANTITIES = {
    "typical_cell": "P(any restriction), typical cell of a new trigger",
    "any_restriction": "P(any restriction), one scenario of a new trigger",
    "share_restricted": "share of episodes restricted, over the scenarios",
    "typical_restricted_suspended": "P(suspended | any restriction), typical cell",
    "eta_zero": "P(any restriction) at eta = 0, no event effect (cutpoints alone)",
    "typical_cell_event_5": "typical cell, a 5th-percentile event",
    "typical_cell_event_95": "typical cell, a 95th-percentile event",
    "uncoded_partner": "uncoded partner of a bloc at {reference:.0%}",
    "events_odds_ratio": "odds ratio, 95th vs 5th-percentile event (same cell)",
    "triggers_odds_ratio": "odds ratio, 95th vs 5th-percentile trigger effect",
    "partners_in_bloc_odds_ratio": "odds ratio, most vs least guarded partner of {bloc}",
    "types_odds_ratio": "odds ratio, most vs least guarded type of a partner",
    "main_types_odds_ratio": "odds ratio, most vs least guarded type (main effect)",
    "interaction_odds_ratio": "odds ratio, a partner x type cell vs partner + type",
    "blocs_odds_ratio": "odds ratio, most vs least guarded bloc",
    "trigger_types_odds_ratio": "odds ratio, most vs least weighty trigger type",
    "severity_odds_ratio": "odds ratio, grave vs minor trigger (severity 3 vs 0)",
    "alignment_odds_ratio": "odds ratio, alignment 3 vs 0",
}


# The parameters each quantity depends on: a quantity that is not finite names them.
_CLUSTER_SCALES = tuple(cluster.scale for cluster in CLUSTERS.values())
_EVERYTHING = tuple(PARAMETERS)
DEPENDS: dict[str, tuple[str, ...]] = {
    "typical_cell": ("cutpoints", *_CLUSTER_SCALES),
    "any_restriction": _EVERYTHING,
    "share_restricted": _EVERYTHING,
    "typical_restricted_suspended": ("cutpoints", *_CLUSTER_SCALES),
    "eta_zero": ("cutpoints",),
    "typical_cell_event_5": ("cutpoints", *_CLUSTER_SCALES),
    "typical_cell_event_95": ("cutpoints", *_CLUSTER_SCALES),
    "uncoded_partner": ("cutpoints", *_CLUSTER_SCALES, "sigma_partner", "sigma_pt"),
    "events_odds_ratio": _CLUSTER_SCALES,
    "triggers_odds_ratio": ("sigma_event",),
    "partners_in_bloc_odds_ratio": ("sigma_partner", "sigma_pt"),
    "types_odds_ratio": ("sigma_type", "sigma_bloc_type", "sigma_pt"),
    "main_types_odds_ratio": ("sigma_type",),
    "interaction_odds_ratio": ("sigma_bloc_type", "sigma_pt"),
    "blocs_odds_ratio": ("sigma_bloc",),
    "trigger_types_odds_ratio": ("sigma_trigger",),
    "severity_odds_ratio": ("beta_severity",),
    "alignment_odds_ratio": ("beta_alignment",),
    **{f"level_{k}": _EVERYTHING for k in LEVELS},
}
# A parameter draw this far out (logits) is blamed first when a quantity it enters overflows.
_EXTREME = 50.0


def _culprits(quantity: str, draws: dict[str, np.ndarray]) -> list[str]:
    """The parameters to name for a quantity that is not finite: those it depends on whose
    draws reach beyond any meaningful logit, else all of them."""
    suspects = DEPENDS[quantity]
    extreme = [name for name in suspects if np.max(np.abs(draws[name])) > _EXTREME]
    return extreme or list(suspects)


def _finite_or_error(samples: dict[str, np.ndarray], draws: dict[str, np.ndarray]) -> None:
    """Every summary number will be finite, else PriorConfigError naming the parameters."""
    problems: dict[str, list[str]] = {}
    for quantity, values in samples.items():
        if np.all(np.isfinite(values)):
            continue
        for name in _culprits(quantity, draws):
            problems.setdefault(name, []).append(quantity)
    if problems:
        raise PriorConfigError([
            PriorProblem(name, f"its prior draws make {sorted(quantities)} of the prior "
                               f"predictive infinite or undefined (its tail reaches beyond "
                               f"what the logit scale can show); narrow it or choose a "
                               f"lighter-tailed family")
            for name, quantities in sorted(problems.items(),
                                           key=lambda item: list(PARAMETERS).index(item[0]))])


def _describe(x: np.ndarray) -> dict[str, Any]:
    return {"mean": float(np.mean(x)),
            "quantiles": {f"{q:g}": float(v)
                          for q, v in zip(QUANTILES, np.quantile(x, QUANTILES), strict=True)}}


def prior_predictive(cells_or_codebook: Cells | Codebook, priors: PriorSet,
                     draws: int = PRIOR_PREDICTIVE_DRAWS, seed: int = 0,
                     reference_rate: float = REFERENCE_RATE) -> dict[str, Any]:
    """What the priors imply before any data, on the outcome scale, for a new trigger.

    Scenarios are the cells' predictor sets weighted by their episodes when cells with
    episodes are given, else the vocabulary's grid. `outcome` holds every quantity of
    `QUANTITIES` (mean and quantiles over prior draws); `any_restriction` and `levels` are
    one scenario per draw, mixing parameter and scenario uncertainty as a forecast for an
    arbitrary cell would. With data cells, `observed` places the data's share of restricted
    episodes in the prior predictive of that share. `samples` holds the draws (for the plot
    and tests; the CLI and API drop it).

    Prior draws in numpy (`draw_prior`), at most MAX_DRAWS. Raises PriorConfigError naming
    the parameters whose draws would make a number of the summary NaN or infinite.
    """
    if not 10 <= draws <= MAX_DRAWS:
        raise ValueError(f"Requested {draws} draws but they must be between 10 and "
                         f"{MAX_DRAWS}")
    cells = (cells_or_codebook if isinstance(cells_or_codebook, Cells)
             else empty_cells(cells_or_codebook))
    prior, acceptance = draw_prior(cells, priors, draws, seed)
    with np.errstate(over="ignore", invalid="ignore"):  # overflows are reported just below
        samples = outcome_samples(prior, cells, seed + 1, reference_rate)
    _finite_or_error(samples, prior)
    labels = {"bloc": str(cells.coords["bloc"][largest_bloc(cells)]),
              "reference": reference_rate}
    summary: dict[str, Any] = {
        "draws": int(draws),
        "priors_hash": priors.content_hash,
        "scenarios": "data cells" if cells.n_episodes > 0 else "whole vocabulary",
        "forecast": "new trigger (event and reaction effects integrated out)",
        "ordered_acceptance": acceptance,
        "reference_rate": reference_rate,
        "any_restriction": _describe(samples["any_restriction"]),
        "levels": {str(k): _describe(samples[f"level_{k}"]) for k in LEVELS},
        "outcome": {name: dict(_describe(samples[name]), label=label.format(**labels))
                    for name, label in QUANTITIES.items()},
        "samples": {name: np.round(values, 6).tolist() for name, values in samples.items()},
    }
    if cells.n_episodes > 0:
        observed = float(1.0 - cells.level_shares()[0])
        summary["observed"] = {
            "share_restricted": observed,
            "percentile": float(np.mean(samples["share_restricted"] < observed))}
    return summary


def plot_prior_predictive(summary: dict[str, Any], path: Path | str) -> Path:
    """P(any restriction) and the spreads implied by the priors, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2),
                             gridspec_kw={"width_ratios": [1.0, 1.2, 1.2]})
    samples = summary["samples"]
    ax = axes[0]
    bins = np.linspace(0, 1, 41)
    ax.hist(samples["typical_cell"], bins=bins, color="C0", alpha=0.7, label="typical cell")
    ax.hist(samples["share_restricted"], bins=bins, color="C1", alpha=0.5,
            label="share of episodes")
    if "observed" in summary:
        ax.axvline(summary["observed"]["share_restricted"], color="k", lw=1,
                   label="the data's share")
    ax.set_xlabel("P(any restriction), new trigger")
    ax.set_ylabel("prior draws")
    ax.legend(fontsize=7)

    def intervals(ax, names, log):
        outcome = summary["outcome"]
        for i, name in enumerate(names):
            q = outcome[name]["quantiles"]
            ax.plot([q["0.05"], q["0.95"]], [i, i], color="C0", lw=1.5)
            ax.plot([q["0.25"], q["0.75"]], [i, i], color="C0", lw=5)
            ax.plot([q["0.5"]], [i], "o", color="white", mec="C0", ms=5)
        ax.set_yticks(range(len(names)), [outcome[n]["label"] for n in names], fontsize=7)
        ax.invert_yaxis()
        if log:
            ax.set_xscale("log")

    intervals(axes[1], ["typical_cell", "share_restricted", "any_restriction",
                        "typical_cell_event_5", "typical_cell_event_95", "uncoded_partner",
                        "typical_restricted_suspended", "eta_zero"], log=False)
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("probability (median, 50% and 90%)")
    intervals(axes[2], [name for name in QUANTITIES if name.endswith("odds_ratio")], log=True)
    axes[2].set_xlabel("odds ratio (median, 50% and 90%)")
    fig.suptitle("Implied by the priors, before any data (a new trigger)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_statements(checks: list[dict[str, Any]], path: Path | str) -> Path:
    """Each elicited statement: the prior predictive of its quantity (median, 50% and 90%)
    against its stated values (red ticks), met or not, as PNG."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(len(checks), 1, figsize=(8, 1.1 + 0.9 * len(checks)), squeeze=False)
    for row, check in zip(ax[:, 0], checks, strict=True):
        q = check["summary"]
        colour = "C0" if check["met"] else "C3"
        row.plot([q["0.05"], q["0.95"]], [0, 0], color=colour, lw=1.5)
        row.plot([q["0.25"], q["0.75"]], [0, 0], color=colour, lw=6)
        row.plot([q["0.5"]], [0], "o", color="white", mec=colour, ms=6)
        for target in check["quantiles"]:
            row.axvline(target["target"], color="C3", lw=1, ls="--")
        if check["scale"] == "ratio":
            row.set_xscale("log")
        row.set_yticks([])
        row.set_title(f"{check['id']}: stated {check['target_probability']:g}, achieved "
                      f"{check['achieved_probability']:.2f}"
                      + ("" if check["met"] else "  NOT MET"), fontsize=8, loc="left")
        row.tick_params(labelsize=7)
    fig.suptitle("Elicited prior: each statement's quantity (median, 50%, 90%) against the "
                 "stated values (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_comparison(summary_a: dict[str, Any], summary_b: dict[str, Any], path,
                    labels: tuple[str, str] = ("A", "B")):
    """Two prior sets' prior predictive side by side (median, 50% and 90% of each
    quantity), as PNG to `path` (a file name or a binary file object)."""
    plt = _pyplot()
    path = Path(path) if isinstance(path, str) else path
    probabilities = [n for n in QUANTITIES if not n.endswith("odds_ratio")]
    ratios = [n for n in QUANTITIES if n.endswith("odds_ratio")]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for ax, names, log in ((axes[0], probabilities, False), (axes[1], ratios, True)):
        for k, (summary, colour) in enumerate(((summary_a, "C0"), (summary_b, "C1"))):
            for i, name in enumerate(names):
                q = summary["outcome"][name]["quantiles"]
                y = i + (k - 0.5) * 0.3
                ax.plot([q["0.05"], q["0.95"]], [y, y], color=colour, lw=1.2)
                ax.plot([q["0.25"], q["0.75"]], [y, y], color=colour, lw=4,
                        label=labels[k] if i == 0 else None)
                ax.plot([q["0.5"]], [y], "o", color="white", mec=colour, ms=4)
        ax.set_yticks(range(len(names)), [summary_a["outcome"][n]["label"] for n in names],
                      fontsize=7)
        ax.invert_yaxis()
        if log:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    axes[0].set_xlim(0, 1)
    axes[0].set_xlabel("probability (median, 50% and 90%)")
    axes[1].set_xlabel("odds ratio (median, 50% and 90%)")
    fig.suptitle(f"Prior predictive, {labels[0]} against {labels[1]} (a new trigger)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)
    return path
