"""The fused cumulative-logit Op: same value and gradient as the textbook formula, in every
backend the samplers use (numba for nutpie, JAX for numpyro, Python for PyMC's NUTS)."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import expit

from forecasting.model.likelihood import (
    _log1p_unit,
    cumulative_logit_numpy,
    level_weights,
    ordinal_loglik,
    register_jax,
    term_order,
)


def textbook_loglik(eta, cutpoints, counts):
    """sum N_k log P(level k), P(level <= k) = sigmoid(c_k - eta), straight from the definition."""
    cdf = expit(cutpoints[None, :] - eta[:, None])
    probs = np.column_stack([cdf[:, 0], np.diff(cdf, axis=1), expit(eta - cutpoints[-1])])
    observed = counts > 0  # unobserved levels may round to probability 0 in the tails
    return float(np.sum(counts[observed] * np.log(probs[observed])))


@pytest.fixture(scope="module")
def problem():
    """Cells whose eta is the sum of a row and a column table entry, as in the model."""
    rng = np.random.default_rng(3)
    n_rows, n_cols = 40, 10
    row, col = np.divmod(np.arange(n_rows * n_cols), n_cols)
    n = len(row)
    counts = rng.multinomial(rng.integers(0, 6, n), [0.7, 0.15, 0.1, 0.05]).astype(float)
    counts[:150, 1:] = 0  # many cells hold level 0 only, as in the coded data
    effects = np.concatenate([rng.normal(0, 2, n_rows), rng.normal(0, 1, n_cols)])
    # eta far in both tails too (levels 0 and 3 only there: the definition itself loses
    # the middle levels to rounding)
    counts[row >= n_rows - 2] = [1, 0, 0, 2]
    effect_idx = np.stack([row, n_rows + col])
    return effects, np.array([-0.5, 0.7, 2.1]), effect_idx, counts


def with_tails(effects, tail):
    """Two rows with eta near -tail and +tail (their cells hold levels 0 and 3 only)."""
    effects = effects.copy()
    effects[38:40] = [-tail, tail]
    return effects


def compiled(mode, effect_idx, counts):
    effects, cut = pt.dvector("effects"), pt.dvector("cut")
    data = {k: pt.as_tensor(v) for k, v in level_weights(counts).items()}
    value = ordinal_loglik(cut, effects, pt.as_tensor(effect_idx), **data)
    return pytensor.function([effects, cut], [value, *pt.grad(value, [effects, cut])], mode=mode)


def textbook_from_effects(effects, cut, effect_idx, counts):
    return textbook_loglik(effects[effect_idx].sum(axis=0), cut, counts)


@pytest.mark.parametrize("tail", [40.0, 400.0], ids=["fast", "overflow-safe"])
@pytest.mark.parametrize("mode", ["NUMBA", "FAST_COMPILE", "JAX"])
def test_value_and_gradient_match_the_definition_in_every_backend(problem, mode, tail):
    """With eta at +-400 the kernel's product of table exponentials could overflow, and it
    takes its per-term exp(-|x|) form instead."""
    effects, cut, effect_idx, counts = problem
    effects = with_tails(effects, tail)
    if mode == "JAX":
        register_jax()
    value, d_effects, d_cut = compiled(mode, effect_idx, counts)(effects, cut)
    assert value == pytest.approx(textbook_from_effects(effects, cut, effect_idx, counts),
                                  rel=1e-12)
    step = 1e-6
    for j in [0, 7, 38, 39, 40, len(effects) - 1]:  # central differences on the definition
        up, down = effects.copy(), effects.copy()
        up[j] += step
        down[j] -= step
        numeric = (textbook_from_effects(up, cut, effect_idx, counts)
                   - textbook_from_effects(down, cut, effect_idx, counts)) / (2 * step)
        assert d_effects[j] == pytest.approx(numeric, rel=1e-5, abs=1e-6)
    for k in range(3):
        up, down = cut.copy(), cut.copy()
        up[k] += step
        down[k] -= step
        numeric = (textbook_from_effects(effects, up, effect_idx, counts)
                   - textbook_from_effects(effects, down, effect_idx, counts)) / (2 * step)
        assert d_cut[k] == pytest.approx(numeric, rel=1e-6)


def test_the_kernels_log1p_is_accurate_to_the_last_bits_on_its_range():
    t = np.concatenate([np.linspace(0.0, 1.0, 100_001), np.geomspace(1e-300, 1e-3, 1000)])
    got = np.array([_log1p_unit(x) for x in t])
    assert np.all(np.abs(got - np.log1p(t)) <= 5e-16 * np.log1p(t))  # two units in the last place


def test_cells_without_episodes_add_nothing(problem):
    effects, cut, effect_idx, counts = problem
    value, d_effects, d_cut = compiled("NUMBA", effect_idx, np.zeros_like(counts))(
        with_tails(effects, 40.0), cut)
    assert value == 0.0
    assert not d_effects.any() and not d_cut.any()


def test_an_index_outside_the_effects_table_is_an_error_not_a_stray_write(problem):
    effects, cut, effect_idx, counts = problem
    bad = effect_idx.copy()
    bad[1, 5] = len(effects)
    with pytest.raises(IndexError, match="outside the effects table"):
        compiled("NUMBA", bad, counts)(effects, cut)


def test_term_order_groups_each_cutpoints_cells_and_leaves_the_likelihood_unchanged(problem):
    """The kernel visits, per cutpoint, the span from its first to its last weighted cell: in
    term order that span holds no unweighted cell but those weighted on both sides of it
    (a cell with episodes at levels 0 and 3 only), and empty cells come last."""
    effects, cut, effect_idx, counts = problem
    counts = counts.copy()
    counts[[3, 200]] = 0  # empty cells
    weights = level_weights(counts)["term_weight"]
    order = term_order(weights)
    assert sorted(order) == list(range(len(counts)))
    weighted = weights[:, order] > 0
    first = weighted.argmax(axis=0)  # (for the cells with some weight: the others are last)
    last = len(cut) - 1 - weighted[::-1].argmax(axis=0)
    empty = np.flatnonzero(counts.sum(axis=1) == 0)
    assert {3, 200} <= set(empty) and set(order[-len(empty):]) == set(empty)
    for k, row in enumerate(weighted):
        span = np.flatnonzero(row)
        inside = np.arange(span[0], span[-1] + 1)
        unweighted = inside[~row[inside]]
        assert np.all((first[unweighted] < k) & (last[unweighted] > k))
    effects = with_tails(effects, 40.0)
    value, d_effects, d_cut = compiled("NUMBA", effect_idx, counts)(effects, cut)
    ordered = compiled("NUMBA", effect_idx[:, order], counts[order])(effects, cut)
    assert ordered[0] == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(ordered[1], d_effects, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ordered[2], d_cut, rtol=1e-12)


@pytest.mark.parametrize("n_factors", [1, 3])
def test_any_number_of_tables_gives_the_numpy_value_and_gradient(problem, n_factors):
    """The model has two tables (the kernel's fused pass); one or three take the general one."""
    effects, cut, effect_idx, counts = problem
    if n_factors == 1:
        effect_idx = effect_idx[:1]
    else:
        effects = np.append(effects, [0.4, -0.9])
        extra = len(effects) - 2 + np.arange(effect_idx.shape[1]) % 2
        effect_idx = np.vstack([effect_idx, extra])
    value, d_effects, d_cut = compiled("NUMBA", effect_idx, counts)(effects, cut)
    weights = level_weights(counts)
    _, _, d_effects_expected = cumulative_logit_numpy(
        cut, effects, effect_idx, weights["term_weight"], weights["eta_weight"])
    assert value == pytest.approx(
        textbook_from_effects(effects, cut, effect_idx, counts), rel=1e-12)
    np.testing.assert_allclose(d_effects, d_effects_expected, rtol=1e-10, atol=1e-10)
    assert np.all(d_effects[np.unique(effect_idx[-1])] != 0.0)  # the last table's too
