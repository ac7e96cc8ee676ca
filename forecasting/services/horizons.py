"""Horizon forecasts, one implementation behind `forecast query ... --horizon H` and
`GET /v1/forecasts/horizon` (and its plot).

The answer comes from one model version: its restriction posterior (the forecast engine the
caller holds) and its trigger arrival model (the `trigger_rates` group stored with it by
every fit since horizon forecasts exist). A version fitted before has none:
NoArrivalModelError (409 in the API), never an arrival model borrowed from another version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import xarray as xr
from cachetools import LRUCache

from forecasting.model.trigger_rates import GROUP
from forecasting.registry import Registry
from forecasting.serving.forecasts import ForecastEngine
from forecasting.serving.horizons import (
    NoArrivalModelError,
    arrival_settings,
    horizon_forecast,
    horizon_png,
)

__all__ = ["NoArrivalModelError", "arrival_identity", "arrival_model", "horizon",
           "horizon_plot"]

# Arrival models of immutable versions, per process (a few hundred kB each).
_KEPT = 8
_cache: LRUCache[tuple[str, str], xr.Dataset] = LRUCache(maxsize=_KEPT)
_lock = threading.Lock()


def arrival_model(registry: Registry, version: str) -> xr.Dataset:
    """The trigger arrival model stored with `version` (an id, not "current")."""
    mv = registry.get(version)
    key = (str(registry.root), mv.version)
    with _lock:
        ds = _cache.get(key)
    if ds is not None:
        return ds
    try:
        tree = registry.load_posterior(mv.version, groups=[GROUP])
    except KeyError:
        raise NoArrivalModelError(mv.version) from None
    ds = tree[GROUP].to_dataset()
    with _lock:
        _cache[key] = ds
    return ds


def arrival_identity(registry: Registry, version: str) -> dict:
    """What identifies the arrival model stored with `version` (its content id, half-life,
    exposure pooling): a version's own id does not cover the arrival settings."""
    return arrival_settings(arrival_model(registry, version))


def horizon(engine: ForecastEngine, registry: Registry, partner: str, intel_type: str, *,
            trigger_type: str | None = None, severity: int | None = None,
            alignment: int | None = None, months: int | Iterable[int] | None = None) -> dict:
    """P(at least one restriction of PARTNER x INTEL_TYPE within each of `months` (default
    1-36)), from the engine's version and the arrival model stored with it."""
    arrivals = arrival_model(registry, engine.version)
    return horizon_forecast(engine, arrivals, partner, intel_type, trigger_type=trigger_type,
                            severity=severity, alignment=alignment, months=months)


def horizon_plot(engine: ForecastEngine, registry: Registry, partner: str, intel_type: str,
                 **options) -> bytes:
    """The curve of `horizon` as a PNG: P(within H) against H with its 50% and 90% bands."""
    return horizon_png(horizon(engine, registry, partner, intel_type, **options))
