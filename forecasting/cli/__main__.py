"""`python -m forecasting.cli`: how `forecast run` starts its fit and its refit worker."""

from forecasting.cli import main

main()
