"""The model's arithmetic, held to the PyMC model's own density and to the textbook formulas."""

import numpy as np
import pytest
from scipy.special import expit

from forecasting.domain.cells import aggregate
from forecasting.evaluation.simulate import simulate_episodes
from forecasting.model.arithmetic import (
    CENTERS,
    EFFECTS,
    FORECAST_VARIABLES,
    PARAMETERS,
    SCALES,
    any_restriction,
    covariate_offsets,
    level_log_probability,
    level_probabilities,
    linear_predictor,
    scenario_effects,
)


def _textbook(eta, cutpoints):
    cdf = np.concatenate([[0.0], expit(np.asarray(cutpoints) - eta), [1.0]])
    return np.diff(cdf)


def test_level_probabilities_are_the_differences_of_the_cumulative_logits():
    rng = np.random.default_rng(0)
    eta = rng.normal(0, 2, 50)
    cutpoints = np.sort(rng.normal(0, 2, 3))
    probs = level_probabilities(eta, cutpoints)
    assert probs.shape == (50, 4)
    for i in range(50):
        assert probs[i] == pytest.approx(_textbook(eta[i], cutpoints), abs=1e-12)
    assert np.exp(level_log_probability(eta, cutpoints, np.arange(50) % 4)) == pytest.approx(
        probs[np.arange(50), np.arange(50) % 4], rel=1e-10)
    assert any_restriction(probs) == pytest.approx(1 - probs[:, 0])


def test_level_probabilities_sum_to_one_in_either_layout_and_stay_finite_in_the_tails():
    rng = np.random.default_rng(1)
    eta = rng.normal(0, 1, (5, 7, 200))  # samples last, as the forecast engine keeps them
    cutpoints = np.sort(rng.normal(0, 1, (3, 200)), axis=0)
    last = level_probabilities(eta, cutpoints, axis=-2)
    first = level_probabilities(np.moveaxis(eta, -1, 0), cutpoints.T[:, None, None, :])
    assert last.shape == (5, 7, 4, 200)
    assert np.allclose(last.sum(axis=-2), 1.0)
    assert np.allclose(np.moveaxis(last, (-2, -1), (-1, 0)), first)
    extreme = level_probabilities(np.array([-800.0, 800.0]), np.array([-1.0, 0.0, 1.0]))
    assert np.isfinite(extreme).all()
    assert extreme[0] == pytest.approx([1, 0, 0, 0]) and extreme[1] == pytest.approx([0, 0, 0, 1])


def test_the_linear_predictor_adds_the_cell_and_the_centred_scenario():
    rng = np.random.default_rng(2)
    params = {"pt_eff": rng.normal(size=(3, 4)), "trigger_eff": rng.normal(size=5),
              "beta_severity": 0.7, "beta_alignment": -0.4}
    eta = linear_predictor(params, np.array([2]), np.array([1]), np.array([3]), np.array([0]),
                           np.array([3]))
    expected = (params["pt_eff"][2, 1] + params["trigger_eff"][3]
                + 0.7 * (0 - CENTERS["severity"]) - 0.4 * (3 - CENTERS["alignment"]))
    assert eta == pytest.approx([expected])
    assert covariate_offsets("severity") == pytest.approx([-1.5, -0.5, 0.5, 1.5])


def test_every_parameter_list_derives_from_one_effect_table():
    assert set(SCALES) == {effect.scale for effect in EFFECTS.values()}
    assert set(SCALES) <= set(PARAMETERS)
    assert {"cutpoints", "beta_severity", "beta_alignment"} <= set(PARAMETERS)
    assert "sigma_bloc_type" in PARAMETERS  # the scale a hand-kept list once forgot
    assert set(FORECAST_VARIABLES) == {"cutpoints", "pt_eff", "trigger_eff", "beta_severity",
                                       "beta_alignment"}


def test_the_scenario_table_is_the_same_in_pytensor_and_numpy():
    import pytensor.tensor as pt

    rng = np.random.default_rng(3)
    trigger, b_s, b_a = rng.normal(size=6), 0.3, -0.2
    t = pt.vector("t")
    s = pt.scalar("s")
    a = pt.scalar("a")
    graph = scenario_effects(t, s, a).eval({t: trigger, s: b_s, a: b_a})
    assert graph.shape == (6, 4, 4)
    assert np.allclose(graph, scenario_effects(trigger, b_s, b_a))


@pytest.mark.parametrize("aggregated", [False, True])
def test_the_arithmetic_gives_the_pymc_models_log_density_on_random_draws(codebook, default_priors,
                                                                          aggregated):
    """Per-episode model: PyMC's own OrderedLogistic; aggregated: the fused likelihood Op.
    Both equal the arithmetic's sum of log P(level) over episodes."""
    import pandas as pd

    from forecasting.model.pymc_model import LIKELIHOOD, build_model

    frame, _ = simulate_episodes(codebook, 300, seed=5)
    # copies of the same predictors with other levels: cells of several episodes and levels
    rng = np.random.default_rng(6)
    frame = pd.concat([frame, *(frame.assign(level=rng.integers(0, 4, len(frame)))
                                for _ in range(2))])
    assert frame.groupby(["trigger_id", "partner"]).size().max() > 1  # clusters of episodes
    cells = aggregate(frame, codebook)
    assert (cells.counts > 0).sum(axis=1).max() >= 3
    model = build_model(cells, default_priors, aggregated=aggregated)
    density = (model.logp(vars=model.observed_RVs) if not aggregated
               else model[LIKELIHOOD])
    names = [*FORECAST_VARIABLES, "cluster_eff"]  # a reaction's event + reaction effects
    outs = model.replace_rvs_by_values([model[n] for n in names] + [density])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    start = model.initial_point()
    level = np.repeat(np.tile(np.arange(4), cells.n_cells), cells.counts.ravel())
    row = np.repeat(np.repeat(np.arange(cells.n_cells), 4), cells.counts.ravel())
    for _ in range(5):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in start.items()}
        *values, pymc_density = fn(point)
        params = dict(zip(names, values, strict=True))
        params["reaction_eff"] = params.pop("cluster_eff")
        eta = linear_predictor(params, cells.partner_idx[row], cells.type_idx[row],
                               cells.trigger_idx[row], cells.severity[row], cells.alignment[row],
                               reaction=cells.reaction_idx[row])
        ours = level_log_probability(eta, params["cutpoints"], level).sum()
        assert float(pymc_density) == pytest.approx(ours, rel=1e-9, abs=1e-9)


def test_the_cluster_sums_have_the_covariance_of_event_plus_reaction_effects():
    """c = u[trigger] + v: within a trigger of m reactions, cov = sigma_v^2 I + sigma_u^2 J;
    across triggers and for the spare slots (groups of one), independent. cluster_sums is
    linear in z, so its matrix, read off the identity, gives the covariance exactly."""
    from forecasting.model.arithmetic import cluster_layout, cluster_sums

    reaction_event = np.array([0, 1, 1, 2, 2, 2, 3])  # triggers of 1, 2, 3 and 1 reactions
    slots = 10  # three spare
    sigma_u, sigma_v = 1.7, 0.6
    matrix = cluster_sums(np.eye(slots), sigma_u, sigma_v, cluster_layout(reaction_event, slots))
    covariance = matrix.T @ matrix  # rows of the identity are draws: c_j = sum_i M[i, j] z_i
    group = np.r_[reaction_event, 4 + np.arange(slots - len(reaction_event))]
    same = group[:, None] == group[None, :]
    expected = sigma_v**2 * np.eye(slots) + sigma_u**2 * same
    assert np.allclose(covariance, expected, atol=1e-12)


def test_sweeping_the_trigger_means_keeps_their_distribution_and_moves_the_terms_share():
    """Swept, the cluster sums are still N(0, sigma_v^2 I + sigma_u^2 J) (the map from the
    coordinates (z, swept) is linear for fixed scales: its matrix gives the covariance
    exactly), and what the sweep's coordinates add to them is exactly X gamma, the
    trigger-level terms' share, which the model takes off the cutpoints, the trigger types'
    effects and the slopes."""
    from forecasting.model.arithmetic import (
        cluster_layout,
        cluster_sums,
        sweep_cluster_means,
        sweep_layout,
    )

    reaction_event = np.array([0, 1, 1, 2, 2, 2, 3, 4, 4, 5])
    # two trigger types (one-hot), then severity - 1.5 and alignment - 1.5
    design = np.array([[1, 0, -1.5, 0.5], [0, 1, 0.5, -0.5], [1, 0, 1.5, 1.5],
                       [0, 1, -0.5, -1.5], [1, 0, 0.5, 0.5], [0, 1, 1.5, -0.5]])
    slots, k = 13, design.shape[1]
    sigma_u, sigma_v = 1.3, 0.7
    layout = cluster_layout(reaction_event, slots)
    parts = sweep_layout(reaction_event, slots, design, size_classes=4)

    def sums(z, swept):
        moved, shift = sweep_cluster_means(z, swept, sigma_u, sigma_v, layout, *parts)
        return cluster_sums(moved, sigma_u, sigma_v, layout), shift

    basis = np.eye(slots + k)  # each row a draw of (z, swept)
    matrix, shift = sums(basis[:, :slots], basis[:, slots:])
    group = np.r_[reaction_event, 6 + np.arange(slots - len(reaction_event))]
    expected = sigma_v**2 * np.eye(slots) + sigma_u**2 * (group[:, None] == group[None, :])
    assert np.allclose(matrix.T @ matrix, expected, atol=1e-12)
    # the sweep's coordinates reach the sums only through X gamma on each reaction's trigger
    on_reactions = np.zeros((slots, k))
    on_reactions[:len(reaction_event)] = design[reaction_event]
    share = shift @ on_reactions.T
    assert np.allclose((matrix - share)[slots:], 0.0, atol=1e-12)
    assert not np.allclose(share[slots:], 0.0)
    # and the unswept coordinates are the plain cluster sums, with the same covariance
    plain = cluster_sums(np.eye(slots), sigma_u, sigma_v, layout)
    assert np.allclose(plain.T @ plain, expected, atol=1e-12)


def test_partly_centred_coordinates_scale_only_the_triggers_mean_coordinates():
    """The sampler's cluster coordinates have sd s^lambda on a trigger's mean coordinate (s
    the sd of the trigger's mean effect, lambda its centring weight) and 1 on the contrasts
    and spare slots; divided by it they are the standard coordinates, so the cluster sums keep
    sigma_v^2 I + sigma_u^2 J whatever the weights. lambda = 1 is the centred form: the
    coordinate is the trigger's mean effect itself."""
    from forecasting.model.arithmetic import cluster_layout, cluster_sums, coordinate_scales

    reaction_event = np.array([0, 1, 1, 2, 2, 2])
    slots = 8
    sigma_u, sigma_v = 1.7, 0.6
    # weights are rounded to sixteenths: 0.52 -> 0.5
    layout = cluster_layout(reaction_event, slots, centring=np.array([1.0, 0.52, 0.0]))
    log_scale, inverse_scale = coordinate_scales(sigma_u, sigma_v, layout, max_size=3)
    scale = 1.0 / inverse_scale
    mean_sd = np.sqrt(sigma_v**2 / np.array([1, 2, 3]) + sigma_u**2)
    np.testing.assert_allclose(scale, [mean_sd[0], mean_sd[1] ** 0.5, 1, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(log_scale, np.log(scale), atol=1e-15)
    # per draw, scales of shape (chain, draw) give (chain, draw, slot)
    per_draw = coordinate_scales(np.full((2, 3), sigma_u), np.full((2, 3), sigma_v), layout, 3)
    np.testing.assert_allclose(per_draw[1], np.broadcast_to(inverse_scale, (2, 3, slots)))
    # the sampler's coordinates x ~ N(0, scale^2), rows of diag(scale) as draws
    matrix = cluster_sums(np.diag(scale) / scale, sigma_u, sigma_v, layout)
    group = np.r_[reaction_event, 3 + np.arange(slots - len(reaction_event))]
    expected = sigma_v**2 * np.eye(slots) + sigma_u**2 * (group[:, None] == group[None, :])
    assert np.allclose(matrix.T @ matrix, expected, atol=1e-12)
    # centred (lambda = 1), a unit step of the coordinate moves the trigger's effect by one
    step = np.zeros(slots)
    step[0] = 1.0
    assert cluster_sums(step / scale, sigma_u, sigma_v, layout)[0] == pytest.approx(1.0)
    # without weights nothing is centred
    plain = coordinate_scales(sigma_u, sigma_v, cluster_layout(reaction_event, slots), 3)
    assert np.all(plain[0] == 0) and np.all(plain[1] == 1)
