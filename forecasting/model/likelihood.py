"""The cumulative-logit likelihood of counts per cell, as one fused PyTensor Op.

Why an Op of its own: the fit's cost is one gradient of this sum per leapfrog step, over
every distinct cell (17,000 when the vocabulary's grid is full). Built from PyTensor's
elementwise ops (a gather per effect, a softplus per level, then as many scatters in the
gradient) it cost about 70 ns per cell in the numba backend. The kernel below computes
the linear predictor, the value and the gradient in one pass with no transcendental
function per cell at all, and its inner loop runs on SIMD lanes
(bench/bench_likelihood.py measures both forms side by side).

The linear predictor of a cell is a sum of table entries, eta_i = sum_f effects[idx[f, i]]
(the model's tables: the partner x type effect, and trigger x severity x alignment). So
exp(-eta_i) is a product of exp(-effects), computed once per table entry, and with
F_k = sigmoid(c_k - eta) = P(level <= k) and N_k the episodes at level k in a cell,

    N0 log F0 + N1 log(F1 - F0) + N2 log(F2 - F1) + N3 log(1 - F2)
      = sum_k (N_k + N_k+1) log sigmoid(c_k - eta) - sum_k N_k+1 (c_k - eta)
        + N1 log(1 - exp(c0 - c1)) + N2 log(1 - exp(c1 - c2))

using sigmoid(b) - sigmoid(a) = sigmoid(b) sigmoid(-a) (1 - exp(a - b)) for a < b and
log sigmoid(-x) = log sigmoid(x) - x. With e = exp(c_k - eta) = exp(c_k) prod exp(-effects)
and t = min(e, 1/e) = exp(-|x|),

    log sigmoid(x) = min(x, 0) - log1p(t),    d/dx log sigmoid(x) = 1 / (1 + e),

and log1p(t) on [0, 1] is a fixed polynomial (`_log1p_unit`): arithmetic only, which LLVM
vectorises. A term with weight N_k + N_k+1 = 0 adds nothing, and most cells weigh on one or
two cutpoints only: per cutpoint the kernel visits the span from its first to its last
weighted cell, which `term_order` makes short. The cutpoint-only terms are left to PyTensor
(`ordinal_loglik`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch import basic as numba_basic

# exp(c_k - eta) as a product of table exponentials cannot overflow while
# |c_k| + F * max |effects| stays below this; beyond it (never in a fit, possible at a wild
# initial point) each term takes the slower exp(-|x|) form
_PRODUCT_EXP_LIMIT = 700.0
# division by zero gives inf as in numpy rather than raising (which stops LLVM from
# vectorising any loop that divides); reassociation lets it vectorise the sums
_KERNEL_OPTIONS = {"error_model": "numpy",
                   "fastmath": {"reassoc", "contract", "arcp", "nsz"}}


@numba.njit(inline="always", **_KERNEL_OPTIONS)
def _log1p_unit(t):
    """log(1 + t) for t in [0, 1] to within 5e-16 (relative): 2 atanh(s), s = t / (2 + t)
    in [0, 1/3], by its series 2 (s + s^3/3 + s^5/5 + ...) to s^33."""
    s = t / (2.0 + t)
    z = s * s
    poly = 2.0 / 33.0
    poly = poly * z + 2.0 / 31.0
    poly = poly * z + 2.0 / 29.0
    poly = poly * z + 2.0 / 27.0
    poly = poly * z + 2.0 / 25.0
    poly = poly * z + 2.0 / 23.0
    poly = poly * z + 2.0 / 21.0
    poly = poly * z + 2.0 / 19.0
    poly = poly * z + 2.0 / 17.0
    poly = poly * z + 2.0 / 15.0
    poly = poly * z + 2.0 / 13.0
    poly = poly * z + 2.0 / 11.0
    poly = poly * z + 2.0 / 9.0
    poly = poly * z + 2.0 / 7.0
    poly = poly * z + 2.0 / 5.0
    poly = poly * z + 2.0 / 3.0
    poly = poly * z + 2.0
    return s * poly


def cumulative_logit_numpy(cutpoints, effects, effect_idx, term_weight, eta_weight):
    """The Op's three outputs in numpy, straight from the formulas (for PyMC's NUTS)."""
    eta = effects[effect_idx].sum(axis=0)
    x = cutpoints[:, None] - eta[None, :]  # (K, n)
    value = float(np.sum(term_weight * -np.logaddexp(0.0, -x)) + eta_weight @ eta)
    g = term_weight / (1.0 + np.exp(x))  # d log sigmoid(x) / dx = sigmoid(-x)
    g_cell = eta_weight - g.sum(axis=0)
    d_effects = np.bincount(effect_idx.ravel(), weights=np.tile(g_cell, effect_idx.shape[0]),
                            minlength=len(effects))
    return value, g.sum(axis=1), d_effects


@numba.njit(**_KERNEL_OPTIONS)
def _indices_within(effect_idx, size):
    """Every index in [0, size): one pass over the indices (min and max were two)."""
    lowest, highest = 0, 0
    for f in range(effect_idx.shape[0]):
        row = effect_idx[f]
        for i in range(row.shape[0]):
            lowest = min(lowest, row[i])
            highest = max(highest, row[i])
    return lowest >= 0 and highest < size


def _cumulative_logit_kernel(cutpoints, effects, effect_idx, term_weight, eta_weight):
    n_factors, n = effect_idx.shape
    if n and not _indices_within(effect_idx, effects.shape[0]):
        raise IndexError("effect_idx points outside the effects table")  # no bounds checks below
    bound = np.max(np.abs(cutpoints)) + n_factors * np.max(np.abs(effects))
    fast = bound < _PRODUCT_EXP_LIMIT
    exp_minus_effects = np.exp(-effects)  # one exp per table entry (used only if fast)
    eta = np.zeros(n)
    exp_minus_eta = np.ones(n)
    done = 0
    if n_factors >= 3:  # the model's three tables in one pass over the cells, not two
        first, second, third = effect_idx[0], effect_idx[1], effect_idx[2]
        for i in range(n):
            a, b, c = first[i], second[i], third[i]
            eta[i] = effects[a] + effects[b] + effects[c]
            exp_minus_eta[i] = exp_minus_effects[a] * exp_minus_effects[b] * exp_minus_effects[c]
        done = 3
    elif n_factors == 2:
        first, second = effect_idx[0], effect_idx[1]
        for i in range(n):
            a, b = first[i], second[i]
            eta[i] = effects[a] + effects[b]
            exp_minus_eta[i] = exp_minus_effects[a] * exp_minus_effects[b]
        done = 2
    for f in range(done, n_factors):
        index = effect_idx[f]
        for i in range(n):
            eta[i] += effects[index[i]]
            exp_minus_eta[i] *= exp_minus_effects[index[i]]
    value = 0.0
    for i in range(n):
        value += eta_weight[i] * eta[i]
    g_cell = eta_weight.copy()
    d_cutpoints = np.zeros(cutpoints.shape[0])
    for k in range(cutpoints.shape[0]):
        c = cutpoints[k]
        exp_c = np.exp(c)
        # only the span from the first to the last cell with a weight on this cutpoint
        # (`term_order` makes it short); slices, so that the loop runs from 0 and vectorises
        lo, hi = 0, n
        while lo < hi and term_weight[k, lo] == 0.0:
            lo += 1
        while hi > lo and term_weight[k, hi - 1] == 0.0:
            hi -= 1
        weight, eta_k, g_k = term_weight[k, lo:hi], eta[lo:hi], g_cell[lo:hi]
        exp_minus_eta_k = exp_minus_eta[lo:hi]
        total, slope = 0.0, 0.0
        if fast:
            for i in range(hi - lo):  # the SIMD loop: arithmetic and selects only
                w = weight[i]
                x = c - eta_k[i]
                e = exp_c * exp_minus_eta_k[i]  # exp(x)
                t = min(e, 1.0 / e)  # exp(-|x|)
                total += w * (0.5 * (x - abs(x)) - _log1p_unit(t))
                g = w / (1.0 + e)
                slope += g
                g_k[i] -= g
        else:
            for i in range(hi - lo):
                w = weight[i]
                x = c - eta_k[i]
                t = np.exp(-abs(x))  # in (0, 1]: no overflow whatever x is
                total += w * (0.5 * (x - abs(x)) - _log1p_unit(t))
                g = w * (t if x >= 0.0 else 1.0) / (1.0 + t)
                slope += g
                g_k[i] -= g
        value += total
        d_cutpoints[k] += slope
    d_effects = np.zeros(effects.shape[0])
    # the first table in runs (within a `term_order` group cells come sorted by their first
    # factor, so a run adds up in a register), the others entry by entry in the same pass
    first = effect_idx[0]
    current, run = first[0] if n else 0, 0.0
    for i in range(n):
        g = g_cell[i]
        if first[i] != current:
            d_effects[current] += run
            current, run = first[i], 0.0
        run += g
        for f in range(1, n_factors):
            d_effects[effect_idx[f, i]] += g
    d_effects[current] += run
    return value, d_cutpoints, d_effects


class CumulativeLogitCells(Op):
    """(cutpoints (K,), effects (m,), effect_idx (F, n), term_weight (K, n), eta_weight (n,))
    -> (sum_i [sum_k w_ki log sigmoid(c_k - eta_i) + v_i eta_i], its gradient in the
    cutpoints, in the effects), with eta_i = sum_f effects[effect_idx[f, i]].

    The gradient outputs are what `pullback` returns, so a value-and-gradient evaluation
    runs the kernel once. The index and weights are data: no gradient flows to them.
    """

    __props__ = ()

    def make_node(self, cutpoints, effects, effect_idx, term_weight, eta_weight):
        cutpoints = pt.as_tensor_variable(cutpoints).astype("float64")
        effects = pt.as_tensor_variable(effects).astype("float64")
        effect_idx = pt.as_tensor_variable(effect_idx).astype("int64")
        term_weight = pt.as_tensor_variable(term_weight).astype("float64")
        eta_weight = pt.as_tensor_variable(eta_weight).astype("float64")
        if (cutpoints.ndim, effects.ndim, effect_idx.ndim, term_weight.ndim,
                eta_weight.ndim) != (1, 1, 2, 2, 1):
            raise TypeError("CumulativeLogitCells takes cutpoints, effects (vectors), "
                            "effect_idx, term_weight (matrices) and eta_weight (a vector)")
        return Apply(self, [cutpoints, effects, effect_idx, term_weight, eta_weight],
                     [pt.dscalar(), pt.dvector(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        value, d_cutpoints, d_effects = cumulative_logit_numpy(*inputs)
        outputs[0][0] = np.asarray(value)
        outputs[1][0] = d_cutpoints
        outputs[2][0] = d_effects

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


cumulative_logit_cells = CumulativeLogitCells()
# everything the compiled kernel bakes in: its source, its compile options, its constants
_KERNEL_VERSION = int(hashlib.sha256(repr((
    [inspect.getsource(f) for f in (_log1p_unit.py_func, _indices_within.py_func,
                                      _cumulative_logit_kernel)],
    _KERNEL_OPTIONS["error_model"], sorted(_KERNEL_OPTIONS["fastmath"]), _PRODUCT_EXP_LIMIT,
)).encode()).hexdigest()[:15], 16)


@numba_basic.register_funcify_default_op_cache_key(CumulativeLogitCells)
def _numba_cumulative_logit_cells(op, node=None, **kwargs):
    kernel = numba.njit(**_KERNEL_OPTIONS)(_cumulative_logit_kernel)

    @numba_basic.numba_njit
    def cumulative_logit_cells_numba(cutpoints, effects, effect_idx, term_weight, eta_weight):
        value, d_cutpoints, d_effects = kernel(cutpoints, effects, effect_idx, term_weight,
                                               eta_weight)
        return np.asarray(value), d_cutpoints, d_effects

    # PyTensor's on-disk numba cache keys an Op by its type and props only: the kernel's
    # source and options go into the key so that an edited kernel is never served from a
    # stale cache
    return cumulative_logit_cells_numba, _KERNEL_VERSION


@functools.cache
def register_jax() -> None:
    """Teach PyTensor's JAX backend the Op (for numpyro). Imports JAX, so it is called only
    when a JAX sampler is chosen: web processes never import JAX. Once per process."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(CumulativeLogitCells)
    def _jax_cumulative_logit_cells(op, **kwargs):
        def cumulative_logit_cells_jax(cutpoints, effects, effect_idx, term_weight,
                                       eta_weight):
            eta = effects[effect_idx].sum(axis=0)
            x = cutpoints[:, None] - eta[None, :]
            value = jnp.sum(term_weight * jax.nn.log_sigmoid(x)) + eta_weight @ eta
            g = term_weight * jax.nn.sigmoid(-x)
            g_cell = eta_weight - g.sum(axis=0)
            d_effects = jnp.zeros_like(effects).at[effect_idx].add(g_cell[None, :])
            return value, g.sum(axis=1), d_effects

        return cumulative_logit_cells_jax


def level_weights(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The data the likelihood reads, from counts per cell and level (n, 4).

    `term_weight` (3, n): N_k + N_k+1, the weight of log sigmoid(c_k - eta) in each cell
    (level-major, so that the kernel's inner loop runs over contiguous cells);
    `eta_weight` (n,): N1 + N2 + N3; `level_totals` (4,): episodes per level.
    """
    counts = np.asarray(counts, dtype=float).reshape(-1, 4)
    return {"term_weight": np.ascontiguousarray((counts[:, :-1] + counts[:, 1:]).T),
            "eta_weight": counts[:, 1:].sum(axis=1),
            "level_totals": counts.sum(axis=0)}


def term_order(term_weight: np.ndarray) -> np.ndarray:
    """A cell order in which each cutpoint's weighted cells sit together (a permutation).

    Most cells weigh on one or two cutpoints only: a cell whose episodes are all at level 0
    has weight on c_0 alone, one at level 3 on c_2 alone. The kernel visits, per cutpoint,
    the span from its first to its last weighted cell, so cells are sorted by their first,
    then their last weighted cutpoint; each span then holds next to no unweighted cell
    (at 20,000 simulated episodes, 13,300 weighted terms of 29,700). Stable, so that within
    a group cells keep their order (the partner x type runs the gradient's scatter sums).
    Cells with no weight at all go last.
    """
    weighted = np.asarray(term_weight) > 0
    n_cutpoints = weighted.shape[0]
    any_weight = weighted.any(axis=0)
    first = np.where(any_weight, weighted.argmax(axis=0), n_cutpoints)
    last = np.where(any_weight, n_cutpoints - 1 - weighted[::-1].argmax(axis=0), n_cutpoints)
    return np.lexsort((last, first))  # the last key is the primary one; stable


def ordinal_loglik(cutpoints, effects, effect_idx, term_weight, eta_weight, level_totals):
    """sum over cells of sum_k N_k log P(level k | eta), without the multinomial
    coefficients (a constant of the data). P(level <= k) = sigmoid(c_k - eta) with
    eta_i = sum_f effects[effect_idx[f, i]]."""
    value, _, _ = cumulative_logit_cells(cutpoints, effects, effect_idx, term_weight,
                                         eta_weight)
    gaps = pt.log1mexp(cutpoints[:-1] - cutpoints[1:])  # log(1 - exp(c_k-1 - c_k))
    return value - pt.dot(level_totals[1:], cutpoints) + pt.dot(level_totals[1:-1], gaps)
