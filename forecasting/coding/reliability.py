"""Inter-coder reliability: Krippendorff's alpha per coded field, with bootstrap intervals.

Alpha itself comes from the `krippendorff` package (a maintained implementation, checked in
tests/test_coding_reliability.py against Krippendorff's own worked examples); this module
arranges the codings into its value-count form, resamples the units (episodes) for the
interval, and builds the tables behind each figure: the coincidence matrix of a field (every
pair of values two coders gave one episode) and, per coder pair, a confusion table.

Pure: codings in, plain dictionaries out.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

import krippendorff
import numpy as np

from forecasting.coding.fields import CODED_FIELDS, ORDINAL_DOMAIN, RELIABLE_ALPHA, TENTATIVE_ALPHA

# episode id -> coder -> that coder's values (interchange form: ints and ISO-date strings)
Codings = Mapping[Any, Mapping[str, Mapping[str, Any]]]
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 20261201
INTERVAL = 0.95


def reading(alpha: float | None) -> str:
    """What an alpha allows, by Krippendorff's conventional bars."""
    if alpha is None:
        return "not measured"
    if alpha >= RELIABLE_ALPHA:
        return "reliable"
    if alpha >= TENTATIVE_ALPHA:
        return "tentative"
    return "unreliable"


def _domain(field: str, codings: Codings) -> list:
    if CODED_FIELDS[field] == "ordinal":
        return list(ORDINAL_DOMAIN)
    return sorted({str(values[field]) for by_coder in codings.values()
                   for values in by_coder.values()})


def value_counts(field: str, codings: Codings, coders: tuple[str, ...] | None = None
                 ) -> tuple[np.ndarray, list]:
    """(units x values) counts of how many coders gave each value, and the value domain.

    Only units with at least two of the chosen coders' values are kept (a unit coded once is
    not pairable and tells nothing of agreement)."""
    domain = _domain(field, codings)
    index = {v: i for i, v in enumerate(domain)}
    rows = []
    for by_coder in codings.values():
        chosen = [values for coder, values in by_coder.items()
                  if coders is None or coder in coders]
        if len(chosen) < 2:
            continue
        row = np.zeros(len(domain))
        for values in chosen:
            value = values[field]
            row[index[value if CODED_FIELDS[field] == "ordinal" else str(value)]] += 1
        rows.append(row)
    return np.array(rows).reshape(len(rows), len(domain)), domain


def alpha_of(counts: np.ndarray, measure: str) -> float | None:
    """Krippendorff's alpha of a value-count table; None when it is undefined: fewer than two
    pairable values, or a single value used throughout (no variation to disagree on)."""
    if counts.shape[0] == 0 or counts.sum() < 2 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return None
    return float(krippendorff.alpha(value_counts=counts, value_domain=list(range(counts.shape[1])),
                                    level_of_measurement=measure))


def bootstrap_interval(counts: np.ndarray, measure: str, samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = BOOTSTRAP_SEED, interval: float = INTERVAL
                       ) -> list[float] | None:
    """Percentile interval of alpha over `samples` resamples of the units (with replacement).

    Resamples in which alpha is undefined (every unit agreeing on one value) are dropped; so
    is the interval when fewer than half the resamples gave an alpha."""
    n = counts.shape[0]
    if n < 2 or samples < 1:
        return None
    rng = np.random.default_rng(seed)
    alphas = []
    for _ in range(samples):
        value = alpha_of(counts[rng.integers(0, n, n)], measure)
        if value is not None:
            alphas.append(value)
    if len(alphas) < samples / 2:
        return None
    tail = (1 - interval) / 2
    low, high = np.quantile(alphas, [tail, 1 - tail])
    return [float(low), float(high)]


def coincidences(counts: np.ndarray, domain: list) -> dict[str, Any]:
    """Krippendorff's coincidence matrix: o[c][k] = how often values c and k were paired
    within an episode, each pair of coders' values counted in both orders, each episode
    weighted 1/(m-1) for its m values (the row sums are how often each value was given)."""
    matrix = np.zeros((len(domain), len(domain)))
    for row in counts:
        m = row.sum()
        if m >= 2:
            matrix += (np.outer(row, row) - np.diag(row)) / (m - 1)
    return {"values": domain, "counts": np.round(matrix, 4).tolist()}


def confusion(field: str, codings: Codings, first: str, second: str) -> dict[str, Any]:
    """Counts of (first coder's value, second coder's value) over the episodes both coded."""
    domain = _domain(field, codings)
    index = {v: i for i, v in enumerate(domain)}
    matrix = np.zeros((len(domain), len(domain)), dtype=int)
    for by_coder in codings.values():
        if first in by_coder and second in by_coder:
            a, b = by_coder[first][field], by_coder[second][field]
            if CODED_FIELDS[field] != "ordinal":
                a, b = str(a), str(b)
            matrix[index[a], index[b]] += 1
    return {"rows": first, "columns": second, "values": domain, "counts": matrix.tolist()}


def _agreement(counts: np.ndarray) -> float | None:
    """Share of the pairable episodes on which every coder gave the same value."""
    if counts.shape[0] == 0:
        return None
    return float(np.mean(counts.max(axis=1) == counts.sum(axis=1)))


def _field_summary(counts: np.ndarray, measure: str, samples: int, seed: int) -> dict[str, Any]:
    alpha = alpha_of(counts, measure)
    return {"measure": measure, "alpha": alpha,
            f"ci{round(INTERVAL * 100)}": (bootstrap_interval(counts, measure, samples, seed)
                                           if alpha is not None else None),
            "reading": reading(alpha), "episodes": int(counts.shape[0]),
            "pairable_values": int(counts.sum()), "agreement": _agreement(counts)}


def reliability(codings: Codings, *, samples: int = BOOTSTRAP_SAMPLES,
                seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Alpha per coded field overall and per coder pair, each with its bootstrap interval,
    the coincidence matrix per field and a confusion table per field and pair.

    `codings`: episode -> coder -> values; episodes coded once are ignored."""
    double = {e: c for e, c in codings.items() if len(c) >= 2}
    coders = sorted({coder for by_coder in double.values() for coder in by_coder})
    fields = {}
    for field, measure in CODED_FIELDS.items():
        counts, domain = value_counts(field, double)
        fields[field] = _field_summary(counts, measure, samples, seed) | {
            "coincidences": coincidences(counts, domain)}
    pairs = []
    for first, second in combinations(coders, 2):
        shared = sum(1 for c in double.values() if first in c and second in c)
        if not shared:
            continue
        pair_fields = {}
        for field, measure in CODED_FIELDS.items():
            if len(coders) == 2:  # the one pair coded every double-coded episode: same figures
                summary = {k: v for k, v in fields[field].items() if k != "coincidences"}
            else:
                counts, _ = value_counts(field, double, (first, second))
                summary = _field_summary(counts, measure, samples, seed)
            pair_fields[field] = summary | {"confusion": confusion(field, double, first, second)}
        pairs.append({"coders": [first, second], "episodes": shared, "fields": pair_fields})
    return {
        "episodes": len(double), "codings": sum(len(c) for c in double.values()),
        "coders": coders,
        "bootstrap": {"samples": samples, "seed": seed, "interval": INTERVAL,
                      "resampled": "episodes"},
        "thresholds": {"reliable": RELIABLE_ALPHA, "tentative": TENTATIVE_ALPHA},
        "fields": fields, "pairs": pairs,
    }
