"""Diagnostics of the session's real fit: the leave-one-trigger-out PSIS and the posterior
predictive checks' test quantities, counted independently from the episodes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecasting.model.diagnostics import TRIGGER_LOO_DRAWS, trigger_loo


def test_the_trigger_loo_reports_every_trigger_and_the_influential_ones(small_fit):
    loo = small_fit.diagnostics["loo_trigger"]
    json.dumps(loo)
    post = small_fit.idata.posterior
    triggers = [str(t) for t in post.coords["trigger"].values]
    assert loo["unit"] == "trigger" and loo["n_points"] == len(triggers)
    assert loo["draws"] == min(TRIGGER_LOO_DRAWS, post.sizes["chain"] * post.sizes["draw"])
    assert sum(loo["pareto_k_counts"].values()) == len(triggers)
    high = loo["pareto_k_counts"]["bad (0.7-1]"] + loo["pareto_k_counts"]["very bad (>1)"]
    assert loo["n_influential"] == high == len(loo["influential"])
    assert all(k > 0.7 for k in loo["influential"].values())
    assert set(loo["worst"]) <= set(triggers)
    assert max(loo["worst"].values()) == loo["max_pareto_k"]
    assert np.isfinite(loo["elpd"]) and loo["se"] > 0
    # leaving a whole event out predicts worse than leaving one of its episodes out
    assert loo["elpd"] < small_fit.diagnostics["loo"]["elpd"]


def test_the_trigger_loo_thins_its_draws(small_fit):
    assert trigger_loo(small_fit.idata, max_draws=100)["draws"] == 100


def test_the_checks_count_clusters_triggers_and_decades_as_the_episodes_do(small_fit,
                                                                           seed_like_data):
    episodes = seed_like_data[0]
    restricted = episodes.assign(any=episodes.level.astype(int) > 0)
    ppc = small_fit.diagnostics["ppc"]
    head = ppc["headline"]
    by_cluster = restricted.groupby(["trigger_id", "partner"])["any"].sum()
    assert head["clusters with any restriction"]["observed"] == (by_cluster > 0).sum()
    assert head["dispersion of restrictions across clusters"]["observed"] == pytest.approx(
        np.var(by_cluster) / np.mean(by_cluster))
    by_trigger = restricted.groupby("trigger_id")["any"].sum()
    assert head["triggers with any restriction"]["observed"] == (by_trigger > 0).sum()
    decade = pd.to_datetime(restricted.trigger_date).dt.year // 10 * 10
    for d, share in restricted.groupby(decade)["any"].mean().items():
        row = ppc["groups"]["decade"][f"{d}s"]["checks"]["any restriction"]
        assert row["observed"] == pytest.approx(share)
    assert 0 <= ppc["group_outside"] <= ppc["group_checks"]
