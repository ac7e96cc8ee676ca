"""A stratified sample of episodes for a second coder, with the first coder's values blank.

Strata are (partner, level, confidence): each gets a share of the sample proportional to its
size (largest remainders, ties broken at random), so that rare combinations (a partner's few
suspensions, low-confidence codings) are drawn about as often as they occur, and a sample of
n spreads over the partners rather than piling onto the best-covered one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

STRATA = ("partner", "level", "confidence")
# What identifies the episode and what it is coded from stays; everything a coder decides
# is blanked (the coded fields, and the first coder's name, date and notes).
KEPT = ("trigger_id", "partner", "intel_type", "sources", "trigger_description")


def allocate(sizes: Sequence[int], n: int, rng: np.random.Generator) -> list[int]:
    """How many to draw from strata of these sizes: proportional, by largest remainders."""
    total = sum(sizes)
    if n >= total:
        return list(sizes)
    exact = np.array(sizes, dtype=float) * n / total
    taken = np.floor(exact).astype(int)
    # largest remainders first; a random key breaks ties (and orders equal strata fairly)
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - taken[i]), rng.random()))
    for i in order[: n - int(taken.sum())]:
        taken[i] += 1
    return [int(t) for t in taken]


def stratified_sample(rows: Sequence[dict[str, Any]], n: int, seed: int = 0
                      ) -> list[dict[str, Any]]:
    """`n` of `rows` (interchange rows), stratified by partner, level and confidence; in the
    rows' own order. Every row when n is at least their number."""
    if n < 1:
        raise ValueError(f"n: must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    strata: dict[tuple, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        strata[tuple(row[k] for k in STRATA)].append(index)
    keys = sorted(strata, key=str)
    counts = allocate([len(strata[k]) for k in keys], n, rng)
    chosen: list[int] = []
    for key, count in zip(keys, counts, strict=True):
        chosen.extend(rng.choice(strata[key], size=count, replace=False).tolist())
    return [rows[i] for i in sorted(chosen)]


def blank_for_second_coder(row: dict[str, Any]) -> dict[str, Any]:
    """The interchange row with only what identifies the episode and its sources kept."""
    return {k: (row[k] if k in KEPT else "") for k in row}
