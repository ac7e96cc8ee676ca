"""End to end: a real (tiny) backtest stored under its model version, and the CLI tables."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from fixtures_registry import copy_version
from fixtures_store import database_of
from rich.console import Console

from forecasting.evaluation import cli_format, reports
from forecasting.evaluation.simulate import seed_like
from forecasting.registry import Registry
from forecasting.settings import SamplerSettings, load_settings

TINY = SamplerSettings(sampler="nutpie", chains=2, draws=100, tune=150, target_accept=0.9,
                       seed=3)


def render(tables) -> str:
    console = Console(file=io.StringIO(), width=220)
    for table in tables:
        console.print(table)
    return console.file.getvalue()


@pytest.fixture
def settings(tmp_path):
    return load_settings({"FORECAST_INSTANCE": str(tmp_path / "instance")})


@pytest.fixture
def version(settings, fitted_version):
    """A stored version whose metadata carries the default priors, made current: the
    session's fit."""
    registry = Registry(settings.registry_path)
    return registry.promote(copy_version(fitted_version, registry).version)


def test_backtest_report_fits_the_model_on_the_past_and_stores_its_report(
        settings, codebook, version):
    frame, _ = seed_like(codebook, n=300, seed=2)
    frame["trigger_date"] = pd.to_datetime(frame["trigger_date"])
    database = database_of(frame)
    report = reports.backtest_report(
        settings, database, codebook, version="current", step_months=600, horizon_months=600,
        min_train=200, sampler=TINY, n_boot=200, parameterization="noncentered")
    assert report["version"] == version.version
    assert report["n_folds"] == 1
    assert report["folds"][0]["n_train"] >= 200
    assert report["n_episodes"] == 300 - report["folds"][0]["n_train"]
    assert set(report["comparisons"]) == {"climatology", "partner", "intel_type", "no_pooling"}
    assert report["folds"][0]["hierarchical_max_rhat"] is not None
    stored = reports.load_results(settings, version.version)
    assert stored["backtest"]["comparisons"].keys() == report["comparisons"].keys()
    for name in ("reliability", "scores", "pit"):
        assert reports.load_plot(settings, version.version, name)[:4] == b"\x89PNG"
    text = render(cli_format.backtest_tables(report))
    assert "climatology" in text and "no_pooling" in text and "hierarchical" in text


def test_sensitivity_report_is_cached_and_renders(settings, version):
    registry = Registry(settings.registry_path)
    first = reports.sensitivity_report(settings, registry, "current")
    again = reports.sensitivity_report(settings, registry, version.version)
    assert again == first
    text = render(cli_format.sensitivity_tables(first))
    assert "pt_eff" in text and "Headline" in text


def test_sbc_tables_render_tests_and_coverage():
    report = {"n_ok": 2, "n_sims": 2, "n_episodes": 300, "n_draws": 49,
              "adjusted_min_pvalue": 0.5, "uniform": True,
              "tests": {"beta_severity": {"chi2": 1.0, "bins": 2, "pvalue": 0.3}},
              "coverage": {"0.5": 0.48, "0.9": 0.91}}
    text = render(cli_format.sbc_tables(report))
    assert "beta_severity" in text and "90%" in text


def test_results_of_unknown_kinds_and_bad_version_names_are_refused(settings):
    with pytest.raises(ValueError, match="must be one of"):
        reports.save_result(settings, "abc", "forecasts", {})
    with pytest.raises(ValueError, match="not a model version id"):
        reports.evaluation_dir(settings, "../etc")
    with pytest.raises(reports.NoEvaluationError, match="forecast backtest"):
        reports.load_results(settings, "abc")
