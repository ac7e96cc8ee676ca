import numpy as np
import pandas as pd
import pytest

from forecasting.domain.cells import CellsError, aggregate, empty_cells
from forecasting.domain.codebook import UnknownCodeError


def _episodes(**columns):
    base = {"trigger_id": ["t1"] * 4, "partner": ["ISR", "ISR", "GBR", "ISR"],
            "intel_type": ["humint", "humint", "sigint", "humint"],
            "trigger_type": ["disclosure_incident"] * 4,
            "severity": [3, 3, 1, 3], "alignment": [1, 1, 0, 1], "level": [0, 2, 0, 2]}
    return pd.DataFrame(base | columns)


def test_identical_predictors_collapse_into_one_cell_with_counts_per_level(codebook):
    cells = aggregate(_episodes(), codebook)
    assert cells.n_cells == 2
    assert cells.n_episodes == 4
    frame = cells.to_frame().set_index("partner")
    assert frame.loc["ISR", [0, 1, 2, 3]].tolist() == [1, 0, 2, 0]
    assert frame.loc["GBR", [0, 1, 2, 3]].tolist() == [1, 0, 0, 0]


def test_a_coded_trigger_is_a_predictor_and_its_reactions_are_indexed(codebook):
    """Revision 3: the same predictors after two triggers are two cells; each cell knows its
    trigger and its (trigger, partner) reaction, and each reaction its trigger."""
    episodes = _episodes(trigger_id=["t1", "t2", "t1", "t2"], trigger_date=[
        "2017-05-15", "2020-01-01", "2017-05-15", "2020-01-01"])
    cells = aggregate(episodes, codebook)
    assert cells.n_cells == 3  # ISR humint after t1, after t2 (two episodes); GBR after t1
    assert cells.coords["trigger"] == ["t1", "t2"]
    assert cells.coords["reaction"] == ["t1:GBR", "t1:ISR", "t2:ISR"]
    frame = cells.to_frame()
    for i in range(cells.n_cells):
        label = cells.coords["reaction"][cells.reaction_idx[i]]
        assert label == f"{frame.trigger_id[i]}:{frame.partner[i]}"
        assert cells.coords["trigger"][cells.event_idx[i]] == frame.trigger_id[i]
    assert [cells.coords["trigger"][e] for e in cells.reaction_event] == ["t1", "t1", "t2"]
    assert cells.trigger_years.tolist() == [2017, 2020]
    assert cells.observed_partners.sum() == 2


def test_counts_sum_to_the_number_of_episodes(codebook, seed_like_data):
    cells = aggregate(seed_like_data[0], codebook)
    assert cells.counts.sum() == cells.n_episodes == len(seed_like_data[0])
    assert cells.counts.shape == (cells.n_cells, 4)


def test_coords_cover_the_whole_vocabulary_not_just_the_data(codebook):
    cells = aggregate(_episodes(), codebook)
    assert cells.coords["partner"] == list(codebook.partner_codes)
    assert cells.coords["intel_type"] == list(codebook.intel_type_codes)
    assert cells.coords["trigger_type"] == list(codebook.trigger_type_codes)
    assert cells.coords["bloc"] == list(codebook.bloc_codes)
    assert cells.coords["cutpoint"] == ["0|1", "1|2", "2|3"]
    assert cells.coords["level"] == [0, 1, 2, 3]
    assert len(cells.partner_bloc) == len(codebook.partner_codes)


def test_index_arrays_point_at_the_right_codes(codebook):
    cells = aggregate(_episodes(), codebook)
    frame = cells.to_frame()
    for i in range(cells.n_cells):
        partner = frame.partner[i]
        assert cells.coords["bloc"][cells.bloc_idx[i]] == codebook.bloc_of(partner)
        assert cells.coords["bloc"][cells.partner_bloc[cells.partner_idx[i]]] == \
            codebook.bloc_of(partner)


def test_fingerprint_ignores_row_order_but_not_content(codebook):
    episodes = _episodes()
    a = aggregate(episodes, codebook)
    b = aggregate(episodes.iloc[::-1].reset_index(drop=True), codebook)
    c = aggregate(episodes.assign(level=[0, 2, 0, 3]), codebook)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint


def _dated(dates):
    """The episodes of two triggers, t1 (three episodes) then t2, on `dates`."""
    return _episodes(trigger_id=["t1", "t1", "t2", "t1"], trigger_date=dates)


def test_a_correction_of_trigger_dates_alone_changes_the_fingerprint(codebook):
    """The arrival model stored with a fit dates each trigger by its earliest episode: moving
    that date must identify other data (another version, a refit), nothing else changing."""
    coded = aggregate(_dated(["2017-05-15", "2017-05-15", "2020-01-01", "2017-05-15"]), codebook)
    moved = aggregate(_dated(["2017-06-15", "2017-06-15", "2020-01-01", "2017-06-15"]), codebook)
    first_episode = aggregate(_dated(["2017-05-10", "2017-05-15", "2020-01-01", "2017-05-15"]),
                              codebook)
    assert len({coded.fingerprint, moved.fingerprint, first_episode.fingerprint}) == 3
    assert moved.to_frame().equals(coded.to_frame())  # the counts did not change
    assert moved.trigger_years.tolist() == coded.trigger_years.tolist() == [2017, 2020]
    # a later date on one of t1's episodes: its earliest, so everything fitted, is unchanged
    later = aggregate(_dated(["2017-05-15", "2017-05-20", "2020-01-01", "2017-05-15"]), codebook)
    assert later.fingerprint == coded.fingerprint


def test_identical_data_keeps_its_fingerprint_however_its_dates_are_written(codebook):
    """As read from a CSV file (text), from the store (timestamps) or as dates: one fit."""
    text = _dated(["2017-05-15", "2017-05-15", "2020-01-01", "2017-05-15"])
    as_read = [aggregate(text, codebook),
               aggregate(text.iloc[::-1].reset_index(drop=True), codebook),
               aggregate(text.assign(trigger_date=pd.to_datetime(text["trigger_date"])),
                         codebook),
               aggregate(text.assign(trigger_date=pd.to_datetime(text["trigger_date"]).dt.date),
                         codebook),
               aggregate(text.to_dict("records"), codebook)]
    assert len({cells.fingerprint for cells in as_read}) == 1
    # undated episodes (a test frame, a simulation): other data, in any order the same
    undated = aggregate(text.drop(columns="trigger_date"), codebook)
    assert undated.fingerprint not in {cells.fingerprint for cells in as_read}
    assert undated.fingerprint == aggregate(
        text.drop(columns="trigger_date").iloc[::-1].reset_index(drop=True), codebook).fingerprint


def test_a_trigger_is_dated_by_its_earliest_episode_whatever_the_row_order(codebook):
    dates = ["2019-12-30", "2020-01-02", "2020-01-01", "2021-03-01"]
    for order in (slice(None), slice(None, None, -1)):
        cells = aggregate(_dated(dates).iloc[order].reset_index(drop=True), codebook)
        assert cells.trigger_years.tolist() == [2019, 2020]


@pytest.mark.parametrize("column,value", [("partner", "XXX"), ("intel_type", "gossip"),
                                          ("trigger_type", "earthquake")])
def test_a_code_not_in_the_codebook_is_an_error_naming_the_field(codebook, column, value):
    episodes = _episodes(**{column: [value] * 4})
    with pytest.raises(UnknownCodeError, match=f"{column}: unknown code '{value}'"):
        aggregate(episodes, codebook)


@pytest.mark.parametrize("column", ["severity", "alignment", "level"])
def test_ordinal_values_outside_0_to_3_are_an_error(codebook, column):
    with pytest.raises(CellsError, match=f"{column}: value 7"):
        aggregate(_episodes(**{column: [0, 1, 7, 2]}), codebook)


def test_missing_columns_are_an_error(codebook):
    with pytest.raises(CellsError, match="lack columns.*severity"):
        aggregate(_episodes().drop(columns="severity"), codebook)
    with pytest.raises(CellsError, match=r"lack columns \['trigger_id'\]"):
        aggregate(_episodes().drop(columns="trigger_id"), codebook)


def test_episodes_per_group_counts_unseen_groups_as_zero(codebook):
    per_group = aggregate(_episodes(), codebook).episodes_per_group()
    assert per_group["partner"].sum() == 4
    assert per_group["partner"][list(codebook.partner_codes).index("ISR")] == 3
    assert (per_group["partner"] == 0).sum() == len(codebook.partner_codes) - 2
    assert per_group["partner_type"].shape == (len(codebook.partner_codes)
                                               * len(codebook.intel_type_codes),)


def test_empty_cells_have_no_episodes(codebook):
    cells = empty_cells(codebook)
    assert cells.n_episodes == 0
    assert np.all(cells.counts == 0)


def test_aggregates_a_list_of_dicts_too(codebook):
    rows = _episodes().to_dict("records")
    assert aggregate(rows, codebook).fingerprint == aggregate(_episodes(), codebook).fingerprint
