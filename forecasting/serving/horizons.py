"""Horizon forecasts: P(at least one restriction of a partner x type within H months).

Pure numpy (no PyMC, no Flask). Two models of one version meet draw by draw:

- the restriction model (the forecast engine): P(any restriction | a new trigger of type k,
  severity s, alignment a) for the cell, its cluster terms integrated out as every forecast's;
- the trigger arrival model (forecasting.model.trigger_rates, the version's `trigger_rates`
  group): triggers of type k arrive at rate_k per month, a share_{k,s} of them of severity s,
  a share_a under alignment a, and each puts the partner at stake with probability q.

Triggers that put the partner at stake and end in a restriction of the type form a thinned
Poisson process of rate sum_{k,s,a} rate_k share_{k,s} share_a q p_{k,s,a}, so per draw

    P(within H) = 1 - exp(-H * sum_{k,s,a} rate_k share_{k,s} share_a q p_{k,s,a})

Each new trigger gets its own cluster terms (independent of the others' given the
parameters), which is what makes the thinning exact given a draw. A trigger type, severity or
alignment given by the caller restricts the sum to it (only disclosure incidents, say, or
every trigger under alignment 2); left out, the coded shares mix over it. The two models'
draws are paired by index: their posteriors are independent, so any pairing is a draw of the
joint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import xarray as xr

from forecasting.model.trigger_rates import DRAW_DIM, arrival_id, exposure_pooling, half_life
from forecasting.serving.forecasts import (
    DECIMALS,
    ForecastEngine,
    NotInModelError,
    Scenario,
    ScenarioError,
    stats_dict,
    summarise,
)

MAX_MONTHS = 36
MONTHS = tuple(range(1, MAX_MONTHS + 1))


class NoArrivalModelError(LookupError):
    """The model version was fitted before the trigger arrival model existed."""

    def __init__(self, version: str | None):
        self.version = version
        super().__init__(f"model version {version} has no trigger arrival model (it was fitted "
                         "before horizon forecasts existed); refit (`forecast fit`) to get "
                         "horizon forecasts")


def check_months(months: int | Iterable[int] | None) -> list[int]:
    """The horizons asked for (None: 1..36), each a whole number of months 1-36."""
    if months is None:
        return list(MONTHS)
    values = list(months) if isinstance(months, list | tuple | range) else [months]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                or not 1 <= value <= MAX_MONTHS:
            raise ScenarioError("months", f"must be a whole number of months 1-{MAX_MONTHS}, "
                                f"got {value!r}")
    if not values:
        raise ScenarioError("months", "give at least one horizon")
    return sorted({int(v) for v in values})


def _stats(x: np.ndarray) -> dict | list[dict]:
    """Summaries over the last axis, rounded, in the forecast shape's keys."""
    rows = np.round(summarise(np.asarray(x, dtype=np.float64)), DECIMALS).tolist()
    if np.ndim(x) == 1:
        return stats_dict(rows)
    return [stats_dict(r) for r in rows]


def combine(p_any: np.ndarray, rate: np.ndarray, severity_share: np.ndarray,
            alignment_share: np.ndarray, exposure: np.ndarray) -> dict[str, np.ndarray]:
    """Per draw (last axis S): the arrival rates and restriction hazards.

    p_any (K, V, A, S): P(any restriction | trigger type k, severity v, alignment a);
    rate (K, S) per month; severity_share (K, V, S); alignment_share (A, S); exposure (S,),
    or (K, S) by trigger type.
    Returns at_stake (K, S): triggers of each type putting the partner at stake per month;
    hazard (K, S): those ending in a restriction, per month.
    """
    exposure = np.asarray(exposure)
    if exposure.ndim == 2:  # by trigger type
        exposure = exposure[:, None, None, :]
    at_stake = (rate[:, None, None, :] * severity_share[:, :, None, :]
                * alignment_share[None, None, :, :] * exposure)  # (K, V, A, S)
    return {"at_stake": at_stake.sum(axis=(1, 2)),
            "hazard": (at_stake * p_any).sum(axis=(1, 2))}


def within(hazard: np.ndarray, months: Iterable[int]) -> np.ndarray:
    """P(at least one restriction within each horizon): (H, S) from a total hazard (S,)."""
    h = np.asarray(list(months), dtype=np.float64)[:, None]
    return -np.expm1(-h * hazard[None, :])


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole per draw, 0 where the whole is 0 (no trigger of a filtered-out kind)."""
    return part / np.where(whole > 0, whole, 1.0)


def _filter(values: list, chosen) -> np.ndarray:
    """A 0/1 mask over `values`: only `chosen` (None: all)."""
    if chosen is None:
        return np.ones(len(values))
    return (np.asarray(values) == chosen).astype(float)


def horizon_draws(engine: ForecastEngine, arrivals: xr.Dataset, partner: str,
                  intel_type: str, *, trigger_type: str | None = None,
                  severity: int | None = None, alignment: int | None = None) -> dict:
    """Per draw (the engine's), for one cell: the trigger types counted (`types`), the
    arrivals' rate (K, S), severity shares (K, V, S), alignment shares (A, S) and exposure
    ((K, S) by trigger type, or (S,)) after the caller's filters, and `combine`'s at_stake
    and hazard (K, S). What the served answer summarises and the end-to-end backtest
    scores."""
    # validates the codes and the scenario (defaults stand in for the parts left open)
    p, t, _ = engine.cell_index(partner, intel_type, Scenario(
        trigger_type or Scenario.trigger_type,
        Scenario.severity if severity is None else severity,
        Scenario.alignment if alignment is None else alignment))
    types = [k for k in engine.trigger_types if k in set(arrivals["trigger_type"].values)]
    if partner not in set(arrivals["partner"].values):  # in the model, not in its arrivals
        raise NotInModelError("partner", partner, engine.version)
    severities = [int(v) for v in arrivals["severity"].values]
    alignments = [int(v) for v in arrivals["alignment"].values]

    # pair the arrival draws with the engine's, by index
    n = engine.n_draws
    pick = np.arange(n) % arrivals.sizes[DRAW_DIM]
    a = arrivals.isel({DRAW_DIM: pick})
    rate = a["rate"].sel(trigger_type=types).transpose("trigger_type", DRAW_DIM).values
    sev = a["severity_share"].sel(trigger_type=types).transpose(
        "trigger_type", "severity", DRAW_DIM).values
    ali = a["alignment_share"].transpose("alignment", DRAW_DIM).values
    if "exposure_by_type" in a:  # (K, S); models fitted before it: one per partner (S,)
        exposure = a["exposure_by_type"].sel(partner=partner, trigger_type=types).transpose(
            "trigger_type", DRAW_DIM).values
    else:
        exposure = a["exposure"].sel(partner=partner).values
    # a chosen type, severity or alignment: only those triggers (an alignment is a posture:
    # every trigger under it)
    rate = rate * _filter(types, trigger_type)[:, None]
    sev = sev * _filter(severities, severity)[None, :, None]
    if alignment is not None:
        ali = np.broadcast_to(_filter(alignments, alignment)[:, None], ali.shape)

    # P(any | k, v, a) per draw for this cell, every scenario at once
    eta = engine.cell_scenario_eta(p, t, types)[:, severities][:, :, alignments]
    p_any = 1.0 - engine.level_probabilities(eta)[..., 0, :].astype(np.float64)
    return {"types": types, "rate": rate, "severity_share": sev, "alignment_share": ali,
            "exposure": exposure, **combine(p_any, rate, sev, ali, exposure)}


def arrival_settings(arrivals: xr.Dataset) -> dict:
    """What identifies the arrival model behind an answer: its content id (settings and the
    triggers it was fitted on, `trigger_rates.arrival_id`), half-life and exposure pooling.
    A version's content id does not cover them, so two answers of one version id from
    different arrival settings differ here."""
    return {"id": arrival_id(arrivals), "half_life_years": half_life(arrivals),
            "exposure": exposure_pooling(arrivals)}


def horizon_forecast(engine: ForecastEngine, arrivals: xr.Dataset, partner: str,
                     intel_type: str, *, trigger_type: str | None = None,
                     severity: int | None = None, alignment: int | None = None,
                     months: int | Iterable[int] | None = None) -> dict:
    """The horizon answer for one cell: the curve over `months` (default 1-36), the
    probability per trigger, the arrivals behind it, the model version and the arrival
    model's identity."""
    horizons = check_months(months)
    parts = horizon_draws(engine, arrivals, partner, intel_type, trigger_type=trigger_type,
                          severity=severity, alignment=alignment)
    types, rate, sev, ali = (parts[k] for k in ("types", "rate", "severity_share",
                                                "alignment_share"))
    at_stake, hazard = parts["at_stake"], parts["hazard"]
    total_stake, total_hazard = at_stake.sum(axis=0), hazard.sum(axis=0)
    per_trigger = _share(total_hazard, total_stake)
    curve_p = within(total_hazard, horizons)
    expected = np.asarray(horizons, float)[:, None] * total_stake[None, :]
    p_rows, e_rows = _stats(curve_p), _stats(expected)
    arriving = (rate[:, None, :] * sev).sum(axis=1) * ali.sum(axis=0)  # (K, S) per month
    by_type = {}
    for i, k in enumerate(types):
        if trigger_type is not None and k != trigger_type:
            continue
        stake_k = at_stake[i]
        by_type[k] = {"at_stake_per_month": _stats(stake_k),
                      "exposure": _stats(_share(stake_k, arriving[i])),
                      "any_restriction": _stats(_share(hazard[i], stake_k))}
    arrivals_answer = {
        "triggers_per_month": _stats(arriving.sum(axis=0)),
        # the share of the triggers counted that put the partner at stake: with exposure by
        # trigger type, the mix of the types' exposures at their rates
        "exposure": _stats(_share(total_stake, arriving.sum(axis=0))),
        "at_stake_per_month": _stats(total_stake),
        "by_trigger_type": by_type,
        "window": {"start": arrivals.attrs.get("window_start"),
                   "end": arrivals.attrs.get("window_end"),
                   "coded_triggers": int(arrivals.attrs.get("coded_triggers", 0))},
        "half_life_years": half_life(arrivals),
    }
    not_forecast = sorted(set(arrivals["trigger_type"].values) - set(types))
    if not_forecast:  # arrival types the restriction model has no effect for
        arrivals_answer["not_forecast"] = not_forecast
    return {
        "partner": partner,
        "intel_type": intel_type,
        "scenario": {"trigger_type": trigger_type, "severity": severity, "alignment": alignment},
        "curve": [{"months": h, "any_restriction": p_rows[i], "expected_triggers": e_rows[i]}
                  for i, h in enumerate(horizons)],
        "per_trigger": {"any_restriction": _stats(per_trigger)},
        "arrivals": arrivals_answer,
        "model": dict(engine.model_info) | {"arrival_model": arrival_settings(arrivals)},
    }


def horizon_png(answer: Mapping) -> bytes:
    """P(within H) against H with its 50% and 90% bands, as PNG bytes."""
    from forecasting.serving.plots import _PYPLOT_LOCK, _figure_png, plt

    curve = answer["curve"]
    h = [c["months"] for c in curve]
    stats = [c["any_restriction"] for c in curve]
    with _PYPLOT_LOCK:
        fig = plt.figure(figsize=(7, 4))
        ax = fig.add_subplot()
        ax.fill_between(h, [s["ci90"][0] for s in stats], [s["ci90"][1] for s in stats],
                        color="C0", alpha=0.2, label="90% interval")
        ax.fill_between(h, [s["ci50"][0] for s in stats], [s["ci50"][1] for s in stats],
                        color="C0", alpha=0.4, label="50% interval")
        ax.plot(h, [s["median"] for s in stats], color="C0", marker="o" if len(h) < 3 else None,
                label="median")
        ax.set_xlim(min(h) - 0.5 if len(h) == 1 else min(h), max(h) + (0.5 if len(h) == 1 else 0))
        ax.set_ylim(0, max(0.05, min(1.0, 1.1 * max(s["ci90"][1] for s in stats))))
        ax.set_xlabel("months from now (H)")
        ax.set_ylabel("P(at least one restriction within H)")
        scenario = answer.get("scenario") or {}
        given = ", ".join(f"{k} {v}" for k, v in scenario.items() if v is not None)
        ax.set_title(f"{answer['partner']} restricting {answer['intel_type']}"
                     + (f" ({given})" if given else ""))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        version = (answer.get("model") or {}).get("version")
        fig.text(0.99, 0.01, f"model {version}", ha="right", va="bottom", fontsize=7,
                 color="0.4")
        fig.tight_layout()
        return _figure_png(fig)
