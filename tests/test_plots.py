"""Diagnostic plots render as PNG from a model version's tree, or fail saying what is missing."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from fixtures_registry import fabricate_posterior

from forecasting.serving import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_tree(codebook):
    # few draws and cells: rendering time grows with both, and the pictures need neither
    return fabricate_posterior(codebook, chains=2, draws=60, n_cells=12)


@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_every_plot_renders_png_bytes_and_closes_its_figure(small_tree, name):
    open_before = plt.get_fignums()
    png = plots.render(small_tree, name)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    assert plt.get_fignums() == open_before


def test_each_plot_function_is_what_render_calls(small_tree):
    assert plots.PLOTS["energy"] is plots.energy
    assert plots.energy(small_tree).startswith(PNG_SIGNATURE)


def test_an_unknown_plot_name_is_an_error_listing_the_names(small_tree):
    with pytest.raises(plots.UnknownPlotError, match="Requested plot 'pie' but it must be one of"):
        plots.render(small_tree, "pie")
    with pytest.raises(ValueError, match="prior_posterior"):
        plots.render(small_tree, "pie")


@pytest.mark.parametrize(("name", "group"), [
    ("prior_posterior", "prior"),
    ("ppc", "posterior_predictive"),
    ("energy", "sample_stats"),
])
def test_a_plot_whose_group_is_missing_says_which(small_tree, name, group):
    tree = small_tree.copy()
    del tree[group]
    with pytest.raises(plots.PlotUnavailableError, match=f"needs the group.*'{group}'"):
        plots.render(tree, name)


def test_a_failing_plot_leaves_no_figure_open(small_tree):
    tree = small_tree.copy()
    tree["posterior"] = tree["posterior"].to_dataset()[["pt_eff"]]
    open_before = plt.get_fignums()
    with pytest.raises(plots.PlotUnavailableError, match="no scalar parameters"):
        plots.render(tree, "trace")
    assert plt.get_fignums() == open_before


def test_level_frequencies_are_shares_of_all_episodes():
    counts = np.array([[3, 1, 0, 0], [1, 1, 2, 2]])
    np.testing.assert_allclose(plots.level_frequencies(counts), [0.4, 0.2, 0.2, 0.2])
    per_draw = np.stack([counts, counts * 2])
    np.testing.assert_allclose(plots.level_frequencies(per_draw), [[0.4, 0.2, 0.2, 0.2]] * 2)
