import json
from dataclasses import replace

import numpy as np
import pytest

from forecasting.model import diagnostics
from forecasting.model.diagnostics import diagnose
from forecasting.model.fitting import fit, fit_and_diagnose
from forecasting.model.gate import gate
from forecasting.model.predictive import add_log_likelihood, episode_log_likelihood
from forecasting.model.prior_predictive import plot_prior_predictive, prior_predictive
from forecasting.model.pymc_model import build_model
from forecasting.settings import GateThresholds, SamplerSettings

GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood",
          "log_prior", "prior", "prior_predictive", "posterior_predictive")
HEALTHY = {"max_rhat": 1.003, "min_ess_bulk": 900.0, "min_ess_tail": 800.0, "divergences": 0,
           "min_ebfmi": 0.8, "treedepth_fraction": 0.0, "loo": {"max_pareto_k": 0.4},
           "ppc": {"headline": {"clusters with any restriction": {
               "observed": 17.0, "mean": 19.6, "lower": 11.0, "upper": 30.0, "p": 0.57}},
               "groups": {}}}


def test_a_fit_has_every_group_and_the_forecast_contract(small_fit):
    tree = small_fit.idata
    assert set(GROUPS) <= set(tree.children)
    post = tree.posterior
    assert post["pt_eff"].dims == ("chain", "draw", "partner", "intel_type")
    assert post["cutpoints"].dims == ("chain", "draw", "cutpoint")
    assert post["trigger_eff"].dims == ("chain", "draw", "trigger_type")
    for name in ("beta_severity", "beta_alignment"):
        assert post[name].dims == ("chain", "draw")
    assert tree.attrs["severity_center"] == 1.5 and tree.attrs["alignment_center"] == 1.5
    assert post.sizes["chain"] == 4
    assert (post["cutpoints"].diff("cutpoint") > 0).all()


def test_pt_eff_is_the_sum_of_its_parts(small_fit):
    post = small_fit.idata.posterior
    bloc_of_partner = small_fit.idata.constant_data["partner_bloc"].values
    manual = (post["partner_eff"] + post["type_eff"]
              + post["bloc_type_eff"].isel(bloc=("partner", bloc_of_partner)).drop_vars("bloc")
              + post["pt_dev"])
    assert np.allclose(manual.transpose(*post["pt_eff"].dims), post["pt_eff"])


def test_the_diagnostics_are_json_and_cover_every_check(small_fit):
    diag = json.loads(json.dumps(small_fit.diagnostics))
    for key in ("max_rhat", "min_ess_bulk", "min_ess_tail", "max_mcse_relative", "worst",
                "divergences", "treedepth_fraction", "ebfmi", "loo", "loo_cells", "loo_trigger",
                "ppc", "timings", "parameterization", "constant", "frozen"):
        assert key in diag, key
    assert len(diag["ebfmi"]) == 4
    assert sum(diag["loo"]["pareto_k_counts"].values()) == diag["loo"]["n_points"]
    assert diag["parameterization"] == small_fit.model_config["parameterization"]


def test_the_predictive_check_compares_level_shares_per_bloc_and_type(small_fit, codebook):
    ppc = small_fit.diagnostics["ppc"]["groups"]
    assert set(ppc["intel_type"]) == set(codebook.intel_type_codes)
    assert set(ppc["bloc"]) <= {*codebook.bloc_codes, "(pooled)"}
    checks = ppc["bloc"]["five_eyes"]["checks"]
    assert sum(row["observed"] for row in checks.values()) == pytest.approx(1.0)
    row = checks["level 0"]
    assert row["lower"] <= row["mean"] <= row["upper"]


def test_an_unseen_partner_gets_a_wider_interval_than_a_well_observed_one(small_fit,
                                                                          seed_like_data):
    episodes = seed_like_data[0]
    post = small_fit.idata.posterior["partner_eff"]
    width = post.quantile(0.95, ("chain", "draw")) - post.quantile(0.05, ("chain", "draw"))
    busiest = episodes.partner.value_counts().index[0]
    unseen = [p for p in post.coords["partner"].values if p not in set(episodes.partner)]
    assert len(unseen) == 2
    for partner in unseen:
        assert width.sel(partner=partner) > 1.2 * width.sel(partner=busiest)


def test_the_fit_result_carries_what_the_registry_needs(small_fit, default_priors):
    meta = small_fit.metadata()
    for key in ("episodes", "data_hash", "priors_hash", "model_config", "sampler", "verdict"):
        assert key in meta
    assert meta["priors_hash"] == default_priors.content_hash
    assert meta["episodes"] == 800
    assert "parameterization" in meta["model_config"]
    json.dumps(meta)


def test_the_gate_fails_a_fit_with_too_few_draws(seed_like_data, codebook, default_priors,
                                                 small_sampler):
    broken = replace(small_sampler, chains=2, draws=25, tune=25)
    result = fit_and_diagnose(seed_like_data[0], codebook, default_priors, broken,
                              GateThresholds())
    assert not result.passed and result.verdict.verdict == "fail"
    assert any(r.startswith("min_ess_bulk:") and "needed >= 400" in r
               for r in result.verdict.reasons)


def test_a_refit_on_new_data_reuses_the_compiled_model(small_fit, codebook, default_priors,
                                                      small_sampler):
    from forecasting.domain.cells import aggregate
    from forecasting.evaluation.simulate import seed_like

    # other episodes on other coded triggers, as many as the cluster slots hold
    episodes = seed_like(codebook, n=790, seed=99)[0]
    cells = aggregate(episodes, codebook)
    model = build_model(cells, default_priors, small_fit.model_config["parameterization"])
    assert model.forecast_config["cluster_capacity"] == small_fit.model_config["cluster_capacity"]
    assert cells.coords["trigger"] != small_fit.idata.posterior.coords["trigger"].values.tolist()
    tree = fit(model, replace(small_sampler, chains=2, draws=20, tune=20), extras=False)
    assert json.loads(tree.attrs["timings"])["compile_cached"] is True
    assert tree.observed_data.sizes["cell"] == cells.n_cells
    assert int(tree.observed_data["level_counts"].sum()) == 790
    # nutpie stores the cluster coordinates; their sums, computed after sampling from this
    # data's layout, are what the model's graph gives for those draws
    import pytensor

    inputs = [model[name] for name in ("cluster_eff_z", "sigma_event", "sigma_reaction")]
    graph = pytensor.function(inputs, model["cluster_eff"])
    post = tree.posterior
    n = post.sizes["reaction"]
    assert n == len(cells.coords["reaction"])
    slots = model.forecast_config["cluster_capacity"]["reaction"]
    for chain, draw in [(0, 0), (1, 19), (0, 7)]:
        at = post.isel(chain=chain, draw=draw)
        z = np.r_[at["cluster_eff_z"].values, np.zeros(slots - n)]  # spare slots unused
        expected = graph(z, at["sigma_event"].values, at["sigma_reaction"].values)[:n]
        np.testing.assert_allclose(at["cluster_eff"].values, expected, rtol=1e-10, atol=1e-12)
    # the posterior is labelled with this data's triggers, without the spare slots
    assert tree.posterior.coords["trigger"].values.tolist() == cells.coords["trigger"]
    assert tree.posterior.coords["reaction"].values.tolist() == cells.coords["reaction"]


def test_a_healthy_set_of_diagnostics_passes_the_gate():
    verdict = gate(HEALTHY, GateThresholds())
    assert verdict.passed and verdict.verdict == "pass" and verdict.reasons == []


@pytest.mark.parametrize("change,reason", [
    ({"max_rhat": 1.05}, "max_rhat: 1.05 (needed <= 1.01)"),
    ({"min_ess_bulk": 120.0}, "min_ess_bulk: 120 (needed >= 400)"),
    ({"min_ess_tail": 90.0}, "min_ess_tail: 90 (needed >= 400)"),
    ({"divergences": 3}, "divergences: 3 (needed <= 0)"),
    ({"min_ebfmi": 0.2}, "min_ebfmi: 0.2 (needed >= 0.3)"),
    ({"treedepth_fraction": 0.2}, "treedepth_fraction: 0.2 (needed <= 0.01)"),
    ({"ppc": {}}, "posterior predictive checks: not available"),
])
def test_each_failed_check_is_a_reason_naming_value_and_threshold(change, reason):
    verdict = gate(HEALTHY | change, GateThresholds())
    assert not verdict.passed
    assert verdict.reasons == [reason] or verdict.reasons[0].startswith(reason)


def test_an_unknown_sampler_is_an_error(seed_like_cells, default_priors):
    model = build_model(seed_like_cells, default_priors)
    with pytest.raises(ValueError, match="Requested sampler 'stan'"):
        fit(model, SamplerSettings(sampler="stan"))


def test_the_prior_predictive_describes_p_any_restriction_before_data(codebook, default_priors,
                                                                      tmp_path):
    summary = prior_predictive(codebook, default_priors, draws=200, seed=1)
    q = summary["any_restriction"]["quantiles"]
    assert 0 < q["0.05"] < q["0.5"] < q["0.95"] < 1
    assert set(summary["levels"]) == {"0", "1", "2", "3"}
    means = [summary["levels"][k]["mean"] for k in "0123"]
    assert sum(means) == pytest.approx(1.0)
    assert summary["any_restriction"]["mean"] == pytest.approx(1 - means[0])
    json.dumps(summary)
    png = plot_prior_predictive(summary, tmp_path / "prior.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_the_prior_predictive_on_data_cells_uses_their_scenarios(seed_like_cells,
                                                                 default_priors):
    summary = prior_predictive(seed_like_cells, default_priors, draws=100, seed=1)
    assert summary["scenarios"] == "data cells"


def test_diagnose_works_on_a_tree_without_extras(small_fit):
    tree = small_fit.idata.copy()
    for group in ("log_likelihood", "posterior_predictive", "observed_data"):
        del tree[group]
    diag = diagnose(tree)
    assert "loo" not in diag and "loo_cells" not in diag and diag["ppc"] == {}
    assert "loo_trigger" not in diag
    verdict = gate(diag, GateThresholds())
    assert any(r.startswith("posterior predictive checks: not available")
               for r in verdict.reasons)


def test_episode_log_likelihood_matches_pymc_for_single_episode_cells(small_fit):
    tree = small_fit.idata
    ll, weights = episode_log_likelihood(tree)
    counts = tree.observed_data["level_counts"].values
    cell, _ = np.nonzero(counts)
    single = counts.sum(axis=1)[cell] == 1
    pymc_ll = tree.log_likelihood["level_counts"].values[..., cell[single]]
    assert np.allclose(ll[..., single], pymc_ll, atol=1e-8)
    assert weights.sum() == small_fit.n_episodes


def test_per_episode_loo_reads_the_stored_log_likelihood_and_gets_the_same_numbers(small_fit):
    """A cell is an episode: the group holds exactly what episode_log_likelihood computes,
    so episode LOO reads it; the summary equals a recomputation from the posterior."""
    tree = small_fit.idata
    ll, _ = episode_log_likelihood(tree)
    assert np.array_equal(tree.log_likelihood["level_counts"].values, ll)
    recomputed = tree.copy()
    del recomputed["log_likelihood"]
    assert diagnostics.episode_loo(recomputed) == diagnostics.episode_loo(tree)


def test_the_per_cell_groups_are_thinned_beyond_their_budget_and_say_so(small_fit,
                                                                       seed_like_cells,
                                                                       default_priors,
                                                                       monkeypatch):
    """Above EXTRAS_MAX_VALUES (draw, cell) values the log likelihood, the predictive groups
    and the per-episode LOO use evenly thinned draws (100 here); the attrs and the
    diagnostics state how many. In blocks or at once, the replicates are the same."""
    from forecasting.model import fitting, predictive

    model = build_model(seed_like_cells, default_priors)
    tree = small_fit.idata.copy()
    for group in ("log_likelihood", "posterior_predictive", "prior_predictive", "log_prior"):
        del tree[group]
    monkeypatch.setattr(predictive, "EXTRAS_MAX_VALUES", seed_like_cells.n_cells * 50)
    timings = {}
    fitting._add_extras(tree, model, SamplerSettings(seed=11), 500, timings)
    assert tree.attrs["extras_draws"] == 100
    for group in ("log_likelihood", "posterior_predictive"):
        assert tree[group].sizes["chain"] * tree[group].sizes["draw"] == 100, group
    assert tree["prior_predictive"].sizes["draw"] == 100
    kept = predictive.thin(small_fit.idata.posterior.to_dataset(), 100)
    assert np.array_equal(tree.log_likelihood["level_counts"].values,
                          small_fit.idata.log_likelihood["level_counts"].sel(
                              draw=kept.draw).values)
    assert diagnose(tree)["loo"]["draws"] == 100
    at_once = predictive.replicate_counts(kept, tree, rng=np.random.default_rng(5))
    rng = np.random.default_rng(5)
    blocks = predictive.in_blocks(lambda d: predictive.replicate_counts(d, tree, rng=rng),
                                  kept, seed_like_cells.n_cells, block_values=1000)[0]
    assert at_once.identical(blocks)


def test_a_large_fit_keeps_only_the_sum_of_its_cluster_terms(small_fit, seed_like_cells,
                                                            default_priors, monkeypatch):
    """Beyond CLUSTER_DRAWS_MAX_VALUES the posterior keeps cluster_eff (what the log
    likelihood reads) but not cluster_eff_z nor its split into event and reaction effects,
    and the log prior covers what is kept."""
    from forecasting.model import sampling
    from forecasting.model.fitting import add_log_prior

    model = build_model(seed_like_cells, default_priors)
    post = small_fit.idata.posterior.to_dataset().drop_vars(["event_eff", "reaction_eff",
                                                             "trigger"])
    monkeypatch.setattr(sampling, "CLUSTER_DRAWS_MAX_VALUES", 0)
    bounded = sampling.bound_cluster_draws(post, model, seed=1)
    assert "cluster_eff" in bounded and "cluster_eff_z" not in bounded
    assert "event_eff" not in bounded and "reaction_eff" not in bounded
    assert "cluster_draws" in bounded.attrs
    monkeypatch.setattr(sampling, "CLUSTER_DRAWS_MAX_VALUES", 10**12)
    assert {"event_eff", "reaction_eff"} <= set(sampling.bound_cluster_draws(post, model, 1))
    tree = small_fit.idata.copy()
    tree["posterior"] = bounded
    add_log_prior(tree, model)
    assert "cluster_eff_z" not in tree["log_prior"] and "sigma_event" in tree["log_prior"]


def test_the_log_likelihood_is_the_multinomial_of_each_cell(small_fit):
    from scipy.special import expit
    from scipy.stats import multinomial

    tree = small_fit.idata
    post, const = tree.posterior, tree.constant_data
    counts = tree.observed_data["level_counts"].values
    for chain, draw, cell in [(0, 0, 0), (1, 7, 3), (3, 20, counts.shape[0] - 1)]:
        p, t = const["partner_idx"].values[cell], const["type_idx"].values[cell]
        eta = (post["pt_eff"].values[chain, draw, p, t]
               + post["trigger_eff"].values[chain, draw, const["trigger_idx"].values[cell]]
               + post["beta_severity"].values[chain, draw] * (const["severity"].values[cell] - 1.5)
               + post["beta_alignment"].values[chain, draw]
               * (const["alignment"].values[cell] - 1.5)
               + post["event_eff"].values[chain, draw, const["event_idx"].values[cell]]
               + post["reaction_eff"].values[chain, draw, const["reaction_idx"].values[cell]])
        cdf = np.r_[0, expit(post["cutpoints"].values[chain, draw] - eta), 1]
        expected = multinomial(counts[cell].sum(), np.diff(cdf)).logpmf(counts[cell])
        got = tree.log_likelihood["level_counts"].values[chain, draw, cell]
        assert got == pytest.approx(expected, abs=1e-8)


def test_the_model_likelihood_is_the_per_cell_multinomial_up_to_a_constant(seed_like_cells,
                                                                           default_priors):
    """The model's density (a Potential over the observed (cell, level) pairs) and the per-cell
    multinomial log likelihood the fit stores differ by the multinomial coefficients only."""
    import xarray as xr

    from forecasting.model.arithmetic import log_multinomial_coef
    from forecasting.model.pymc_model import LIKELIHOOD

    model = build_model(seed_like_cells, default_priors)
    names = ["pt_eff", "trigger_eff", "beta_severity", "beta_alignment", "cutpoints",
             "cluster_eff"]
    outs = model.replace_rvs_by_values([model[n] for n in [*names, LIKELIHOOD]])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(4)
    start = model.initial_point()
    coef = log_multinomial_coef(seed_like_cells.counts).sum()
    const = xr.Dataset({k: ("cell", v) for k, v in (
        ("partner_idx", seed_like_cells.partner_idx), ("type_idx", seed_like_cells.type_idx),
        ("trigger_idx", seed_like_cells.trigger_idx),
        ("event_idx", seed_like_cells.event_idx), ("reaction_idx", seed_like_cells.reaction_idx),
        ("severity", seed_like_cells.severity.astype(float)),
        ("alignment", seed_like_cells.alignment.astype(float)))})
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in start.items()}
        *values, potential = fn(point)
        dims = {"pt_eff": ("partner", "intel_type"), "trigger_eff": ("trigger_type",),
                "cutpoints": ("cutpoint",), "cluster_eff": ("reaction",)}
        post = xr.Dataset({n: (("chain", "draw", *dims.get(n, ())), np.asarray(v)[None, None])
                           for n, v in zip(names, values, strict=True)},
                          coords={"chain": [0], "draw": [0]})
        tree = xr.DataTree.from_dict({
            "posterior": post, "constant_data": const,
            "observed_data": xr.Dataset(
                {"level_counts": (("cell", "level"), seed_like_cells.counts)},
                coords={"cell": np.arange(seed_like_cells.n_cells), "level": [0, 1, 2, 3]})})
        add_log_likelihood(tree)
        total = float(tree.log_likelihood["level_counts"].sum())
        assert total == pytest.approx(float(potential) + coef, abs=1e-6)


def test_the_numpy_predictive_replicates_every_cell(small_fit):
    tree = small_fit.idata
    rep = tree.posterior_predictive["level_counts"]
    assert rep.dims == ("chain", "draw", "cell", "level")
    obs = tree.observed_data["level_counts"]
    assert (rep.sum("level") == obs.sum("level")).all()
    # replicated level shares near the observed ones over all cells
    shares = rep.sum(("cell", "draw", "chain")) / rep.sum()
    assert np.allclose(shares, obs.sum("cell") / obs.sum(), atol=0.03)


def test_the_diagnostics_report_per_episode_and_per_cell_loo(small_fit):
    diag = small_fit.diagnostics
    assert diag["loo"]["unit"] == "episode"
    assert diag["loo"]["n_points"] == small_fit.n_episodes
    assert diag["loo_cells"]["n_points"] == small_fit.idata.observed_data.sizes["cell"]
    assert sum(diag["loo"]["pareto_k_counts"].values()) == small_fit.n_episodes


def test_a_loo_that_cannot_be_computed_is_reported_instead_of_crashing(small_fit,
                                                                      monkeypatch):
    # what arviz raised on a pathological prior whose chains never moved: PSIS found no
    # spread in a tail of importance weights
    def no_tail(*args, **kwargs):
        raise ValueError("All tail values are the same")

    monkeypatch.setattr(diagnostics, "episode_loo", no_tail)
    diag = diagnose(small_fit.idata)
    assert diag["loo"] == {"error": "PSIS-LOO could not be computed: All tail values are the same"}
    assert "max_pareto_k" in diag["loo_cells"]  # the per-cell LOO still reported
    # per-episode LOO does not gate (docs/model.md, "The gate"): the verdict is unchanged
    assert gate(diag, GateThresholds()) == gate(small_fit.diagnostics, GateThresholds())


@pytest.mark.slow
def test_a_served_fit_of_seed_like_data_passes_the_gate(seed_like_data, codebook,
                                                        default_priors):
    result = fit_and_diagnose(seed_like_data[0], codebook, default_priors, SamplerSettings(),
                              GateThresholds())
    assert result.passed, result.verdict.reasons


@pytest.mark.slow
def test_a_pathological_prior_fails_the_gate(seed_like_data, codebook, default_priors):
    # all effects centred with very wide scales: a funnel the sampler cannot explore
    wide = {name: {"dist": "HalfNormal", "kwargs": {"sigma": 10.0}}
            for name in ("sigma_bloc", "sigma_partner", "sigma_type", "sigma_bloc_type",
                         "sigma_pt", "sigma_trigger")}
    priors = default_priors.replace(**wide)
    result = fit_and_diagnose(seed_like_data[0], codebook, priors,
                              SamplerSettings(draws=300, tune=300), GateThresholds(),
                              parameterization="centered")
    assert not result.passed


@pytest.mark.slow
def test_cell_probability_intervals_cover_the_truth_about_90_percent(codebook, default_priors):
    from scipy.special import expit

    from forecasting.evaluation.simulate import simulate_episodes

    episodes, truth = simulate_episodes(codebook, 3000, seed=21)
    result = fit_and_diagnose(episodes, codebook, default_priors, SamplerSettings(),
                              GateThresholds())
    post = result.idata.posterior
    # P(any restriction) of every partner x type at severity 1.5, alignment 1.5, mean trigger
    p_any = 1 - expit(post["cutpoints"].sel(cutpoint="0|1") - post["pt_eff"])
    lo = p_any.quantile(0.05, ("chain", "draw")).values
    hi = p_any.quantile(0.95, ("chain", "draw")).values
    true = 1 - expit(truth["cutpoints"][0] - truth["pt_eff"])
    coverage = np.mean((true >= lo) & (true <= hi))
    assert 0.8 <= coverage <= 0.99, coverage


def test_a_fitted_tree_round_trips_through_netcdf(small_fit, tmp_path):
    import xarray as xr

    tree = small_fit.idata.copy()
    del tree["posterior_predictive"]  # big, and regenerated on demand
    tree.to_netcdf(tmp_path / "fit.nc", engine="h5netcdf")
    back = xr.open_datatree(tmp_path / "fit.nc", engine="h5netcdf").load()
    assert back.attrs["severity_center"] == 1.5
    assert np.allclose(back.posterior["pt_eff"], tree.posterior["pt_eff"])
    assert json.loads(back.attrs["parameterization"]) == small_fit.model_config["parameterization"]


def test_the_trigger_log_likelihood_integrates_the_cluster_terms_out(small_fit):
    """One draw, two triggers: the quadrature equals scipy's nested integration of
    N(u) prod_partners integral N(v) prod_episodes P(level | eta + u + v)."""
    from scipy import integrate
    from scipy.special import expit

    from forecasting.model.predictive import trigger_log_likelihood

    tree = small_fit.idata
    ll, labels = trigger_log_likelihood(tree, max_draws=50)
    post = tree.posterior.to_dataset().stack(sample=("chain", "draw"))
    const = tree.constant_data
    counts = tree.observed_data["level_counts"].values
    n = post.sizes["sample"]
    row = 17  # thinned evenly, as trigger_log_likelihood thins
    s = int(np.unique(np.linspace(0, n - 1, 50).round().astype(int))[row])
    cut = post["cutpoints"].values[:, s]
    s_u, s_v = float(post["sigma_event"].values[s]), float(post["sigma_reaction"].values[s])
    for g in (0, len(labels) - 1):
        cells = np.flatnonzero(const["event_idx"].values == g)
        by_partner = {}
        for c in cells:
            level = int(np.argmax(counts[c]))
            eta = (post["pt_eff"].values[const["partner_idx"].values[c],
                                         const["type_idx"].values[c], s]
                   + post["trigger_eff"].values[const["trigger_idx"].values[c], s]
                   + post["beta_severity"].values[s] * (const["severity"].values[c] - 1.5)
                   + post["beta_alignment"].values[s] * (const["alignment"].values[c] - 1.5))
            by_partner.setdefault(int(const["reaction_idx"].values[c]), []).append((eta, level))

        def p(level, x):
            cdf = np.r_[0.0, expit(cut - x), 1.0]
            return cdf[level + 1] - cdf[level]

        def normal(x, sd):
            return np.exp(-0.5 * (x / sd) ** 2) / (sd * np.sqrt(2 * np.pi))

        def reactions(u, by_partner=by_partner):
            out = 1.0
            for episodes in by_partner.values():
                out *= integrate.quad(lambda v, e=episodes: normal(v, s_v) * np.prod(
                    [p(level, eta + u + v) for eta, level in e]), -8 * s_v, 8 * s_v)[0]
            return out

        expected = integrate.quad(lambda u: normal(u, s_u) * reactions(u), -8 * s_u, 8 * s_u,
                                  limit=200)[0]
        assert ll[row, g] == pytest.approx(np.log(expected), abs=0.02)


def test_partly_centred_trigger_weights_follow_the_information_of_their_episodes(
        seed_like_cells, default_priors):
    """A trigger whose episodes pin its effect (a mixed reaction) is centred more than one
    with nothing restricted; below CENTRING_MIN_TRIGGERS nothing is centred by default."""
    from forecasting.model.pymc_model import CENTRING_MIN_TRIGGERS, centring_weights

    cells = seed_like_cells
    assert len(cells.coords["trigger"]) < CENTRING_MIN_TRIGGERS
    assert "centred_triggers" not in build_model(cells, default_priors).forecast_config
    weights = centring_weights(cells)
    assert weights.shape == (len(cells.coords["trigger"]),)
    assert np.all((weights > 0) & (weights < 1))
    of_cell = np.asarray(cells.reaction_event)[cells.reaction_idx]
    restricted = np.bincount(of_cell, cells.counts[:, 1:].sum(axis=1), len(weights))
    episodes = np.bincount(of_cell, cells.counts.sum(axis=1), len(weights))
    mixed = (restricted > 0) & (restricted < episodes)
    assert weights[mixed].min() > weights[restricted == 0].max()


def test_a_swept_centred_fit_stores_the_terms_their_priors_and_the_cluster_sums_of_its_graph(
        seed_like_cells, default_priors, small_sampler):
    """Many triggers sweep the trigger-level terms and partly centre each trigger's mean
    cluster coordinate (both forced here on seed-like data; one fit, as at scale): the
    posterior keeps the cutpoints, slopes and trigger types' effects under their names (the
    swept coordinates less the shift) and stores the standard cluster coordinates, whose log
    prior is the standard normal's; the log prior of the swept terms is the terms' own, the
    prior draws have ordered cutpoints, and the cluster sums computed after sampling are the
    graph's, fed the sampler's coordinates. A sweep the model cannot take (the trigger types'
    effect non-centred) is refused."""
    import pytensor
    from scipy.stats import norm

    from forecasting.model.arithmetic import coordinate_scales
    from forecasting.model.pymc_model import SWEEP_MIN_TRIGGERS, VARIANTS, choose_sweep

    cells = seed_like_cells
    model = build_model(cells, default_priors, {"trigger_type": "centered"}, sweep=True,
                        centring=True)
    types = [f"trigger_type:{t}" for t in cells.coords["trigger_type"]]
    assert model.forecast_config["swept"] == [*types, "severity", "alignment"]
    assert model.forecast_config["centred_triggers"] is True
    form = model.forecast_config["parameterization"]
    assert len(cells.coords["trigger"]) < SWEEP_MIN_TRIGGERS
    assert not choose_sweep(cells, VARIANTS["full"], form)
    with pytest.raises(ValueError, match="centred trigger type effect"):
        build_model(cells, default_priors, {"trigger_type": "noncentered"}, sweep=True)
    layout = model["cluster_layout"].get_value()
    # one partly centred mean coordinate per trigger
    assert np.count_nonzero(layout[5]) == len(cells.coords["trigger"])
    tree = fit(model, replace(small_sampler, chains=2, draws=20, tune=20))
    post = tree.posterior
    names = ("cluster_eff_z", "trigger_terms_z", "sigma_event", "sigma_reaction",
             "sigma_trigger", "cutpoints_swept", "beta_severity_swept", "beta_alignment_swept",
             "trigger_eff_swept")
    graph = pytensor.function([model[n] for n in names],
                              [model[n] for n in ("cluster_eff", "cutpoints", "beta_severity",
                                                  "beta_alignment", "trigger_eff")],
                              on_unused_input="ignore")
    n = post.sizes["reaction"]
    slots = model.forecast_config["cluster_capacity"]["reaction"]
    for chain, draw in [(0, 0), (1, 19)]:
        at = post.isel(chain=chain, draw=draw)
        standard = np.r_[at["cluster_eff_z"].values, np.zeros(slots - n)]
        sampled = standard / coordinate_scales(at["sigma_event"].values,
                                               at["sigma_reaction"].values, layout,
                                               len(cells.coords["partner"]))[1]
        values = [sampled if name == "cluster_eff_z" else at[name].values for name in names]
        cluster, cutpoints, severity, alignment, trigger_eff = graph(*values)
        np.testing.assert_allclose(at["cluster_eff"].values, cluster[:n], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(at["cutpoints"].values, cutpoints, rtol=1e-12)
        np.testing.assert_allclose(at["trigger_eff"].values, trigger_eff, rtol=1e-9,
                                   atol=1e-12)
        assert float(at["beta_severity"]) == pytest.approx(float(severity), rel=1e-12)
        assert float(at["beta_alignment"]) == pytest.approx(float(alignment), rel=1e-12)
    # the cutpoints are not their swept coordinates: the shift moves them
    assert float(abs(post["cutpoints"] - post["cutpoints_swept"]).max()) > 1e-6
    log_prior = tree["log_prior"]
    assert "cutpoints" in log_prior and "cutpoints_swept" not in log_prior
    assert "trigger_terms_z" in log_prior and "trigger_eff" in log_prior
    np.testing.assert_allclose(log_prior["cluster_eff_z"].values,
                               norm.logpdf(post["cluster_eff_z"].values))
    assert abs(float(post["trigger_eff"].sum("trigger_type").max())) < 1e-9  # still sums to 0
    prior_cutpoints = tree["prior"]["cutpoints"].values.reshape(-1, 3)
    assert np.all(np.diff(prior_cutpoints, axis=1) > 0)


@pytest.mark.slow
def test_sweeping_changes_the_geometry_not_the_posterior(codebook, default_priors):
    """The same simulated data fitted swept and partly centred, and neither: every global quantity's posterior
    mean agrees within its Monte Carlo error, and so does its sd."""
    import arviz_stats

    from forecasting.domain.cells import aggregate
    from forecasting.evaluation.simulate import simulate_episodes

    cells = aggregate(simulate_episodes(codebook, 3000, seed=5)[0], codebook)
    settings = SamplerSettings(draws=1000, tune=1000, seed=3)
    names = ["cutpoints", "beta_severity", "beta_alignment", "sigma_event", "sigma_reaction",
             "sigma_partner", "trigger_eff"]
    centred = {"trigger_type": "centered"}  # what a sweep needs; the same for both
    # the second is swept with its triggers' mean coordinates partly centred as well
    posts = [fit(build_model(cells, default_priors, centred, sweep=other, centring=other),
                 settings, extras=False).posterior.to_dataset()[names]
             for other in (False, True)]
    for name in names:
        means = [p[name].mean(("chain", "draw")).values for p in posts]
        errors = [arviz_stats.mcse(p[[name]], method="mean")[name].values for p in posts]
        tolerance = 4.0 * np.hypot(*errors)
        assert np.all(np.abs(means[0] - means[1]) < tolerance), (name, means, tolerance)
        sds = [p[name].std(("chain", "draw")).values for p in posts]
        np.testing.assert_allclose(sds[0], sds[1], rtol=0.15, err_msg=name)
