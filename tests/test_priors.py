import json

import numpy as np
import pytest

from forecasting.model.priors import (
    FAMILIES,
    PARAMETERS,
    PriorConfigError,
    PriorSet,
    draw,
    draw_ordered,
    draw_ordered_many,
    load_priors,
    parse_priors,
)
from forecasting.settings import DEFAULT_PRIORS_DIR

DEFAULT = DEFAULT_PRIORS_DIR / "default.toml"


def _default_dict():
    return load_priors(DEFAULT).to_dict()


def test_the_default_file_has_a_prior_for_every_parameter_of_the_model():
    priors = load_priors(DEFAULT)
    assert set(priors) == set(PARAMETERS)


def test_every_default_prior_has_a_comment_saying_why():
    lines = DEFAULT.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.split("=")[0].strip() in PARAMETERS:
            assert lines[i - 1].startswith("#"), f"{line.split('=')[0].strip()} has no comment"


def test_priors_round_trip_through_to_dict_and_from_dict():
    priors = load_priors(DEFAULT)
    again = PriorSet.from_dict(json.loads(json.dumps(priors.to_dict())))
    assert again == priors
    assert again.content_hash == priors.content_hash


def test_the_content_hash_changes_when_a_prior_changes_and_not_with_key_order():
    priors = load_priors(DEFAULT)
    reordered = PriorSet.from_dict(dict(reversed(list(priors.to_dict().items()))))
    assert reordered.content_hash == priors.content_hash
    changed = priors.replace(sigma_pt={"dist": "HalfNormal", "kwargs": {"sigma": 0.4}})
    assert changed.content_hash != priors.content_hash


def test_specs_handed_out_are_copies():
    priors = load_priors(DEFAULT)
    priors["sigma_pt"]["kwargs"]["sigma"] = 99.0
    assert priors["sigma_pt"]["kwargs"]["sigma"] != 99.0


def _with(name, spec):
    return _default_dict() | {name: spec}


@pytest.mark.parametrize("name,spec,message", [
    ("sigma_pt", {"dist": "HalfNormall", "kwargs": {"sigma": 0.3}},
     r"sigma_pt: unsupported distribution 'HalfNormall'; use one of \['Exponential'"),
    # abstract, improper, degenerate and discrete PyMC distributions: no simulator or SBC
    # can draw from them, and an improper prior has no prior predictive
    *[("sigma_pt", {"dist": dist, "kwargs": {}}, rf"sigma_pt: unsupported distribution '{dist}'")
      for dist in ("Distribution", "Continuous", "Flat", "HalfFlat", "DiracDelta", "Poisson")],
    ("sigma_pt", {"dist": "HalfNormal", "kwargs": {"sd": 0.3}},
     r"sigma_pt: \['sd'\] not parameters of HalfNormal; use \['sigma'\]"),
    ("sigma_pt", {"dist": "HalfNormal", "kwargs": {}},
     r"sigma_pt: missing \['sigma'\]; HalfNormal needs \['sigma'\]"),
    ("sigma_pt", {"dist": "HalfNormal", "kwargs": {"sigma": -0.3}},
     r"sigma_pt.kwargs.sigma: must be positive, got -0.3"),
    ("sigma_pt", {"dist": "HalfNormal", "kwargs": {"sigma": 0}},
     r"sigma_pt.kwargs.sigma: must be positive, got 0"),
    ("sigma_pt", {"dist": "Gamma", "kwargs": {"alpha": 2, "beta": -1}},
     r"sigma_pt.kwargs.beta: must be positive, got -1"),
    ("sigma_bloc", {"dist": "HalfNormal", "kwargs": {"sigma": float("inf")}},
     r"sigma_bloc.kwargs.sigma: expected finite numbers"),
    ("beta_severity", {"dist": "HalfNormal", "kwargs": {"sigma": 1}},
     r"beta_severity: needs a distribution on the real line, one of \['Normal', 'StudentT'\]"),
    ("beta_severity", {"dist": "Normal", "kwargs": {"mu": 0, "sigma": "wide"}},
     r"beta_severity.kwargs.sigma: expected finite numbers"),
    ("sigma_pt", {"dist": "Normal", "kwargs": {"mu": 0, "sigma": 1}},
     r"sigma_pt: a group scale needs a positive distribution"),
    ("cutpoints", {"dist": "Normal", "kwargs": {"mu": [0, 1], "sigma": 1}},
     r"cutpoints.kwargs.mu: expected a number or 3 numbers"),
    ("cutpoints", {"dist": "Normal", "kwargs": {"mu": [1, 0, 2], "sigma": 1}},
     r"cutpoints.kwargs.mu: must be increasing"),
    ("sigma_pt", {"dist": "HalfNormal", "kwargs": {"sigma": 0.3}, "transform": "log"},
     r"sigma_pt: unknown keys \['transform'\]"),
    ("sigma_pt", {"kwargs": {"sigma": 0.3}}, r"sigma_pt: missing 'dist'"),
    ("beta_severity", {"dist": "Normal", "kwargs": {"mu": 0, "sigma": 1}, "centered": True},
     r"beta_severity.centered: only group scales"),
    ("sigma_pt", {"dist": "HalfNormal", "kwargs": {"sigma": 0.3}, "centered": "yes"},
     r"sigma_pt.centered: expected true or false"),
    ("sigma_unicorn", {"dist": "HalfNormal", "kwargs": {"sigma": 0.3}},
     r"sigma_unicorn: the model has no parameter 'sigma_unicorn'"),
])
def test_invalid_priors_are_rejected_naming_the_key(name, spec, message):
    with pytest.raises(PriorConfigError, match=message):
        PriorSet.from_dict(_with(name, spec))


# Issue 15: every prior below was once made active by PUT /v1/priors, and every later refit
# failed. Each is refused, naming the key, the field and why.
@pytest.mark.parametrize("name,spec,message", [
    ("sigma_event", {"dist": "Flat", "kwargs": {}},
     r"sigma_event: unsupported distribution 'Flat' \(improper"),
    ("sigma_event", {"dist": "HalfFlat", "kwargs": {}},
     r"sigma_event: unsupported distribution 'HalfFlat' \(improper"),
    ("sigma_event", {"dist": "Distribution", "kwargs": {}}, r"\(not a distribution"),
    ("sigma_event", {"dist": "Continuous", "kwargs": {}}, r"\(not a distribution"),
    ("beta_severity", {"dist": "Poisson", "kwargs": {"mu": 1}}, r"\(discrete"),
    ("beta_severity", {"dist": "DiracDelta", "kwargs": {"c": 0.5}}, r"\(a point mass"),
    ("beta_severity", {"dist": "Uniform", "kwargs": {"lower": 2, "upper": 1}}, r"\(hard edges"),
    ("sigma_event", {"dist": "HalfNormal", "kwargs": {"sigma": 1e308}},
     r"sigma_event.kwargs.sigma: must be between 0.001 and 10 .*got 1e\+308"),
    ("sigma_event", {"dist": "HalfNormal", "kwargs": {"sigma": 1e-300}},
     r"sigma_event.kwargs.sigma: must be between 0.001 and 10"),
    ("sigma_bloc", {"dist": "HalfNormal", "kwargs": {"sigma": float("nan")}},
     r"sigma_bloc.kwargs.sigma: expected finite numbers"),
    ("beta_alignment", {"dist": "Normal", "kwargs": {"mu": -50.0, "sigma": 1.0}},
     r"beta_alignment.kwargs.mu: must be between -20 and 20 \(a location in logits"),
    ("cutpoints", {"dist": "Normal", "kwargs": {"mu": [1.0, 2.0, 300.0], "sigma": 1.0}},
     r"cutpoints.kwargs.mu: must be between -20 and 20 .*got 300.0"),
    ("sigma_type", {"dist": "HalfStudentT", "kwargs": {"nu": 0.5, "sigma": 1.0}},
     r"sigma_type.kwargs.nu: must be between 1 and 1000 \(degrees of freedom"),
    ("sigma_type", {"dist": "Exponential", "kwargs": {"lam": 0.001}},
     r"sigma_type.kwargs.lam: must be between 0.1 and 1000 \(a rate"),
    ("sigma_type", {"dist": "Gamma", "kwargs": {"alpha": 1000.0, "beta": 0.5}},
     r"sigma_type.kwargs: the mean alpha / beta = 2000 must be between 0.001 and 10"),
    ("sigma_type", {"dist": "LogNormal", "kwargs": {"mu": 0.0, "sigma": 5.0}},
     r"sigma_type.kwargs.sigma: must be between 0.001 and 2 \(the spread in log units"),
    ("sigma_type", {"dist": "HalfNormal", "kwargs": {"sigma": [0.5, 0.5, 0.5]}},
     r"sigma_type.kwargs.sigma: expected a number, got"),
    ("sigma_type", {"dist": "HalfNormal", "kwargs": {"sigma": True}},
     r"sigma_type.kwargs.sigma: expected finite numbers"),
    ("sigma_type", "HalfNormal(0.5)", r"sigma_type: expected a table like"),
])
def test_unusable_priors_once_accepted_are_refused(name, spec, message):
    with pytest.raises(PriorConfigError, match=message):
        PriorSet.from_dict(_with(name, spec))


@pytest.mark.parametrize("name,spec", [
    ("sigma_event", {"dist": "HalfNormal", "kwargs": {"sigma": 10.0}}),
    ("sigma_event", {"dist": "HalfNormal", "kwargs": {"sigma": 0.001}}),
    ("sigma_type", {"dist": "HalfStudentT", "kwargs": {"nu": 1.0, "sigma": 0.5}}),
    ("sigma_type", {"dist": "Gamma", "kwargs": {"alpha": 2.0, "beta": 4.0}}),
    ("sigma_type", {"dist": "LogNormal", "kwargs": {"mu": -1.0, "sigma": 0.5}}),
    ("sigma_type", {"dist": "Exponential", "kwargs": {"lam": 2.0}}),
    ("beta_severity", {"dist": "StudentT", "kwargs": {"nu": 3.0, "mu": 0.0, "sigma": 1.0}}),
    ("cutpoints", {"dist": "Normal", "kwargs": {"mu": [-20.0, 0.0, 20.0], "sigma": 10.0}}),
])
def test_priors_at_the_edges_of_the_bounds_are_accepted(name, spec):
    assert PriorSet.from_dict(_with(name, spec))[name] == spec


def test_every_problem_of_a_prior_set_is_reported_at_once():
    data = _with("sigma_event", {"dist": "HalfNormal", "kwargs": {"sigma": 1e308}})
    data |= {"cutpoints": {"dist": "Normal", "kwargs": {"mu": [3.0, 2.0, 1.0], "sigma": -1}},
             "beta_severity": {"dist": "Flat", "kwargs": {}},
             "sigma_unicorn": {"dist": "HalfNormal", "kwargs": {"sigma": 1.0}}}
    del data["sigma_pt"]
    with pytest.raises(PriorConfigError) as caught:
        PriorSet.from_dict(data)
    fields = [e["field"] for e in caught.value.errors]
    assert fields == ["sigma_pt", "cutpoints.kwargs.sigma", "cutpoints.kwargs.mu",
                      "beta_severity", "sigma_event.kwargs.sigma", "sigma_unicorn"]
    # the message lists them in the same order, each "field: problem"
    assert str(caught.value).startswith("sigma_pt: missing prior; ")
    assert "; sigma_event.kwargs.sigma: must be between" in str(caught.value)


def test_a_prior_set_that_is_not_a_table_is_refused():
    with pytest.raises(PriorConfigError, match=r"priors: expected a table"):
        PriorSet.from_dict(["sigma_pt"])


def test_many_ordered_draws_are_increasing_and_match_one_at_a_time():
    spec = {"dist": "Normal", "kwargs": {"mu": [0.0, 0.0, 0.0], "sigma": 1.0}}
    draws, acceptance = draw_ordered_many(spec, np.random.default_rng(5), 3000)
    assert draws.shape == (3000, 3) and (np.diff(draws, axis=1) > 0).all()
    assert acceptance == pytest.approx(1 / 6, abs=0.02)  # 3 exchangeable coordinates
    assert draws.mean(axis=0) == pytest.approx([-0.846, 0.0, 0.846], abs=0.05)


def test_ordered_draws_give_up_naming_the_prior_when_almost_none_increase():
    spec = {"dist": "Normal", "kwargs": {"mu": [3.0, 0.0, -3.0], "sigma": 0.001}}
    with pytest.raises(PriorConfigError, match=r"cutpoints: only 0 of 2000 prior draws"):
        draw_ordered_many(spec, np.random.default_rng(5), 10, max_batches=2)


def test_a_missing_prior_is_an_error_naming_the_key():
    data = _default_dict()
    del data["sigma_trigger"]
    with pytest.raises(PriorConfigError, match=r"sigma_trigger: missing prior"):
        PriorSet.from_dict(data)


def test_invalid_toml_is_a_prior_config_error():
    with pytest.raises(PriorConfigError, match="not valid TOML"):
        parse_priors("sigma_pt = {dist = ")


def test_centered_flags_become_parameterization_overrides():
    priors = PriorSet.from_dict(_with("sigma_pt", {"dist": "HalfNormal",
                                                   "kwargs": {"sigma": 0.3}, "centered": True}))
    assert priors.centered_overrides() == {"partner_type": "centered"}


def test_prior_variable_creates_the_variable_inside_a_model():
    import pymc as pm

    from forecasting.model.pymc_model import prior_variable

    priors = load_priors(DEFAULT)
    with pm.Model(coords={"cutpoint": ["0|1", "1|2", "2|3"]}) as model:
        prior_variable("sigma_pt", priors)
        prior_variable("cutpoints", priors, dims="cutpoint",
                       transform=pm.distributions.transforms.ordered)
    assert {v.name for v in model.free_RVs} == {"sigma_pt", "cutpoints"}
    assert model.named_vars_to_dims["cutpoints"] == ("cutpoint",)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_supported_family_is_built_by_pymc_and_drawn_by_numpy_alike(family):
    """The table's families carry PyMC's names and parameters, and `draw` samples the same
    distribution PyMC does (means and sds agree within Monte Carlo error)."""
    import pymc as pm

    kwargs = {"Normal": {"mu": 0.5, "sigma": 2.0}, "StudentT": {"nu": 5.0, "mu": 0.5, "sigma": 2.0},
              "HalfNormal": {"sigma": 0.7}, "HalfStudentT": {"nu": 5.0, "sigma": 0.7},
              "Exponential": {"lam": 2.0}, "Gamma": {"alpha": 3.0, "beta": 2.0},
              "LogNormal": {"mu": -0.5, "sigma": 0.4}}[family]
    spec = {"dist": family, "kwargs": kwargs}
    ours = draw(spec, np.random.default_rng(0), 40_000)
    theirs = pm.draw(getattr(pm, family).dist(**kwargs), draws=40_000, random_seed=1)
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=5 * np.std(theirs) / 200)
    assert np.std(ours) == pytest.approx(np.std(theirs), rel=0.05)


def test_ordered_draws_are_the_family_restricted_to_increasing_vectors():
    """Rejection keeps the density PyMC's ordered transform gives: with equal locations the
    three coordinates are exchangeable before ordering, so P(sorted) keeps their means apart
    symmetrically; the draws are always increasing."""
    spec = {"dist": "Normal", "kwargs": {"mu": [0.0, 0.0, 0.0], "sigma": 1.0}}
    rng = np.random.default_rng(3)
    draws = np.array([draw_ordered(spec, rng) for _ in range(3000)])
    assert (np.diff(draws, axis=1) > 0).all()
    assert draws.mean(axis=0) == pytest.approx([-0.846, 0.0, 0.846], abs=0.05)  # normal order stats
