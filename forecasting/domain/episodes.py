"""Validate coded episodes against the codebook (pure: no files, no database).

Every bad row is reported, each with its line number and field, so that a coder can
fix a whole file in one pass; one bad row rejects the whole batch. Types are strict
(ASCII digits, ISO dates as text, no control characters), and free text is capped by the
request limits the caller passes in (forecasting.settings.RequestLimits).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from forecasting.domain.codebook import Codebook, UnknownCodeError
from forecasting.settings import RequestLimits

REQUIRED_FIELDS = (
    "trigger_id", "trigger_type", "trigger_date", "severity", "alignment", "partner",
    "intel_type", "level", "sources", "coder", "confidence",
)
OPTIONAL_FIELDS = ("trigger_description", "coded_at", "notes")
ALL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
NATURAL_KEY = ("trigger_id", "partner", "intel_type")
SOURCE_SEPARATOR = " | "
# A "|" is the separator only with whitespace on each side; any other "|" is refused, never
# silently taken as a split (a source cannot contain "|": the interchange joins them by it).
_SEPARATOR = re.compile(r"\s\|\s")
_STRAY_BAR = re.compile(r"(?<!\s)\||\|(?!\s)")
# The plausible range of dates: intelligence sharing as coded here starts with the post-war
# UKUSA arrangements (the seed data's earliest trigger is 1985); anything earlier is a typo
# or a number read as a date.
EARLIEST_DATE = dt.date(1945, 1, 1)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
FREE_TEXT = ("trigger_description", "notes")
# Line breaks and tabs are allowed in free text only; every other control character (Unicode
# category Cc: U+0000-001F and U+007F-009F; NUL among them, which PostgreSQL refuses) is
# refused everywhere. Unpaired surrogates, which UTF-8 cannot hold, never pass pydantic.
_FREE_TEXT_CONTROLS = frozenset("\t\n\r")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_FREE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Fields whose values the model and the codebook care about; a change to any of
# these (or to provenance) makes a new revision.
VALUE_FIELDS = tuple(f for f in ALL_FIELDS if f not in NATURAL_KEY)


@dataclass(frozen=True)
class RowError:
    line: int | None  # None: about the whole batch (its size)
    field: str
    message: str

    def __str__(self) -> str:
        where = "" if self.line is None else f"line {self.line}: "
        return f"{where}{self.field}: {self.message}"


class EpisodeValidationError(ValueError):
    """One or more rows are invalid; `errors` lists the first `max_listed` of them (in line
    order) and `unlisted` counts the rest, so that a bad batch never makes a huge answer."""

    def __init__(self, errors: list[RowError], max_listed: int = RequestLimits.max_errors_listed):
        ordered = sorted(errors, key=lambda e: (e.line or 0, e.field))
        self.errors = ordered[:max_listed]
        self.unlisted = len(ordered) - len(self.errors)
        lines = {e.line for e in ordered if e.line is not None}
        shown = "\n".join(f"  {e}" for e in self.errors)
        more = (f"\n  ... and {self.unlisted} more error(s) not listed"
                if self.unlisted else "")
        rows = f" in {len(lines)} row(s)" if lines else ""
        super().__init__(
            f"{len(ordered)} error(s){rows}; nothing was imported:\n{shown}{more}"
        )


def check_batch_size(count: int, limits: RequestLimits) -> None:
    """Refuse a batch of more rows than one import may hold, before validating any."""
    if count > limits.max_batch_rows:
        raise EpisodeValidationError([RowError(
            None, "episodes", f"{count} rows in one import; at most {limits.max_batch_rows} "
            "are accepted (setting FORECAST_LIMIT_MAX_BATCH_ROWS): split the batch")])


def _check_characters(value: str, free_text: bool) -> str:
    found = (_CONTROL_IN_FREE_TEXT if free_text else _CONTROL).search(value)
    if found is not None:
        char = found.group()
        allowed = ("; only tab and line breaks are allowed, in free text"
                   if free_text or char in _FREE_TEXT_CONTROLS else "")
        raise ValueError(f"contains the control character U+{ord(char):04X} at character "
                         f"{found.start() + 1}{allowed}")
    return value


def check_free_text(value: str) -> str:
    """Refuse a control character other than tab and line breaks (the rule of free text)."""
    return _check_characters(value, free_text=True)


def _ordinal_int(value: Any) -> Any:
    """Accept 2, "2", " 2 "; refuse booleans, fractions and words with a clear message."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number 0-3, not a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"must be a whole number 0-3, got {value}")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not _WHOLE_NUMBER.fullmatch(text):  # ASCII digits only: not "２", not "²"
            raise ValueError(f"must be a whole number 0-3, got {value!r}")
        return int(text)
    return value


def _iso_date(value: Any) -> Any:
    """A date as ISO text (YYYY-MM-DD) or a date; never a number (0 is not 1970-01-01)."""
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        raise ValueError(f"must be a date written YYYY-MM-DD, got {value!r}")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"{value.strip()!r} is not a calendar date ({exc})") from None


def _split_sources(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text.replace("|", "").strip():
            return []  # nothing but separators: "at least one source is required"
        if _STRAY_BAR.search(_SEPARATOR.sub("  ", text)):
            raise ValueError("a '|' separates sources and needs a space on each side (' | '); "
                             "a source itself cannot contain '|'")
        return [part.strip() for part in _SEPARATOR.split(text) if part.strip()]
    if isinstance(value, list):
        for number, item in enumerate(value, start=1):
            if isinstance(item, str) and "|" in item:
                raise ValueError(f"source {number} contains '|', which separates sources in "
                                 "the interchange format; write it another way (e.g. '/')")
    return value


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Ordinal = Annotated[int, Field(ge=0, le=3), BeforeValidator(_ordinal_int)]
Code = Annotated[str, Field(min_length=1, max_length=64)]


class Episode(BaseModel):
    """One coded observation: a trigger, a partner, an intelligence type, what followed."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    trigger_id: Annotated[str, Field(min_length=1, max_length=120,
                                     pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    trigger_type: Code
    trigger_date: Annotated[dt.date, BeforeValidator(_iso_date)]
    severity: Ordinal
    alignment: Ordinal
    partner: Code
    intel_type: Code
    level: Ordinal
    sources: Annotated[list[Annotated[str, Field(min_length=1)]],
                       BeforeValidator(_split_sources), Field(min_length=1)]
    coder: Annotated[str, Field(min_length=1, max_length=120)]
    confidence: Code
    trigger_description: Annotated[str, BeforeValidator(lambda v: v or "")] = ""
    coded_at: Annotated[dt.date | None, BeforeValidator(_iso_date),
                        BeforeValidator(_blank_to_none)] = None
    notes: Annotated[str, BeforeValidator(lambda v: v or "")] = ""

    @field_validator("trigger_id", "trigger_type", "partner", "intel_type", "coder",
                     "confidence", "trigger_description", "notes")
    @classmethod
    def _plain_text(cls, value: str, info: ValidationInfo) -> str:
        free_text = info.field_name in FREE_TEXT
        _check_characters(value, free_text)
        if free_text:
            limit = _limits(info).max_text_chars
            if len(value) > limit:
                raise ValueError(f"{len(value)} characters; at most {limit} are accepted "
                                 "(setting FORECAST_LIMIT_MAX_TEXT_CHARS)")
        return value

    @field_validator("sources")
    @classmethod
    def _sources_within_limits(cls, value: list[str], info: ValidationInfo) -> list[str]:
        limits = _limits(info)
        if len(value) > limits.max_sources:
            raise ValueError(f"{len(value)} sources; at most {limits.max_sources} are accepted "
                             "(setting FORECAST_LIMIT_MAX_SOURCES)")
        for number, source in enumerate(value, start=1):
            try:
                _check_characters(source, free_text=False)
            except ValueError as exc:
                raise ValueError(f"source {number} {exc}") from None
            if len(source) > limits.max_source_chars:
                raise ValueError(f"source {number} has {len(source)} characters; at most "
                                 f"{limits.max_source_chars} are accepted "
                                 "(setting FORECAST_LIMIT_MAX_SOURCE_CHARS)")
        return value

    @field_validator("trigger_type", "partner", "intel_type", "confidence")
    @classmethod
    def _known_code(cls, value: str, info: ValidationInfo) -> str:
        codebook: Codebook | None = (info.context or {}).get("codebook")
        if codebook is not None:
            try:
                codebook.check(info.field_name, value)
            except UnknownCodeError as exc:
                raise ValueError(f"unknown code {value!r}; use one of {exc.allowed}") from None
        return value

    @field_validator("trigger_date", "coded_at")
    @classmethod
    def _plausible_date(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        today = (info.context or {}).get("today") or dt.date.today()
        if value is not None and value > today:
            raise ValueError(f"{value.isoformat()} is in the future (today is {today.isoformat()})")
        if value is not None and value < EARLIEST_DATE:
            raise ValueError(f"{value.isoformat()} is before {EARLIEST_DATE.isoformat()}, the "
                             "earliest date this service accepts")
        return value

    @model_validator(mode="after")
    def _coded_after_trigger(self) -> Episode:
        if self.coded_at is not None and self.coded_at < self.trigger_date:
            raise ValueError(
                f"coded_at {self.coded_at} is before trigger_date {self.trigger_date}"
            )
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.trigger_id, self.partner, self.intel_type)

    def to_row(self) -> dict[str, Any]:
        """The interchange form: plain strings and ints, sources joined by ' | '."""
        return {
            "trigger_id": self.trigger_id,
            "trigger_type": self.trigger_type,
            "trigger_date": self.trigger_date.isoformat(),
            "severity": self.severity,
            "alignment": self.alignment,
            "partner": self.partner,
            "intel_type": self.intel_type,
            "level": self.level,
            "sources": SOURCE_SEPARATOR.join(self.sources),
            "coder": self.coder,
            "confidence": self.confidence,
            "trigger_description": self.trigger_description,
            "coded_at": self.coded_at.isoformat() if self.coded_at else "",
            "notes": self.notes,
        }


def _limits(info: ValidationInfo) -> RequestLimits:
    return (info.context or {}).get("limits") or RequestLimits()


def _field_of(error: dict) -> str:
    loc = error.get("loc") or ()
    return str(loc[0]) if loc else "row"


def _message_of(error: dict) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "too_short" and _field_of(error) == "sources":
        return "at least one public source reference is required (separate several with ' | ')"
    if error["type"] in ("less_than_equal", "greater_than_equal", "int_parsing"):
        return f"must be a whole number 0-3 (got {error.get('input')!r})"
    if error["type"] == "extra_forbidden":
        return f"unknown column; allowed columns are {list(ALL_FIELDS)}"
    if "input" in error and error["type"] not in ("value_error",):
        return f"{message} (got {error['input']!r})"
    return message


def validate_episode(row: dict[str, Any], codebook: Codebook, today: dt.date | None = None,
                     line: int = 1, limits: RequestLimits | None = None) -> Episode:
    """Validate one row; raise EpisodeValidationError naming each bad field."""
    return validate_episodes([(line, row)], codebook, today, limits)[0]


def validate_episodes(rows: Iterable[tuple[int, dict[str, Any]]], codebook: Codebook,
                      today: dt.date | None = None, limits: RequestLimits | None = None
                      ) -> list[Episode]:
    """Validate every row (line number, mapping); all or nothing.

    Raises EpisodeValidationError listing the bad rows and fields (at most
    `limits.max_errors_listed`, with a count of the rest), including keys repeated inside
    the batch. `limits` (the settings' request limits; their defaults when None) caps free
    text; the batch size is the caller's to check (`check_batch_size`), as trusted set-up
    paths import more.
    """
    limits = limits or RequestLimits()
    episodes, errors = collect_episodes(rows, codebook, today, limits)
    if errors:
        raise EpisodeValidationError(errors, limits.max_errors_listed)
    return episodes


def collect_episodes(rows: Iterable[tuple[int, dict[str, Any]]], codebook: Codebook,
                     today: dt.date | None, limits: RequestLimits
                     ) -> tuple[list[Episode], list[RowError]]:
    """The valid episodes and every error (all of them, for callers that add their own)."""
    context = {"codebook": codebook, "today": today or dt.date.today(), "limits": limits}
    episodes: list[Episode] = []
    errors: list[RowError] = []
    first_line_of: dict[tuple[str, str, str], int] = {}
    for line, row in rows:
        try:
            episode = Episode.model_validate(row, context=context)
        except ValidationError as exc:
            errors.extend(RowError(line, _field_of(e), _message_of(e)) for e in exc.errors())
            continue
        if episode.key in first_line_of:
            errors.append(RowError(
                line, "trigger_id/partner/intel_type",
                f"duplicate key {episode.key} (first on line {first_line_of[episode.key]})",
            ))
            continue
        first_line_of[episode.key] = line
        episodes.append(episode)
    return episodes, errors
