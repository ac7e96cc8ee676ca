import io
import json

import pytest
from helpers import csv_text, episode_row

from forecasting.domain.episodes import EpisodeValidationError
from forecasting.domain.interchange import (
    episodes_from_rows,
    format_of,
    parse_rows,
    read_episodes,
    write_rows,
)


def test_csv_and_json_lines_read_the_same_episodes(codebook, tmp_path):
    rows = [episode_row(), episode_row(intel_type="sigint", level=0)]
    (tmp_path / "a.csv").write_text(csv_text(rows))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert read_episodes(tmp_path / "a.csv", codebook) == read_episodes(tmp_path / "a.jsonl", codebook)


def test_json_lines_take_native_numbers(codebook):
    row = dict(episode_row(), severity=3, alignment=1, level=2)
    [episode] = episodes_from_rows(parse_rows(json.dumps(row), "jsonl"), codebook)
    assert episode.level == 2


def test_header_with_unknown_or_missing_columns_is_refused(codebook):
    text = csv_text([episode_row()]).replace("notes", "remarks").replace("coder,", "")
    with pytest.raises(EpisodeValidationError) as info:
        episodes_from_rows(parse_rows(text, "csv"), codebook)
    messages = {e.field: e.message for e in info.value.errors}
    assert messages["remarks"].startswith("unknown column")
    assert "header lacks it" in messages["coder"]


def test_broken_json_and_extra_csv_fields_are_reported_with_their_lines(codebook):
    text = json.dumps(episode_row()) + "\n{not json\n[1, 2]\n"
    with pytest.raises(EpisodeValidationError) as info:
        episodes_from_rows(parse_rows(text, "jsonl"), codebook)
    assert [(e.line, e.message.split(":")[0]) for e in info.value.errors] == [
        (2, "not valid JSON"), (3, "expected a JSON object, got list")]
    csv = csv_text([episode_row()]) + csv_text([episode_row(intel_type="cyber")]).splitlines()[1] + ",extra\n"
    with pytest.raises(EpisodeValidationError, match="line 3: row: 1 more field"):
        episodes_from_rows(parse_rows(csv, "csv"), codebook)


def test_line_numbers_count_the_header_and_blank_lines(codebook):
    text = csv_text([episode_row()]) + "\n" + csv_text([episode_row(partner="XXX")]).splitlines()[1]
    with pytest.raises(EpisodeValidationError, match="line 4: partner"):
        episodes_from_rows(parse_rows(text, "csv"), codebook)


def test_an_empty_file_is_an_error(codebook):
    with pytest.raises(EpisodeValidationError, match="the file is empty"):
        episodes_from_rows(parse_rows("", "csv"), codebook)


@pytest.mark.parametrize(("name", "fmt"), [("a.csv", "csv"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl")])
def test_format_follows_the_file_name(name, fmt):
    assert format_of(name) == fmt


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="cannot tell the format"):
        format_of("a.xlsx")
    with pytest.raises(ValueError, match="must be one of"):
        format_of("a.csv", "xml")


def test_free_text_survives_csv_and_json_lines_exactly(codebook, tmp_path):
    note = 'two lines,\n\t"quoted" | piped; ünïcödé 中文 🙂'
    row = episode_row(notes=note, trigger_description="a, b\r\nc")
    [episode] = episodes_from_rows([(2, row)], codebook)
    for fmt in ("csv", "jsonl"):
        text = io.StringIO(newline="")
        write_rows([episode.to_row()], text, fmt)
        [back] = episodes_from_rows(parse_rows(text.getvalue(), fmt), codebook)
        assert back == episode, fmt
        assert back.notes == note and back.trigger_description == "a, b\r\nc"


def test_a_bar_inside_a_csv_source_is_refused_not_split(codebook):
    text = csv_text([episode_row(sources="https://example.org/q?a=1|2 | Reuters")])
    with pytest.raises(EpisodeValidationError,
                       match=r"line 2: sources: a '\|' separates sources and needs a space"):
        episodes_from_rows(parse_rows(text, "csv"), codebook)
