"""Coded episodes in and out: importing (always queueing a refit) and filtered listing.

`forecast import` and `POST /v1/episodes` (and `PUT /v1/episodes/...`) import through
`import_episodes`; `forecast episodes` and `GET /v1/episodes` list through `list_episodes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecasting.domain.codebook import Codebook
from forecasting.domain.episodes import check_batch_size
from forecasting.domain.interchange import episodes_from_rows, read_rows
from forecasting.services.ledger import resolve_after_import
from forecasting.settings import RequestLimits
from forecasting.store import Database, EpisodeFilter, ImportSummary

if TYPE_CHECKING:  # the queue (huey) is only needed by the caller that made the service
    from forecasting.refits import RefitService

Rows = Iterable[tuple[int, Any]]  # (line number, parsed row)
CODED_FILTERS = ("partner", "intel_type", "trigger_type")


def _untracked(rows):
    return rows


def _objects(rows: Rows) -> Iterable[tuple[int, Any]]:
    """A row that is not an object (a JSON number, a list) is a row error, not a crash."""
    for line, row in rows:
        yield line, row if isinstance(row, dict) else {"__json_error__": "must be a JSON object"}


def store_episodes(database: Database, codebook: Codebook, rows: Rows, *, actor: str,
                   source: str, track: Callable = _untracked,
                   write_progress: Callable | None = None,
                   limits: RequestLimits | None = None) -> ImportSummary:
    """Validate every row, then write them in one transaction (all or nothing).

    Raises EpisodeValidationError listing the bad rows and fields; nothing is written then.
    `track` wraps the rows (a progress bar over validation); `write_progress` is called
    with the number of rows written so far. No refit is queued: see `import_episodes`.
    `limits` caps free text and the errors listed (their defaults when None); the batch size
    is not capped here: set-up and benchmarks import files larger than one request may be.
    """
    episodes = episodes_from_rows(_objects(track(list(rows))), codebook, limits=limits)
    return database.episodes.import_episodes(
        episodes, actor=actor, codebook_version=codebook.version, source=source,
        progress=write_progress)


@dataclass(frozen=True)
class ImportOutcome:
    summary: ImportSummary
    refit: dict[str, Any] | None  # the refit job queued (or coalesced into); None if unchanged

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary.as_dict(), "refit": self.refit}


def import_episodes(database: Database, codebook: Codebook, refits: RefitService, rows: Rows,
                    *, actor: str, source: str, track: Callable = _untracked,
                    write_progress: Callable | None = None,
                    limits: RequestLimits | None = None) -> ImportOutcome:
    """Validate and write all or nothing; queue a (coalesced) refit if anything changed.

    A user's import (`forecast import`, POST and PUT /v1/episodes): a batch of more than
    `limits.max_batch_rows` rows is refused whole before any is validated. `limits` defaults
    to the settings the refit service was built with.
    """
    limits = limits or refits.settings.limits
    rows = list(rows)
    check_batch_size(len(rows), limits)
    summary = store_episodes(database, codebook, rows, actor=actor, source=source, track=track,
                             write_progress=write_progress, limits=limits)
    refit = refits.request("episodes", actor) if summary.changed else None
    if summary.changed:  # outcomes of registered triggers are scored now (issue 19)
        resolve_after_import(database)
    return ImportOutcome(summary=summary, refit=refit)


def import_file(database: Database, codebook: Codebook, refits: RefitService, path: Path | str,
                *, actor: str, fmt: str | None = None, track: Callable = _untracked,
                write_progress: Callable | None = None,
                limits: RequestLimits | None = None) -> ImportOutcome:
    """`import_episodes` of a CSV or JSON lines file (format from its name unless given)."""
    return import_episodes(database, codebook, refits, read_rows(path, fmt), actor=actor,
                           source=str(path), track=track, write_progress=write_progress,
                           limits=limits)


def check_filter(codebook: Codebook, where: EpisodeFilter) -> None:
    """Raise UnknownCodeError for a code the codebook does not know, naming the field."""
    for field in CODED_FILTERS:
        for value in getattr(where, field):
            codebook.check(field, value)


def list_episodes(database: Database, codebook: Codebook, where: EpisodeFilter, *,
                  limit: int, offset: int = 0) -> dict[str, Any]:
    """One page of episodes in trigger-date order, with the total the filter matches.

    An unknown code in the filter is an error (UnknownCodeError), never an empty page: a
    misspelt partner must not read as "no episodes".
    """
    check_filter(codebook, where)
    store = database.episodes
    return {"total": store.count(where), "limit": limit, "offset": offset,
            "episodes": store.list(where, limit=limit, offset=offset)}
