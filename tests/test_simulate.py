import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest

from forecasting.domain.cells import aggregate
from forecasting.domain.episodes import ALL_FIELDS, NATURAL_KEY, validate_episodes
from forecasting.evaluation.simulate import (
    DEFAULT_SCALES,
    SEED_RATE_CUTPOINTS,
    default_params,
    params_from_prior,
    seed_like,
    simulate_episodes,
    single_event_partner,
    true_level_probabilities,
)
from forecasting.model.arithmetic import CLUSTERS, PARAMETERS


def indices(frame, codebook):
    codes = {"partner": codebook.partner_codes, "intel_type": codebook.intel_type_codes,
             "trigger_type": codebook.trigger_type_codes}
    return {k: pd.Index(list(v)).get_indexer(frame[k]) for k, v in codes.items()}


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


def test_the_same_seed_gives_the_same_episodes_and_cluster_effects(codebook):
    a, pa = simulate_episodes(codebook, 300, seed=4)
    b, pb = simulate_episodes(codebook, 300, seed=4)
    c, _ = simulate_episodes(codebook, 300, seed=5)
    assert a.equals(b) and not a.equals(c)
    for name in ("pt_eff", "event_eff", "reaction_eff"):
        assert np.array_equal(pa[name], pb[name]), name


def test_seed_like_data_are_clustered_like_the_seed_file(codebook):
    """Seed file: 636 episodes, 49 triggers, 80 (trigger, partner) reactions (76 of all 8
    types), 28 triggers with one partner, 21 of 23 partners coded."""
    frame, truth = seed_like(codebook, n=640, seed=0)
    reactions = frame.groupby(["trigger_id", "partner"]).size()
    partners_per_trigger = frame.groupby("trigger_id")["partner"].nunique()
    assert len(frame) == 640
    assert frame.trigger_id.nunique() == 49 and len(reactions) == 81
    assert (reactions == 8).mean() >= 0.9 and reactions.min() >= 5
    assert (partners_per_trigger == 1).mean() >= 0.4 and partners_per_trigger.max() >= 3
    # episodes of one trigger share its date, type, severity and alignment
    assert (frame.groupby("trigger_id")[["trigger_date", "trigger_type", "severity",
                                          "alignment"]].nunique() == 1).all().all()
    assert frame.partner.nunique() == len(codebook.partner_codes) - 2
    assert 0.7 <= (frame.level == 0).mean() <= 0.9
    assert set(frame.level) == {0, 1, 2, 3}
    assert len(truth["event_eff"]) == 49 and len(truth["reaction_eff"]) == 81


@pytest.mark.parametrize("n", [790, 800])
def test_the_numbers_of_triggers_and_reactions_depend_on_n_only(codebook, n):
    """So that simulated sets of one size fit into the same compiled model's cluster slots."""
    sizes = {(d.trigger_id.nunique(), d.groupby(["trigger_id", "partner"]).ngroups)
             for d in (seed_like(codebook, n=n, seed=s)[0] for s in range(4))}
    assert len(sizes) == 1 and next(iter(sizes))[0] == round(n / 13)


@pytest.mark.parametrize("n", [1, 5, 13, 50])
def test_tiny_sets_are_simulated_too(codebook, n):
    frame, truth = simulate_episodes(codebook, n, seed=n)
    assert len(frame) == n and not frame.duplicated(list(NATURAL_KEY)).any()
    assert len(truth["event_eff"]) == frame.trigger_id.nunique()


def test_no_episodes_is_an_error(codebook):
    with pytest.raises(ValueError, match="at least 1"):
        simulate_episodes(codebook, 0)


def test_the_truth_lists_cluster_effects_in_the_order_of_the_cells_coords(codebook):
    frame, truth = seed_like(codebook, n=400, seed=8)
    cells = aggregate(frame, codebook)
    assert truth["trigger"] == cells.coords["trigger"]
    assert truth["reaction"] == cells.coords["reaction"]
    for name, cluster in CLUSTERS.items():
        assert truth[cluster.scale] == DEFAULT_SCALES[name]
    # every top-level parameter has a true value (SBC ranks them all)
    assert set(PARAMETERS) <= set(truth)


def test_levels_follow_the_true_probabilities_of_their_clusters(codebook):
    frame, params = simulate_episodes(codebook, 50_000, seed=5)
    idx = indices(frame, codebook)
    cells = aggregate(frame, codebook)
    event = pd.Index(cells.coords["trigger"]).get_indexer(frame.trigger_id)
    reaction = pd.Index(cells.coords["reaction"]).get_indexer(
        frame.trigger_id + ":" + frame.partner)
    args = (params, idx["partner"], idx["intel_type"], idx["trigger_type"],
            frame.severity.to_numpy(), frame.alignment.to_numpy())
    own = true_level_probabilities(*args, event, reaction)
    new = true_level_probabilities(*args)  # a new trigger: clusters integrated out
    observed = np.bincount(frame.level, minlength=4) / len(frame)
    assert np.allclose(observed, own.mean(axis=0), atol=0.01)
    assert np.allclose(observed, new.mean(axis=0), atol=0.02)
    # restricted episodes sit where their own clusters put them
    restricted = frame.level.to_numpy() >= 1
    assert (1 - own[restricted, 0]).mean() > 2 * (1 - new[restricted, 0]).mean()


def test_cluster_effects_are_drawn_at_the_true_scales(codebook):
    scales = {"event": 1.5, "reaction": 0.5}
    params = default_params(codebook, seed=3, scales=scales)
    frame, truth = simulate_episodes(codebook, 200_000, seed=3, params=params)
    assert np.std(truth["event_eff"]) == pytest.approx(1.5, rel=0.05)
    assert np.std(truth["reaction_eff"]) == pytest.approx(0.5, rel=0.05)
    # without cluster effects, one reaction's types restrict far less often together
    flat = simulate_episodes(codebook, 20_000, seed=3,
                             params=params | {"sigma_event": 0.0, "sigma_reaction": 0.0})[0]

    def dispersion(f):  # variance of restricted types per reaction over the binomial's
        k = f.groupby(["trigger_id", "partner"])["level"].agg(lambda v: (v >= 1).sum())
        n = f.groupby(["trigger_id", "partner"]).size()
        rate = k.sum() / n.sum()
        return np.var(k / n) / np.mean(rate * (1 - rate) / n)

    assert dispersion(frame.iloc[:20_000]) > 1.5 * dispersion(flat)


def test_true_effects_sum_to_zero_and_pt_eff_is_their_sum(codebook):
    p = default_params(codebook, seed=1)
    assert np.isclose(p["bloc_eff"].sum(), 0) and np.isclose(p["type_eff"].sum(), 0)
    assert np.allclose(p["pt_dev"].sum(axis=0), 0) and np.allclose(p["pt_dev"].sum(axis=1), 0)
    assert p["pt_eff"].shape == (len(codebook.partner_codes), len(codebook.intel_type_codes))
    assert p["sigma_event"] == DEFAULT_SCALES["event"]


def test_an_uncoded_partner_is_a_free_draw_from_its_bloc_as_in_the_model(codebook):
    partners = list(codebook.partner_codes)
    observed = np.array([p != "SGP" for p in partners])
    bloc = np.array([codebook.bloc_of(p) for p in partners])
    p = default_params(codebook, seed=2, observed=observed)
    mates = (bloc == "indo_pacific") & observed
    assert np.isclose(p["partner_dev"][mates].sum(), 0)
    assert np.allclose(p["pt_dev"][mates].sum(axis=0), 0)
    assert not np.isclose(p["partner_dev"][~observed].sum(), 0)


def test_parameters_can_come_from_the_prior(codebook, default_priors):
    p = params_from_prior(codebook, default_priors, seed=2)
    assert np.all(np.diff(p["cutpoints"]) > 0)
    assert set(PARAMETERS) <= set(p)
    frame, truth = simulate_episodes(codebook, 100, seed=2, params=p)
    assert len(frame) == 100
    assert np.std(truth["event_eff"]) > 0 and truth["sigma_event"] == p["sigma_event"]
    # or drawn inside, for the partners the design codes
    frame, truth = simulate_episodes(codebook, 300, seed=2, priors=default_priors,
                                     unseen_partners=["SGP"])
    assert truth["sigma_reaction"] != DEFAULT_SCALES["reaction"]


def test_seed_rate_cutpoints_give_the_seed_files_rare_restrictions(codebook):
    rates = [(simulate_episodes(codebook, 636, seed=s, unseen_partners=2,
                                params=default_params(codebook, s,
                                                      cutpoints=SEED_RATE_CUTPOINTS))[0]
              .level >= 1).mean() for s in range(10)]
    assert 0.04 <= np.mean(rates) <= 0.11


def test_two_hundred_thousand_rows_are_fast(codebook):
    t = time.perf_counter()
    frame, _ = simulate_episodes(codebook, 200_000, seed=6)
    assert len(frame) == 200_000
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("unseen", [["GBR", "ISR"], 3])
def test_unseen_partners_have_no_episodes_and_the_others_have_some(codebook, unseen):
    frame, _ = simulate_episodes(codebook, 2000, seed=7, unseen_partners=unseen)
    expected = unseen if isinstance(unseen, list) else list(codebook.partner_codes[-3:])
    assert not frame.partner.isin(expected).any()
    assert frame.partner.nunique() == len(codebook.partner_codes) - len(expected)


def test_a_partner_can_be_seen_in_a_single_extreme_event(codebook):
    frame, _ = seed_like(codebook, n=400, seed=9)
    out = single_event_partner(frame, codebook, "COL", trigger_type="policy_divergence")
    col = out[out.partner == "COL"]
    assert len(col) == len(codebook.intel_type_codes) and (col.level == 3).all()
    assert col.trigger_id.nunique() == 1
    assert (out[out.trigger_id == col.trigger_id.iloc[0]].partner == "COL").all()
    assert list(out.columns) == list(frame.columns)
    assert len(out) == len(frame) - (frame.partner == "COL").sum() + len(col)
