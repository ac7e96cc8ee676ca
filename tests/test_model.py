import numpy as np
import pytest

from forecasting.domain.cells import aggregate
from forecasting.evaluation.simulate import simulate_episodes
from forecasting.model.arithmetic import EFFECTS
from forecasting.model.pymc_model import (
    build_model,
    choose_parameterization,
    information_per_episode,
    resolve_parameterization,
)

CONTRACT = {
    "cutpoints": ("cutpoint",),
    "pt_eff": ("partner", "intel_type"),
    "trigger_eff": ("trigger_type",),
    "beta_severity": (),
    "beta_alignment": (),
    "partner_eff": ("partner",),
    "type_eff": ("intel_type",),
    "bloc_eff": ("bloc",),
}


def test_information_per_episode_is_p_times_1_minus_p_for_a_binary_outcome():
    assert information_per_episode([0.8, 0.2, 0, 0]) == pytest.approx(0.8 * 0.2)
    assert information_per_episode([0, 0, 0, 0]) == 0.0


def test_sparse_data_get_noncentred_effects_and_abundant_data_centred_ones(codebook):
    few = aggregate(simulate_episodes(codebook, 100, seed=1)[0], codebook)
    many = aggregate(simulate_episodes(codebook, 200_000, seed=1)[0], codebook)
    assert set(choose_parameterization(few).values()) == {"noncentered"}
    assert set(choose_parameterization(many).values()) == {"centered"}


def test_seed_like_data_centre_only_the_well_observed_effects(seed_like_cells):
    form = choose_parameterization(seed_like_cells)
    assert set(form) == set(EFFECTS)
    assert form["partner_type"] == "noncentered"  # a few episodes per partner x type cell
    assert form["partner"] == "noncentered"  # two partners have no episodes at all


def test_parameterization_can_be_overridden_by_argument_and_by_priors(seed_like_cells,
                                                                      default_priors):
    assert set(resolve_parameterization(seed_like_cells, default_priors, "centered").values()) \
        == {"centered"}
    form = resolve_parameterization(seed_like_cells, default_priors, {"bloc": "noncentered"})
    assert form["bloc"] == "noncentered"
    flagged = default_priors.replace(sigma_pt={"dist": "HalfNormal", "kwargs": {"sigma": 0.3},
                                               "centered": True})
    assert resolve_parameterization(seed_like_cells, flagged)["partner_type"] == "centered"


@pytest.mark.parametrize("override,message", [({"unicorn": "centered"}, "for 'unicorn'"),
                                              ({"bloc": "sideways"}, "'sideways' for 'bloc'")])
def test_a_bad_parameterization_override_is_an_error(seed_like_cells, default_priors,
                                                     override, message):
    with pytest.raises(ValueError, match=message):
        build_model(seed_like_cells, default_priors, override)


def test_the_model_has_named_dims_and_the_contract_variables(seed_like_cells, default_priors):
    model = build_model(seed_like_cells, default_priors)
    for name, dims in CONTRACT.items():
        assert name in model.named_vars, name
        assert tuple(model.named_vars_to_dims.get(name, ())) == dims, name
    assert model.coords["partner"] == tuple(seed_like_cells.coords["partner"])
    assert model.forecast_config["parameterization"] == choose_parameterization(seed_like_cells)
    assert model.forecast_config["priors_hash"] == default_priors.content_hash


@pytest.mark.parametrize("form", ["centered", "noncentered"])
def test_the_effects_sum_to_zero_in_either_parameterization(seed_like_cells, default_priors,
                                                            form):
    import pymc as pm

    model = build_model(seed_like_cells, default_priors, form)
    bloc, bloc_type = pm.draw([model["bloc_eff"], model["bloc_type_eff"]], draws=3,
                              random_seed=1)
    assert np.allclose(bloc.sum(axis=-1), 0)
    assert np.allclose(bloc_type.sum(axis=-1), 0) and np.allclose(bloc_type.sum(axis=-2), 0)


@pytest.mark.parametrize("form", ["centered", "noncentered"])
def test_partners_are_nested_in_their_bloc(seed_like_cells, default_priors, form):
    """Partner deviations sum to zero within each bloc and partner x type deviations within
    each bloc x type and over types: bloc_eff is the mean of its partners' effects, and the
    bloc and its partners' mean deviation cannot trade off (the ridge of revision 1)."""
    import pymc as pm

    model = build_model(seed_like_cells, default_priors, form)
    dev, pt_dev, partner, bloc = pm.draw(
        [model["partner_dev"], model["pt_dev"], model["partner_eff"], model["bloc_eff"]],
        draws=3, random_seed=2)
    bloc_of = seed_like_cells.partner_bloc
    for b in range(len(seed_like_cells.coords["bloc"])):
        assert np.allclose(dev[:, bloc_of == b].sum(axis=1), 0)
        assert np.allclose(pt_dev[:, bloc_of == b].sum(axis=1), 0)
        assert np.allclose(partner[:, bloc_of == b].mean(axis=1), bloc[:, b])
    assert np.allclose(pt_dev.sum(axis=-1), 0)
    assert np.abs(dev).min() > 0 and np.abs(pt_dev).min() > 0


def test_the_contrast_basis_is_orthonormal_and_sums_to_zero_within_groups():
    from forecasting.model.pymc_model import contrast_basis

    groups = np.array([0, 0, 1, 1, 1, 2, 0, 3])  # bloc 3 has a single member: no contrast
    basis = contrast_basis(groups, 4)
    assert basis.shape == (8, 8 - 4)
    assert np.allclose(basis.T @ basis, np.eye(4))
    for g in range(4):
        assert np.allclose(basis[groups == g].sum(axis=0), 0)
    assert np.allclose(basis[groups == 3], 0)


def test_aggregated_and_per_episode_models_have_the_same_posterior(codebook, default_priors):
    """Their log densities differ by a constant (the multinomial coefficients), and their
    gradients are equal, at any point: so the posteriors are identical."""
    rng = np.random.default_rng(3)
    episodes = simulate_episodes(codebook, 150, seed=3)[0].assign(
        # few distinct predictor sets, so that cells hold several episodes each
        partner=rng.choice(["GBR", "ISR", "JPN"], 150), intel_type=rng.choice(["humint", "ct"], 150),
        alignment=1)
    cells = aggregate(episodes, codebook)
    assert cells.counts.sum(axis=1).max() > 3
    agg = build_model(cells, default_priors, "noncentered")
    per = build_model(cells, default_priors, "noncentered", aggregated=False)
    logp_a, logp_e = agg.compile_logp(), per.compile_logp()
    dlogp_a, dlogp_e = agg.compile_dlogp(), per.compile_dlogp()
    rng = np.random.default_rng(0)
    start = agg.initial_point()
    points = [{k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in start.items()}
              for _ in range(4)]
    diffs = [logp_a(p) - logp_e(p) for p in points]
    assert np.allclose(diffs, diffs[0], atol=1e-6)
    for p in points:
        assert np.allclose(dlogp_a(p), dlogp_e(p), atol=1e-6)
