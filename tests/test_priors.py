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
