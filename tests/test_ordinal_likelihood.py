"""The fused cumulative-logit Op: same value and gradient as the textbook formula, in every
backend the samplers use (numba for nutpie, JAX for numpyro, Python for PyMC's NUTS)."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import expit

from forecasting.ordinal_likelihood import level_weights, ordinal_loglik, register_jax


def textbook_loglik(eta, cutpoints, counts):
    """sum N_k log P(level k), P(level <= k) = sigmoid(c_k - eta), straight from the definition."""
    cdf = expit(cutpoints[None, :] - eta[:, None])
    probs = np.column_stack([cdf[:, 0], np.diff(cdf, axis=1), expit(eta - cutpoints[-1])])
    observed = counts > 0  # unobserved levels may round to probability 0 in the tails
    return float(np.sum(counts[observed] * np.log(probs[observed])))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    n = 400
    counts = rng.multinomial(rng.integers(0, 6, n), [0.7, 0.15, 0.1, 0.05]).astype(float)
    counts[:150, 1:] = 0  # many cells hold level 0 only, as in the coded data
    # eta far in both tails too (levels 0 and 3 only there: the definition itself loses
    # the middle levels to rounding)
    eta = np.concatenate([rng.normal(0, 2, n - 4), [-40.0, 40.0, -5.0, 6.0]])
    counts[-4:] = [[1, 0, 0, 2], [2, 0, 0, 1], [1, 1, 1, 1], [3, 0, 1, 0]]
    return eta, np.array([-0.5, 0.7, 2.1]), counts


def compiled(mode, counts):
    eta, cut = pt.dvector("eta"), pt.dvector("cut")
    weights = {k: pt.as_tensor(v) for k, v in level_weights(counts).items()}
    value = ordinal_loglik(eta, cut, **weights)
    return pytensor.function([eta, cut], [value, *pt.grad(value, [eta, cut])], mode=mode)


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_COMPILE", "JAX"])
def test_value_and_gradient_match_the_definition_in_every_backend(problem, mode):
    eta, cut, counts = problem
    if mode == "JAX":
        register_jax()
    value, d_eta, d_cut = compiled(mode, counts)(eta, cut)
    assert value == pytest.approx(textbook_loglik(eta, cut, counts), rel=1e-12)
    step = 1e-6
    for i in [0, 7, 200, len(eta) - 4, len(eta) - 1]:  # central differences on the definition
        up, down = eta.copy(), eta.copy()
        up[i] += step
        down[i] -= step
        numeric = (textbook_loglik(up, cut, counts) - textbook_loglik(down, cut, counts)) / (2 * step)
        assert d_eta[i] == pytest.approx(numeric, rel=1e-5, abs=1e-7)
    for k in range(3):
        up, down = cut.copy(), cut.copy()
        up[k] += step
        down[k] -= step
        numeric = (textbook_loglik(eta, up, counts) - textbook_loglik(eta, down, counts)) / (2 * step)
        assert d_cut[k] == pytest.approx(numeric, rel=1e-6)


def test_cells_without_episodes_add_nothing(problem):
    eta, cut, counts = problem
    empty = np.zeros_like(counts)
    value, d_eta, d_cut = compiled("NUMBA", empty)(eta, cut)
    assert value == 0.0
    assert not d_eta.any() and not d_cut.any()
