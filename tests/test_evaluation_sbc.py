"""SBC machinery: prior draws match the model's prior, ranks in range, tests, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from forecasting.evaluation import sbc
from forecasting.model.priors import draw_ordered
from forecasting.settings import DEFAULT_PRIORS_DIR, SamplerSettings

TINY = SamplerSettings(sampler="nutpie", chains=2, draws=100, tune=150, target_accept=0.9,
                       seed=3)


@pytest.fixture(scope="module")
def priors():
    from forecasting.model.priors import load_priors

    return load_priors(DEFAULT_PRIORS_DIR / "default.toml")


def test_cutpoints_are_drawn_from_the_ordered_prior_not_from_sorted_draws():
    spec = {"dist": "Normal", "kwargs": {"mu": [1.0, 2.0, 3.0], "sigma": 1.5}}
    rng = np.random.default_rng(0)
    # the draw SBC's true parameters take their cutpoints from (through simulate)
    draws = np.array([draw_ordered(spec, rng) for _ in range(4000)])
    assert (np.diff(draws, axis=1) > 0).all()
    # reference: rejection from independent normals, by brute force
    raw = np.random.default_rng(1).normal([1.0, 2.0, 3.0], 1.5, (60000, 3))
    kept = raw[(np.diff(raw, axis=1) > 0).all(axis=1)]
    assert np.allclose(draws.mean(axis=0), kept.mean(axis=0), atol=0.08)
    # sorting independent draws is another distribution: here the top cutpoint sits lower
    assert abs(np.sort(raw, axis=1)[:, 2].mean() - kept[:, 2].mean()) > 0.1


def test_uniform_ranks_pass_and_piled_up_ranks_fail_the_uniformity_test():
    rng = np.random.default_rng(0)
    assert sbc.uniformity(rng.integers(0, 100, 500), n_draws=99)["pvalue"] > 0.01
    piled = np.concatenate([np.zeros(100, int), rng.integers(0, 100, 100)])
    assert sbc.uniformity(piled, n_draws=99)["pvalue"] < 1e-6


def test_tiny_sbc_gives_ranks_in_range_p_values_and_coverage(codebook, priors):
    report = sbc.run_sbc(codebook, priors, n_sims=3, n_episodes=300, sampler=TINY, thin_to=49,
                         n_jobs=1, seed=1)
    assert report["n_ok"] == 3, report["failed"]
    assert report["n_draws"] == 49
    # every parameter that has a prior is ranked (each element of a vector one)
    for name in priors:
        size = np.size(priors[name]["kwargs"].get("mu", 0.0))
        expected = [name] if size == 1 else [f"{name}[{k}]" for k in range(size)]
        assert set(expected) <= set(report["ranks"]), name
    for name, ranks in report["ranks"].items():
        # a rank counts the thinned draws below the truth: 0..49, one per simulation
        assert len(ranks) == 3 and all(type(r) is int and 0 <= r <= 49 for r in ranks), name
        # the uniformity test is of these ranks: 3 ranks, 2 bins of 25 rank values
        low = sum(r < 25 for r in ranks)
        expected_p = stats.chisquare([low, 3 - low], [1.5, 1.5]).pvalue
        assert report["pvalues"][name] == pytest.approx(expected_p), name
        assert report["tests"][name]["observed"] == [low, 3 - low]
    assert report["min_pvalue"] == min(report["pvalues"].values())
    assert report["adjusted_min_pvalue"] == pytest.approx(
        min(1.0, report["min_pvalue"] * len(report["pvalues"])))
    assert report["uniform"] is (report["adjusted_min_pvalue"] >= 0.01)
    # 90% intervals of the true cell probabilities cover most cells even with tiny fits
    assert 0.7 <= report["coverage"]["0.9"] <= 1.0
    assert report["coverage"]["0.5"] < report["coverage"]["0.9"]
    png = sbc.plot_sbc(report)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_intervals_cover_known_seed_like_parameters(codebook, priors):
    report = sbc.run_sbc(codebook, priors, n_sims=2, n_episodes=600, sampler=TINY, thin_to=99,
                         n_jobs=1, seed=2, truth_from="seed_like")
    assert report["n_ok"] == 2 and report["truth_from"] == "seed_like"
    assert 0.75 <= report["coverage"]["0.9"] <= 1.0


def test_an_unknown_truth_source_is_refused(codebook, priors):
    with pytest.raises(ValueError, match="must be one of"):
        sbc.run_sbc(codebook, priors, n_sims=1, truth_from="posterior")


@pytest.mark.slow
def test_sbc_ranks_are_uniform_and_intervals_cover_at_nominal_rates(codebook, priors):
    """`make test-slow`: 40 simulations, ~10-20 minutes on 2 cores."""
    report = sbc.run_sbc(codebook, priors, n_sims=40, n_episodes=600, thin_to=99, n_jobs=2,
                         seed=7)
    assert report["uniform"], report["pvalues"]
    assert report["coverage"]["0.9"] == pytest.approx(0.9, abs=0.05)
    assert report["coverage"]["0.5"] == pytest.approx(0.5, abs=0.08)
