"""Simulated episodes in the full interchange format, from known parameters (pure numpy).

Used by tests (parameter recovery), the benchmarks, SBC and the calibration checks. The data
are clustered as the coded record is (model revision 3): episodes come in (trigger, partner)
reactions of nearly every intelligence type, one trigger touches one to a few partners, and
every episode's eta carries its trigger's event effect u ~ N(0, sigma_event) and its
reaction's effect v ~ N(0, sigma_reaction), as in forecasting.model.arithmetic:

    seed file (636 episodes)   49 triggers, 80 reactions (76 of 8 types, 4 of 7),
                               28 triggers with 1 partner, 17 with 2, 4 with 3-6
    simulate_episodes(n)       round(n / 13) triggers, ceil(n / 7.95) reactions, the extra
                               reactions spread over triggers with exponential weights

The numbers of triggers and reactions depend on n only, so that fits of simulated sets of one
size reuse one compiled model (its cluster slots). Vectorised: 200,000 rows take well under a
second. Every simulated set has unique (trigger_id, partner, intel_type) keys and dates in
the past, like real coded data.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecasting.domain.cells import coords_from_codebook, partner_bloc_index
from forecasting.domain.codebook import Codebook
from forecasting.model.arithmetic import (
    CLUSTERS,
    EFFECTS,
    SLOPES,
    cluster_sd,
    integrate_clusters,
    level_probabilities,
    linear_predictor,
    partner_type_effects,
)
from forecasting.model.priors import PriorSet, draw, draw_ordered

# Scales of the default "true" parameters, per effect (forecasting.model.arithmetic.EFFECTS)
# and per cluster term (CLUSTERS): shaped like the seed fit, where events differ a lot
# (sigma_event about 2) and a partner's reaction to one event less (sigma_reaction about 0.7).
DEFAULT_SCALES = {"bloc": 0.5, "partner": 0.4, "intel_type": 0.5, "bloc_type": 0.2,
                  "partner_type": 0.25, "trigger_type": 0.4, "event": 2.0, "reaction": 0.7}
# With the clusters integrated out these leave about 80% of episodes at level 0 (the seed
# file has 93%: more restrictions give the tests more to learn from), most restrictions in
# a few reactions, as in the seed.
DEFAULT_CUTPOINTS = (2.5, 3.3, 4.3)
# The seed file's rarity: about 7.5% of episodes restricted (5-10% over data sets of 636),
# in about 21 of 80 reactions (seed: 17), the three largest holding a third of them (half).
SEED_RATE_CUTPOINTS = (4.0, 4.8, 5.8)
DEFAULT_BETAS = {"beta_severity": 0.5, "beta_alignment": 0.3}
# The shape of the seed file: episodes per trigger, types per (trigger, partner) reaction,
# and the spread of partners over triggers (Gamma shape of each trigger's weight for extra
# partners: 1, exponential weights, gives 1 partner to 60%, 2 to 25%, 3 or more to 15%).
EPISODES_PER_TRIGGER = 13.0
TYPES_PER_REACTION = 7.95
EXTRA_PARTNER_SHAPE = 1.0
SEVERITY_SHARES = (0.1, 0.4, 0.3, 0.2)  # of triggers, seed: 4, 20, 16, 9 of 49
ALIGNMENT_SHARES = (0.6, 0.22, 0.12, 0.06)  # seed: 31, 11, 5, 2 of 49
FIRST_DATE = datetime.date(1985, 1, 1)


def _zero_sum(x: np.ndarray, axes: int = 1) -> np.ndarray:
    for ax in range(1, axes + 1):
        x = x - x.mean(axis=-ax, keepdims=True)
    return x


def _zero_sum_within(x: np.ndarray, groups: np.ndarray, members: np.ndarray | None = None
                     ) -> np.ndarray:
    """Subtract each group's mean along the first axis, over `members` only (the model's
    partner-in-bloc constraint, on the coded partners; the others stay free draws)."""
    x = np.array(x, dtype=float)
    members = np.ones(len(groups), dtype=bool) if members is None else np.asarray(members)
    for g in np.unique(groups):
        rows = (groups == g) & members
        if rows.any():
            x[rows] -= x[rows].mean(axis=0)
    return x


def default_params(codebook: Codebook, seed: int = 0, scales: Mapping[str, float] | None = None,
                   observed: np.ndarray | None = None,
                   cutpoints: Sequence[float] = DEFAULT_CUTPOINTS) -> dict[str, Any]:
    """A set of "true" parameters: sum-to-zero effects drawn once at the given scales (per
    effect and cluster term, as DEFAULT_SCALES), and the scales themselves (`sigma_*`).

    Drawn as the model's prior draws them: partners deviate from their bloc with deviations
    that sum to zero over the `observed` (coded) partners of each bloc, and a partner never
    coded is a free draw from its bloc (forecasting.model.pymc_model.contrast_basis). With
    `observed` None every partner counts as coded. The cluster effects themselves are drawn
    per simulated set (`simulate_episodes`). `cutpoints` set the base rate (DEFAULT_CUTPOINTS:
    ~80% of episodes at level 0; SEED_RATE_CUTPOINTS: the seed file's ~93%).
    """
    rng = np.random.default_rng(seed)
    s = DEFAULT_SCALES | dict(scales or {})
    c = coords_from_codebook(codebook)
    nb, n_p, nt, ntt = (len(c[k]) for k in ("bloc", "partner", "intel_type", "trigger_type"))
    pb = partner_bloc_index(codebook)
    return complete_params(codebook, {
        "cutpoints": np.array(cutpoints, dtype=float),
        "bloc_eff": _zero_sum(rng.normal(0, s["bloc"], nb)),
        "partner_dev": _zero_sum_within(rng.normal(0, s["partner"], n_p), pb, observed),
        "type_eff": _zero_sum(rng.normal(0, s["intel_type"], nt)),
        "bloc_type_eff": _zero_sum(rng.normal(0, s["bloc_type"], (nb, nt)), 2),
        "pt_dev": _zero_sum(_zero_sum_within(rng.normal(0, s["partner_type"], (n_p, nt)), pb,
                                             observed)),
        "trigger_eff": _zero_sum(rng.normal(0, s["trigger_type"], ntt)),
        **DEFAULT_BETAS,
        **{effect.scale: float(s[name]) for name, effect in EFFECTS.items()},
        **{cluster.scale: float(s[name]) for name, cluster in CLUSTERS.items()},
    })


def params_from_prior(codebook: Codebook, priors: PriorSet, seed: int = 0,
                      observed: np.ndarray | None = None) -> dict[str, Any]:
    """One draw of every parameter from a PriorSet, the scales (`sigma_*`, the cluster
    scales included) with them; `observed` as in `default_params` (SBC passes the coded
    partners of the simulated design, so that the truth is a draw from the fitted model's
    own prior)."""
    rng = np.random.default_rng(seed)
    terms = {**{name: e.scale for name, e in EFFECTS.items()},
             **{name: c.scale for name, c in CLUSTERS.items()}}
    scales = {name: float(draw(priors[scale], rng)) for name, scale in terms.items()}
    params = default_params(codebook, seed=seed + 1, scales=scales, observed=observed)
    params["cutpoints"] = draw_ordered(priors["cutpoints"], rng)
    for slope in SLOPES.values():
        params[slope] = float(draw(priors[slope], rng))
    return complete_params(codebook, params)


LABELS = ("trigger", "reaction")  # label lists a simulated truth carries (cluster coords)


def complete_params(codebook: Codebook, params: Mapping[str, Any]) -> dict[str, Any]:
    """Add the derived quantities of the posterior contract: partner_eff and pt_eff."""
    out = {k: v if k in LABELS else
           (np.asarray(v, dtype=float) if not np.isscalar(v) else float(v))
           for k, v in params.items()}
    out["partner_eff"], out["pt_eff"] = partner_type_effects(
        out["bloc_eff"], out["partner_dev"], out["type_eff"], out["bloc_type_eff"],
        out["pt_dev"], partner_bloc_index(codebook))
    return out


def cluster_scales(params: Mapping[str, Any]) -> tuple[float, float]:
    """(sigma_event, sigma_reaction) of a set of true parameters (the defaults if absent)."""
    return tuple(float(params.get(c.scale, DEFAULT_SCALES[name]))
                 for name, c in CLUSTERS.items())


def true_level_probabilities(params: Mapping[str, Any], partner_idx, type_idx, trigger_idx,
                             severity, alignment, event_idx=None, reaction_idx=None
                             ) -> np.ndarray:
    """True P(level = k) (rows x 4) under one set of parameters.

    With `event_idx` and `reaction_idx` (indices into the truth's event_eff and
    reaction_eff), the rows are simulated episodes and their own cluster effects count: the
    probabilities the levels were drawn from. Without, the rows are cells of a *new*
    trigger, the cluster terms integrated out at the true scales: what a forecast aims at.
    """
    clustered = event_idx is not None or reaction_idx is not None
    eta = linear_predictor(params, partner_idx, type_idx, trigger_idx, np.asarray(severity),
                           np.asarray(alignment), event_idx, reaction_idx)
    cutpoints = np.asarray(params["cutpoints"])
    sd = cluster_sd(*cluster_scales(params))
    if clustered or sd == 0:
        return level_probabilities(eta, cutpoints)
    return integrate_clusters(eta, cutpoints, sd)


@dataclass(frozen=True)
class Design:
    """Who was coded after which trigger (no levels yet): rows sorted by trigger, partner
    and type, with the index of each row's trigger and reaction. Reactions are numbered in
    the order forecasting.domain.cells.aggregate labels them (trigger, then partner)."""

    trigger: np.ndarray  # per row: trigger number (ids sort in this order)
    reaction: np.ndarray  # per row: reaction number
    partner: np.ndarray  # per row: partner index
    intel_type: np.ndarray  # per row: type index
    trigger_type: np.ndarray  # per trigger
    severity: np.ndarray  # per trigger
    alignment: np.ndarray  # per trigger
    day: np.ndarray  # per trigger: days after FIRST_DATE, non-decreasing
    reaction_trigger: np.ndarray  # per reaction
    reaction_partner: np.ndarray  # per reaction
    partner_codes: tuple[str, ...]  # the vocabulary the indices refer to

    @property
    def n_triggers(self) -> int:
        return len(self.trigger_type)

    @property
    def observed(self) -> np.ndarray:
        """Per partner of the vocabulary: is it coded in the design?"""
        return np.bincount(self.reaction_partner, minlength=len(self.partner_codes)) > 0


def _unseen(partners: list[str], unseen_partners: int | Sequence[str]) -> list[str]:
    if isinstance(unseen_partners, int):
        return partners[len(partners) - unseen_partners:] if unseen_partners else []
    return list(unseen_partners)


def _top_k(keys: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the k[row] largest keys of every row, columns sorted within rows."""
    order = np.argsort(-keys, axis=1, kind="stable")
    take = np.arange(keys.shape[1])[None, :] < k[:, None]
    rows = np.broadcast_to(np.arange(keys.shape[0])[:, None], keys.shape)[take]
    cols = order[take]
    sort = np.lexsort((cols, rows))
    return rows[sort], cols[sort]


def simulate_design(codebook: Codebook, n: int, rng: np.random.Generator,
                    unseen_partners: int | Sequence[str] = 0, span_days: int = 14_000
                    ) -> Design:
    """`n` coded (trigger, partner, type) rows clustered as the seed file's (module doc).

    Partners and types are coded unevenly (some partners are in the news far more often):
    each trigger's partners and each reaction's types are drawn without replacement with
    Dirichlet weights (Gumbel top-k). Every partner not in `unseen_partners` is coded at
    least once when there are enough reactions, as a coded partner is in the seed file.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    coords = coords_from_codebook(codebook)
    partners, n_t = coords["partner"], len(coords["intel_type"])
    n_p = len(partners)
    unseen = _unseen(partners, unseen_partners)
    seen = np.array([p not in unseen for p in partners])
    n_seen = int(seen.sum())
    if n_seen == 0:
        raise ValueError("every partner is unseen: nothing to simulate")
    n_trig = max(1, round(n / EPISODES_PER_TRIGGER), math.ceil(n / (n_seen * n_t)))
    n_react = min(max(math.ceil(n / TYPES_PER_REACTION), n_trig, math.ceil(n / n_t)),
                  n_trig * n_seen, n)

    # partners per trigger: 1 + extra, the extra reactions spread with Gamma weights over
    # the triggers' free partner slots (without replacement, so no trigger exceeds n_seen)
    weight = np.log(rng.gamma(EXTRA_PARTNER_SHAPE, size=n_trig))
    slots = np.repeat(weight, n_seen - 1) + rng.gumbel(size=n_trig * (n_seen - 1))
    extra = np.zeros(n_trig, dtype=np.int64)
    if n_react > n_trig:
        chosen = np.argpartition(-slots, n_react - n_trig - 1)[: n_react - n_trig]
        extra = np.bincount(chosen // (n_seen - 1), minlength=n_trig)
    log_w_partner = np.where(seen, np.log(rng.dirichlet(np.full(n_p, 2.0))), -np.inf)
    keys = log_w_partner[None, :] + rng.gumbel(size=(n_trig, n_p))
    r_trig, r_partner = _top_k(keys, 1 + extra)
    _code_every_seen_partner(r_trig, r_partner, np.flatnonzero(seen), rng)
    order = np.lexsort((r_partner, r_trig))  # the order of aggregate's reaction coord
    r_trig, r_partner = r_trig[order], r_partner[order]

    # types per reaction: all of them but for the n_react * n_t - n rows left out, spread
    # over the reactions (at most n_t - 1 from one)
    dropped = rng.choice(n_react * (n_t - 1), n_react * n_t - n, replace=False) // (n_t - 1) \
        if n_t > 1 else np.zeros(0, dtype=np.int64)
    n_types = n_t - np.bincount(dropped, minlength=n_react)
    log_w_type = np.log(rng.dirichlet(np.full(n_t, 4.0)))
    react, t_idx = _top_k(log_w_type[None, :] + rng.gumbel(size=(n_react, n_t)), n_types)

    span = max(span_days, 1)
    return Design(
        trigger=r_trig[react], reaction=react, partner=r_partner[react], intel_type=t_idx,
        trigger_type=rng.integers(0, len(coords["trigger_type"]), n_trig),
        severity=rng.choice(4, n_trig, p=SEVERITY_SHARES),
        alignment=rng.choice(4, n_trig, p=ALIGNMENT_SHARES),
        day=np.sort(rng.integers(0, span, n_trig)),
        reaction_trigger=r_trig, reaction_partner=r_partner, partner_codes=tuple(partners))


def _code_every_seen_partner(r_trig: np.ndarray, r_partner: np.ndarray, seen: np.ndarray,
                             rng: np.random.Generator) -> None:
    """In place: a seen partner with no reaction takes over a reaction of a partner coded
    more than once, on a trigger it is not coded on (when the reactions allow it)."""
    for p in rng.permutation(seen):
        counts = np.bincount(r_partner, minlength=int(seen.max()) + 1)
        if counts[p] > 0:
            continue
        has_p = np.isin(r_trig, r_trig[r_partner == p])
        candidates = np.flatnonzero((counts[r_partner] > 1) & ~has_p)
        if not len(candidates):
            return
        r_partner[rng.choice(candidates)] = p


def cluster_effects(design: Design, params: Mapping[str, Any], rng: np.random.Generator
                    ) -> dict[str, Any]:
    """Fresh event and reaction effects of a design at the truth's scales, with their labels
    (the coords `trigger` and `reaction` aggregate gives the simulated episodes)."""
    sigma_event, sigma_reaction = cluster_scales(params)
    ids = trigger_ids(design.n_triggers)
    return {
        "event_eff": sigma_event * rng.standard_normal(design.n_triggers),
        "reaction_eff": sigma_reaction * rng.standard_normal(len(design.reaction_trigger)),
        "trigger": list(ids),
        "reaction": [f"{ids[t]}:{design.partner_codes[p]}" for t, p in
                     zip(design.reaction_trigger.tolist(), design.reaction_partner.tolist(),
                         strict=True)],
    }


def trigger_ids(n: int) -> np.ndarray:
    return np.char.add("sim-", np.char.zfill(np.arange(n).astype(str), 6))


def simulate_levels(design: Design, params: Mapping[str, Any], rng: np.random.Generator
                    ) -> np.ndarray:
    """A level per row of the design from the true parameters, their cluster effects included."""
    probs = true_level_probabilities(
        params, design.partner, design.intel_type, design.trigger_type[design.trigger],
        design.severity[design.trigger], design.alignment[design.trigger], design.trigger,
        design.reaction)
    cdf = np.cumsum(probs, axis=1)[:, :3]
    return (rng.uniform(size=(len(probs), 1)) > cdf).sum(axis=1)


def simulate_episodes(codebook: Codebook, n: int, seed: int = 0,
                      params: Mapping[str, Any] | None = None,
                      unseen_partners: int | Sequence[str] = 0,
                      today: datetime.date | None = None,
                      priors: PriorSet | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`n` episodes in the interchange format, and the true parameters they came from.

    `params`: the truth's fixed parameters (its `sigma_event` and `sigma_reaction` set the
    clusters' spread; DEFAULT_SCALES where absent); None draws them with `default_params`,
    or from `priors` (`params_from_prior`) when given, for the partners the design codes.
    The returned truth adds the drawn `event_eff` (per trigger) and `reaction_eff` (per
    reaction) in the order of the `trigger` and `reaction` labels it lists, which are the
    coords forecasting.domain.cells.aggregate gives the episodes.

    `unseen_partners` leaves partners out of the data (a number: the last ones of the
    vocabulary; or their codes), as in the seed data, where 2 of 23 have no episodes.
    """
    rng = np.random.default_rng(seed)
    today = today or datetime.date.today()
    coords = coords_from_codebook(codebook)
    partners, types, trigger_types = (coords["partner"], coords["intel_type"],
                                      coords["trigger_type"])
    design = simulate_design(codebook, n, rng, unseen_partners,
                             span_days=(today - FIRST_DATE).days - 60)
    if params is not None:
        truth = complete_params(codebook, params)
    elif priors is not None:
        truth = params_from_prior(codebook, priors, seed, observed=design.observed)
    else:
        truth = default_params(codebook, seed, observed=design.observed)
    truth = truth | cluster_effects(design, truth, rng)
    level = simulate_levels(design, truth, rng)

    trig = design.trigger
    # strings per trigger, then indexed: formatting 200,000 dates one by one is most of the cost
    trigger_day = np.datetime64(FIRST_DATE, "D") + design.day.astype("timedelta64[D]")
    ids = np.asarray(truth["trigger"], dtype=object)
    coded_at = trigger_day[trig] + rng.integers(1, 45, n).astype("timedelta64[D]")
    frame = pd.DataFrame({
        "trigger_id": ids[trig],
        "trigger_type": np.asarray(trigger_types, dtype=object)[design.trigger_type[trig]],
        "trigger_date": np.datetime_as_string(trigger_day, unit="D").astype(object)[trig],
        "severity": design.severity[trig].astype(np.int64),
        "alignment": design.alignment[trig].astype(np.int64),
        "partner": np.asarray(partners, dtype=object)[design.partner],
        "intel_type": np.asarray(types, dtype=object)[design.intel_type],
        "level": level.astype(np.int64),
        "sources": np.array([f"Simulated report {t}" for t in ids], dtype=object)[trig],
        "coder": "simulator",
        "confidence": rng.choice(np.array(["low", "medium", "high"], dtype=object), n,
                                 p=[0.2, 0.5, 0.3]),
        "trigger_description": "Simulated trigger",
        "coded_at": np.datetime_as_string(coded_at, unit="D").astype(object),
        "notes": "",
    })
    return frame, truth


def seed_like(codebook: Codebook, n: int = 800, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Shaped like the seed file: a few hundred rows in about n / 8 (trigger, partner)
    reactions on about n / 13 triggers, 21 of 23 partners coded, ~80% level 0."""
    return simulate_episodes(codebook, n, seed=seed, unseen_partners=2)


def single_event_partner(frame: pd.DataFrame, codebook: Codebook, partner: str,
                         level: int = 3, trigger_type: str | None = None, severity: int = 2,
                         alignment: int = 1, trigger_id: str = "sim-extreme-event"
                         ) -> pd.DataFrame:
    """`frame` with `partner` seen in a single extreme event: its episodes replaced by one
    new trigger on which it alone is coded, every type at `level` (3: all suspended), as
    Colombia in the seed file (8 of 8 suspended after one policy divergence, otherwise
    never coded). The event is dated after every other trigger.
    """
    types = list(codebook.intel_type_codes)
    trigger_type = trigger_type or codebook.trigger_type_codes[0]
    rest = frame[frame["partner"] != partner]
    date = (pd.to_datetime(frame["trigger_date"]).max() + pd.Timedelta(days=1))
    event = pd.DataFrame({
        "trigger_id": trigger_id, "trigger_type": trigger_type,
        "trigger_date": date.strftime("%Y-%m-%d"), "severity": severity,
        "alignment": alignment, "partner": partner, "intel_type": types, "level": level,
        "sources": f"Simulated report {trigger_id}", "coder": "simulator",
        "confidence": "high", "trigger_description": "Simulated extreme event",
        "coded_at": (date + pd.Timedelta(days=5)).strftime("%Y-%m-%d"), "notes": ""})
    return pd.concat([rest, event[frame.columns]], ignore_index=True)
