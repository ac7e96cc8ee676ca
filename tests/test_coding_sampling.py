"""The sample for a second coder (forecasting.coding.sampling): stratified by partner, level
and confidence, proportional, reproducible, with the first coder's values blank."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from helpers import episode_row

from forecasting.coding.sampling import allocate, blank_for_second_coder, stratified_sample


def _rows():
    """100 episodes: GBR 60 (50 at level 0, 10 at level 2), ISR 30 at level 1, NZL 10 at 3."""
    spec = [("GBR", 0, 50), ("GBR", 2, 10), ("ISR", 1, 30), ("NZL", 3, 10)]
    rows = []
    for partner, level, count in spec:
        for i in range(count):
            rows.append(episode_row(partner=partner, level=level, trigger_id=f"t-{partner}-{i}"))
    return rows


def test_each_stratum_gets_a_share_proportional_to_its_size():
    sample = stratified_sample(_rows(), 20, seed=4)
    counts = Counter((r["partner"], r["level"]) for r in sample)
    assert counts == {("GBR", "0"): 10, ("GBR", "2"): 2, ("ISR", "1"): 6, ("NZL", "3"): 2}


def test_largest_remainders_complete_the_sample_and_small_strata_are_not_lost():
    # exact shares 3.5, 0.7, 2.1, 0.7: floors 3, 0, 2, 0; the two largest remainders (0.7)
    # take the last two places, so the two small strata get one each and the largest no more
    assert allocate([50, 10, 30, 10], 7, np.random.default_rng(0)) == [3, 1, 2, 1]
    taken = allocate([5, 1, 1, 1], 4, np.random.default_rng(0))
    assert sum(taken) == 4 and taken[0] >= 2


def test_the_same_seed_draws_the_same_sample_and_another_seed_another():
    rows = _rows()
    first = [r["trigger_id"] for r in stratified_sample(rows, 15, seed=1)]
    assert first == [r["trigger_id"] for r in stratified_sample(rows, 15, seed=1)]
    assert first != [r["trigger_id"] for r in stratified_sample(rows, 15, seed=2)]


def test_a_sample_as_large_as_the_data_is_all_of_it_and_zero_is_refused():
    rows = _rows()
    assert stratified_sample(rows, 500) == rows
    with pytest.raises(ValueError, match="n: must be at least 1"):
        stratified_sample(rows, 0)


def test_a_blank_row_keeps_what_identifies_the_episode_and_its_sources_only():
    row = episode_row(notes="first coder's note")
    blank = blank_for_second_coder(row)
    assert list(blank) == list(row)
    kept = {k for k, v in blank.items() if v != ""}
    assert kept == {"trigger_id", "partner", "intel_type", "sources", "trigger_description"}
    assert blank["level"] == blank["coder"] == blank["notes"] == blank["trigger_date"] == ""
