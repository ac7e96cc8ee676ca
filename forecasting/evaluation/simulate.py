"""Simulated episodes in the full interchange format, from known parameters (pure numpy).

Used by tests (parameter recovery), the benchmarks and calibration checks. Vectorised:
200,000 rows take well under a second. Every simulated set has unique
(trigger_id, partner, intel_type) keys and dates in the past, like real coded data.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from forecasting.domain.cells import coords_from_codebook, partner_bloc_index
from forecasting.domain.codebook import Codebook
from forecasting.model.arithmetic import (
    EFFECTS,
    SLOPES,
    level_probabilities,
    linear_predictor,
    partner_type_effects,
)
from forecasting.model.priors import PriorSet, draw, draw_ordered

# Scales of the default "true" parameters, per effect: shaped like what the seed data
# suggest, with cutpoints that leave about 80% of episodes at level 0.
DEFAULT_SCALES = {"bloc": 0.5, "partner": 0.4, "intel_type": 0.5, "bloc_type": 0.2,
                  "partner_type": 0.25, "trigger_type": 0.4}
DEFAULT_CUTPOINTS = (1.5, 2.5, 3.6)
DEFAULT_BETAS = {"beta_severity": 0.5, "beta_alignment": 0.3}
ROWS_PER_TRIGGER = 12
FIRST_DATE = datetime.date(1985, 1, 1)


def _zero_sum(x: np.ndarray, axes: int = 1) -> np.ndarray:
    for ax in range(1, axes + 1):
        x = x - x.mean(axis=-ax, keepdims=True)
    return x


def _zero_sum_within(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Subtract each group's mean along the first axis: the model's partner-in-bloc constraint."""
    x = np.array(x, dtype=float)
    for g in np.unique(groups):
        x[groups == g] -= x[groups == g].mean(axis=0)
    return x


def default_params(codebook: Codebook, seed: int = 0, scales: Mapping[str, float] | None = None,
                   ) -> dict[str, Any]:
    """A set of "true" parameters: sum-to-zero effects drawn once at the given scales
    (per effect, as in forecasting.model.arithmetic.EFFECTS)."""
    rng = np.random.default_rng(seed)
    s = DEFAULT_SCALES | dict(scales or {})
    c = coords_from_codebook(codebook)
    nb, n_p, nt, ntt = (len(c[k]) for k in ("bloc", "partner", "intel_type", "trigger_type"))
    pb = partner_bloc_index(codebook)
    return complete_params(codebook, {
        "cutpoints": np.array(DEFAULT_CUTPOINTS),
        "bloc_eff": _zero_sum(rng.normal(0, s["bloc"], nb)),
        # partners deviate from their bloc: zero-sum within each bloc (model revision 2)
        "partner_dev": _zero_sum_within(rng.normal(0, s["partner"], n_p), pb),
        "type_eff": _zero_sum(rng.normal(0, s["intel_type"], nt)),
        "bloc_type_eff": _zero_sum(rng.normal(0, s["bloc_type"], (nb, nt)), 2),
        "pt_dev": _zero_sum(_zero_sum_within(rng.normal(0, s["partner_type"], (n_p, nt)), pb)),
        "trigger_eff": _zero_sum(rng.normal(0, s["trigger_type"], ntt)),
        **DEFAULT_BETAS,
    })


def params_from_prior(codebook: Codebook, priors: PriorSet, seed: int = 0) -> dict[str, Any]:
    """One draw of every parameter from a PriorSet, the group scales (`sigma_*`) included."""
    rng = np.random.default_rng(seed)
    scales = {name: float(draw(priors[effect.scale], rng)) for name, effect in EFFECTS.items()}
    params = default_params(codebook, seed=seed + 1, scales=scales)
    params["cutpoints"] = draw_ordered(priors["cutpoints"], rng)
    for slope in SLOPES.values():
        params[slope] = float(draw(priors[slope], rng))
    params |= {EFFECTS[name].scale: value for name, value in scales.items()}
    return complete_params(codebook, params)


def complete_params(codebook: Codebook, params: Mapping[str, Any]) -> dict[str, Any]:
    """Add the derived quantities of the posterior contract: partner_eff and pt_eff."""
    out = {k: np.asarray(v, dtype=float) if not np.isscalar(v) else float(v)
           for k, v in params.items()}
    out["partner_eff"], out["pt_eff"] = partner_type_effects(
        out["bloc_eff"], out["partner_dev"], out["type_eff"], out["bloc_type_eff"],
        out["pt_dev"], partner_bloc_index(codebook))
    return out


def true_level_probabilities(params: Mapping[str, Any], partner_idx, type_idx, trigger_idx,
                             severity, alignment) -> np.ndarray:
    """True P(level = k) (rows x 4) under one set of parameters."""
    eta = linear_predictor(params, partner_idx, type_idx, trigger_idx, np.asarray(severity),
                           np.asarray(alignment))
    return level_probabilities(eta, np.asarray(params["cutpoints"]))


def simulate_episodes(codebook: Codebook, n: int, seed: int = 0,
                      params: Mapping[str, Any] | None = None,
                      unseen_partners: int | Sequence[str] = 0,
                      today: datetime.date | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`n` episodes in the interchange format, and the true parameters they came from.

    `unseen_partners` leaves partners out of the data (a number: the last ones of the
    vocabulary; or their codes), as in the seed data, where 2 of 23 have no episodes.
    """
    rng = np.random.default_rng(seed)
    today = today or datetime.date.today()
    params = default_params(codebook, seed) if params is None else complete_params(codebook, params)
    coords = coords_from_codebook(codebook)
    partners, types, triggers = coords["partner"], coords["intel_type"], coords["trigger_type"]
    n_p, nt = len(partners), len(types)
    if isinstance(unseen_partners, int):
        unseen = partners[n_p - unseen_partners:] if unseen_partners else []
    else:
        unseen = list(unseen_partners)
    seen = np.array([p not in unseen for p in partners])

    # Partners and types are coded unevenly (some partners are in the news far more often):
    # sample pairs with Dirichlet weights, distinct within a trigger (Gumbel top-k).
    weight = (rng.dirichlet(np.full(n_p, 2.0)) * seen)[:, None] * rng.dirichlet(np.full(nt, 4.0))
    log_w = np.log(np.where(weight > 0, weight, 1e-300)).reshape(-1)
    per_trigger = min(ROWS_PER_TRIGGER, int(seen.sum()) * nt)
    n_triggers = max(1, -(-n // per_trigger))
    keys = log_w[None, :] + rng.gumbel(size=(n_triggers, n_p * nt))
    pairs = np.argpartition(-keys, per_trigger - 1, axis=1)[:, :per_trigger]
    trig = np.repeat(np.arange(n_triggers), per_trigger)[:n]
    pair = pairs.reshape(-1)[:n]
    p_idx, t_idx = pair // nt, pair % nt

    trig_type = rng.integers(0, len(triggers), n_triggers)
    trig_sev = rng.choice(4, n_triggers, p=[0.3, 0.3, 0.25, 0.15])
    trig_ali = rng.choice(4, n_triggers, p=[0.4, 0.3, 0.2, 0.1])
    span = (today - FIRST_DATE).days - 60
    trig_day = np.sort(rng.integers(0, span, n_triggers))
    tt_idx, sev, ali = trig_type[trig], trig_sev[trig], trig_ali[trig]

    probs = true_level_probabilities(params, p_idx, t_idx, tt_idx, sev, ali)
    level = (rng.uniform(size=(n, 1)) > np.cumsum(probs, axis=1)[:, :3]).sum(axis=1)

    first = np.datetime64(FIRST_DATE, "D")
    trigger_date = first + trig_day[trig].astype("timedelta64[D]")
    coded_at = trigger_date + rng.integers(1, 45, n).astype("timedelta64[D]")
    trigger_ids = np.char.add("sim-", np.char.zfill(np.arange(n_triggers).astype(str), 6))
    frame = pd.DataFrame({
        "trigger_id": trigger_ids[trig],
        "trigger_type": np.asarray(triggers, dtype=object)[tt_idx],
        "trigger_date": pd.to_datetime(trigger_date).strftime("%Y-%m-%d"),
        "severity": sev.astype(np.int64),
        "alignment": ali.astype(np.int64),
        "partner": np.asarray(partners, dtype=object)[p_idx],
        "intel_type": np.asarray(types, dtype=object)[t_idx],
        "level": level.astype(np.int64),
        "sources": np.char.add("Simulated report ", trigger_ids[trig]),
        "coder": "simulator",
        "confidence": rng.choice(np.array(["low", "medium", "high"], dtype=object), n,
                                 p=[0.2, 0.5, 0.3]),
        "trigger_description": "Simulated trigger",
        "coded_at": pd.to_datetime(coded_at).strftime("%Y-%m-%d"),
        "notes": "",
    })
    return frame, params


def seed_like(codebook: Codebook, n: int = 800, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Shaped like the seed file: a few hundred rows, 21 of 23 partners, ~80% level 0."""
    return simulate_episodes(codebook, n, seed=seed, unseen_partners=2)
