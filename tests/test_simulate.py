import datetime as dt
import time

import numpy as np
import pytest

from forecasting.domain.episodes import ALL_FIELDS, NATURAL_KEY, validate_episodes
from forecasting.evaluation.simulate import (
    default_params,
    params_from_prior,
    seed_like,
    simulate_episodes,
    true_level_probabilities,
)


def test_simulated_episodes_have_exactly_the_interchange_columns(codebook):
    frame, _ = simulate_episodes(codebook, 50, seed=1)
    assert list(frame.columns) == list(ALL_FIELDS)


def test_simulated_rows_pass_the_episode_validator(codebook):
    frame, _ = simulate_episodes(codebook, 60, seed=2)
    rows = [(i + 2, {k: str(v) for k, v in row.items()})
            for i, row in enumerate(frame.to_dict("records"))]
    assert len(validate_episodes(rows, codebook)) == 60


def test_natural_keys_are_unique_and_dates_in_the_past(codebook):
    frame, _ = simulate_episodes(codebook, 5000, seed=3)
    assert not frame.duplicated(list(NATURAL_KEY)).any()
    today = dt.date.today().isoformat()
    assert (frame.trigger_date < today).all() and (frame.coded_at <= today).all()
    assert (frame.coded_at > frame.trigger_date).all()


def test_the_same_seed_gives_the_same_episodes(codebook):
    a, pa = simulate_episodes(codebook, 300, seed=4)
    b, pb = simulate_episodes(codebook, 300, seed=4)
    assert a.equals(b)
    assert np.array_equal(pa["pt_eff"], pb["pt_eff"])


def test_seed_like_data_look_like_the_seed_file(codebook):
    frame, _ = seed_like(codebook, n=800, seed=0)
    assert len(frame) == 800
    assert frame.partner.nunique() == len(codebook.partner_codes) - 2
    assert 0.7 <= (frame.level == 0).mean() <= 0.9
    assert set(frame.level) == {0, 1, 2, 3}


def test_levels_follow_the_true_probabilities(codebook):
    frame, params = simulate_episodes(codebook, 50_000, seed=5)
    idx = {k: {c: i for i, c in enumerate(v)} for k, v in
           {"partner": codebook.partner_codes, "intel_type": codebook.intel_type_codes,
            "trigger_type": codebook.trigger_type_codes}.items()}
    probs = true_level_probabilities(params, frame.partner.map(idx["partner"]).to_numpy(),
                                frame.intel_type.map(idx["intel_type"]).to_numpy(),
                                frame.trigger_type.map(idx["trigger_type"]).to_numpy(),
                                frame.severity.to_numpy(), frame.alignment.to_numpy())
    observed = np.bincount(frame.level, minlength=4) / len(frame)
    assert np.allclose(observed, probs.mean(axis=0), atol=0.01)


def test_true_effects_sum_to_zero_and_pt_eff_is_their_sum(codebook):
    p = default_params(codebook, seed=1)
    assert np.isclose(p["bloc_eff"].sum(), 0) and np.isclose(p["type_eff"].sum(), 0)
    assert np.allclose(p["pt_dev"].sum(axis=0), 0) and np.allclose(p["pt_dev"].sum(axis=1), 0)
    assert p["pt_eff"].shape == (len(codebook.partner_codes), len(codebook.intel_type_codes))


def test_parameters_can_come_from_the_prior(codebook, default_priors):
    p = params_from_prior(codebook, default_priors, seed=2)
    assert np.all(np.diff(p["cutpoints"]) > 0)
    frame, _ = simulate_episodes(codebook, 100, seed=2, params=p)
    assert len(frame) == 100


def test_two_hundred_thousand_rows_are_fast(codebook):
    t = time.perf_counter()
    frame, _ = simulate_episodes(codebook, 200_000, seed=6)
    assert len(frame) == 200_000
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("unseen", [["GBR", "ISR"], 3])
def test_unseen_partners_have_no_episodes(codebook, unseen):
    frame, _ = simulate_episodes(codebook, 2000, seed=7, unseen_partners=unseen)
    expected = unseen if isinstance(unseen, list) else list(codebook.partner_codes[-3:])
    assert not frame.partner.isin(expected).any()
