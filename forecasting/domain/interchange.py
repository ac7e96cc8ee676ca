"""The episode interchange format: CSV with a header row, or JSON lines with the same keys.

Both carry the same strings: `sources` is one text of references joined by " | " (a source
cannot contain "|": forecasting.domain.episodes refuses it), and JSON lines keep every
character as written (no ASCII escaping, no normalising), so an export reads back exactly.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from forecasting.domain.codebook import Codebook
from forecasting.domain.episodes import (
    ALL_FIELDS,
    REQUIRED_FIELDS,
    Episode,
    EpisodeValidationError,
    RowError,
    collect_episodes,
)
from forecasting.settings import RequestLimits

FORMATS = ("csv", "jsonl")


def format_of(path: Path | str, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise ValueError(f"Requested format {explicit!r} but it must be one of {FORMATS}")
        return explicit
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".txt", ""):
        return "csv"
    raise ValueError(f"{path}: cannot tell the format from {suffix!r}; use .csv or .jsonl")


def _check_header(columns: Iterable[str]) -> list[RowError]:
    columns = list(columns)
    errors = [RowError(1, c, "is required but the header lacks it")
              for c in REQUIRED_FIELDS if c not in columns]
    errors += [RowError(1, c, f"unknown column; allowed columns are {list(ALL_FIELDS)}")
               for c in columns if c not in ALL_FIELDS]
    seen = set()
    for c in columns:
        if c in seen:
            errors.append(RowError(1, c, "column appears twice in the header"))
        seen.add(c)
    return errors


def read_csv_rows(stream: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) for each data row; header problems raise at once."""
    reader = csv.DictReader(stream, restkey="__extra__")
    if reader.fieldnames is None:
        raise EpisodeValidationError([RowError(1, "header", "the file is empty")])
    if errors := _check_header(reader.fieldnames):
        raise EpisodeValidationError(errors)
    for row in reader:
        if not any((v or "").strip() for k, v in row.items() if k != "__extra__"):
            continue  # blank line
        # reader.line_num is the physical line where this record ended
        yield reader.line_num, row


def read_jsonl_rows(stream: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, {"__json_error__": f"not valid JSON: {exc.msg} at column {exc.colno}"}
            continue
        if not isinstance(row, dict):
            yield number, {"__json_error__": f"expected a JSON object, got {type(row).__name__}"}
            continue
        yield number, row


def read_rows(path: Path | str, fmt: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    path = Path(path)
    fmt = format_of(path, fmt)
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(read_csv_rows(stream) if fmt == "csv" else read_jsonl_rows(stream))


def parse_rows(text: str, fmt: str) -> list[tuple[int, dict[str, Any]]]:
    stream = io.StringIO(text)
    return list(read_csv_rows(stream) if fmt == "csv" else read_jsonl_rows(stream))


def _structural_error(line: int, row: dict[str, Any]) -> RowError | None:
    """Problems the row validator cannot see: broken JSON lines, too many CSV fields."""
    if "__json_error__" in row:
        return RowError(line, "row", row["__json_error__"])
    if "__extra__" in row:
        return RowError(line, "row", f"{len(row['__extra__'])} more field(s) than the header")
    return None


def episodes_from_rows(rows: Iterable[tuple[int, dict[str, Any]]], codebook: Codebook,
                       today: dt.date | None = None, limits: RequestLimits | None = None
                       ) -> list[Episode]:
    """Validate parsed rows, structural problems included; all or nothing.

    `limits` caps free text and the errors listed (forecasting.domain.episodes).
    """
    limits = limits or RequestLimits()
    clean, errors = [], []
    for line, row in rows:
        if (error := _structural_error(line, row)) is not None:
            errors.append(error)
        else:
            clean.append((line, row))
    episodes, row_errors = collect_episodes(clean, codebook, today, limits)
    errors.extend(row_errors)
    if errors:
        raise EpisodeValidationError(errors, limits.max_errors_listed)
    return episodes


def read_episodes(path: Path | str, codebook: Codebook, fmt: str | None = None,
                  today: dt.date | None = None, limits: RequestLimits | None = None
                  ) -> list[Episode]:
    """Read and validate a whole CSV or JSON lines file; raise listing the bad rows."""
    return episodes_from_rows(read_rows(path, fmt), codebook, today, limits)


def write_rows(rows: Iterable[dict[str, Any]], stream: TextIO, fmt: str) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(stream, fieldnames=list(ALL_FIELDS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    else:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
