"""Why a forecast is what it is: its linear predictor term by term (pure numpy, no PyMC).

A forecast's linear predictor is the sum of the model's terms (forecasting.model.arithmetic:
`partner_type_terms`, `scenario_terms`, `cell_terms`; the predictor the model and the forecasts
use is built from the same functions, so the terms add up to it by construction):

    eta = bloc + partner within bloc + intelligence type + bloc x type + partner x type
          + trigger type + severity + alignment

and then the cluster terms, which no posterior draw fixes: a new trigger's event effect (shared
by every partner it touches) and the partner's reaction to it are integrated out (Normal(0,
sigma_event), Normal(0, sigma_reaction)); after a coded trigger they are conditioned on its
coded reactions (forecasting.serving.live_events). Their effect on the log-odds scale is exact
too: per draw, the effective linear predictor `cutpoint 0|1 - logit P(level 0)` gives the
served P(any restriction) back, and what it adds to eta is split between the two cluster
terms by their average over both orders of switching them on (the Shapley split of two
players), so the ten terms add up to it draw by draw.

Each term's `any_restriction_shift` is the change in P(any restriction) the term makes: the
served probability minus the probability with that term at its population value (0: every
effect sums to zero over its groups, severity and alignment are centred, and a cluster term
at 0 is a trigger and reaction of typical strength, not integrated over), draw by draw.
These shifts do not add up: the link is not linear.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.special import logit

from forecasting.model.arithmetic import (
    CENTERS,
    CLUSTER_SCALES,
    SCENARIO_TERMS,
    TERMS,
    cell_terms,
    cluster_sd,
    integrate_clusters,
    partner_type_terms,
    scenario_terms,
)
from forecasting.serving.forecasts import (
    DTYPE,
    CodedTrigger,
    ForecastEngine,
    Scenario,
    _rounded,
    stats_dict,
    summarise,
    summarise_levels,
)
from forecasting.serving.live_events import conditional_level_probabilities

# posterior variables of the terms (forecasting.model.arithmetic.EFFECTS, SLOPES)
TERM_VARIABLES = {"bloc_eff": ("bloc",), "partner_dev": ("partner",),
                  "type_eff": ("intel_type",), "bloc_type_eff": ("bloc", "intel_type"),
                  "pt_dev": ("partner", "intel_type"), "trigger_eff": ("trigger_type",),
                  "beta_severity": (), "beta_alignment": ()}
CLUSTER_TERMS = ("event", "reaction")
# a probability of exactly 0 or 1 (float32) has no finite log-odds
_TINY = float(np.finfo(DTYPE).tiny)
_TOP = 1.0 - float(np.finfo(DTYPE).eps)


def _samples_first(da, dims: tuple[str, ...]) -> np.ndarray:
    """(S, *dims) float64, chain and draw stacked in the forecast engine's order."""
    values = da.transpose("chain", "draw", *dims).values
    return values.reshape((-1, *values.shape[2:])).astype(np.float64)


def term_draws(engine: ForecastEngine, index: tuple[int, ...], keep=None) -> dict[str, np.ndarray]:
    """Each term of eta, (S,) per draw, for the cell and scenario `index` (partner, type,
    trigger type, severity, alignment: the engine's indices)."""
    ds = engine.posterior
    missing = [name for name in TERM_VARIABLES if name not in ds]
    if missing:
        raise ValueError(f"model version {engine.version} lacks {missing}, the terms of its "
                         "linear predictor; refit it to explain its forecasts")
    v = {name: _samples_first(ds[name], dims) for name, dims in TERM_VARIABLES.items()}
    if keep is not None:
        v = {name: x[keep] for name, x in v.items()}
    blocs = [str(b) for b in ds["bloc"].values]
    # a partner the codebook no longer lists cannot be queried: any bloc will do for its row
    known = engine.codebook.partners
    partner_bloc = np.array([blocs.index(known[p].bloc) if p in known else 0
                             for p in engine.partners])
    terms = (partner_type_terms(v["bloc_eff"], v["partner_dev"], v["type_eff"],
                                v["bloc_type_eff"], v["pt_dev"], partner_bloc)
             | scenario_terms(v["trigger_eff"], v["beta_severity"], v["beta_alignment"]))
    return cell_terms(terms, *index)


def _level0(probs: np.ndarray) -> np.ndarray:
    """P(level 0) per draw, float64, clipped to finite log-odds."""
    return np.clip(probs[..., 0, :].astype(np.float64), _TINY, _TOP)


def _stats(x: np.ndarray) -> dict:
    return stats_dict(_rounded(summarise(np.asarray(x, dtype=np.float64))).tolist())


def _labels(engine: ForecastEngine, partner: str, intel_type: str, scenario: Scenario,
            trigger: CodedTrigger | None) -> dict[str, tuple[str, str | None]]:
    """term -> (label, note)."""
    bloc = engine.codebook.bloc_of(partner)
    observed = engine.observed_partners
    unseen = observed is not None and partner not in observed
    drawn = (f"{partner} has no coded episode in this model version's data: this term is "
             f"drawn from its bloc ({bloc}), not learned from {partner}'s own record")
    if trigger is None:
        event = ("a new trigger's event effect, integrated out", None)
        reaction = (f"{partner}'s reaction to a new trigger, integrated out", None)
    else:
        n = len({e["partner"] for e in trigger.episodes})
        event = (f"trigger {trigger.trigger_id}'s event effect, conditioned on its coded "
                 f"reactions ({n} partners)", None)
        reaction = (f"{partner}'s reaction to trigger {trigger.trigger_id}, conditioned on "
                    f"{partner}'s other coded episodes of it (if any)", None)
    return {
        "bloc": (f"bloc {bloc}", None),
        "partner": (f"{partner} within {bloc}", drawn if unseen else None),
        "intel_type": (f"intelligence type {intel_type}", None),
        "bloc_type": (f"{bloc} x {intel_type}", None),
        "partner_type": (f"{partner} x {intel_type} within {bloc} x {intel_type}",
                         drawn if unseen else None),
        "trigger_type": (f"trigger type {scenario.trigger_type}", None),
        "severity": (f"severity {scenario.severity} (centred at {CENTERS['severity']})", None),
        "alignment": (f"alignment {scenario.alignment} (centred at {CENTERS['alignment']})",
                      None),
        "event": event,
        "reaction": reaction,
    }


def decompose(engine: ForecastEngine, partner: str, intel_type: str,
              scenario: Mapping | Scenario | None = None,
              trigger: CodedTrigger | None = None) -> dict:
    """The draws behind `explain`, each (S,) per posterior draw: `terms` (term -> its value
    in the linear predictor, the cluster terms' effective values included), `shifts` (term ->
    its change in P(any restriction)), `scales` (cluster term -> its sd), `eta` (the
    forecast's own linear predictor), `effective`, `cutpoint`, `any_restriction` (the served
    per-draw P(any restriction)), `levels` (4, S) and the `scenario`."""
    if trigger is None:
        scenario = Scenario.from_mapping(scenario)
        draws = engine.cell_draws(partner, intel_type, scenario)
    else:
        scenario = trigger.scenario
        draws = engine.live_draws(partner, intel_type, trigger)
    terms = term_draws(engine, draws["index"], draws["keep"])
    eta = draws["eta"]  # (S,) DTYPE: the forecast's own
    cutpoints = draws["cutpoints"]
    sigma = {name: draws[name] for name in CLUSTER_SCALES}  # sigma_event, sigma_reaction
    has_clusters = all(name in engine.posterior for name in CLUSTER_SCALES)

    def probabilities(rows: np.ndarray, event_on: bool = True, reaction_on: bool = True):
        """(m, S) linear predictors -> (m, 4, S) level probabilities, served the way the
        forecast is (clusters integrated out or conditioned on), a cluster term switched off
        by setting its scale to 0."""
        s_event = sigma["sigma_event"] * DTYPE(event_on)
        s_reaction = sigma["sigma_reaction"] * DTYPE(reaction_on)
        rows = rows.astype(DTYPE)
        if trigger is None:
            sd = (draws["cluster_sd"] if event_on and reaction_on
                  else cluster_sd(s_event, s_reaction).astype(DTYPE))
            return integrate_clusters(rows, cutpoints, sd, axis=-2)
        return conditional_level_probabilities(rows, cutpoints, s_event, s_reaction,
                                               draws["coded"], draws["reaction"]
                                               ).astype(DTYPE)

    # the forecast, then each model term at its population value (0)
    rows = np.stack([eta] + [eta - terms[name] for name in TERMS])
    # one call for every row: the quadrature treats rows independently, so the forecast's row
    # gets the engine's numbers bit for bit (tests/test_explain.py holds them equal)
    probs = probabilities(rows)
    served = probs[0]
    p_any = 1.0 - _level0(probs)  # (1 + len(TERMS), S)
    # effective log-odds of P(any restriction): cutpoint 0|1 - logit P(level 0)
    c0 = cutpoints[0].astype(np.float64)
    effective = c0 - logit(_level0(probs[:1]))[0]
    shifts = {name: p_any[0] - p_any[1 + k] for k, name in enumerate(TERMS)}
    scales = {}
    if has_clusters:
        event_only = probabilities(rows[:1], reaction_on=False)
        reaction_only = probabilities(rows[:1], event_on=False)
        l_event = c0 - logit(_level0(event_only))[0]
        l_reaction = c0 - logit(_level0(reaction_only))[0]
        eta64 = eta.astype(np.float64)
        # Shapley: each cluster term's gain averaged over both orders of switching them on
        terms["event"] = 0.5 * ((l_event - eta64) + (effective - l_reaction))
        terms["reaction"] = (effective - eta64) - terms["event"]
        shifts["event"] = p_any[0] - (1.0 - _level0(reaction_only))[0]
        shifts["reaction"] = p_any[0] - (1.0 - _level0(event_only))[0]
        scales = {"event": sigma["sigma_event"], "reaction": sigma["sigma_reaction"]}
    return {"terms": terms, "shifts": shifts, "scales": scales, "eta": eta,
            "effective": effective, "cutpoint": c0, "any_restriction": p_any[0],
            "levels": served, "scenario": scenario}


def explain(engine: ForecastEngine, partner: str, intel_type: str,
            scenario: Mapping | Scenario | None = None,
            trigger: CodedTrigger | None = None, decomposition: dict | None = None) -> dict:
    """The explanation of `engine.forecast(partner, intel_type, **scenario)`, or with
    `trigger` of `engine.conditioned(partner, intel_type, trigger)`: the API's
    `"explanation"` object (see the module docstring). `decomposition`: `decompose`'s answer
    for the same arguments, if already computed."""
    d = decomposition or decompose(engine, partner, intel_type, scenario, trigger)
    terms, eta = d["terms"], d["eta"]
    labels = _labels(engine, partner, intel_type, d["scenario"], trigger)
    out_terms = []
    for name, values in terms.items():
        kind = ("cluster" if name in CLUSTER_TERMS
                else "scenario" if name in SCENARIO_TERMS else "cell")
        label, note = labels[name]
        entry = {"term": name, "label": label, "kind": kind, "log_odds": _stats(values),
                 "any_restriction_shift": _stats(d["shifts"][name]), "population_value": 0.0}
        if name in d["scales"]:
            entry["scale"] = _stats(d["scales"][name])
            entry["treatment"] = "integrated out" if trigger is None else "conditioned on"
        if note:
            entry["note"] = note
        out_terms.append(entry)
    model_terms = np.sum([terms[name] for name in TERMS], axis=0)
    every_term = np.sum(list(terms.values()), axis=0)
    served_any = _rounded(summarise_levels(d["levels"][None]))[0, 0].tolist()
    return {
        "scale": "log-odds",
        "draws": int(eta.shape[-1]),
        "linear_predictor": _stats(eta),
        "effective_linear_predictor": _stats(d["effective"]),
        "cutpoint": _stats(d["cutpoint"]),
        "any_restriction": stats_dict(served_any),
        "terms": out_terms,
        "check": {
            "terms_sum_to": "linear_predictor (the eight model terms), and with the cluster "
                            "terms effective_linear_predictor, draw by draw",
            "max_abs_difference": float(np.max(np.abs(model_terms - eta.astype(np.float64)))),
            "max_abs_difference_effective": float(np.max(np.abs(every_term - d["effective"]))),
            "any_restriction": "sigmoid(effective_linear_predictor - cutpoint) per draw is "
                               "the served P(any restriction) per draw",
        },
    }
