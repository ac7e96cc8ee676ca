"""Forecast evaluation: backtests against baselines, calibration, SBC, prior sensitivity.

Entry points shared by the CLI and the API (each returns a JSON-able dict and stores it under
`<instance>/evaluation/<version>/`): `backtest_report`, `sbc_report`, `sensitivity_report`.
Modules: scoring (proper scores, paired bootstrap), baselines, backtest (folds, model fits),
calibration (reliability, PAVA, PIT, plots), sbc, sensitivity, reports (storage), cli_format.
"""

from forecasting.evaluation.reports import (
    NoEvaluationError,
    SensitivityUnavailableError,
    backtest_report,
    load_results,
    sbc_report,
    sensitivity_report,
)

__all__ = ["NoEvaluationError", "SensitivityUnavailableError", "backtest_report", "load_results",
           "sbc_report", "sensitivity_report"]
