"""How often triggers arrive, and how often one puts a given partner at stake (PyMC-free).

The horizon forecasts (forecasting.serving.horizons) need, per posterior draw, the rate at
which triggers of each type and severity arrive and the chance that one of them touches a
given partner. Fitted on the coded triggers (one row per trigger_id: its type, severity,
alignment, date and the partners coded on it), in closed form with numpy, in well under a
second, so that every fit stores it (forecasting.model.fitting) and a web worker can read it.

Three parts, each with its exact (or closed-form conditional) posterior:

- Arrival rates: y_k triggers of type k in E months; y_k ~ Poisson(rate_k E),
  rate_k ~ Gamma(alpha, alpha / mu): partially pooled across trigger types, `mu` the typical
  rate and cv = 1 / sqrt(alpha) how much types differ. Given (mu, cv) the y_k are negative
  binomial, so the hyperparameters' posterior is computed on a grid (log mu x log cv) and
  rate_k | mu, cv, y ~ Gamma(alpha + y_k, alpha / mu + E) drawn exactly.
- Severity (and alignment) shares: per type, shares_k ~ Dirichlet(c * pi) around a pooled
  share pi. pi is drawn from the pooled counts' Dirichlet posterior, c from its
  Dirichlet-multinomial likelihood on a grid given that pi, then shares_k | c, pi, n_k ~
  Dirichlet(c pi + n_k) (a two-stage approximation: the spread of the types' shares says a
  little about pi, which this ignores). Alignment is shared by every type (one Dirichlet):
  it describes the US's posture, not the trigger's kind.
- Exposure: the chance that a trigger puts partner x at stake (it is coded on it: a coded
  level 0 counts; the restriction model's P(any | trigger) is conditional on exactly that).
  n_x of the N triggers touch x; n_x ~ Binomial(N, q_x), q_x ~ Beta(m_b kappa, (1 - m_b)
  kappa) within x's bloc b: a partner coded on few triggers borrows from its bloc, one never
  coded gets its bloc's low, uncertain share. `exposure_by_type` adds q_{x,k}, the chance for
  a trigger of type k, partially pooled toward the partner's overall q_x:
  q_{x,k} ~ Beta(q_x lam, (1 - q_x) lam), one concentration lam for every partner and type
  (two-stage, as the shares: lam | q_x on a grid, then q_{x,k} exact). Served (stored as
  `exposure_by_type`) because the leave-future-out backtest scored it better than one exposure
  per partner, if only a little (docs/horizons.md).

Recent triggers may count more: with a half-life h, a trigger t years before the window's end
weighs 0.5 ** (t / h) and so does the exposure time. `HALF_LIFE_YEARS` is chosen by the
leave-future-out backtest (forecasting.evaluation.trigger_backtest, docs/horizons.md).

The observation window runs from the first coded trigger to `end` (default: the latest coded
trigger): coding is assumed complete up to then. Months are 30.4375 days.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import gammaln, logsumexp

from forecasting.domain.codebook import Codebook

log = logging.getLogger(__name__)

GROUP = "trigger_rates"  # the group of a version's tree that holds the draws
DRAW_DIM = "arrival_draw"
DAYS_PER_MONTH = 365.25 / 12
# Chosen by `forecast backtest-rates` on the seed data (docs/horizons.md): None = every
# coded trigger weighs the same.
HALF_LIFE_YEARS: float | None = 3.0
DRAWS = 4000

# Hyperpriors (per month): the typical type's rate, log-normal around one trigger of a type
# every three years (a factor of e^1.5 ~ 4.5 either way for one sd); the spread between types
# as a coefficient of variation, half-normal(1).
MU_PRIOR = (np.log(1 / 36), 1.5)
CV_PRIOR_SCALE = 1.0
MU_GRID = np.linspace(np.log(1e-4), np.log(2.0), 121)
CV_GRID = np.linspace(np.log(0.02), np.log(4.0), 81)
# Concentration of the per-type severity shares around the pooled share.
CONCENTRATION_GRID = np.exp(np.linspace(np.log(0.5), np.log(500.0), 41))
CONCENTRATION_PRIOR = (np.log(10.0), 1.5)  # log-normal
POOLED_DRAWS = 200
# Exposure: the bloc's mean share m ~ Beta(1, 3), its concentration kappa log-normal.
EXPOSURE_MEAN_PRIOR = (1.0, 3.0)
EXPOSURE_MEAN_GRID = np.linspace(0.005, 0.995, 67)
KAPPA_GRID = np.exp(np.linspace(np.log(0.5), np.log(500.0), 31))
KAPPA_PRIOR = (np.log(10.0), 1.5)
# Exposure by trigger type: how closely a partner's exposure to each type follows its overall
# one (lam large: the same for every type).
TYPE_CONCENTRATION_GRID = np.exp(np.linspace(np.log(0.5), np.log(500.0), 31))
TYPE_CONCENTRATION_PRIOR = (np.log(10.0), 1.5)  # log-normal
# lam is one number for every partner and type: its grid posterior is found for this many
# draws of the partners' q (cycled), the cost of the by-type exposure (200 took 0.27 s)
TYPE_POOLED_DRAWS = 50
EXPOSURE_FLOOR = 1e-12  # what a draw that underflowed to 0 becomes
# Chosen by the leave-future-out exposure backtest (`forecast backtest-rates`,
# docs/horizons.md): by type scored better than one exposure per partner (log score per
# trigger x partner 0.2503 against 0.2521, the difference's 90% interval below zero).
EXPOSURE_BY_TYPE = True


_POOLING = {False: "partner, pooled within bloc",
            True: "partner x trigger type, pooled toward the partner's"}


class NoTriggersError(ValueError):
    """No coded trigger to fit an arrival model on."""


@dataclass(frozen=True)
class Triggers:
    """The coded triggers, one row each, and the window they were coded over."""

    table: pd.DataFrame  # trigger_id, trigger_type, severity, alignment, date
    start: pd.Timestamp
    end: pd.Timestamp
    pairs: pd.DataFrame  # trigger_id, partner: the partners coded on each trigger

    @property
    def months(self) -> float:
        return (self.end - self.start).days / DAYS_PER_MONTH


def coded_triggers(episodes: pd.DataFrame, start=None, end=None) -> Triggers:
    """One row per trigger_id (its earliest date, its first coded type, severity and
    alignment), and the (trigger, partner) pairs coded; `start`/`end` default to the first
    and latest trigger dates. Triggers outside [start, end] are left out."""
    if episodes.empty:
        raise NoTriggersError("no coded triggers: import episodes first")
    frame = episodes.assign(trigger_date=pd.to_datetime(episodes["trigger_date"]))
    grouped = frame.groupby("trigger_id", sort=True)
    table = grouped.agg(trigger_type=("trigger_type", "first"), severity=("severity", "first"),
                        alignment=("alignment", "first"), date=("trigger_date", "min"))
    table = table.reset_index().sort_values(["date", "trigger_id"], ignore_index=True)
    start = pd.Timestamp(start) if start is not None else table["date"].min()
    end = pd.Timestamp(end) if end is not None else table["date"].max()
    if end <= start:
        end = start + pd.Timedelta(days=1)  # one trigger, or one day: a one-day window
    table = table[(table["date"] >= start) & (table["date"] <= end)].reset_index(drop=True)
    pairs = frame[["trigger_id", "partner"]].drop_duplicates()
    return Triggers(table=table, start=start, end=end,
                    pairs=pairs[pairs["trigger_id"].isin(table["trigger_id"])])


def time_weights(triggers: Triggers, half_life_years: float | None) -> tuple[np.ndarray, float]:
    """Each trigger's weight and the window's weighted length in months."""
    months = triggers.months
    if half_life_years is None:
        return np.ones(len(triggers.table)), months
    h = half_life_years * 12
    age = (triggers.end - triggers.table["date"]).dt.days.to_numpy() / DAYS_PER_MONTH
    weights = 0.5 ** (age / h)
    exposure = h / np.log(2) * (1 - 0.5 ** (months / h))  # integral of the weight over time
    return weights, float(exposure)


def _normal_log_density(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2


def _sample_grid(log_post: np.ndarray, grids: list[np.ndarray], n: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """n draws of a posterior known on a regular grid (log density per grid point), jittered
    uniformly within each cell so that the draws are not stuck on the grid's values."""
    p = np.exp(log_post - logsumexp(log_post)).ravel()
    flat = rng.choice(p.size, size=n, p=p)
    idx = np.unravel_index(flat, log_post.shape)
    out = []
    for grid, i in zip(grids, idx, strict=True):
        step = grid[1] - grid[0] if len(grid) > 1 else 0.0
        out.append(grid[i] + rng.uniform(-step / 2, step / 2, n))
    return out


def rate_posterior(counts: np.ndarray, exposure: float, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gamma-Poisson with grid hyperparameters: (rate (n, K), mu (n,), cv (n,)), per month.

    counts: (K,) (weighted) trigger counts per type over `exposure` months.
    """
    log_mu = MU_GRID[:, None, None]
    log_cv = CV_GRID[None, :, None]
    alpha = np.exp(-2 * log_cv)
    beta = alpha / np.exp(log_mu)
    y = np.asarray(counts, float)[None, None, :]
    # negative binomial marginal of each type's count, summed over types
    loglik = (gammaln(y + alpha) - gammaln(alpha) - gammaln(y + 1)
              + alpha * np.log(beta / (beta + exposure))
              + y * np.log(exposure / (beta + exposure))).sum(axis=-1)
    cv = np.exp(CV_GRID)[None, :]
    # priors on the log grids: log-normal mu is normal in log mu; half-normal cv times cv
    log_prior = (_normal_log_density(MU_GRID, *MU_PRIOR)[:, None]
                 - 0.5 * (cv / CV_PRIOR_SCALE) ** 2 + np.log(cv))
    mu_draws, cv_draws = _sample_grid(loglik + log_prior, [MU_GRID, CV_GRID], n, rng)
    a = np.exp(-2 * cv_draws)[:, None]
    b = a / np.exp(mu_draws)[:, None]
    rates = rng.gamma(a + np.asarray(counts, float)[None, :], 1.0 / (b + exposure))
    return rates, np.exp(mu_draws), np.exp(cv_draws)


def _dirichlet(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    g = rng.gamma(alpha)
    return g / g.sum(axis=-1, keepdims=True)


def share_posterior(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-type shares (n, K, L) of L categories from (K, L) (weighted) counts, partially
    pooled: pooled pi | totals ~ Dirichlet(1 + totals); c | pi on a grid
    (Dirichlet-multinomial likelihood, log-normal prior); shares_k ~ Dirichlet(c pi + n_k)."""
    counts = np.asarray(counts, float)
    # c | pi for POOLED_DRAWS distinct pi draws, cycled: the grid likelihood per pi is the
    # cost (4,000 x 41 x K x L gammaln took 0.3 s); the shares are drawn fresh for every draw
    m = min(n, POOLED_DRAWS)
    pi = _dirichlet(np.broadcast_to(1.0 + counts.sum(axis=0), (m, counts.shape[1])), rng)
    c = CONCENTRATION_GRID[None, :, None, None]  # (1, C, 1, 1)
    prior = c * pi[:, None, None, :]  # (n, C, 1, L)
    y = counts[None, None, :, :]  # (1, 1, K, L)
    loglik = (gammaln(c[..., 0]) - gammaln(c[..., 0] + y.sum(-1))
              + (gammaln(prior + y) - gammaln(prior)).sum(-1)).sum(-1)  # (n, C)
    log_post = loglik + _normal_log_density(np.log(CONCENTRATION_GRID), *CONCENTRATION_PRIOR)
    gumbel = rng.gumbel(size=log_post.shape)  # one categorical draw per row
    chosen = CONCENTRATION_GRID[np.argmax(log_post + gumbel, axis=1)]
    cycle = np.arange(n) % m
    return _dirichlet(chosen[cycle, None, None] * pi[cycle, None, :] + counts[None], rng)


def exposure_posterior(touched: np.ndarray, total: float, n: int, rng: np.random.Generator
                       ) -> np.ndarray:
    """(n, P) chances that a trigger puts each partner of one bloc at stake, from the
    (weighted) number of triggers `touched` (P,) of `total`: beta-binomial within the bloc,
    (m, kappa) on a grid."""
    touched = np.asarray(touched, float)
    m = EXPOSURE_MEAN_GRID[:, None, None]
    k = KAPPA_GRID[None, :, None]
    a, b = m * k, (1 - m) * k
    x = touched[None, None, :]
    loglik = (gammaln(a + x) + gammaln(b + total - x) - gammaln(k + total)
              - gammaln(a) - gammaln(b) + gammaln(k)).sum(-1)
    log_prior = ((EXPOSURE_MEAN_PRIOR[0] - 1) * np.log(EXPOSURE_MEAN_GRID)[:, None]
                 + (EXPOSURE_MEAN_PRIOR[1] - 1) * np.log1p(-EXPOSURE_MEAN_GRID)[:, None]
                 + _normal_log_density(np.log(KAPPA_GRID), *KAPPA_PRIOR)[None, :])
    # the kappa grid is log-spaced: its prior is on log kappa, as written
    m_draws, log_k = _sample_grid(loglik + log_prior,
                                  [EXPOSURE_MEAN_GRID, np.log(KAPPA_GRID)], n, rng)
    m_draws = np.clip(m_draws, 1e-4, 1 - 1e-4)[:, None]
    k_draws = np.exp(log_k)[:, None]
    return rng.beta(m_draws * k_draws + touched[None, :],
                    (1 - m_draws) * k_draws + total - touched[None, :])


def exposure_by_type_posterior(touched: np.ndarray, totals: np.ndarray, overall: np.ndarray,
                               rng: np.random.Generator) -> np.ndarray:
    """(n, P, K) chances that a trigger of type k puts partner x at stake, from the (weighted)
    counts `touched` (P, K) of `totals` (K,) triggers of each type, pulled toward the partner's
    overall exposure draws `overall` (n, P): q_{x,k} ~ Beta(q_x lam, (1 - q_x) lam).

    lam | q on a grid (beta-binomial likelihood over every partner and type, log-normal prior)
    for TYPE_POOLED_DRAWS draws of q, cycled; then q_{x,k} | lam, q_x drawn exactly per draw. Two
    stages: q_x was fitted on the same triggers (their sum over types), which this ignores."""
    touched = np.asarray(touched, float)
    totals = np.asarray(totals, float)
    n = overall.shape[0]
    m = min(n, TYPE_POOLED_DRAWS)
    q = np.clip(overall[:m], 1e-6, 1 - 1e-6)[:, None, :, None]  # (m, 1, P, 1)
    lam = TYPE_CONCENTRATION_GRID[None, :, None, None]  # (1, L, 1, 1)
    a, b = q * lam, (1 - q) * lam
    x, total = touched[None, None], totals[None, None, None, :]
    loglik = (gammaln(a + x) + gammaln(b + total - x) - gammaln(a) - gammaln(b)
              ).sum(axis=(-2, -1))  # (m, L)
    # the terms without q, once: sum over partners and types of gammaln(lam) - gammaln(lam + N)
    lam_l = TYPE_CONCENTRATION_GRID[:, None]
    loglik += touched.shape[0] * (gammaln(lam_l) - gammaln(lam_l + totals[None, :])).sum(-1)
    log_post = loglik + _normal_log_density(np.log(TYPE_CONCENTRATION_GRID),
                                            *TYPE_CONCENTRATION_PRIOR)
    chosen = TYPE_CONCENTRATION_GRID[np.argmax(log_post + rng.gumbel(size=log_post.shape),
                                               axis=1)]
    lam_n = chosen[np.arange(n) % m][:, None, None]
    q_n = np.clip(overall, 1e-6, 1 - 1e-6)[:, :, None]
    draws = rng.beta(q_n * lam_n + touched[None], (1 - q_n) * lam_n + totals[None, None, :]
                     - touched[None])
    # a small lam gives Beta shapes near 0, whose draws underflow to exactly 0: a partner
    # "never" at stake, which would leave its probability per trigger undefined in that draw
    return np.maximum(draws, EXPOSURE_FLOOR)


def fit_trigger_rates(episodes: pd.DataFrame, codebook: Codebook, *, start=None, end=None,
                      half_life_years: float | None = HALF_LIFE_YEARS, draws: int = DRAWS,
                      seed: int = 0, exposure_by_type: bool = EXPOSURE_BY_TYPE) -> xr.Dataset:
    """The arrival model's posterior draws as a Dataset (dim `arrival_draw`), stored as the
    `trigger_rates` group of a model version.

    Variables: rate (per month, by trigger_type), severity_share (trigger_type, severity),
    alignment_share (alignment), exposure (partner), mu and cv (the rates' hyperparameters),
    and the data they come from (trigger_count, severity_count, partner_count, n_triggers).
    Attrs: the window, its weighted length in months, the half-life, how long it took.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    triggers = coded_triggers(episodes, start, end)
    table = triggers.table
    weights, exposure_months = time_weights(triggers, half_life_years)
    types = list(codebook.trigger_type_codes)
    severities = list(codebook.severity)
    alignments = list(codebook.alignment)
    partners = list(codebook.partner_codes)

    type_idx = pd.Index(types).get_indexer(table["trigger_type"])
    sev_idx = pd.Index(severities).get_indexer(table["severity"].astype(int))
    ali_idx = pd.Index(alignments).get_indexer(table["alignment"].astype(int))
    known = (type_idx >= 0) & (sev_idx >= 0) & (ali_idx >= 0)
    w = np.where(known, weights, 0.0)
    counts = np.bincount(type_idx[known], weights=w[known], minlength=len(types))
    sev_counts = np.zeros((len(types), len(severities)))
    np.add.at(sev_counts, (type_idx[known], sev_idx[known]), w[known])
    ali_counts = np.bincount(ali_idx[known], weights=w[known], minlength=len(alignments))
    # the weighted number of triggers of each type coded on each partner
    touched_by_type = _touched(triggers, w, partners, types)
    touched = touched_by_type.sum(axis=1)
    total = float(w.sum())

    rate, mu, cv = rate_posterior(counts, exposure_months, draws, rng)
    severity_share = share_posterior(sev_counts, draws, rng)
    alignment_share = _dirichlet(np.broadcast_to(1.0 + ali_counts, (draws, len(alignments))),
                                 rng)
    exposure = np.empty((draws, len(partners)))
    for bloc in codebook.bloc_codes:
        members = [i for i, p in enumerate(partners) if codebook.bloc_of(p) == bloc]
        if members:
            exposure[:, members] = exposure_posterior(touched[members], total, draws, rng)

    extra = {}
    if exposure_by_type:
        extra["exposure_by_type"] = ((DRAW_DIM, "partner", "trigger_type"),
                                     exposure_by_type_posterior(touched_by_type, counts,
                                                                exposure, rng))
    draw = np.arange(draws)
    ds = xr.Dataset(
        {
            "rate": ((DRAW_DIM, "trigger_type"), rate),
            "severity_share": ((DRAW_DIM, "trigger_type", "severity"), severity_share),
            "alignment_share": ((DRAW_DIM, "alignment"), alignment_share),
            "exposure": ((DRAW_DIM, "partner"), exposure),
            "mu": ((DRAW_DIM,), mu),
            "cv": ((DRAW_DIM,), cv),
            "trigger_count": (("trigger_type",), counts),
            "severity_count": (("trigger_type", "severity"), sev_counts),
            "partner_count": (("partner",), touched),
            "n_triggers": ((), total),
            **extra,
        },
        coords={DRAW_DIM: draw, "trigger_type": types, "severity": severities,
                "alignment": alignments, "partner": partners},
    )
    settings = _settings(half_life_years, draws, seed, exposure_by_type)
    ds.attrs.update({
        "settings": json.dumps(settings, sort_keys=True),
        "arrival_id": _digest({"settings": settings, "window": [str(triggers.start),
                                                                 str(triggers.end)],
                               "triggers": table.astype(str).to_numpy().tolist(),
                               "pairs": sorted(map(list, triggers.pairs.astype(str)
                                                   .itertuples(index=False)))}),
        "window_start": triggers.start.date().isoformat(),
        "window_end": triggers.end.date().isoformat(),
        "window_months": round(triggers.months, 3),
        "exposure_months": round(exposure_months, 3),
        "half_life_years": -1.0 if half_life_years is None else float(half_life_years),
        "coded_triggers": int(len(table)),
        "seconds": round(time.perf_counter() - t0, 4),
        "method": "Gamma-Poisson rates pooled across trigger types (grid hyperparameters); "
                  "Dirichlet-multinomial severity shares; beta-binomial exposure within bloc",
    })
    log.info("trigger arrival model: %d triggers over %.0f months in %.3f s", len(table),
             triggers.months, ds.attrs["seconds"])
    return ds


def _settings(half_life_years: float | None, draws: int, seed: int,
              exposure_by_type: bool) -> dict:
    """Everything besides the triggers that the arrival model's draws depend on."""
    def grid(g):
        return [float(g[0]), float(g[-1]), len(g)]
    settings = {"half_life_years": half_life_years, "draws": draws, "seed": seed,
                "exposure": _POOLING[exposure_by_type],
                "mu_prior": list(MU_PRIOR), "cv_prior_scale": CV_PRIOR_SCALE,
                "mu_grid": grid(MU_GRID), "cv_grid": grid(CV_GRID),
                "concentration_grid": grid(CONCENTRATION_GRID),
                "concentration_prior": list(CONCENTRATION_PRIOR), "pooled_draws": POOLED_DRAWS,
                "exposure_mean_prior": list(EXPOSURE_MEAN_PRIOR),
                "exposure_mean_grid": grid(EXPOSURE_MEAN_GRID), "kappa_grid": grid(KAPPA_GRID),
                "kappa_prior": list(KAPPA_PRIOR)}
    if exposure_by_type:
        settings |= {"type_concentration_grid": grid(TYPE_CONCENTRATION_GRID),
                     "type_concentration_prior": list(TYPE_CONCENTRATION_PRIOR),
                     "type_pooled_draws": TYPE_POOLED_DRAWS}
    return settings


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()[:12]


def arrival_id(ds: xr.Dataset) -> str:
    """The content id of a stored arrival model: its settings and the triggers it was fitted
    on (12 hex digits). A model stored before ids existed gets one from what it kept: its
    attributes (window, half-life) and the counts it was fitted on."""
    if "arrival_id" in ds.attrs:
        return str(ds.attrs["arrival_id"])
    kept = {k: v for k, v in ds.attrs.items() if k != "seconds"}
    counts = {name: np.asarray(ds[name].values, float).round(9).tolist()
              for name in ("trigger_count", "severity_count", "partner_count", "n_triggers")
              if name in ds}
    return _digest({"attrs": kept, "counts": counts, "draws": ds.sizes.get(DRAW_DIM)})


def exposure_pooling(ds: xr.Dataset) -> str:
    """How a stored arrival model pools the exposure."""
    return _POOLING["exposure_by_type" in ds]


def _touched(triggers: Triggers, weights: np.ndarray, partners: list[str],
             types: list[str]) -> np.ndarray:
    """(P, K) the weighted number of triggers of each type coded on each partner."""
    table = triggers.table.assign(weight=weights)
    pairs = triggers.pairs.merge(table[["trigger_id", "trigger_type", "weight"]], on="trigger_id")
    return (pairs.pivot_table(index="partner", columns="trigger_type", values="weight",
                              aggfunc="sum", fill_value=0.0)
            .reindex(index=partners, columns=types, fill_value=0.0).to_numpy(float))


def half_life(ds: xr.Dataset) -> float | None:
    """The half-life (years) a stored arrival model was fitted with; None: no decay."""
    value = float(ds.attrs.get("half_life_years", -1.0))
    return None if value < 0 else value
