import datetime as dt

import pytest
from helpers import episode_row

from forecasting.domain.episodes import (
    EpisodeValidationError,
    check_batch_size,
    validate_episode,
    validate_episodes,
)
from forecasting.settings import RequestLimits

TODAY = dt.date(2026, 11, 29)


def test_a_valid_row_becomes_an_episode_with_typed_fields(codebook):
    episode = validate_episode(episode_row(), codebook, TODAY)
    assert episode.severity == 3 and episode.level == 1
    assert episode.trigger_date == dt.date(2017, 5, 15)
    assert episode.sources == ["The Washington Post, 2017-05-15", "The New York Times, 2017-05-16"]
    assert episode.key == ("2017-oval-office-disclosure", "ISR", "humint")


def test_optional_fields_may_be_blank(codebook):
    episode = validate_episode(episode_row(coded_at="", notes="", trigger_description=""),
                               codebook, TODAY)
    assert episode.coded_at is None and episode.notes == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("partner", "XXX", r"partner: unknown code 'XXX'; use one of \['GBR'"),
        ("intel_type", "gossip", r"intel_type: unknown code 'gossip'"),
        ("trigger_type", "coup", r"trigger_type: unknown code 'coup'"),
        ("confidence", "certain", r"confidence: unknown code 'certain'"),
        ("level", "4", r"level: must be a whole number 0-3 \(got 4\)"),
        ("level", "-1", r"level: must be a whole number 0-3"),
        ("level", "two", r"level: must be a whole number 0-3, got 'two'"),
        ("level", "1.5", r"level: must be a whole number 0-3, got '1.5'"),
        ("severity", "9", r"severity: must be a whole number 0-3"),
        ("alignment", "", r"alignment: must be a whole number 0-3"),
        ("trigger_date", "2099-01-01", r"trigger_date: 2099-01-01 is in the future"),
        ("trigger_date", "15/05/2017", r"trigger_date: must be a date written YYYY-MM-DD"),
        ("trigger_date", "2017-02-30", r"trigger_date: '2017-02-30' is not a calendar date"),
        ("trigger_date", "0001-01-01", r"trigger_date: 0001-01-01 is before 1945-01-01"),
        ("trigger_date", "２０１７-０５-１５", r"trigger_date: must be a date written YYYY-MM-DD"),
        ("level", "２", r"level: must be a whole number 0-3, got '２'"),
        ("severity", "²", r"severity: must be a whole number 0-3, got '²'"),
        ("notes", "a\x00b", r"notes: contains the control character U\+0000 at character 2"),
        ("trigger_description", "\x1b[31m", r"trigger_description: contains the control "
                                            r"character U\+001B"),
        ("coder", "ann\tbob", r"coder: contains the control character U\+0009 .*only tab and "
                               r"line breaks are allowed, in free text"),
        ("trigger_id", "t\x00", r"trigger_id: String should match pattern"),
        ("sources", "Reuters\x00", r"sources: source 1 contains the control character U\+0000"),
        ("sources", "https://example.org/a|b", r"sources: a '\|' separates sources and needs a "
                                               r"space on each side"),
        ("sources", "Reuters |", r"sources: a '\|' separates sources"),
        ("coded_at", "2030-01-01", r"coded_at: 2030-01-01 is in the future"),
        ("sources", "", r"sources: at least one public source reference is required"),
        ("sources", " | ", r"sources: at least one public source reference is required"),
        ("coder", "", r"coder: String should have at least 1 character"),
        ("trigger_id", "has space", r"trigger_id: String should match pattern"),
    ],
)
def test_each_bad_field_is_named_with_its_line(codebook, field, value, message):
    with pytest.raises(EpisodeValidationError, match=rf"line 7: {message}"):
        validate_episode(episode_row(**{field: value}), codebook, TODAY, line=7)


def test_coded_before_the_trigger_happened_is_refused(codebook):
    with pytest.raises(EpisodeValidationError, match="coded_at 2010-01-01 is before trigger_date"):
        validate_episode(episode_row(coded_at="2010-01-01"), codebook, TODAY)


def test_missing_required_field_and_unknown_field_are_errors(codebook):
    row = episode_row()
    del row["coder"]
    row["mood"] = "grim"
    with pytest.raises(EpisodeValidationError) as info:
        validate_episode(row, codebook, TODAY)
    fields = {e.field: e.message for e in info.value.errors}
    assert fields["coder"] == "is required"
    assert fields["mood"].startswith("unknown column")


def test_every_bad_row_is_listed_not_just_the_first(codebook):
    rows = [(2, episode_row()), (3, episode_row(partner="XXX", intel_type="sigint")),
            (4, episode_row(level="9", intel_type="cyber")),
            (5, episode_row(intel_type="geoint"))]
    with pytest.raises(EpisodeValidationError) as info:
        validate_episodes(rows, codebook, TODAY)
    assert [(e.line, e.field) for e in info.value.errors] == [(3, "partner"), (4, "level")]
    assert "2 error(s) in 2 row(s); nothing was imported" in str(info.value)


def test_a_key_repeated_in_one_batch_is_an_error_naming_both_lines(codebook):
    rows = [(2, episode_row()), (3, episode_row(level="2"))]
    with pytest.raises(EpisodeValidationError,
                       match=r"line 3: trigger_id/partner/intel_type: duplicate key .*first on line 2"):
        validate_episodes(rows, codebook, TODAY)


def test_booleans_are_not_levels(codebook):
    row = episode_row()
    row["level"] = True
    with pytest.raises(EpisodeValidationError, match="not a boolean"):
        validate_episode(row, codebook, TODAY)


def test_to_row_round_trips(codebook):
    episode = validate_episode(episode_row(), codebook, TODAY)
    assert validate_episode(episode.to_row(), codebook, TODAY) == episode


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("trigger_date", 0, r"trigger_date: must be a date written YYYY-MM-DD, got 0"),
        ("coded_at", 1700000000, r"coded_at: must be a date written YYYY-MM-DD"),
        ("trigger_date", "2017-05-15T00:00:00", r"trigger_date: must be a date written"),
        ("sources", ["The Post", "a|b"], r"sources: source 2 contains '\|', which separates "
                                         r"sources in the interchange format"),
        ("sources", ["ok", "\ud800"], r"sources: Input should be a valid string, unable to parse "
                                      r"raw data as a unicode string"),
    ],
)
def test_native_json_values_are_not_coerced(codebook, field, value, message):
    row = {**episode_row(), field: value}
    with pytest.raises(EpisodeValidationError, match=rf"line 1: {message}"):
        validate_episode(row, codebook, TODAY)


def test_free_text_keeps_tabs_and_line_breaks(codebook):
    episode = validate_episode(episode_row(notes="first\nsecond\r\n\tindented"), codebook, TODAY)
    assert episode.notes == "first\nsecond\r\n\tindented"


def test_free_text_and_sources_are_capped_by_the_limits_passed_in(codebook):
    limits = RequestLimits(max_text_chars=10, max_sources=2, max_source_chars=8)
    fine = episode_row(notes="x" * 10, trigger_description="", sources="Reuters | AP")
    assert validate_episode(fine, codebook, TODAY, limits=limits).notes == "x" * 10
    cases = {
        "notes": (dict(notes="x" * 11), r"notes: 11 characters; at most 10 are accepted "
                  r"\(setting FORECAST_LIMIT_MAX_TEXT_CHARS\)"),
        "trigger_description": (dict(trigger_description="y" * 11),
                                r"trigger_description: 11 characters; at most 10"),
        "count": (dict(sources="a | b | c"), r"sources: 3 sources; at most 2 are accepted"),
        "size": (dict(sources="Reuters | The Guardian"),
                 r"sources: source 2 has 12 characters; at most 8 are accepted"),
    }
    for overrides, message in cases.values():
        row = episode_row(**{"trigger_description": "", "sources": "Reuters", **overrides})
        with pytest.raises(EpisodeValidationError, match=message):
            validate_episode(row, codebook, TODAY, limits=limits)
    # without limits passed in, the documented defaults apply
    with pytest.raises(EpisodeValidationError, match="at most 4000 are accepted"):
        validate_episode(episode_row(notes="z" * 4001), codebook, TODAY)


def test_a_long_error_list_is_cut_to_the_limit_with_a_count_of_the_rest(codebook):
    rows = [(n, episode_row(level="9", trigger_id=f"t{n}")) for n in range(2, 32)]
    with pytest.raises(EpisodeValidationError) as info:
        validate_episodes(rows, codebook, TODAY, limits=RequestLimits(max_errors_listed=5))
    assert [e.line for e in info.value.errors] == [2, 3, 4, 5, 6]
    assert info.value.unlisted == 25
    assert "30 error(s) in 30 row(s)" in str(info.value)
    assert str(info.value).endswith("... and 25 more error(s) not listed")


def test_a_batch_beyond_the_row_limit_is_refused_whole(codebook):
    check_batch_size(3, RequestLimits(max_batch_rows=3))
    with pytest.raises(EpisodeValidationError,
                       match=r"^1 error\(s\); nothing was imported:\n  episodes: 4 rows in one "
                             r"import; at most 3 are accepted \(setting "
                             r"FORECAST_LIMIT_MAX_BATCH_ROWS\): split the batch$"):
        check_batch_size(4, RequestLimits(max_batch_rows=3))
