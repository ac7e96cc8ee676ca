"""The forecast ledger (issue 19): what the service said before the outcomes were known.

`chain` hashes entries into one append-only chain and checks it; `resolution` scores frozen
forecasts against coded outcomes and summarises the live record (both pure: no I/O). The
store is forecasting/store/ledger.py, the capabilities forecasting/services/ledger.py.
"""
