"""Diagnostic plots render as PNG from a model version's tree, or fail saying what is missing."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from forecasting.model.arithmetic import PARAMETERS
from forecasting.serving import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The model's top-level parameters (the ones priors set): what a user looks for in the trace,
# rank and prior-vs-posterior plots.
SCALARS = sorted(PARAMETERS)


@pytest.fixture(scope="module")
def small_tree(fitted_tree):
    # the session's fit, every 5th draw (4 chains x 60): rendering time grows with the draws,
    # and the pictures do not need them
    return fitted_tree.isel(draw=slice(None, None, 5), missing_dims="ignore")


@pytest.fixture(scope="module")
def rendered(small_tree):
    """Every plot rendered once: name -> (PNG bytes, the figure drawn, figures left open)."""
    out = {}
    to_png = plots._figure_png
    with pytest.MonkeyPatch.context() as patch:
        for name in plots.PLOTS:
            figures = []
            patch.setattr(plots, "_figure_png",
                          lambda fig, figures=figures: figures.append(fig) or to_png(fig))
            open_before = set(plt.get_fignums())
            png = plots.render(small_tree, name)
            out[name] = (png, figures[0], set(plt.get_fignums()) - open_before)
    return out


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    return mpimg.imread(io.BytesIO(png), format="png")


@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_every_plot_is_a_png_of_its_figure_and_closes_it(rendered, name):
    png, fig, left_open = rendered[name]
    image = decode(png)
    width, height = fig.get_size_inches() * plots.DPI
    assert image.shape[:2] == (pytest.approx(height, abs=1), pytest.approx(width, abs=1))
    assert height >= 200 and width >= 400
    # something is drawn: many distinct colours, not a blank canvas
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20
    assert left_open == set()


@pytest.mark.parametrize("name", ["trace", "rank", "prior_posterior"])
def test_the_scalar_plots_show_every_scalar_parameter(rendered, name):
    fig = rendered[name][1]
    labels = {text.split("\n")[0] for ax in fig.axes
              for text in (ax.get_title(), ax.get_xlabel(), ax.get_ylabel())}
    assert set(SCALARS) <= labels
    assert labels - set(SCALARS) <= {"", "Draw", "Fractional ranks"}


def test_the_forest_plot_names_every_partner_and_type(rendered, codebook):
    texts = {t.get_text() for ax in rendered["forest"][1].axes for t in ax.texts}
    assert set(codebook.partner_codes) | set(codebook.intel_type_codes) <= texts


def test_the_predictive_check_shows_observed_shares_and_replicated_intervals(rendered,
                                                                               small_tree):
    [ax] = rendered["ppc"][1].axes
    observed = small_tree["observed_data"]["level_counts"].values
    shares = observed.sum(axis=0) / observed.sum()
    [bars] = [c for c in ax.containers if isinstance(c, BarContainer)]
    np.testing.assert_allclose([bar.get_height() for bar in bars], shares)
    replicated = plots.level_frequencies(
        small_tree["posterior_predictive"]["level_counts"].transpose(
            "chain", "draw", "cell", "level").values).reshape(-1, 4)
    [errorbar] = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    np.testing.assert_allclose(errorbar.lines[0].get_ydata(), np.median(replicated, axis=0))
    # this fit reproduces the level frequencies it was fitted to
    lo, hi = np.quantile(replicated, [0.05, 0.95], axis=0)
    assert ((lo <= shares) & (shares <= hi)).all()


def test_each_plot_function_is_what_render_calls(small_tree):
    assert plots.PLOTS["energy"] is plots.energy
    assert plots.energy(small_tree) == plots.render(small_tree, "energy")


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
