"""Baselines and folds: probability vectors, add-one smoothing, no leakage from the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.evaluation.backtest import (
    FoldSpec,
    make_folds,
    predictive_probs,
    run_backtest,
    summarise_backtest,
)
from forecasting.evaluation.baselines import BASELINES, climatology, no_pooling
from forecasting.evaluation.simulate import seed_like
from forecasting.model.arithmetic import integrate_clusters, level_probabilities


@pytest.fixture(scope="module")
def episodes(codebook):
    frame, params = seed_like(codebook, n=600, seed=3)
    return frame, params


def test_every_baseline_returns_probability_vectors_for_unseen_codes(episodes):
    frame = episodes[0]
    train, test = frame.iloc[:300], frame.iloc[300:].copy()
    test.loc[test.index[0], "partner"] = "NEW"  # a partner the training data never saw
    for name, fit_predict in BASELINES.items():
        probs = fit_predict(train, test)
        assert probs.shape == (len(test), 4), name
        assert np.allclose(probs.sum(axis=1), 1), name
        assert (probs > 0).all(), name


def test_climatology_is_add_one_smoothed_level_frequency():
    train = pd.DataFrame({"level": [0, 0, 0, 1]})
    probs = climatology(train, pd.DataFrame({"level": [0, 3]}))
    assert probs[0].tolist() == pytest.approx([4 / 8, 2 / 8, 1 / 8, 1 / 8])


def test_per_partner_rate_uses_add_one_smoothing_and_uniform_for_unseen():
    train = pd.DataFrame({"partner": ["ISR", "ISR", "GBR"], "level": [3, 3, 0]})
    test = pd.DataFrame({"partner": ["ISR", "FRA"], "level": [0, 0]})
    probs = BASELINES["partner"](train, test)
    assert probs[0].tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 3 / 6])
    assert probs[1].tolist() == pytest.approx([0.25] * 4)


def test_no_pooling_model_learns_a_strong_severity_effect(codebook):
    rng = np.random.default_rng(0)
    n = 600
    sev = rng.integers(0, 4, n)
    level = np.where(rng.uniform(size=n) < np.where(sev == 3, 0.7, 0.05), 2, 0)
    frame = pd.DataFrame({"partner": "GBR", "intel_type": "sigint",
                          "trigger_type": "disclosure_incident", "severity": sev,
                          "alignment": 1, "level": level})
    probs = no_pooling(frame, frame)
    assert probs[sev == 3, 0].mean() < probs[sev == 0, 0].mean() - 0.3


def test_folds_train_only_on_the_past_and_test_each_horizon_once(episodes):
    frame = episodes[0]
    spec = FoldSpec(step_months=60, horizon_months=60, min_train=150)
    folds = make_folds(frame, spec)
    dates = pd.to_datetime(frame["trigger_date"])
    assert len(folds) >= 3
    tested = np.concatenate([f.test for f in folds])
    assert len(tested) == len(set(tested))  # step == horizon: every episode at most once
    for fold in folds:
        assert len(fold.train) >= 150
        assert dates.iloc[fold.train].max() < fold.origin <= dates.iloc[fold.test].min()
        assert dates.iloc[fold.test].max() < fold.end


def test_folds_never_split_a_trigger_between_train_and_test(episodes):
    frame = episodes[0]
    folds = make_folds(frame, FoldSpec(step_months=36, horizon_months=36, min_train=150))
    assert len(folds) >= 5
    triggers = frame["trigger_id"].to_numpy()
    for fold in folds:
        assert not set(triggers[fold.train]) & set(triggers[fold.test])
        # a trigger tested in a fold is tested whole
        tested = set(triggers[fold.test])
        assert np.isin(np.flatnonzero(np.isin(triggers, list(tested))), fold.test).all()


def test_a_trigger_coded_with_two_dates_stays_on_one_side_of_every_origin(episodes):
    frame = episodes[0].copy()
    spec = FoldSpec(step_months=60, horizon_months=60, min_train=150)
    origin = make_folds(frame, spec)[1].origin
    # a trigger just before the origin, one of its episodes miscoded a year later
    before = pd.to_datetime(frame["trigger_date"]) < origin
    trigger = frame.loc[before, "trigger_id"].iloc[-1]
    row = frame.index[(frame["trigger_id"] == trigger)][0]
    frame.loc[row, "trigger_date"] = (origin + pd.DateOffset(years=1)).strftime("%Y-%m-%d")
    for fold in make_folds(frame, spec):
        sides = {"train" if i in set(fold.train) else "test" if i in set(fold.test) else "-"
                 for i in np.flatnonzero(frame["trigger_id"].to_numpy() == trigger)}
        assert len(sides) == 1, (fold.origin, sides)


def _posterior(rng, sigma_event, sigma_reaction, n_partners=23, n_types=8, draws=50):
    """A stand-in posterior with the forecast variables and the cluster scales."""
    import xarray as xr

    dims = ("chain", "draw")
    shape = (2, draws)
    cut = np.sort(rng.normal([1.5, 2.5, 3.5], 0.2, (*shape, 3)), axis=-1)
    return xr.Dataset({
        "cutpoints": ((*dims, "cutpoint"), cut),
        "pt_eff": ((*dims, "partner", "intel_type"),
                   rng.normal(0, 0.5, (*shape, n_partners, n_types))),
        "trigger_eff": ((*dims, "trigger_type"), rng.normal(0, 0.3, (*shape, 6))),
        "beta_severity": (dims, rng.normal(0.5, 0.1, shape)),
        "beta_alignment": (dims, rng.normal(0.3, 0.1, shape)),
        "sigma_event": (dims, np.full(shape, sigma_event)),
        "sigma_reaction": (dims, np.full(shape, sigma_reaction)),
        # a training trigger's enormous event effect: no held-out forecast may use it
        "event_eff": ((*dims, "trigger"), np.full((*shape, 1), 8.0)),
    }, coords={"trigger": ["sim-000000"]})


def test_held_out_episodes_are_forecast_as_new_triggers(episodes, codebook):
    from forecasting.domain.cells import coords_from_codebook

    test = episodes[0].iloc[:40]
    coords = coords_from_codebook(codebook)
    post = _posterior(np.random.default_rng(0), sigma_event=2.0, sigma_reaction=0.7)
    probs = predictive_probs(post, test, coords)
    assert probs.shape == (40, 4) and np.allclose(probs.sum(axis=1), 1)
    # by hand: per draw, the clusters integrated out at sd sqrt(2^2 + 0.7^2), then the mean
    idx = {k: pd.Index(coords[k]).get_indexer(test[k]) for k in
           ("partner", "intel_type", "trigger_type")}
    sev = test["severity"].to_numpy() - 1.5
    ali = test["alignment"].to_numpy() - 1.5
    eta = (post["pt_eff"].values[..., idx["partner"], idx["intel_type"]]
           + post["trigger_eff"].values[..., idx["trigger_type"]]
           + post["beta_severity"].values[..., None] * sev
           + post["beta_alignment"].values[..., None] * ali)
    cut = post["cutpoints"].values[..., None, :]
    by_hand = integrate_clusters(eta, cut, np.hypot(2.0, 0.7)).mean(axis=(0, 1))
    assert np.allclose(probs, by_hand)
    # the training trigger's effect is not used, whatever the held-out trigger ids
    same_id = predictive_probs(post, test.assign(trigger_id="sim-000000"), coords)
    assert np.allclose(same_id, probs)
    # without cluster terms (sigma 0) it is the plain ordinal model, with them wider
    flat = predictive_probs(_posterior(np.random.default_rng(0), 0.0, 0.0), test, coords)
    assert np.allclose(flat, level_probabilities(eta, cut).mean(axis=(0, 1)))
    assert (probs[:, 3] > flat[:, 3]).all()


def test_too_few_episodes_give_no_folds_and_a_clear_error(episodes):
    frame = episodes[0].iloc[:50]
    assert make_folds(frame, FoldSpec(min_train=100)) == []
    with pytest.raises(ValueError, match="lower min_train"):
        run_backtest(frame, BASELINES, FoldSpec(min_train=100))


def test_backtest_scores_every_forecaster_on_the_same_episodes_and_an_oracle_wins(
        episodes, codebook):
    frame, params = episodes
    from forecasting.domain.cells import aggregate
    from forecasting.evaluation.simulate import true_level_probabilities

    def oracle(train, test):  # the true probabilities that generated the data
        cells = aggregate(test, codebook)
        c = cells.coords
        idx = {k: pd.Index(c[k]).get_indexer(test[k]) for k in ("partner", "intel_type",
                                                                 "trigger_type")}
        return true_level_probabilities(params, idx["partner"], idx["intel_type"],
                                        idx["trigger_type"], test["severity"].to_numpy(),
                                        test["alignment"].to_numpy())

    table = run_backtest(frame, {"oracle": oracle, **BASELINES},
                         FoldSpec(step_months=72, horizon_months=72, min_train=150))
    for name in ("oracle", *BASELINES):
        assert table[f"{name}_brier"].notna().all()
    report = summarise_backtest(table, model="oracle", n_boot=500)
    assert set(report["comparisons"]) == set(BASELINES)
    assert report["n_episodes"] == len(table)
    clim = report["comparisons"]["climatology"]
    assert clim["log"]["mean"] < 0 and clim["brier"]["mean"] < 0
    for comparison in report["comparisons"].values():
        for c in comparison.values():
            assert c["lo"] <= c["mean"] <= c["hi"]
