"""The gate on fit (issue 14): posterior predictive checks on synthetic trees whose answer is
known, the rule that turns them into a verdict, frozen vs constant quantities, the trigger-level
Pareto k, and the gate's settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from forecasting.model import diagnostics
from forecasting.model.diagnostics import (
    POOLED,
    diagnose,
    posterior_predictive_check,
    trigger_loo,
)
from forecasting.model.gate import gate
from forecasting.settings import GateThresholds, load_settings

CONVERGED = {"max_rhat": 1.003, "min_ess_bulk": 900.0, "min_ess_tail": 800.0, "divergences": 0,
             "min_ebfmi": 0.8, "treedepth_fraction": 0.0, "frozen": [], "constant": []}
HEADLINE = ("share of level 0", "share of level 1", "share of level 2", "share of level 3",
            "clusters with any restriction", "triggers with any restriction",
            "dispersion of restrictions across clusters",
            "dispersion of restrictions across triggers")


# ---- a synthetic world: triggers, the partners they touch, 8 types per reaction ------------
class World:
    """One episode per cell; every (trigger, partner) reaction covers all 8 types.

    9 partners in 3 blocs; partner 8 reacts to one trigger only (8 episodes: a small group).
    """

    def __init__(self, n_triggers=40, seed=0, small_partners=(8,)):
        rng = np.random.default_rng(seed)
        self.partner_bloc = np.repeat([0, 1, 2], 3)
        self.years = 1990 + (np.arange(n_triggers) * 40) // n_triggers  # 1990s ... 2020s
        big = [p for p in range(9) if p not in small_partners]
        reactions = [(g, p) for g in range(n_triggers)
                     for p in rng.choice(big, size=2, replace=False)]
        reactions += [(n_triggers - 1 - i, p) for i, p in enumerate(small_partners)]
        cells = [(g, p, t, r) for r, (g, p) in enumerate(reactions) for t in range(8)]
        self.event, self.partner, self.type, self.reaction = map(np.array, zip(*cells,
                                                                              strict=True))
        self.n = len(cells)
        # P(level) per cell: ordinal logit, a partner and a type effect; ~7% restricted
        eta = np.linspace(-0.6, 0.6, 9)[self.partner] + np.linspace(-0.4, 0.4, 8)[self.type]
        cdf = 1 / (1 + np.exp(-(np.array([2.6, 3.1, 3.4]) - eta[:, None])))
        self.probs = np.diff(np.c_[np.zeros(self.n), cdf, np.ones(self.n)], axis=1)

    def draw(self, rng, size=None, probs=None) -> np.ndarray:
        """Level counts (..., cell, level), one episode per cell."""
        probs = self.probs if probs is None else probs
        u = rng.uniform(size=(() if size is None else (size,)) + (self.n, 1))
        level = (u > np.cumsum(probs, axis=1)[:, :-1]).sum(axis=-1)
        return np.eye(4, dtype=np.int64)[level]

    def tree(self, observed: np.ndarray, replicated: np.ndarray, years=True) -> xr.DataTree:
        chains = 4
        rep = replicated.reshape(chains, -1, self.n, 4)
        const = {"partner_idx": ("cell", self.partner), "type_idx": ("cell", self.type),
                 "event_idx": ("cell", self.event), "reaction_idx": ("cell", self.reaction),
                 "partner_bloc": ("partner", self.partner_bloc)}
        if years:
            const["trigger_year"] = ("trigger", self.years.astype(float))
        coords = {"partner": [f"P{p}" for p in range(9)], "bloc": ["b0", "b1", "b2"],
                  "intel_type": [f"T{t}" for t in range(8)]}
        posterior = xr.Dataset({"partner_eff": (("chain", "draw", "partner"),
                                                np.zeros((chains, rep.shape[1], 9))),
                                "bloc_eff": (("chain", "draw", "bloc"),
                                             np.zeros((chains, rep.shape[1], 3))),
                                "type_eff": (("chain", "draw", "intel_type"),
                                             np.zeros((chains, rep.shape[1], 8)))},
                               coords=coords)
        return xr.DataTree.from_dict({
            "posterior": posterior,
            "constant_data": xr.Dataset(const),
            "observed_data": xr.Dataset({"level_counts": (("cell", "level"), observed)}),
            "posterior_predictive": xr.Dataset(
                {"level_counts": (("chain", "draw", "cell", "level"), rep)}),
        })


@pytest.fixture(scope="module")
def world():
    return World()


# ---- the checks ----------------------------------------------------------------------------
def test_each_test_quantity_counts_what_it_says():
    """A hand-counted data set, replicated by itself: every p-value is 1, every interval the
    observed value."""
    w = World(n_triggers=4, seed=3)
    obs = np.zeros((w.n, 4), dtype=np.int64)
    obs[:, 0] = 1
    # restrictions in two reactions of trigger 0 and one of trigger 2
    hit = {(0, w.reaction[w.event == 0].min()): [1, 3], (0, w.reaction[w.event == 0].max()): [2],
           (2, w.reaction[w.event == 2].min()): [3, 3, 3]}
    for (_, r), levels in hit.items():
        for cell, level in zip(np.flatnonzero(w.reaction == r), levels, strict=False):
            obs[cell] = np.eye(4, dtype=np.int64)[level]
    ppc = posterior_predictive_check(w.tree(obs, np.repeat(obs[None], 8, axis=0)))
    head = ppc["headline"]
    assert head["clusters with any restriction"]["observed"] == 3
    assert head["triggers with any restriction"]["observed"] == 2
    assert head["share of level 3"]["observed"] == pytest.approx(4 / w.n)
    per_cluster = np.zeros(w.reaction.max() + 1)
    per_cluster[:3] = [2, 1, 3]  # the rest 0: variance over mean
    assert head["dispersion of restrictions across clusters"]["observed"] == pytest.approx(
        per_cluster.var() / per_cluster.mean())
    per_trigger = np.array([3, 0, 3, 0])
    assert head["dispersion of restrictions across triggers"]["observed"] == pytest.approx(
        per_trigger.var() / per_trigger.mean())
    for row in head.values():
        assert row["p"] == 1.0
        assert row["lower"] == pytest.approx(row["observed"]) == row["upper"]
    partner = w.partner[w.reaction == w.reaction[w.event == 2].min()][0]
    entry = ppc["groups"]["partner"][f"P{partner}"]
    n = int((w.partner == partner).sum())
    assert entry["n_episodes"] == n
    assert entry["checks"]["level 3"]["observed"] >= 3 / n
    decade = f"{w.years[2] // 10 * 10}s"
    restricted = int(obs[w.event == 2, 1:].sum())
    n_decade = int(np.isin(w.event, np.flatnonzero(w.years // 10 == w.years[2] // 10)).sum())
    row = ppc["groups"]["decade"][decade]["checks"]["any restriction"]
    assert row["observed"] == pytest.approx(restricted / n_decade)
    json.dumps(ppc)


def test_data_replicated_from_their_own_probabilities_pass(world):
    rng = np.random.default_rng(1)
    ppc = posterior_predictive_check(world.tree(world.draw(rng), world.draw(rng, 2000)))
    assert set(ppc["headline"]) == set(HEADLINE)
    assert all(row["p"] >= 0.01 for row in ppc["headline"].values())
    assert set(ppc["groups"]) == {"bloc", "intel_type", "partner", "decade"}
    verdict = gate(CONVERGED | {"ppc": ppc}, GateThresholds())
    assert verdict.passed, verdict.reasons


def test_the_p_values_are_calibrated_when_the_model_is_true(world):
    """Observed and replicated data from the same probabilities: each headline p-value is
    uniform or conservative (ties count on both sides), so p < 0.1 in at most ~10% of data
    sets."""
    rng = np.random.default_rng(2)
    rep = world.draw(rng, 400)
    ps = {name: [] for name in HEADLINE}
    for _ in range(60):
        ppc = posterior_predictive_check(world.tree(world.draw(rng), rep))
        for name in HEADLINE:
            ps[name].append(ppc["headline"][name]["p"])
    for name, p in ps.items():
        assert np.mean(np.array(p) < 0.1) <= 0.2, name
        assert 0.3 < np.mean(p) < 0.8, name


def test_restrictions_concentrated_in_few_clusters_fail_the_clustering_check(world):
    """Observed: every restriction in 4 reactions (all 8 types each). Replicated: episodes
    independent with the same overall level shares. The level shares agree; the clustering
    check fails and the gate names it with its numbers."""
    obs = np.zeros((world.n, 4), dtype=np.int64)
    obs[:, 0] = 1
    concentrated = np.isin(world.reaction, [0, 11, 22, 33])
    obs[concentrated] = np.eye(4, dtype=np.int64)[np.resize([1, 3, 3, 2], concentrated.sum())]
    shares = obs.sum(axis=0) / world.n
    rng = np.random.default_rng(4)
    rep = world.draw(rng, 2000, probs=np.broadcast_to(shares, (world.n, 4)))
    ppc = posterior_predictive_check(world.tree(obs, rep))
    clusters = ppc["headline"]["clusters with any restriction"]
    assert clusters["observed"] == 4 and clusters["lower"] > 10 and clusters["p"] < 0.001
    assert all(ppc["headline"][f"share of level {k}"]["p"] > 0.01 for k in range(4))
    verdict = gate(CONVERGED | {"ppc": ppc}, GateThresholds())
    assert not verdict.passed
    [reason] = [r for r in verdict.reasons if r.startswith("ppc clusters with any restriction")]
    assert reason.startswith("ppc clusters with any restriction: observed 4, replicated ")
    assert reason.endswith("p = 0 (needed p >= 0.01)")
    assert any(r.startswith("ppc triggers with any restriction: observed 4,")
               for r in verdict.reasons)


def test_restrictions_in_one_decade_fail_the_decade_checks(world):
    obs = world.draw(np.random.default_rng(5))
    obs[:] = np.eye(4, dtype=np.int64)[0]
    late = world.years[world.event] >= 2020
    obs[late] = np.eye(4, dtype=np.int64)[np.resize([0, 0, 0, 1], late.sum())]
    shares = obs.sum(axis=0) / world.n
    rep = world.draw(np.random.default_rng(6), 2000, probs=np.broadcast_to(shares, (world.n, 4)))
    ppc = posterior_predictive_check(world.tree(obs, rep))
    decades = ppc["groups"]["decade"]
    assert set(decades) == {"1990s", "2000s", "2010s", "2020s"}
    assert decades["2020s"]["checks"]["any restriction"]["p"] < 0.001
    assert decades["1990s"]["checks"]["any restriction"]["observed"] == 0
    assert any(f.startswith("decade=2020s any restriction") for f in ppc["flags"])
    # without trigger years there is no decade check, and nothing else breaks
    assert "decade" not in posterior_predictive_check(world.tree(obs, rep, years=False))["groups"]


def test_small_groups_are_exempt_and_pooled():
    one_small = posterior_predictive_check(World().tree(*_same(World())))
    p8 = one_small["groups"]["partner"]["P8"]
    assert p8["n_episodes"] == 8 and p8["exempt"] and "pooled_into" not in p8
    assert POOLED not in one_small["groups"]["partner"]  # one small group: nothing to pool
    w = World(small_partners=(7, 8))
    two_small = posterior_predictive_check(w.tree(*_same(w)))["groups"]["partner"]
    assert two_small["P7"]["exempt"] and two_small["P7"]["pooled_into"] == POOLED
    assert two_small[POOLED]["members"] == ["P7", "P8"]
    assert two_small[POOLED]["n_episodes"] == 16 and two_small[POOLED]["exempt"]


def _same(w: World):
    rng = np.random.default_rng(7)
    return w.draw(rng), w.draw(rng, 400)


def test_an_exempt_group_far_off_does_not_fail_the_gate(world):
    """Partner P8 (8 episodes, one event) restricted at level 3 in every episode, which its
    replicates never are: its checks are reported, exempt, and the gate passes."""
    rng = np.random.default_rng(8)
    obs, rep = world.draw(rng), world.draw(rng, 2000)
    obs[world.partner == 8] = np.eye(4, dtype=np.int64)[3]
    rep[:, world.partner == 8] = np.eye(4, dtype=np.int64)[0]
    ppc = posterior_predictive_check(world.tree(obs, rep))
    p8 = ppc["groups"]["partner"]["P8"]
    assert p8["exempt"] and p8["checks"]["level 3"]["p"] == 0
    assert not any("P8" in f for f in ppc["flags"])
    verdict = gate(CONVERGED | {"ppc": ppc}, GateThresholds())
    assert not any(r.startswith("ppc groups") for r in verdict.reasons)


# ---- the rule --------------------------------------------------------------------------------
def _ppc(n_checks=100, outside=0, p_outside=0.001, headline_p=0.5):
    """A ppc dict as diagnose writes it: 25 groups x 4 levels, `outside` of them with p
    `p_outside`, and an exempt group whose every check has p = 0."""
    row = {"observed": 0.1, "mean": 0.1, "lower": 0.05, "upper": 0.15, "p": 0.5}
    checks = [dict(row) for _ in range(n_checks)]
    for c in checks[:outside]:
        c.update(observed=0.4, p=p_outside)
    groups = {f"G{g}": {"n_episodes": 40, "exempt": False,
                        "checks": {f"level {k}": checks[4 * g + k] for k in range(4)}}
              for g in range(n_checks // 4)}
    groups["tiny"] = {"n_episodes": 3, "exempt": True,
                      "checks": {f"level {k}": dict(row, p=0.0) for k in range(4)}}
    headline = {name: dict(row, p=headline_p) for name in HEADLINE}
    return {"headline": headline, "groups": {"partner": groups}}


@pytest.mark.parametrize("outside,passes", [(0, True), (5, True), (6, False)])
def test_more_than_5_percent_of_group_checks_outside_fails(outside, passes):
    verdict = gate(CONVERGED | {"ppc": _ppc(outside=outside)}, GateThresholds())
    assert verdict.passed == passes
    if not passes:
        [reason] = verdict.reasons
        assert reason.startswith("ppc groups: 6 of 100 per-group checks (6.0%) have "
                                 "p < 0.01 (needed <= 5%): partner=G0 level 0 observed 0.400 "
                                 "[0.050, 0.150] p = 0.001")
        assert "tiny" not in reason  # exempt groups are never counted


def test_a_headline_p_value_below_alpha_fails_on_either_side():
    verdict = gate(CONVERGED | {"ppc": _ppc(headline_p=0.008)}, GateThresholds())
    assert len(verdict.reasons) == len(HEADLINE)
    assert verdict.reasons[0] == ("ppc share of level 0: observed 0.1, replicated 0.1 "
                                  "[0.05, 0.15], p = 0.008 (needed p >= 0.01)")
    assert gate(CONVERGED | {"ppc": _ppc(headline_p=0.01)}, GateThresholds()).passed


def test_missing_predictive_checks_fail():
    for ppc in ({}, None):
        verdict = gate(CONVERGED | {"ppc": ppc}, GateThresholds())
        assert verdict.reasons == ["posterior predictive checks: not available (needed headline "
                                   "p >= 0.01, per-group checks outside <= 5%)"]


def test_the_thresholds_come_from_settings():
    gate_settings = load_settings({"FORECAST_GATE_PPC_ALPHA": "0.05",
                                   "FORECAST_GATE_PPC_MAX_GROUP_OUTSIDE": "0.1",
                                   "FORECAST_GATE_MAX_DIVERGENCES": "2"}).gate
    assert gate_settings == GateThresholds(ppc_alpha=0.05, ppc_max_group_outside=0.1,
                                           max_divergences=2)
    assert load_settings({}).gate == GateThresholds()
    with pytest.raises(ValueError, match="FORECAST_GATE_PPC_GROUP_ALPHA='1.5' must be between"):
        load_settings({"FORECAST_GATE_PPC_GROUP_ALPHA": "1.5"})
    with pytest.raises(ValueError, match="FORECAST_GATE_MIN_ESS_BULK='many' is not a number"):
        load_settings({"FORECAST_GATE_MIN_ESS_BULK": "many"})


# ---- frozen vs constant quantities -------------------------------------------------------------
def _posterior_tree(theta: np.ndarray) -> xr.DataTree:
    """theta (chain, draw, 3), and zero_dev: identical (0) in every draw, as a partner alone
    in its bloc has no deviation."""
    chains, draws = theta.shape[:2]
    rng = np.random.default_rng(9)
    return xr.DataTree.from_dict({
        "posterior": xr.Dataset(
            {"theta": (("chain", "draw", "k"), theta),
             "zero_dev": (("chain", "draw", "partner"), np.zeros((chains, draws, 2)))},
            coords={"k": ["a", "b", "c"], "partner": ["SGP", "NOR"]}),
        "sample_stats": xr.Dataset(
            {"diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
             "maxdepth_reached": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
             "energy": (("chain", "draw"), rng.normal(size=(chains, draws)))}),
    })


@pytest.fixture(scope="module")
def passing_ppc(world):
    return posterior_predictive_check(world.tree(*_same(world)))


def test_a_structurally_constant_quantity_is_listed_and_passes(passing_ppc):
    theta = np.random.default_rng(10).normal(size=(4, 500, 3))
    diag = diagnose(_posterior_tree(theta))
    assert diag["constant"] == ["zero_dev[NOR]", "zero_dev[SGP]"] and diag["frozen"] == []
    verdict = gate(diag | {"ppc": passing_ppc}, GateThresholds())
    assert verdict.passed, verdict.reasons
    json.dumps(diag)


def test_one_chain_stuck_on_one_parameter_fails_the_gate_naming_it(passing_ppc):
    theta = np.random.default_rng(11).normal(size=(4, 500, 3))
    theta[2, :, 1] = 0.7  # chain 2 never moves theta[b]
    diag = diagnose(_posterior_tree(theta))
    assert diag["frozen"] == ["theta[b]"]
    verdict = gate(diag | {"ppc": passing_ppc}, GateThresholds())
    assert not verdict.passed
    assert verdict.reasons[0] == ("frozen: 1 quantities stuck in a chain or without R-hat "
                                  "(theta[b]; needed none)")
    rhat = next(r for r in verdict.reasons if r.startswith("max_rhat:"))
    assert ": worst theta[b] " in rhat
    assert all("zero_dev" not in r for r in verdict.reasons)
    assert "zero_dev[SGP]" in diag["constant"]


def test_chains_frozen_at_different_values_fail_as_frozen(passing_ppc):
    theta = np.random.default_rng(12).normal(size=(4, 500, 3))
    theta[:, :, 2] = np.array([0.1, 0.2, 0.3, 0.4])[:, None]  # no chain moves, none agree
    diag = diagnose(_posterior_tree(theta))
    assert diag["frozen"] == ["theta[c]"]
    verdict = gate(diag | {"ppc": passing_ppc}, GateThresholds())
    assert verdict.reasons[0] == ("frozen: 1 quantities stuck in a chain or without "
                                  "R-hat (theta[c]; needed none)")
    assert all("zero_dev" not in r for r in verdict.reasons)


# ---- leave-one-trigger-out ---------------------------------------------------------------------
def test_an_influential_trigger_is_named_and_does_not_gate(monkeypatch, passing_ppc):
    """Per-trigger log likelihoods whose importance ratios exp(-ll) have a Pareto tail of
    shape 1.3 for T0 and 0.2 for the rest: PSIS finds k above 0.7 for T0 only."""
    rng = np.random.default_rng(13)
    shape = np.r_[1.3, np.full(9, 0.2)]
    ll = -5 - rng.exponential(size=(2000, 10)) * shape
    labels = [f"T{g}" for g in range(10)]
    monkeypatch.setattr(diagnostics, "trigger_log_likelihood",
                        lambda tree, max_draws: (ll[:max_draws], labels))
    loo = trigger_loo(None, max_draws=2000)
    assert loo["unit"] == "trigger" and loo["n_points"] == 10 and loo["draws"] == 2000
    assert list(loo["influential"]) == ["T0"] and loo["n_influential"] == 1
    assert loo["influential"]["T0"] > 0.8
    assert next(iter(loo["worst"])) == "T0"
    assert max(v for k, v in loo["worst"].items() if k != "T0") < 0.5
    assert sum(loo["pareto_k_counts"].values()) == 10
    assert loo["elpd"] < 0 and loo["se"] > 0
    json.dumps(loo)
    verdict = gate(CONVERGED | {"ppc": passing_ppc, "loo_trigger": loo,
                                "loo": {"max_pareto_k": 1.3}}, GateThresholds())
    assert verdict.passed  # influence is reported, and per-episode k no longer gates
