"""The prior predictive: every draw from the model's own (ordered) prior, drawn in numpy
without compiling a PyMC graph and agreeing with the PyMC model's prior, no negative level
probability, nothing non-finite, outcome-scale numbers for a new trigger, and the statements
priors/default.toml makes about them held to it."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from forecasting.domain.cells import aggregate, empty_cells
from forecasting.model.arithmetic import PARAMETERS, integrate_clusters, level_probabilities
from forecasting.model.predictive import replicate_counts
from forecasting.model.prior_predictive import (
    MAX_DRAWS,
    QUANTITIES,
    draw_prior,
    ordered_variables,
    outcome_samples,
    plot_prior_predictive,
    prior_predictive,
    sample_prior,
)
from forecasting.model.priors import PriorConfigError, draw_ordered
from forecasting.model.pymc_model import build_model
from forecasting.model.sampling import prior_draws
from forecasting.settings import DEFAULT_DATA_DIR, DEFAULT_PRIORS_DIR

DEFAULT = DEFAULT_PRIORS_DIR / "default.toml"
WIDE_CUTPOINTS = {"dist": "Normal", "kwargs": {"mu": [-1.0, 0.0, 1.0], "sigma": 10.0}}
CHECK_DRAWS = 4000  # the statements' Monte Carlo check


@pytest.fixture(scope="module")
def wide_priors(default_priors):
    return default_priors.replace(cutpoints=WIDE_CUTPOINTS)


@pytest.fixture(scope="module")
def seed_cells(codebook):
    return aggregate(pd.read_csv(DEFAULT_DATA_DIR / "episodes.csv"), codebook)


@pytest.fixture(scope="module")
def vocabulary_check(codebook, default_priors):
    return prior_predictive(codebook, default_priors, draws=CHECK_DRAWS, seed=7)


@pytest.fixture(scope="module")
def seed_check(seed_cells, default_priors):
    return prior_predictive(seed_cells, default_priors, draws=CHECK_DRAWS, seed=8)


# -- the model's own prior ---------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "wide cutpoints"])
def test_no_prior_draw_has_unordered_cutpoints_or_a_negative_probability(
        which, codebook, default_priors, wide_priors):
    priors = default_priors if which == "default" else wide_priors
    summary = prior_predictive(codebook, priors, draws=1000, seed=3)
    levels = np.array([summary["samples"][f"level_{k}"] for k in range(4)])
    assert levels.min() >= 0 and np.allclose(levels.sum(axis=0), 1.0)
    assert min(min(summary["samples"][name]) for name in QUANTITIES) >= 0
    # the ordering is real: most independent draws of these priors are not increasing
    assert summary["ordered_acceptance"]["cutpoints"] < (0.5 if which == "default" else 0.25)


@pytest.mark.parametrize("which", ["default", "wide cutpoints"])
def test_the_stored_prior_group_has_ordered_cutpoints_and_valid_replicates(
        which, seed_like_cells, default_priors, wide_priors, small_fit):
    priors = default_priors if which == "default" else wide_priors
    model = build_model(seed_like_cells, priors)
    assert ordered_variables(model) == ["cutpoints"]
    prior = prior_draws(model, 300, seed=5)
    cut = prior["cutpoints"].values.reshape(-1, 3)
    assert (np.diff(cut, axis=1) > 0).all()
    probs = level_probabilities(np.zeros(len(cut)), cut)
    assert probs.min() >= 0
    # the prior predictive of a fit's cells: counts from proper probabilities
    counts = replicate_counts(prior, small_fit.idata, seed=1)["level_counts"]
    assert int(counts.min()) >= 0
    # and what a fit stores
    stored = small_fit.idata["prior"]["cutpoints"].values.reshape(-1, 3)
    assert (np.diff(stored, axis=1) > 0).all()


@pytest.mark.parametrize("which", ["default", "wide cutpoints"])
def test_ordered_draws_follow_the_restricted_density_not_sorted_draws(
        which, seed_like_cells, default_priors, wide_priors):
    """The cutpoints' prior is the family restricted to increasing vectors (what the ordered
    transform gives the sampler): compare with an independent rejection sampler. Sorted
    independent draws pass the ordering test but are order statistics, a different
    distribution when the locations differ (the default's)."""
    priors = default_priors if which == "default" else wide_priors
    model = build_model(seed_like_cells, priors)
    ours = sample_prior(model, 3000, seed=11, var_names=["cutpoints"])["cutpoints"].values
    ours = ours.reshape(-1, 3)
    rng = np.random.default_rng(12)
    spec = priors["cutpoints"]
    reference = np.array([draw_ordered(spec, rng) for _ in range(3000)])
    for k in range(3):
        assert stats.ks_2samp(ours[:, k], reference[:, k]).pvalue > 0.001
    if which == "default":
        kwargs = spec["kwargs"]
        independent = rng.normal(kwargs["mu"], kwargs["sigma"], size=(3000, 3))
        assert min(stats.ks_2samp(np.sort(independent, axis=1)[:, k], reference[:, k]).pvalue
                   for k in (0, 2)) < 0.001


def test_the_other_parameters_are_drawn_by_pymc_unchanged(seed_like_cells, default_priors):
    model = build_model(seed_like_cells, default_priors)
    prior = sample_prior(model, 2000, seed=2, var_names=["sigma_bloc", "beta_severity"])
    sigma = default_priors["sigma_bloc"]["kwargs"]["sigma"]
    assert stats.kstest(prior["sigma_bloc"].values.ravel(), stats.halfnorm(0, sigma).cdf
                        ).pvalue > 0.001
    assert stats.kstest(prior["beta_severity"].values.ravel(), stats.norm(0, 0.5).cdf
                        ).pvalue > 0.001


# -- the check's numpy draws are the PyMC model's prior ----------------------------------------

AGREEMENT_DRAWS = 2000
EFFECTS_DRAWN = ("bloc_eff", "partner_dev", "type_eff", "bloc_type_eff", "pt_dev", "trigger_eff",
                 "partner_eff", "pt_eff")


@pytest.fixture(scope="module")
def both_priors(seed_like_cells, default_priors):
    """The same prior drawn twice: by the PyMC model (what a fit stores) and in numpy (what the
    check uses), on cells where 21 of 23 partners are coded (the partner contrasts)."""
    model = build_model(seed_like_cells, default_priors)
    names = [*PARAMETERS, *EFFECTS_DRAWN]
    theirs = sample_prior(model, AGREEMENT_DRAWS, seed=21, var_names=names)
    theirs = {name: theirs[name].values.reshape(AGREEMENT_DRAWS, *theirs[name].shape[2:])
              for name in names}
    ours, _ = draw_prior(seed_like_cells, default_priors, AGREEMENT_DRAWS, seed=22)
    return ours, theirs


def test_the_numpy_prior_draws_every_variable_as_the_pymc_model_does(both_priors):
    ours, theirs = both_priors
    for name in (*PARAMETERS, *EFFECTS_DRAWN):
        a, b = ours[name].reshape(AGREEMENT_DRAWS, -1), theirs[name].reshape(AGREEMENT_DRAWS, -1)
        assert a.shape == b.shape, name
        # draws are independent, elements of one draw are not (they share a scale): compare
        # per-draw numbers, the root mean square of the elements and the largest element ...
        for stat in (lambda x: np.sqrt(np.mean(x**2, axis=1)), lambda x: x.max(axis=1)):
            assert stats.ks_2samp(stat(a), stat(b)).pvalue > 0.001, name
        # ... and each element's spread: zero where the constraint pins it (a bloc with one
        # coded partner), else within Monte Carlo error (scale mixtures: heavy tails)
        sd_a, sd_b = a.std(axis=0), b.std(axis=0)
        pinned = sd_b < 1e-9
        assert (sd_a[pinned] < 1e-9).all(), name
        assert sd_a[~pinned] == pytest.approx(sd_b[~pinned], rel=0.2), name


def test_the_numpy_prior_keeps_the_models_sum_to_zero_constraints(both_priors, seed_like_cells):
    ours, theirs = both_priors
    observed = seed_like_cells.observed_partners
    bloc_of = np.asarray(seed_like_cells.partner_bloc)
    for draws in (ours, theirs):
        for name in ("bloc_eff", "type_eff", "trigger_eff"):
            assert np.allclose(draws[name].sum(axis=1), 0, atol=1e-8), name
        assert np.allclose(draws["pt_dev"].sum(axis=2), 0, atol=1e-8)
        for bloc in np.unique(bloc_of):
            coded = (bloc_of == bloc) & observed
            assert np.allclose(draws["partner_dev"][:, coded].sum(axis=1), 0, atol=1e-8)
            assert np.allclose(draws["pt_dev"][:, coded].sum(axis=1), 0, atol=1e-8)
    # a partner nobody coded is a free draw from its bloc, in both
    uncoded = np.flatnonzero(~observed)
    assert len(uncoded) and (ours["partner_dev"][:, uncoded].std(axis=0) > 0.2).all()


def test_the_check_agrees_with_the_pymc_prior_predictive_within_monte_carlo_error(
        both_priors, codebook):
    ours, theirs = both_priors
    scenarios = empty_cells(codebook)  # the vocabulary's (as the check's), not the data's
    a = outcome_samples(ours, scenarios, seed=3)
    b = outcome_samples(theirs, scenarios, seed=3)
    disagree = {name: stats.ks_2samp(a[name], b[name]).pvalue for name in QUANTITIES}
    assert min(disagree.values()) > 0.001, disagree


def test_the_check_compiles_no_graph_and_loads_no_pymc():
    """What made a check cost 3-13 s of CPU: a PyMC graph compiled per distinct prior set."""
    code = ("import sys\n"
            "from forecasting.domain.codebook import load_codebook\n"
            "from forecasting.model.priors import load_priors\n"
            "from forecasting.model.prior_predictive import prior_predictive\n"
            "from forecasting.settings import DEFAULT_DATA_DIR, DEFAULT_PRIORS_DIR\n"
            "prior_predictive(load_codebook(DEFAULT_DATA_DIR / 'codebook.toml'),\n"
            "                 load_priors(DEFAULT_PRIORS_DIR / 'default.toml'), draws=100)\n"
            "print(sorted(m for m in ('pymc', 'pytensor', 'nutpie') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stderr


# -- nothing non-finite, bounded work -----------------------------------------------------------

HEAVY = {"dist": "HalfStudentT", "kwargs": {"nu": 1.0, "sigma": 10.0}}  # valid: Cauchy at the bound


def test_a_prior_whose_draws_overflow_the_check_is_an_error_naming_it(codebook, default_priors):
    heavy = default_priors.replace(sigma_reaction=HEAVY)
    with pytest.raises(PriorConfigError) as caught:
        prior_predictive(codebook, heavy, draws=1000, seed=0)
    assert [e["field"] for e in caught.value.errors] == ["sigma_reaction"]
    assert "events_odds_ratio" in str(caught.value) and "lighter-tailed" in str(caught.value)


def test_the_widest_light_tailed_priors_give_a_finite_summary(codebook, default_priors):
    """The widest scales the bounds allow, everywhere: every number is finite, so the
    summary is strict JSON (a scale of 1e308 once gave literal NaN)."""
    widest = {"dist": "HalfNormal", "kwargs": {"sigma": 10.0}}
    priors = default_priors.replace(
        cutpoints={"dist": "Normal", "kwargs": {"mu": [-20.0, 0.0, 20.0], "sigma": 10.0}},
        beta_severity={"dist": "Normal", "kwargs": {"mu": 20.0, "sigma": 10.0}},
        **{name: widest for name in PARAMETERS if name.startswith("sigma_")})
    summary = prior_predictive(codebook, priors, draws=500, seed=0)
    json.dumps(summary, allow_nan=False)


def test_the_draws_a_check_may_use_are_bounded(codebook, default_priors):
    with pytest.raises(ValueError, match=rf"must be between 10 and {MAX_DRAWS}"):
        prior_predictive(codebook, default_priors, draws=MAX_DRAWS + 1)


# -- the outcome scale -------------------------------------------------------------------------


def test_the_summary_is_json_with_every_quantity_and_a_plot(codebook, default_priors, tmp_path):
    summary = prior_predictive(codebook, default_priors, draws=300, seed=1)
    assert set(summary["outcome"]) == set(QUANTITIES)
    for d in summary["outcome"].values():
        q = d["quantiles"]
        assert q["0.05"] <= q["0.25"] <= q["0.5"] <= q["0.75"] <= q["0.95"]
    means = [summary["levels"][k]["mean"] for k in "0123"]
    assert sum(means) == pytest.approx(1.0)
    assert summary["any_restriction"]["mean"] == pytest.approx(1 - means[0])
    assert summary["scenarios"] == "whole vocabulary" and "observed" not in summary
    assert summary["outcome"]["typical_cell"]["label"].startswith("P(any restriction)")
    json.dumps(summary)
    png = plot_prior_predictive(summary, tmp_path / "prior.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_the_typical_cell_integrates_the_event_effects_out(codebook, default_priors):
    """typical_cell is eta = 0 averaged over a new trigger's event and reaction effects; with
    those scales near zero it is the cutpoints' own P(any restriction) at eta = 0."""
    narrow = {"dist": "HalfNormal", "kwargs": {"sigma": 1e-3}}  # the bound
    summary = prior_predictive(codebook, default_priors.replace(sigma_event=narrow,
                                                               sigma_reaction=narrow),
                               draws=500, seed=4)
    assert np.allclose(summary["samples"]["typical_cell"], summary["samples"]["eta_zero"],
                       atol=1e-5)
    wide = prior_predictive(codebook, default_priors, draws=500, seed=4)
    # the same cutpoint draws (same seed): integrating wide event effects raises the rate of
    # a cell whose cutpoints put it far below one half
    assert np.mean(wide["samples"]["typical_cell"]) > 2 * np.mean(wide["samples"]["eta_zero"])
    cut = np.array([[4.0, 5.0, 6.0]])
    by_hand = 1 - integrate_clusters(np.zeros(1), cut, np.array([2.0]))[0, 0]
    grid = np.linspace(-12, 12, 20001)
    exact = np.trapezoid(stats.norm.pdf(grid, 0, 2.0) * (1 - 1 / (1 + np.exp(-(4.0 - grid)))),
                         grid)
    assert by_hand == pytest.approx(exact, rel=1e-4)


def test_spreads_shrink_with_their_scale(codebook, default_priors):
    tiny = {"dist": "HalfNormal", "kwargs": {"sigma": 1e-3}}  # the bound
    summary = prior_predictive(codebook, default_priors.replace(
        sigma_partner=tiny, sigma_pt=tiny, sigma_bloc_type=tiny), draws=500, seed=5)
    out = summary["outcome"]
    assert out["partners_in_bloc_odds_ratio"]["quantiles"]["0.95"] < 1.01
    assert out["interaction_odds_ratio"]["quantiles"]["0.95"] < 1.01
    # an uncoded partner is then its bloc: exactly the reference rate
    assert out["uncoded_partner"]["quantiles"]["0.05"] == pytest.approx(0.07, abs=1e-3)
    assert out["uncoded_partner"]["quantiles"]["0.95"] == pytest.approx(0.07, abs=1e-3)
    assert out["types_odds_ratio"]["quantiles"]["0.5"] > 1.5  # the type effects remain


def test_data_cells_place_the_observed_share_in_the_prior_predictive(seed_check, seed_cells):
    observed = seed_check["observed"]
    assert seed_check["scenarios"] == "data cells"
    assert observed["share_restricted"] == pytest.approx(1 - seed_cells.level_shares()[0])
    share = np.array(seed_check["samples"]["share_restricted"])
    assert observed["percentile"] == pytest.approx(np.mean(share < observed["share_restricted"]))


# -- what priors/default.toml says --------------------------------------------------------------

STATEMENT = re.compile(r"`(?:(seed)\.)?([a-z_0-9]+)` median ([0-9.]+), 90% \[([0-9.]+), "
                       r"([0-9.]+)\]")
PERCENTILE = re.compile(r"(0\.[0-9]+) sits at its ([0-9]+)(?:st|nd|rd|th) percentile")


def _half_unit(text: str) -> float:
    """Half the unit of the last significant digit of a stated number (its rounding)."""
    if "." in text:
        return 0.5 * 10.0 ** -len(text.split(".")[1])
    return 0.5 * 10.0 ** (len(text) - len(text.rstrip("0")))


def _holds(samples: np.ndarray, stated: str, q: float) -> bool:
    """The stated number, as rounded, can be the q-quantile of `samples` within Monte Carlo
    error (4 standard errors of the empirical CDF at q)."""
    x, half = float(stated), _half_unit(stated)
    tol = 4 * math.sqrt(q * (1 - q) / len(samples))
    return np.mean(samples < x - half) - tol <= q <= np.mean(samples <= x + half) + tol


def _statements() -> list[tuple[int, tuple]]:
    lines = DEFAULT.read_text().splitlines()
    return [(i, m.groups()) for i, line in enumerate(lines) for m in STATEMENT.finditer(line)]


def test_every_default_prior_says_what_it_implies_on_the_outcome_scale():
    lines = DEFAULT.read_text().splitlines()
    for i, line in enumerate(lines):
        name = line.split("=")[0].strip()
        if name not in PARAMETERS or line.startswith("#"):
            continue
        block = []
        j = i - 1
        while j >= 0 and lines[j].startswith("#"):
            block.append(lines[j])
            j -= 1
        assert any(STATEMENT.search(text) for text in block), \
            f"{name}: its comment states nothing on the outcome scale"
    assert {name for _, (_, name, *_) in _statements()} <= set(QUANTITIES)


def test_the_default_priors_comments_hold_on_the_prior_predictive(vocabulary_check,
                                                                  seed_check):
    statements = _statements()
    assert len(statements) >= 15
    wrong = []
    for i, (scope, name, median, low, high) in statements:
        summary = seed_check if scope else vocabulary_check
        samples = np.asarray(summary["samples"][name])
        for stated, q in ((low, 0.05), (median, 0.5), (high, 0.95)):
            if not _holds(samples, stated, q):
                actual = np.quantile(samples, q)
                wrong.append(f"line {i + 1}: {scope or ''}{'.' if scope else ''}{name} "
                             f"{q:g}-quantile stated {stated}, prior predictive {actual:.4g}")
    assert not wrong, "\n".join(wrong)


def test_where_the_seed_data_sit_in_the_prior_predictive_is_as_stated(seed_check):
    found = PERCENTILE.findall(DEFAULT.read_text())
    assert found, "default.toml should say where the seed data's share sits"
    observed = seed_check["observed"]
    n = len(seed_check["samples"]["share_restricted"])
    for rate, percentile in found:
        assert float(rate) == pytest.approx(observed["share_restricted"], abs=0.0005)
        p = int(percentile) / 100
        tol = 4 * math.sqrt(p * (1 - p) / n) + 0.005
        assert observed["percentile"] == pytest.approx(p, abs=tol)


def test_a_changed_prior_breaks_its_comment(codebook, default_priors, vocabulary_check):
    """The check has teeth: moving the cutpoints by half a logit breaks typical_cell."""
    shifted = default_priors.replace(cutpoints={"dist": "Normal", "kwargs": {
        "mu": [3.75, 4.25, 4.75], "sigma": 1.0}})
    summary = prior_predictive(codebook, shifted, draws=CHECK_DRAWS, seed=7)
    (_, (_, _, median, low, high)), = [s for s in _statements() if s[1][1] == "typical_cell"]
    samples = np.asarray(summary["samples"]["typical_cell"])
    assert not _holds(samples, median, 0.5)
    assert _holds(np.asarray(vocabulary_check["samples"]["typical_cell"]), median, 0.5)
