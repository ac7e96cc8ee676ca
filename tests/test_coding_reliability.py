"""Inter-coder reliability (forecasting.coding.reliability, .agreement, .fields): Krippendorff's
own worked examples, bootstrap intervals, pairs, tables, and the floor a refit's gate checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasting.coding.agreement import differing_fields, floor_check, status
from forecasting.coding.fields import CODED_FIELDS, parse_floor
from forecasting.coding.reliability import (
    alpha_of,
    bootstrap_interval,
    coincidences,
    reading,
    reliability,
    value_counts,
)

NA = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1-5, missing values; published alphas: nominal 0.743, ordinal 0.815,
# interval 0.849.
KRIPPENDORFF_C = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, NA, NA, NA],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NA, 3],
    "C": [NA, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NA],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NA],
}
# Section A of the same paper: two observers, ten units, binary values; alpha 0.095.
KRIPPENDORFF_A = {"A": [0, 1, 0, 0, 0, 0, 0, 0, 1, 0], "B": [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]}


def _episode(**values):
    base = {"level": 0, "severity": 2, "alignment": 1, "trigger_type": "disclosure_incident",
            "confidence": "medium", "trigger_date": "2017-05-15"}
    return base | values


def _codings(table: dict[str, list], field: str, encode=lambda v: v) -> dict:
    """episode -> coder -> values, from a coders x units table (None: not coded)."""
    units = len(next(iter(table.values())))
    return {u: {coder: _episode(**{field: encode(values[u])})
                for coder, values in table.items() if values[u] is not None}
            for u in range(units)}


def test_krippendorffs_worked_example_gives_the_published_nominal_alpha_from_codings():
    codings = _codings(KRIPPENDORFF_C, "trigger_type", lambda v: f"type-{v}")
    report = reliability(codings, samples=200)
    assert report["fields"]["trigger_type"]["alpha"] == pytest.approx(0.743, abs=5e-4)
    # unit 12 (coded by B alone) is not pairable: 11 episodes, 40 pairable values
    assert report["fields"]["trigger_type"]["episodes"] == 11
    assert report["fields"]["trigger_type"]["pairable_values"] == 40


def test_krippendorffs_worked_example_gives_the_published_ordinal_alpha():
    counts = np.array([[row.count(v) for v in range(1, 6)] for row in
                       ([table[u] for table in KRIPPENDORFF_C.values()] for u in range(12))],
                      dtype=float)
    assert alpha_of(counts, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert alpha_of(counts, "nominal") == pytest.approx(0.743, abs=5e-4)


def test_the_binary_example_gives_the_published_alpha_on_an_ordinal_field():
    report = reliability(_codings(KRIPPENDORFF_A, "level"), samples=200)
    level = report["fields"]["level"]
    assert level["measure"] == "ordinal" and level["alpha"] == pytest.approx(0.095, abs=5e-4)
    assert level["reading"] == "unreliable"
    assert level["agreement"] == pytest.approx(0.6)  # 6 of 10 units agree


def test_the_bootstrap_interval_brackets_alpha_and_narrows_with_more_episodes():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 4, 400)
    noisy = np.where(rng.random(400) < 0.2, rng.integers(0, 4, 400), true)
    codings = {u: {"a": _episode(level=int(true[u])), "b": _episode(level=int(noisy[u]))}
               for u in range(400)}
    small = reliability(dict(list(codings.items())[:40]), samples=300)["fields"]["level"]
    large = reliability(codings, samples=300)["fields"]["level"]
    for entry in (small, large):
        assert entry["ci95"][0] < entry["alpha"] < entry["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < small["ci95"][1] - small["ci95"][0]


def test_the_interval_is_the_same_for_the_same_seed():
    counts, _ = value_counts("level", _codings(KRIPPENDORFF_A, "level"))
    assert bootstrap_interval(counts, "ordinal", 200, seed=1) == \
        bootstrap_interval(counts, "ordinal", 200, seed=1)


def test_alpha_is_not_measured_without_variation_or_without_double_coding():
    agreeing = {u: {"a": _episode(), "b": _episode()} for u in range(5)}
    report = reliability(agreeing, samples=100)
    assert report["fields"]["severity"]["alpha"] is None
    assert report["fields"]["severity"]["reading"] == "not measured"
    assert report["fields"]["severity"]["agreement"] == 1.0
    single = reliability({1: {"a": _episode()}}, samples=100)
    assert single["episodes"] == 0 and single["fields"]["level"]["alpha"] is None


def test_each_coder_pair_has_its_own_alpha_and_confusion_table():
    codings = {}
    for u in range(30):
        level = u % 4
        codings[u] = {"ann": _episode(level=level), "bob": _episode(level=level),
                      "cy": _episode(level=(level + 1) % 4 if u % 3 == 0 else level)}
    report = reliability(codings, samples=100)
    pairs = {tuple(p["coders"]): p for p in report["pairs"]}
    assert set(pairs) == {("ann", "bob"), ("ann", "cy"), ("bob", "cy")}
    assert pairs[("ann", "bob")]["fields"]["level"]["alpha"] == pytest.approx(1.0)
    assert pairs[("ann", "cy")]["fields"]["level"]["alpha"] < 0.8
    table = pairs[("ann", "cy")]["fields"]["level"]["confusion"]
    assert table["rows"] == "ann" and table["columns"] == "cy" and table["values"] == [0, 1, 2, 3]
    counts = np.array(table["counts"])
    assert counts.sum() == 30 and np.trace(counts) == 20  # every third episode differs
    assert counts[0, 1] == 3  # ann 0 -> cy 1 on units 0, 12, 24


def test_the_coincidence_matrix_counts_each_value_as_often_as_it_was_given():
    counts, domain = value_counts("trigger_type",
                                  _codings(KRIPPENDORFF_C, "trigger_type", str))
    matrix = np.array(coincidences(counts, domain)["counts"])
    assert np.allclose(matrix, matrix.T)
    # the published marginals n_c of the example: 9, 13, 10, 5, 3 (n = 40)
    assert np.allclose(matrix.sum(axis=1), [9, 13, 10, 5, 3], atol=1e-3)
    assert matrix[0][0] == 7 and matrix[0][1] == pytest.approx(4 / 3, abs=1e-4)


@pytest.mark.parametrize(("alpha", "expected"), [(0.9, "reliable"), (0.8, "reliable"),
                                                 (0.7, "tentative"), (0.5, "unreliable"),
                                                 (None, "not measured")])
def test_an_alpha_reads_against_krippendorffs_bars(alpha, expected):
    assert reading(alpha) == expected


def test_disagreeing_codings_are_disputed_until_adjudicated_and_a_later_coding_reopens():
    import datetime as dt

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    later = t0 + dt.timedelta(days=1)
    codings = {"a": _episode(level=1), "b": _episode(level=2, confidence="high")}
    assert differing_fields(codings) == ["level", "confidence"]
    assert status({"a": _episode()}, {"a": t0}, None) == "single"
    assert status({"a": _episode(), "b": _episode()}, {"a": t0, "b": t0}, None) == "agreed"
    assert status(codings, {"a": t0, "b": t0}, None) == "disputed"
    assert status(codings, {"a": t0, "b": t0}, later) == "adjudicated"
    assert status(codings, {"a": t0, "b": later + dt.timedelta(1)}, later) == "disputed"


def _report(alpha, episodes=40):
    return {"episodes": episodes, "fields": {f: {"alpha": alpha, "ci95": [0.4, 0.7],
                                                 "episodes": episodes} for f in CODED_FIELDS}}


def test_a_floor_above_the_measured_alpha_fails_naming_the_field_and_its_alpha():
    reasons, notes = floor_check(_report(0.6), {"level": 0.8, "severity": 0.5})
    assert len(reasons) == 1 and notes == []
    assert reasons[0].startswith("coding level: Krippendorff's alpha 0.600")
    assert "needed >= 0.8" in reasons[0] and "FORECAST_CODING_ALPHA_FLOOR" in reasons[0]
    assert "40 double-coded episodes" in reasons[0]


def test_no_double_coding_at_all_is_not_measured_and_does_not_fail():
    reasons, notes = floor_check(_report(None, episodes=0), {"level": 0.8})
    assert reasons == [] and "not measured" in notes[0]
    reasons, notes = floor_check(_report(None), {"level": 0.8})
    assert reasons == [] and "not measured" in notes[0]
    assert floor_check(_report(0.1), {}) == ([], [])


def test_the_floor_setting_is_parsed_and_a_bad_entry_names_the_setting():
    assert parse_floor("level=0.8, severity=0.667") == {"level": 0.8, "severity": 0.667}
    assert parse_floor("") == {}
    with pytest.raises(ValueError, match="FORECAST_CODING_ALPHA_FLOOR.*'levle=0.8'.*level"):
        parse_floor("levle=0.8")
    with pytest.raises(ValueError, match="'high' in 'level=high' is not a number"):
        parse_floor("level=high")
    with pytest.raises(ValueError, match="between -1 and 1"):
        parse_floor("level=2")
    assert not math.isnan(parse_floor("level=-1")["level"])


def test_load_settings_reads_the_floor():
    from forecasting.settings import load_settings

    settings = load_settings({"FORECAST_CODING_ALPHA_FLOOR": "level=0.8"})
    assert dict(settings.coding_alpha_floor) == {"level": 0.8}
    with pytest.raises(ValueError, match="FORECAST_CODING_ALPHA_FLOOR"):
        load_settings({"FORECAST_CODING_ALPHA_FLOOR": "sources=0.8"})
