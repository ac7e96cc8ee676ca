"""Scores on hand-computed cases, the perfect forecaster, and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.evaluation.scoring import SCORES, paired_bootstrap, score_episodes

P = np.array([[0.7, 0.1, 0.1, 0.1]])


@pytest.mark.parametrize(("level", "brier", "log", "rps"), [
    # Brier: (p_y - 1)^2 + sum_{k != y} p_k^2; RPS: sum_k (F_k - 1{y <= k})^2 with F = .7 .8 .9 1
    (0, 0.3**2 + 3 * 0.01, -np.log(0.7), 0.3**2 + 0.2**2 + 0.1**2),
    (2, 0.49 + 0.01 + 0.81 + 0.01, -np.log(0.1), 0.7**2 + 0.8**2 + 0.1**2),
    (3, 0.49 + 0.01 + 0.01 + 0.81, -np.log(0.1), 0.7**2 + 0.8**2 + 0.9**2),
])
def test_ordinal_scores_match_hand_computed_values(level, brier, log, rps):
    row = score_episodes(P, np.array([level])).iloc[0]
    assert row["brier"] == pytest.approx(brier)
    assert row["log"] == pytest.approx(log)
    assert row["rps"] == pytest.approx(rps)


def test_any_restriction_scores_use_one_minus_level_zero():
    scores = score_episodes(np.vstack([P, P]), np.array([0, 2]))
    # P(any) = 0.3
    assert scores["brier_any"].tolist() == pytest.approx([0.09, 0.49])
    assert scores["log_any"].tolist() == pytest.approx([-np.log(0.7), -np.log(0.3)])


def test_rps_rewards_mass_near_the_observed_level_where_brier_does_not():
    near = np.array([[0.0, 1.0, 0.0, 0.0]])  # wrong by one level
    far = np.array([[0.0, 0.0, 0.0, 1.0]])  # wrong by three
    y = np.array([0])
    assert score_episodes(near, y)["rps"][0] < score_episodes(far, y)["rps"][0]
    assert score_episodes(near, y)["brier"][0] == pytest.approx(score_episodes(far, y)["brier"][0])


def test_a_perfect_forecaster_beats_climatology_on_every_score():
    rng = np.random.default_rng(0)
    y = rng.choice(4, 300, p=[0.8, 0.1, 0.05, 0.05])
    perfect = np.eye(4)[y]
    climate = np.tile(np.bincount(y, minlength=4) / len(y), (len(y), 1))
    best, base = score_episodes(perfect, y).mean(), score_episodes(climate, y).mean()
    for score in SCORES:
        assert best[score] == pytest.approx(0.0, abs=1e-8)
        assert best[score] < base[score]


@pytest.mark.parametrize(("probs", "levels", "match"), [
    (np.ones((2, 3)) / 3, np.array([0, 1]), "shape"),
    (np.full((1, 4), 0.3), np.array([0]), "probability vector"),
    (P, np.array([4]), "0-3"),
    (P, np.array([0, 1]), "levels must have shape"),
])
def test_bad_inputs_are_refused(probs, levels, match):
    with pytest.raises(ValueError, match=match):
        score_episodes(probs, levels)


def test_bootstrap_interval_contains_the_mean_difference():
    rng = np.random.default_rng(1)
    diff = rng.normal(-0.02, 0.1, 400)
    out = paired_bootstrap(diff, n_boot=1000, seed=2)
    assert out["lo"] < out["mean"] < out["hi"]
    assert out["mean"] == pytest.approx(diff.mean())
    assert 0 <= out["p_below_zero"] <= 1


def test_clustered_bootstrap_is_wider_than_episode_bootstrap_for_correlated_clusters():
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(40), 10)
    diff = rng.normal(0, 0.2, 40)[clusters] + rng.normal(0, 0.02, 400)
    iid = paired_bootstrap(diff, n_boot=1000)
    clustered = paired_bootstrap(diff, clusters, n_boot=1000)
    assert clustered["clusters"] == 40
    assert clustered["hi"] - clustered["lo"] > 2 * (iid["hi"] - iid["lo"])
