"""The cumulative-logit likelihood of counts per cell, as one fused PyTensor Op.

Why an Op of its own: the fit's cost is one gradient of this sum per leapfrog step, over
every distinct cell (17,000 when the vocabulary's grid is full). Built from PyTensor's
elementwise ops it cost about 70 ns per cell in the numba backend (a softplus alone ~34 ns,
and its gradient a second pass with another exp); the kernel below computes value and
gradient in one branch-free pass: one exp per cell and one log and one division per term
(bench/bench_likelihood.py measures both, side by side).

With F_k = sigmoid(c_k - eta) = P(level <= k) and N_k the episodes at level k in a cell,

    N0 log F0 + N1 log(F1 - F0) + N2 log(F2 - F1) + N3 log(1 - F2)
      = sum_k (N_k + N_k+1) log sigmoid(c_k - eta) - sum_k N_k+1 (c_k - eta)
        + N1 log(1 - exp(c0 - c1)) + N2 log(1 - exp(c1 - c2))

using sigmoid(b) - sigmoid(a) = sigmoid(b) sigmoid(-a) (1 - exp(a - b)) for a < b and
log sigmoid(-x) = log sigmoid(x) - x. Only the first sum needs a transcendental, and only
for its non-zero terms (a cell holding level 0 only has one); the rest are dot products
and scalars, left to PyTensor (`ordinal_loglik`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch import basic as numba_basic

# exp(c_k - eta) = exp(c_k) * exp(-eta) cannot overflow while |c_k| and |eta| stay below
# this; beyond it (never in a fit, possible at a wild initial point) each term takes the
# slower exp(-|x|) form
_SHARED_EXP_LIMIT = 350.0


def log_sigmoid_terms_numpy(eta, cutpoints, term_cell, term_cut, term_weight):
    """sum_j w_j log sigmoid(c[cut_j] - eta[cell_j]), with its gradients in eta and c."""
    x = cutpoints[term_cut] - eta[term_cell]
    value = float(np.sum(term_weight * -np.logaddexp(0.0, -x)))
    g = term_weight / (1.0 + np.exp(x))  # d log sigmoid(x) / dx = sigmoid(-x)
    d_eta = -np.bincount(term_cell, weights=g, minlength=len(eta))
    d_c = np.bincount(term_cut, weights=g, minlength=len(cutpoints))
    return value, d_eta, d_c


def _log_sigmoid_terms_kernel(eta, cutpoints, term_cell, term_cut, term_weight):
    value = 0.0
    d_eta = np.zeros(eta.shape[0])
    d_c = np.zeros(cutpoints.shape[0])
    if np.all(np.abs(cutpoints) < _SHARED_EXP_LIMIT) and np.all(np.abs(eta) < _SHARED_EXP_LIMIT):
        exp_c = np.exp(cutpoints)
        exp_minus_eta = np.exp(-eta)  # one exp per cell, shared by its terms
        for j in range(term_weight.shape[0]):
            i, k, w = term_cell[j], term_cut[j], term_weight[j]
            ex = exp_c[k] * exp_minus_eta[i]  # exp(x), x = c_k - eta_i
            # log sigmoid(x) = x - log(1 + exp(x)); its derivative sigmoid(-x) = 1 / (1 + exp(x))
            value += w * (cutpoints[k] - eta[i] - np.log(1.0 + ex))
            g = w / (1.0 + ex)
            d_eta[i] -= g
            d_c[k] += g
        return value, d_eta, d_c
    for j in range(term_weight.shape[0]):
        i, k, w = term_cell[j], term_cut[j], term_weight[j]
        x = cutpoints[k] - eta[i]
        e = np.exp(-abs(x))  # in (0, 1]: no overflow whatever x is
        value += w * (min(x, 0.0) - np.log(1.0 + e))
        g = w * (e / (1.0 + e) if x >= 0.0 else 1.0 / (1.0 + e))
        d_eta[i] -= g
        d_c[k] += g
    return value, d_eta, d_c


class LogSigmoidTerms(Op):
    """(eta (n,), cutpoints (K,), term_cell (m,), term_cut (m,), term_weight (m,)) ->
    (sum_j w_j log sigmoid(c[cut_j] - eta[cell_j]), its gradient in eta, in the cutpoints).

    The gradient outputs are what `pullback` returns, so a value-and-gradient evaluation
    runs the kernel once. The terms are data: no gradient flows to them.
    """

    __props__ = ()

    def make_node(self, eta, cutpoints, term_cell, term_cut, term_weight):
        eta = pt.as_tensor_variable(eta).astype("float64")
        cutpoints = pt.as_tensor_variable(cutpoints).astype("float64")
        term_cell = pt.as_tensor_variable(term_cell).astype("int64")
        term_cut = pt.as_tensor_variable(term_cut).astype("int64")
        term_weight = pt.as_tensor_variable(term_weight).astype("float64")
        if any(v.ndim != 1 for v in (eta, cutpoints, term_cell, term_cut, term_weight)):
            raise TypeError("LogSigmoidTerms takes five vectors")
        return Apply(self, [eta, cutpoints, term_cell, term_cut, term_weight],
                     [pt.dscalar(), pt.dvector(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        value, d_eta, d_c = log_sigmoid_terms_numpy(*inputs)
        outputs[0][0] = np.asarray(value)
        outputs[1][0] = d_eta
        outputs[2][0] = d_c

    def infer_shape(self, node, shapes):
        return [(), (shapes[0][0],), (shapes[1][0],)]

    def connection_pattern(self, node):
        return [[True, True, True], [True, True, True]] + [[False, False, False]] * 3

    def pullback(self, inputs, outputs, output_grads):
        value_grad, *gradient_grads = output_grads
        data = [DisconnectedType()() for _ in inputs[2:]]
        if not all(isinstance(g.type, DisconnectedType) for g in gradient_grads):
            # second derivatives: NUTS never asks for them
            return [grad_not_implemented(self, i, inputs[i]) for i in range(2)] + data
        if isinstance(value_grad.type, DisconnectedType):
            return [DisconnectedType()() for _ in inputs]
        return [value_grad * outputs[1], value_grad * outputs[2], *data]


log_sigmoid_terms = LogSigmoidTerms()
_KERNEL_VERSION = int(hashlib.sha256(inspect.getsource(_log_sigmoid_terms_kernel).encode())
                      .hexdigest()[:15], 16)


@numba_basic.register_funcify_default_op_cache_key(LogSigmoidTerms)
def _numba_log_sigmoid_terms(op, node=None, **kwargs):
    kernel = numba_basic.numba_njit(_log_sigmoid_terms_kernel)

    @numba_basic.numba_njit
    def log_sigmoid_terms_numba(eta, cutpoints, term_cell, term_cut, term_weight):
        value, d_eta, d_c = kernel(eta, cutpoints, term_cell, term_cut, term_weight)
        return np.asarray(value), d_eta, d_c

    # PyTensor's on-disk numba cache keys an Op by its type and props only: the kernel's
    # source goes into the key so that an edited kernel is never served from a stale cache
    return log_sigmoid_terms_numba, _KERNEL_VERSION


@functools.cache
def register_jax() -> None:
    """Teach PyTensor's JAX backend the Op (for numpyro). Imports JAX, so it is called only
    when a JAX sampler is chosen: web processes never import JAX. Once per process."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(LogSigmoidTerms)
    def _jax_log_sigmoid_terms(op, **kwargs):
        def log_sigmoid_terms_jax(eta, cutpoints, term_cell, term_cut, term_weight):
            x = cutpoints[term_cut] - eta[term_cell]
            value = jnp.sum(term_weight * jax.nn.log_sigmoid(x))
            g = term_weight * jax.nn.sigmoid(-x)
            d_eta = -jnp.zeros_like(eta).at[term_cell].add(g)
            d_c = jnp.zeros_like(cutpoints).at[term_cut].add(g)
            return value, d_eta, d_c

        return log_sigmoid_terms_jax


def level_weights(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The data the likelihood reads, from counts per cell and level (n, 4).

    The terms (`term_cell`, `term_cut`, `term_weight`): every non-zero N_k + N_k+1, the
    weight of log sigmoid(c_k - eta) in its cell, ordered by cell; `eta_weights` (n,):
    N1 + N2 + N3; `level_totals` (4,): episodes per level.
    """
    counts = np.asarray(counts, dtype=float)
    weights = counts[:, :-1] + counts[:, 1:]
    term_cell, term_cut = np.nonzero(weights)
    return {"term_cell": term_cell.astype(np.int64), "term_cut": term_cut.astype(np.int64),
            "term_weight": weights[term_cell, term_cut],
            "eta_weights": counts[:, 1:].sum(axis=1),
            "level_totals": counts.sum(axis=0)}


def ordinal_loglik(eta, cutpoints, term_cell, term_cut, term_weight, eta_weights, level_totals):
    """sum over cells of sum_k N_k log P(level k | eta), without the multinomial
    coefficients (a constant of the data). P(level <= k) = sigmoid(c_k - eta)."""
    value, _, _ = log_sigmoid_terms(eta, cutpoints, term_cell, term_cut, term_weight)
    gaps = pt.log1mexp(cutpoints[:-1] - cutpoints[1:])  # log(1 - exp(c_k-1 - c_k))
    return (value + pt.dot(eta_weights, eta) - pt.dot(level_totals[1:], cutpoints)
            + pt.dot(level_totals[1:-1], gaps))
