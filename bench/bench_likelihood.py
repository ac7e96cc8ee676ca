"""Likelihood benchmark: the fused cumulative-logit Op against the same likelihood built from
PyTensor's elementwise ops (the form model revision 2 first shipped), side by side.

For simulated episode sets of 2,000 / 20,000 / 200,000 rows it times one value-and-gradient
evaluation of the whole model's log density (priors included) in the numba backend, what
nutpie calls once per leapfrog step, with the likelihood in either form (the same model
otherwise; both are checked to give the same value and gradient). Best of several rounds,
the two forms interleaved in one process so that the ratio is measured under the same load.
Prints a table.

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_likelihood.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pymc as pm  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from forecasting.domain.cells import aggregate  # noqa: E402
from forecasting.domain.codebook import load_codebook  # noqa: E402
from forecasting.evaluation.simulate import simulate_episodes  # noqa: E402
from forecasting.model import pymc_model as model_module  # noqa: E402
from forecasting.model.likelihood import level_weights, term_order  # noqa: E402
from forecasting.model.priors import load_priors  # noqa: E402
from forecasting.model.pymc_model import build_model  # noqa: E402

SIZES = (2_000, 20_000, 200_000)
FORMS = ("elementwise", "fused")


def elementwise_loglik(eta, cutpoints, counts):
    """The reference: count * log P(level | cell) over the observed (cell, level) pairs,
    from softplus and sigmoid ops (P(level 0) and P(level 3) are one softplus each)."""
    cell, level = np.nonzero(counts)
    count = counts[cell, level].astype(float)
    low, high = level == 0, level == counts.shape[1] - 1
    mid = ~(low | high)
    pairs = {name: pytensor.shared(value) for name, value in {
        "low_cell": cell[low], "low_count": count[low], "high_cell": cell[high],
        "high_count": count[high], "mid_cell": cell[mid], "mid_level": level[mid],
        "mid_count": count[mid]}.items()}
    k = pairs["mid_level"]
    eta_mid = eta[pairs["mid_cell"]]
    p_mid = pm.math.sigmoid(cutpoints[k] - eta_mid) - pm.math.sigmoid(cutpoints[k - 1] - eta_mid)
    return (pt.sum(pairs["low_count"] * -pt.softplus(eta[pairs["low_cell"]] - cutpoints[0]))
            + pt.sum(pairs["high_count"] * -pt.softplus(cutpoints[-1] - eta[pairs["high_cell"]]))
            + pt.sum(pairs["mid_count"] * pt.log(pt.clip(p_mid, 1e-12, 1.0))))


def best_time(fn, args, rounds: int = 7, calls: int = 30) -> float:
    fn(*args)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def gradient_function(cells, priors, form: str):
    """The whole model's value-and-gradient function (priors included), as nutpie calls it,
    with the likelihood in the given form; and the point to evaluate it at."""
    if form == "elementwise":
        # the model hands the likelihood its cells in the kernel's term order
        counts = cells.counts[term_order(level_weights(cells.counts)["term_weight"])]

        def reference(cutpoints, effects, effect_idx, **_):
            return elementwise_loglik(effects[effect_idx].sum(axis=0), cutpoints, counts)

        with mock.patch.object(model_module, "ordinal_loglik", reference):
            model = build_model(cells, priors)
    else:
        model = build_model(cells, priors)
    return value_and_gradient(model)


def value_and_gradient(model):
    """`model`'s value-and-gradient function in the numba backend (what nutpie compiles), and
    a point away from the symmetric start to evaluate it at."""
    fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")
    fn.set_extra_values({})
    point = model.initial_point()
    x = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
    x = x + np.random.default_rng(0).normal(0, 0.3, x.shape)  # away from the symmetric start
    return fn, x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    codebook = load_codebook(ROOT / "data" / "codebook.toml")
    priors = load_priors(ROOT / "priors" / "default.toml")
    print("| episodes | cells | terms | gradient, elementwise likelihood | gradient, fused Op "
          "| speed-up |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        cells = aggregate(simulate_episodes(codebook, size, seed=1)[0], codebook)
        functions = {form: gradient_function(cells, priors, form) for form in FORMS}
        (f_a, x_a), (f_b, x_b) = functions.values()
        (value_a, grad_a), (value_b, grad_b) = f_a(x_a), f_b(x_b)
        # the same density (up to the elementwise form's clipping far in the tails)
        np.testing.assert_allclose(value_a, value_b, rtol=1e-9)
        np.testing.assert_allclose(grad_a, grad_b, rtol=1e-6, atol=1e-8)
        times = dict.fromkeys(FORMS, float("inf"))
        for _ in range(3):  # interleaved rounds: both forms see the same load
            for form, (fn, x) in functions.items():
                times[form] = min(times[form], best_time(fn, (x,), rounds=3))
        terms = int(np.count_nonzero(cells.counts[:, :-1] + cells.counts[:, 1:]))
        print(f"| {size:,} | {cells.n_cells:,} | {terms:,} | {times['elementwise'] * 1e6:.0f} us "
              f"| {times['fused'] * 1e6:.0f} us | {times['elementwise'] / times['fused']:.1f}x |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
