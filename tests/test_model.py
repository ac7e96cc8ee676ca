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
    form = choose_parameterization(many)
    assert {form[e] for e in ("bloc", "partner", "intel_type", "bloc_type", "trigger_type")} \
        == {"centered"}
    # episodes of one reaction count as one: 200,000 episodes in ~25,000 reactions leave
    # about 4 reactions per partner x type, too few to centre it
    assert form["partner_type"] == "noncentered"


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
    """Coded partners' deviations sum to zero within each bloc (partner x type deviations
    within each bloc x type and over types): bloc_eff is the mean of its coded partners'
    effects, and the bloc and its partners' mean deviation cannot trade off (the ridge of
    revision 1). A partner never coded is a fresh draw from its bloc, not what the
    constraint leaves over."""
    import pymc as pm

    model = build_model(seed_like_cells, default_priors, form)
    dev, pt_dev, partner, bloc = pm.draw(
        [model["partner_dev"], model["pt_dev"], model["partner_eff"], model["bloc_eff"]],
        draws=400, random_seed=2)
    bloc_of = seed_like_cells.partner_bloc
    coded = seed_like_cells.observed_partners
    assert (~coded).sum() == 2  # seed-like data leave two partners out
    for b in range(len(seed_like_cells.coords["bloc"])):
        members = (bloc_of == b) & coded
        assert np.allclose(dev[:, members].sum(axis=1), 0)
        assert np.allclose(pt_dev[:, members].sum(axis=1), 0)
        assert np.allclose(partner[:, members].mean(axis=1), bloc[:, b])
    assert np.allclose(pt_dev.sum(axis=-1), 0)
    with_mates = np.array([((bloc_of == bloc_of[i]) & coded).sum() >= 2 or not coded[i]
                           for i in range(len(bloc_of))])
    assert np.abs(dev[:, with_mates]).min() > 0 and np.abs(pt_dev[:, with_mates]).min() > 0



def test_a_partner_never_coded_is_a_fresh_draw_from_its_bloc(codebook, default_priors):
    """Singapore uncoded beside three coded Indo-Pacific partners: its deviation is
    independent of theirs and spread like a coded partner's, not minus their sum (which
    put n times the bloc's shrinkage on it in revision 2)."""
    import pymc as pm

    cells = aggregate(simulate_episodes(codebook, 600, seed=4, unseen_partners=["SGP"])[0],
                      codebook)
    model = build_model(cells, default_priors, "noncentered")
    dev = pm.draw(model["partner_dev"], draws=2000, random_seed=3)
    partners = list(cells.coords["partner"])
    sgp, jpn = dev[:, partners.index("SGP")], dev[:, partners.index("JPN")]
    mates = [partners.index(p) for p in ("JPN", "KOR", "IND")]
    assert np.allclose(dev[:, mates].sum(axis=1), 0)
    assert abs(np.corrcoef(sgp, jpn)[0, 1]) < 0.1
    # a coded partner of a bloc of three loses a third of its variance to the constraint
    assert sgp.std() / jpn.std() == pytest.approx(np.sqrt(3 / 2), rel=0.1)


def test_the_contrast_basis_is_orthonormal_and_sums_to_zero_within_groups():
    from forecasting.model.pymc_model import contrast_basis

    groups = np.array([0, 0, 1, 1, 1, 2, 0, 3])  # bloc 3 has a single member: no contrast
    basis = contrast_basis(groups, 4)
    assert basis.shape == (8, 8 - 4)
    assert np.allclose(basis.T @ basis, np.eye(4))
    for g in range(4):
        assert np.allclose(basis[groups == g].sum(axis=0), 0)
    assert np.allclose(basis[groups == 3], 0)
    # members 1 and 4 never observed: their own free columns, outside the contrasts
    observed = np.array([True, False, True, True, False, True, True, True])
    basis = contrast_basis(groups, 4, observed)
    assert basis.shape == (8, 1 + 1 + 2)  # one contrast in groups 0 and 1, two free columns
    assert np.allclose(basis.T @ basis, np.eye(4))
    for g in range(4):
        assert np.allclose(basis[(groups == g) & observed].sum(axis=0), 0)
    assert np.allclose(basis[~observed], np.eye(4)[-2:])


def test_aggregated_and_per_episode_models_have_the_same_posterior(codebook, default_priors):
    """Their log densities differ by a constant (the multinomial coefficients), and their
    gradients are equal, at any point: so the posteriors are identical."""
    rng = np.random.default_rng(3)
    episodes = simulate_episodes(codebook, 150, seed=3)[0].assign(
        # few distinct predictor sets, so that cells hold several episodes each
        partner=rng.choice(["GBR", "ISR", "JPN"], 150), intel_type=rng.choice(["humint", "ct"], 150),
        alignment=1)
    episodes["trigger_id"] = rng.choice(["t1", "t2", "t3"], 150)  # few coded triggers
    cells = aggregate(episodes, codebook)
    assert cells.counts.sum(axis=1).max() > 3
    agg = build_model(cells, default_priors, "noncentered")
    per = build_model(cells, default_priors, "noncentered", aggregated=False)
    # one function per model for value and gradient (a compile each costs most of this test)
    f_a, f_e = (m.logp_dlogp_function(ravel_inputs=True, mode="NUMBA") for m in (agg, per))
    for f in (f_a, f_e):
        f.set_extra_values({})
    assert [v.name for v in f_a._grad_vars] == [v.name for v in f_e._grad_vars]
    start = agg.initial_point()
    x0 = np.concatenate([np.ravel(start[v.name]) for v in f_a._grad_vars])
    rng = np.random.default_rng(0)
    points = [x0 + rng.normal(0, 0.5, x0.shape) for _ in range(4)]
    diffs = []
    for x in points:
        (logp_a, dlogp_a), (logp_e, dlogp_e) = f_a(x), f_e(x)
        diffs.append(logp_a - logp_e)
        assert np.allclose(dlogp_a, dlogp_e, atol=1e-6)
    assert np.allclose(diffs, diffs[0], atol=1e-6)
