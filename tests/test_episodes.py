import datetime as dt

import pytest
from helpers import episode_row

from forecasting.domain.episodes import EpisodeValidationError, validate_episode, validate_episodes

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
        ("trigger_date", "15/05/2017", r"trigger_date: Input should be a valid date"),
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
