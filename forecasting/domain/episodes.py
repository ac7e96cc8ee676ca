"""Validate coded episodes against the codebook (pure: no files, no database).

Every bad row is reported, each with its line number and field, so that a coder can
fix a whole file in one pass; one bad row rejects the whole batch.
"""

from __future__ import annotations

import datetime as dt
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

REQUIRED_FIELDS = (
    "trigger_id", "trigger_type", "trigger_date", "severity", "alignment", "partner",
    "intel_type", "level", "sources", "coder", "confidence",
)
OPTIONAL_FIELDS = ("trigger_description", "coded_at", "notes")
ALL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
NATURAL_KEY = ("trigger_id", "partner", "intel_type")
SOURCE_SEPARATOR = " | "
# Fields whose values the model and the codebook care about; a change to any of
# these (or to provenance) makes a new revision.
VALUE_FIELDS = tuple(f for f in ALL_FIELDS if f not in NATURAL_KEY)


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


class EpisodeValidationError(ValueError):
    """One or more rows are invalid; `errors` lists every one of them."""

    def __init__(self, errors: list[RowError]):
        self.errors = sorted(errors, key=lambda e: (e.line, e.field))
        lines = sorted({e.line for e in self.errors})
        shown = "\n".join(f"  {e}" for e in self.errors[:200])
        more = f"\n  ... and {len(self.errors) - 200} more" if len(self.errors) > 200 else ""
        super().__init__(
            f"{len(self.errors)} error(s) in {len(lines)} row(s); nothing was imported:\n"
            f"{shown}{more}"
        )


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
        if not text.lstrip("-").isdigit():
            raise ValueError(f"must be a whole number 0-3, got {value!r}")
        return int(text)
    return value


def _split_sources(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
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
    trigger_date: dt.date
    severity: Ordinal
    alignment: Ordinal
    partner: Code
    intel_type: Code
    level: Ordinal
    sources: Annotated[list[Annotated[str, Field(min_length=1, max_length=1000)]],
                       BeforeValidator(_split_sources), Field(min_length=1)]
    coder: Annotated[str, Field(min_length=1, max_length=120)]
    confidence: Code
    trigger_description: Annotated[str, BeforeValidator(lambda v: v or "")] = ""
    coded_at: Annotated[dt.date | None, BeforeValidator(_blank_to_none)] = None
    notes: Annotated[str, BeforeValidator(lambda v: v or "")] = ""

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
    def _not_in_future(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        today = (info.context or {}).get("today") or dt.date.today()
        if value is not None and value > today:
            raise ValueError(f"{value.isoformat()} is in the future (today is {today.isoformat()})")
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
                     line: int = 1) -> Episode:
    """Validate one row; raise EpisodeValidationError naming each bad field."""
    return validate_episodes([(line, row)], codebook, today)[0]


def validate_episodes(rows: Iterable[tuple[int, dict[str, Any]]], codebook: Codebook,
                      today: dt.date | None = None) -> list[Episode]:
    """Validate every row (line number, mapping); all or nothing.

    Raises EpisodeValidationError listing every bad row and field, including keys
    repeated inside the batch.
    """
    context = {"codebook": codebook, "today": today or dt.date.today()}
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
    if errors:
        raise EpisodeValidationError(errors)
    return episodes
