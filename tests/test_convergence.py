"""The gate's convergence statistics, computed for all entries at once, are ArviZ's.

forecasting.model.convergence re-implements az.rhat (rank), az.ess (bulk, tail) and az.mcse
(mean) in batched numpy for speed: these tests hold every figure to ArviZ's own on chains that
mix well, badly, not at all, with ties, and with an odd number of draws.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from arviz_stats.validate import validate_ci_prob

from forecasting.model import convergence
from forecasting.model.diagnostics import summary_table


def _ar1(rng, rho, chains, draws, shift=None):
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    noise = rng.normal(size=(chains, draws)) * np.sqrt(1 - rho**2)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x + (0 if shift is None else np.asarray(shift)[:, None])


def _entries(chains=4, draws=301, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cases = [
        rng.normal(size=(chains, draws)),  # independent draws
        _ar1(rng, 0.5, chains, draws),
        _ar1(rng, 0.97, chains, draws),  # slow mixing: low ESS
        _ar1(rng, 0.3, chains, draws, shift=[0, 0, 0, 3][:chains]),  # a chain elsewhere
        np.round(rng.normal(size=(chains, draws)), 1),  # ties
        (rng.random((chains, draws)) < 0.1).astype(float),  # an indicator: many ties
        np.where(np.arange(chains)[:, None] == 0, 0.5,
                 rng.normal(size=(chains, draws))),  # one stuck chain
        rng.standard_t(2, size=(chains, draws)) * 100,  # heavy tails, large scale
    ]
    return np.stack(cases)


def _arviz(x: np.ndarray) -> dict[str, np.ndarray]:
    data = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"theta": (("entry", "chain", "draw"), x)}).transpose("chain", "draw", "entry")})

    def values(result):
        node = result["posterior"] if "posterior" in result.children else result
        return node.to_dataset()["theta"].values

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"r_hat": values(az.rhat(data)),
                "ess_bulk": values(az.ess(data, method="bulk")),
                "ess_tail": values(az.ess(data, method="tail")),
                "mcse_mean": values(az.mcse(data))}


@pytest.mark.parametrize(("chains", "draws"), [(4, 301), (4, 200), (2, 57)])
def test_the_batched_statistics_are_arviz_figures(chains, draws):
    x = _entries(chains, draws)
    expected = _arviz(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = convergence.statistics(x, validate_ci_prob(None))
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=1e-9, err_msg=name)
    if chains == 4:
        assert got["r_hat"][3] > 1.2  # the displaced chain is seen
    assert got["ess_bulk"][2] < 0.2 * got["ess_bulk"][0]  # slow mixing is seen


def test_blocks_give_the_same_figures_as_one_pass(monkeypatch):
    x = np.concatenate([_entries(seed=s) for s in range(3)])  # 24 entries
    whole = convergence.statistics(x, 0.89)
    monkeypatch.setattr(convergence, "BLOCK", 5)
    for name, values in convergence.statistics(x, 0.89).items():
        np.testing.assert_allclose(values, whole[name], rtol=1e-12, err_msg=name)


def test_r_hat_needs_two_chains():
    x = _entries(chains=1, draws=100)
    got = convergence.statistics(x, 0.89)
    assert np.isnan(got["r_hat"]).all()
    np.testing.assert_allclose(got["ess_bulk"], _arviz(x)["ess_bulk"], rtol=1e-9)


def test_the_summary_table_labels_each_entry_of_a_two_dimensional_variable():
    """Each row's figures are those of the entry its label names (az.summary of ArviZ 1.3
    mixed them up for two-dimensional variables)."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(4, 100, 2, 3))
    values[..., 1, 2] = _ar1(rng, 0.3, 4, 100, shift=[0, 0, 0, 4])  # one bad entry
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"pt": (("chain", "draw", "partner", "type"), values)},
        coords={"partner": ["GBR", "ISR"], "type": ["a", "b", "c"]})})
    table = summary_table(tree)
    assert list(table.index) == [f"pt[{p}, {t}]" for p in ("GBR", "ISR") for t in "abc"]
    assert table["r_hat"].idxmax() == "pt[ISR, c]"
    assert table.loc["pt[GBR, a]", "sd"] == pytest.approx(values[..., 0, 0].std())


def test_an_entry_with_a_nan_draw_has_no_figures_as_in_arviz():
    x = _entries()[:3].copy()
    x[1, 2, 50] = np.nan
    got = convergence.statistics(x, validate_ci_prob(None))
    for name, want in _arviz(x).items():
        assert np.isnan(got[name][1]) and np.isnan(want[1]), name
        np.testing.assert_allclose(got[name], want, rtol=1e-9, err_msg=name)
