"""Leaving triggers out (forecasting.evaluation.loto): the comparison table, its rule, the exact
refits of high-k triggers, storage with the version, and the CLI and API reading it.

The fits here are tiny and reuse the session's compiled model (same data, same priors); the
table, rule, storage, CLI and API tests replace the model fits by summaries with made-up
pointwise values, so that they run in a second. Realistic draws and every variant: slow.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fixtures_api import cli_on
from fixtures_store import database_of

from api.schemas import TriggerComparison
from forecasting.evaluation import loto, reports
from forecasting.model.predictive import trigger_log_likelihood
from forecasting.model.pymc_model import VARIANTS
from forecasting.settings import SamplerSettings

TINY = SamplerSettings(sampler="nutpie", chains=2, draws=100, tune=150, target_accept=0.9,
                       seed=3)
TRIGGERS = [f"t{i:02d}" for i in range(30)]


def summary(variant: str, elpd, pareto_k=None, exact=None, triggers=TRIGGERS) -> dict:
    """A model summary as `loto.loto_model` returns it, with given pointwise values."""
    elpd = np.asarray(elpd, dtype=float)
    k = np.full(len(elpd), 0.2) if pareto_k is None else np.asarray(pareto_k, dtype=float)
    exact = np.zeros(len(elpd), bool) if exact is None else np.asarray(exact)
    high = np.flatnonzero(k > loto.K_THRESHOLD)
    return {
        "variant": variant, "terms": sorted(VARIANTS[variant]), "elpd_loo": float(elpd.sum()),
        "se": float(np.sqrt(len(elpd) * elpd.var(ddof=1))), "p_loo": 0.1 * len(elpd),
        "n_high_k": len(high), "max_pareto_k": float(k.max()), "refits": int(exact.sum()),
        "refits_capped": len(high) > int(exact.sum()), "refits_reusing_compiled_model": 0,
        "high_k": [], "n_samples": 1000, "good_k": 0.67, "parameterization": {},
        "diagnostics": {"max_rhat": 1.0, "min_ess_bulk": 500.0, "divergences": 0},
        "seconds": {"total": 1.0},
        "pointwise": {"trigger": list(triggers), "elpd": elpd.tolist(), "pareto_k": k.tolist(),
                      "p_loo": [0.1] * len(elpd), "exact": exact.tolist()},
    }


def made_up_models(triggers=TRIGGERS) -> dict[str, dict]:
    """full best; no_clusters a clear 1 nat per trigger worse; intercept close to full."""
    rng = np.random.default_rng(0)
    base = -2.0 + rng.normal(0, 0.5, len(triggers))
    return {"full": summary("full", base, triggers=triggers),
            "no_clusters": summary("no_clusters", base - 1.0 + rng.normal(0, 0.1, len(triggers)),
                                   triggers=triggers),
            "intercept": summary("intercept", base - 0.05 + 0.3 * (-1.0) ** np.arange(len(triggers)),
                                 triggers=triggers)}


# -- variants, the rule, the table -------------------------------------------------------------


def test_the_served_model_comes_first_and_unknown_variants_are_refused():
    assert loto.resolve_variants(["intercept", "full", "intercept"]) == ["full", "intercept"]
    assert loto.resolve_variants(None) == ["full", *[v for v in VARIANTS if v != "full"]]
    assert loto.resolve_variants([]) == ["full"]
    with pytest.raises(ValueError, match="Requested variant 'era' but it must be one of"):
        loto.resolve_variants(["era"])


@pytest.mark.parametrize(("diff", "se", "clear"), [
    (-3.0, 0.5, False),  # small in absolute terms, however precise
    (-10.0, 6.0, False),  # within two standard errors
    (-10.0, 4.0, True),
    (8.0, 1.0, True),
])
def test_the_rule_needs_two_standard_errors_and_four_nats(diff, se, clear):
    assert loto.distinguishable(diff, se) is clear


def test_the_table_ranks_models_and_says_which_the_data_cannot_tell_apart():
    models = made_up_models()
    result = loto.comparison_table(models)
    rows = {row["model"]: row for row in result["table"]}
    assert [row["model"] for row in result["table"]] == ["full", "intercept", "no_clusters"]
    assert result["best"] == "full"
    assert [row["rank"] for row in result["table"]] == [0, 1, 2]
    assert rows["full"]["elpd_diff"] == 0 and rows["full"]["verdict"] == "best"
    for name, row in rows.items():
        assert row["elpd_loo"] == pytest.approx(models[name]["elpd_loo"])
        assert set(row) >= {"se", "dse", "p_loo", "weight", "n_high_k", "refits",
                            "high_k_kept_psis"}
    # no_clusters: 30 nats worse with a small paired SE; intercept: within the rule's line
    assert rows["no_clusters"]["elpd_diff"] == pytest.approx(
        models["no_clusters"]["elpd_loo"] - models["full"]["elpd_loo"])
    assert rows["no_clusters"]["verdict"] == "worse than full"
    assert rows["intercept"]["verdict"] == "cannot tell apart from full"
    assert sum(row["weight"] for row in result["table"]) == pytest.approx(1.0, abs=1e-6)
    # the SE is paired over triggers: far below the SEs of the two elpds
    d = np.subtract(models["no_clusters"]["pointwise"]["elpd"], models["full"]["pointwise"]["elpd"])
    assert rows["no_clusters"]["dse"] == pytest.approx(np.sqrt(len(d) * d.var(ddof=1)))
    assert rows["no_clusters"]["dse"] < 0.3 * rows["full"]["se"]
    against = result["against_served"]
    assert set(against) == {"no_clusters", "intercept"}
    assert against["intercept"]["verdict"] == "cannot tell apart from full"
    text = "\n".join(result["conclusions"])
    assert "intercept vs full" in text and "the data cannot tell them apart" in text
    assert "full predicts left-out triggers better" in text
    assert "only 30 triggers" in text


def test_high_k_triggers_are_counted_as_refitted_or_kept_and_the_cap_is_said():
    k = np.full(len(TRIGGERS), 0.3)
    k[[3, 7]] = [0.9, 0.8]
    exact = np.zeros(len(TRIGGERS), bool)
    exact[3] = True
    models = made_up_models()
    models["full"] = summary("full", models["full"]["pointwise"]["elpd"], k, exact)
    models["full"]["high_k"] = [
        {"trigger": "t03", "refit": {"max_rhat": 1.01, "divergences": 2}},
        {"trigger": "t07", "refit": None}]
    result = loto.comparison_table(models)
    row = next(r for r in result["table"] if r["model"] == "full")
    assert (row["n_high_k"], row["refits"], row["high_k_kept_psis"]) == (2, 1, 1)
    assert any("1 refitted exactly, 1 kept their PSIS estimate (refit cap reached"
               in line for line in result["conclusions"])
    assert "full: the refits without t03 mixed poorly" in "\n".join(result["conclusions"])


def test_models_scored_on_other_triggers_are_not_compared():
    models = made_up_models()
    models["intercept"] = summary("intercept", np.zeros(30), triggers=[f"x{i}" for i in range(30)])
    with pytest.raises(ValueError, match="other triggers"):
        loto.comparison_table(models)


# -- real (tiny) fits ------------------------------------------------------------------------------


def _coded_elsewhere(frame: pd.DataFrame) -> list[str]:
    """Triggers whose partners all have episodes of other triggers too: leaving one out keeps
    every partner coded, so its refit reuses the compiled model."""
    triggers_of = frame.groupby("partner")["trigger_id"].nunique()
    once = set(triggers_of[triggers_of == 1].index)
    return [t for t, rows in frame.groupby("trigger_id") if not set(rows["partner"]) & once]


def test_the_held_out_density_is_the_trigger_column_of_the_full_data_computation(fitted_tree):
    posterior = fitted_tree.posterior.to_dataset().isel(draw=slice(0, 20))
    tree = xr.DataTree.from_dict({"posterior": posterior,
                                  "constant_data": fitted_tree["constant_data"].to_dataset(),
                                  "observed_data": fitted_tree["observed_data"].to_dataset()})
    ll, labels = trigger_log_likelihood(tree, max_draws=None)
    for g in (0, len(labels) // 2, len(labels) - 1):
        held = loto.held_out_log_likelihood(posterior, tree, g, labels[g])
        assert held.dims == ("chain", "draw")
        np.testing.assert_allclose(held.values.reshape(-1), ll[:, g], rtol=1e-10)
    data = loto.trigger_loo_data(tree, max_draws=None)
    assert data.log_likelihood[loto.LOG_LIK].dims == ("chain", "draw", "trigger")
    np.testing.assert_allclose(data.log_likelihood[loto.LOG_LIK].values.reshape(-1, len(labels)),
                               ll)


def test_high_k_triggers_are_refitted_exactly_up_to_the_cap(monkeypatch, seed_like_data, codebook,
                                                             default_priors, fitted_version):
    """k forced high on two triggers, the cap at one: the higher is refitted without the
    trigger (reusing the compiled model), the other keeps its PSIS estimate and says so."""
    frame = seed_like_data[0]
    candidates = _coded_elsewhere(frame)
    assert len(candidates) >= 2
    real_loo = loto.loo
    forced = {}

    def loo_with_high_k(data, **kwargs):
        result = real_loo(data, **kwargs)
        labels = [str(t) for t in result.pareto_k.coords["trigger"].values]
        k = np.minimum(result.pareto_k.values, 0.5)
        forced.update({candidates[0]: 0.95, candidates[1]: 0.8})
        for label, value in forced.items():
            k[labels.index(label)] = value
        result.pareto_k = result.pareto_k.copy(data=k)
        return result

    monkeypatch.setattr(loto, "loo", loo_with_high_k)
    seen = []
    summary_ = loto.loto_model(frame, codebook, default_priors, "full", sampler=TINY,
                               max_refits=1, loo_draws=100, progress=seen.append)
    assert (summary_["n_high_k"], summary_["refits"], summary_["refits_capped"]) == (2, 1, True)
    first, second = summary_["high_k"]
    assert first["trigger"] == candidates[0] and first["handled"] == "exact refit"
    assert np.isfinite(first["elpd_exact"]) and first["elpd_exact"] != first["elpd_psis"]
    assert first["refit"]["compiled_model_reused"] is True
    assert second["trigger"] == candidates[1] and second["elpd_exact"] is None
    assert second["handled"].startswith("PSIS estimate kept")
    pointwise = summary_["pointwise"]
    i = pointwise["trigger"].index(candidates[0])
    assert pointwise["exact"][i] and pointwise["elpd"][i] == first["elpd_exact"]
    assert sum(pointwise["exact"]) == 1
    assert summary_["elpd_loo"] == pytest.approx(sum(pointwise["elpd"]))
    assert summary_["n_samples"] == 100
    assert any(f"exact refit without trigger {candidates[0]}" in s for s in seen)


def test_a_zero_threshold_refits_every_trigger_up_to_the_cap(monkeypatch, seed_like_data,
                                                             codebook, default_priors,
                                                             fitted_version):
    frame = seed_like_data[0]
    refitted = []
    monkeypatch.setattr(loto.TriggerRefits, "sample",
                        lambda self, observed: refitted.append(self._current) or self.full_tree)
    summary_ = loto.loto_model(frame, codebook, default_priors, "full", sampler=TINY,
                               k_threshold=0.0, max_refits=3, loo_draws=100)
    assert summary_["n_high_k"] >= 3 and summary_["refits"] == 3 and len(refitted) == 3
    assert summary_["refits_capped"] is (summary_["n_high_k"] > 3)
    ks = [h["pareto_k"] for h in summary_["high_k"]]
    assert ks == sorted(ks, reverse=True)  # the highest k refitted first
    assert {h["trigger"] for h in summary_["high_k"][:3]} == set(refitted)


# -- stored with the version; the CLI and the API read it ----------------------------------------


@pytest.fixture
def fake_fits(monkeypatch):
    """loto_model replaced by made-up summaries over the frame's triggers; records calls."""
    calls = []

    def fake(frame, codebook, priors, variant, **kwargs):
        calls.append(variant)
        triggers = sorted(frame["trigger_id"].astype(str).unique())
        noise = np.random.default_rng(len(calls)).normal(0, 0.5, len(triggers))
        return made_up_models(triggers).get(variant) or summary(
            variant, -3.0 + noise, triggers=triggers)

    monkeypatch.setattr(loto, "loto_model", fake)
    return calls


@pytest.fixture
def seed_frame(seed_like_data):
    return seed_like_data[0].iloc[:300].copy()


def _database(frame):
    return database_of(frame)


def test_the_comparison_is_stored_with_the_version_and_reused(api_settings, served_model,
                                                              codebook, seed_frame, fake_fits):
    with pytest.raises(reports.NoEvaluationError, match="forecast models compare"):
        reports.load_comparison(api_settings, served_model.version)
    database = _database(seed_frame)
    report = reports.comparison_report(api_settings, database, codebook, version="current",
                                       variants=["no_clusters", "intercept"])
    assert fake_fits == ["full", "no_clusters", "intercept"]
    assert report["version"] == served_model.version
    assert report["models_compared"] == ["full", "no_clusters", "intercept"]
    assert report["data_matches_version"] is False  # 300 of the session's 800 episodes
    assert report["n_triggers"] == seed_frame["trigger_id"].nunique()
    stored = reports.load_comparison(api_settings, served_model.version)
    assert stored == {k: v for k, v in report.items() if k != "stored_in"}
    assert "comparison" in reports.load_results(api_settings, served_model.version)
    # stored: read back, not refitted; a subset is tabled again from the stored values
    again = reports.comparison_report(api_settings, database, codebook,
                                      version=served_model.version)
    assert again == stored and len(fake_fits) == 3
    subset = reports.comparison_report(api_settings, database, codebook, variants=["intercept"])
    assert [row["model"] for row in subset["table"]] == ["full", "intercept"]
    assert len(fake_fits) == 3
    # a variant it lacks: only that one is fitted, the stored models are kept
    more = reports.comparison_report(api_settings, database, codebook, variants=["main_effects"])
    assert fake_fits[3:] == ["main_effects"]
    assert set(more["models"]) == {"full", "no_clusters", "intercept", "main_effects"}
    # --recompute fits every model again
    reports.comparison_report(api_settings, database, codebook, variants=["intercept"],
                              recompute=True)
    assert fake_fits[4:] == ["full", "intercept"]


def test_the_cli_shows_the_stored_comparison_and_models_still_lists_versions(
        api_settings, served_model, codebook, seed_frame, fake_fits):
    forecast = cli_on(api_settings)
    reports.comparison_report(api_settings, _database(seed_frame), codebook,
                              variants=["no_clusters", "intercept"])
    as_json = forecast("models", "compare", "--json")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body == reports.load_comparison(api_settings, served_model.version)
    table = forecast("models", "compare", served_model.version)
    assert table.exit_code == 0, table.output
    for text in ("no_clusters", "intercept", "worse than full", "cannot tell apart from full",
                 "rule:"):
        assert text in table.stdout
    subset = json.loads(forecast("models", "compare", "--variants", "intercept", "--json").stdout)
    assert subset["models_compared"] == ["full", "intercept"]
    assert len(fake_fits) == 3  # all read from the stored result
    bad = forecast("models", "compare", "--variants", "era,intercept")
    assert bad.exit_code == 1 and "Requested variant 'era'" in bad.output
    listed = forecast("models", "--json")
    assert listed.exit_code == 0
    assert served_model.version in [row["version"] for row in json.loads(listed.stdout)]
    assert served_model.version in forecast("models").stdout


def test_the_api_serves_the_stored_comparison_and_404s_before(client, api_settings, served_model,
                                                              codebook, seed_frame, fake_fits):
    missing = client.get("/v1/models/current/comparison")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    assert "forecast models compare" in missing.get_json()["detail"]
    reports.comparison_report(api_settings, _database(seed_frame), codebook,
                              variants=["no_clusters", "intercept"])
    for version in ("current", served_model.version):
        response = client.get(f"/v1/models/{version}/comparison")
        assert response.status_code == 200
        assert response.headers["X-Model-Version"] == served_model.version
        body = response.get_json()
        assert body == reports.load_comparison(api_settings, served_model.version)
        TriggerComparison.model_validate(body)
    assert client.get("/v1/models/0000000000000000/comparison").status_code == 404


# -- heavy -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_variant_on_simulated_clustered_data(codebook, default_priors):
    """4 x 300 draws, every variant, the real refits: the table is whole and finite, the
    refits are what they say, and the time is recorded."""
    from forecasting.evaluation.simulate import seed_like

    frame, _ = seed_like(codebook, n=400, seed=21)
    sampler = SamplerSettings(sampler="nutpie", chains=4, draws=300, tune=300,
                              target_accept=0.9, seed=5)
    report = loto.compare_variants(frame, codebook, default_priors, None, sampler=sampler,
                                   max_refits=2)
    assert report["models_compared"] == loto.resolve_variants(None)
    assert {row["model"] for row in report["table"]} == set(VARIANTS)
    for row in report["table"]:
        assert np.isfinite(row["elpd_loo"]) and row["refits"] <= 2
        assert row["refits"] + row["high_k_kept_psis"] == row["n_high_k"]
    intercept = report["models"]["intercept"]
    full = report["models"]["full"]
    assert full["elpd_loo"] > intercept["elpd_loo"] - 4 * full["se"]
    assert report["seconds"] > 0
