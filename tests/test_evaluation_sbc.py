"""SBC machinery: prior draws match the model's prior, ranks in range, tests, coverage and
its expectation for a finite number of draws. The statistical checks themselves (100-ish real
fits) are in test_simulated_checks.py, marked slow."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from forecasting.evaluation import sbc
from forecasting.model.arithmetic import PARAMETERS
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


def test_intervals_of_99_draws_are_expected_to_cover_088_and_048_not_090_and_050():
    assert sbc.interval_positions(99, 0.9) == (5, 93)
    assert sbc.expected_coverage(99, 0.9) == pytest.approx(0.88)
    assert sbc.expected_coverage(99, 0.5) == pytest.approx(0.48)
    # the expectation approaches the nominal level as draws grow, from below
    assert sbc.expected_coverage(9999, 0.9) == pytest.approx(0.9, abs=2e-4)
    assert sbc.expected_coverage(49, 0.9) < sbc.expected_coverage(99, 0.9) < 0.9


@pytest.mark.parametrize("n_draws", [19, 49, 99, 100])
@pytest.mark.parametrize("prob", sbc.INTERVALS)
def test_the_coverage_expectation_matches_simulated_uniform_ranks(n_draws, prob):
    """A truth exchangeable with the draws: its rank is uniform on 0..L, and the interval
    the code computes covers it as often as expected_coverage says."""
    rng = np.random.default_rng(n_draws)
    m = 100_000
    values = rng.standard_normal((m, n_draws + 1))  # column 0 plays the truth
    truth, draws = values[:, 0], values[:, 1:]
    rank = (draws < truth[:, None]).sum(axis=1)
    assert sbc.uniformity(rank, n_draws)["pvalue"] > 0.001
    lo, hi = sbc.central_interval(draws, prob)
    covered = np.mean((truth >= lo) & (truth <= hi))
    expected = sbc.expected_coverage(n_draws, prob)
    se = np.sqrt(expected * (1 - expected) / m)
    assert abs(covered - expected) < 4 * se
    # the same from the ranks alone: inside exactly when a < rank <= b
    a, b = sbc.interval_positions(n_draws, prob)
    assert np.array_equal((truth >= lo) & (truth <= hi), (rank > a) & (rank <= b))


def test_the_interval_is_a_pair_of_draws_inside_numpys_interpolated_quantiles():
    draws = np.random.default_rng(1).standard_normal((50, 99))
    lo, hi = sbc.central_interval(draws, 0.9)
    ordered = np.sort(draws, axis=1)
    assert np.array_equal(lo, ordered[:, 5]) and np.array_equal(hi, ordered[:, 93])
    q_lo, q_hi = np.quantile(draws, [0.05, 0.95], axis=1)
    assert (lo >= q_lo).all() and (hi <= q_hi).all()


def test_coverage_is_summarised_against_its_expectation_with_its_monte_carlo_error():
    results = [{"coverage": {"0.5": c, "0.9": c + 0.4}} for c in (0.40, 0.50, 0.54)]
    check = sbc.coverage_summary(results, n_draws=99)
    assert check["0.9"]["expected"] == pytest.approx(0.88)
    assert check["0.5"]["coverage"] == pytest.approx(np.mean([0.40, 0.50, 0.54]))
    assert check["0.5"]["mcse"] == pytest.approx(np.std([0.40, 0.50, 0.54], ddof=1) / np.sqrt(3))
    assert check["0.5"]["z"] == pytest.approx(
        (check["0.5"]["coverage"] - 0.48) / check["0.5"]["mcse"])


@pytest.fixture(scope="module")
def tiny_report(codebook, priors):
    return sbc.run_sbc(codebook, priors, n_sims=3, n_episodes=300, sampler=TINY, thin_to=49,
                       n_jobs=1, seed=1)


def test_tiny_sbc_ranks_every_top_level_parameter_and_the_cluster_effects(tiny_report,
                                                                           priors):
    report = tiny_report
    assert report["n_ok"] == 3, report["failed"]
    assert report["n_draws"] == 49
    # every parameter that has a prior is ranked (each element of a vector one), the
    # cluster scales among them
    assert {"sigma_event", "sigma_reaction"} <= set(PARAMETERS) & set(report["ranks"])
    for name in priors:
        size = np.size(priors[name]["kwargs"].get("mu", 0.0))
        expected = [name] if size == 1 else [f"{name}[{k}]" for k in range(size)]
        assert set(expected) <= set(report["ranks"]), name
    assert {"event_eff[first]", "reaction_eff[first]", "partner_eff[-1]"} <= set(report["ranks"])
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
    png = sbc.plot_sbc(report)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_sbc_simulates_clusters_and_unseen_partners(tiny_report, codebook):
    for sim in tiny_report["simulations"]:
        assert sim["n_triggers"] == round(300 / 13) and sim["n_reactions"] == 38
        assert sim["unseen_partners"] == list(codebook.partner_codes[-2:])
        # every partner x type, under every simulated scenario
        assert sim["n_cells_checked"] % (len(codebook.partner_codes)
                                         * len(codebook.intel_type_codes)) == 0


def test_tiny_sbc_reports_coverage_beside_its_expectation(tiny_report):
    report = tiny_report
    for prob in ("0.5", "0.9"):
        check = report["coverage_check"][prob]
        assert check["expected"] == sbc.expected_coverage(49, float(prob))
        assert check["coverage"] == report["coverage"][prob]
        assert check["n_sims"] == 3 and check["mcse"] >= 0
        assert 0 <= report["coverage_unseen"][prob]["coverage"] <= 1
    assert report["coverage"]["0.5"] <= report["coverage"]["0.9"]
    assert report["coverage_expected"] == {"0.5": pytest.approx(0.48), "0.9": pytest.approx(0.84)}


def test_intervals_are_checked_on_known_seed_like_parameters(codebook, priors):
    report = sbc.run_sbc(codebook, priors, n_sims=2, n_episodes=300, sampler=TINY, thin_to=49,
                         n_jobs=1, seed=2, truth_from="seed_like")
    assert report["n_ok"] == 2 and report["truth_from"] == "seed_like"
    assert 0.5 <= report["coverage"]["0.9"] <= 1.0


def test_an_unknown_truth_source_is_refused(codebook, priors):
    with pytest.raises(ValueError, match="must be one of"):
        sbc.run_sbc(codebook, priors, n_sims=1, truth_from="posterior")
