"""The prior set the next fit uses: which one is active, checking one, submitting a new one.

`forecast priors show|validate|check|set` and `GET|PUT /v1/priors`, `POST /v1/priors/check`
call these functions, so that both faces validate the same way (every problem at once),
answer the same prior check, store and audit the same rows, and queue the same refit.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecasting.domain.codebook import Codebook
from forecasting.model.priors import (
    PriorConfigError,
    PriorProblem,
    PriorSet,
    load_priors,
    prior_file_meta,
)
from forecasting.settings import Settings
from forecasting.store import Database

if TYPE_CHECKING:  # the queue (huey) is only needed by the caller that made the service
    from forecasting.refits import RefitService

HISTORY_SHOWN = 20
# Prior draws of a check (both faces: the same draws and seed give the same answer). About
# 0.3 s of CPU on the vocabulary; forecasting.model.prior_predictive.MAX_DRAWS bounds a caller.
CHECK_DRAWS = 1000


class StoredPriorsError(PriorConfigError):
    """The active prior set was stored before today's checks and fails them (issue 15: sets
    such as a scale of 1e308 were accepted, and every refit failed on them)."""


def active_priors(database: Database, settings: Settings) -> tuple[PriorSet, str]:
    """The newest prior set submitted (CLI or API), else the shipped default file.

    Raises StoredPriorsError, listing its problems and what to do, when the newest stored
    set fails validation: a fit must not run on it, nor silently on other priors.
    """
    latest = database.priors.latest()
    if latest is None:
        return load_priors(settings.default_priors_path), str(settings.default_priors_path)
    source = f"prior set #{latest['id']}"
    try:
        return PriorSet.from_dict(latest["priors"]), source
    except PriorConfigError as exc:
        raise StoredPriorsError([PriorProblem(
            "priors", f"the active {source} was stored before priors were checked as they are "
                      f"now and is not usable; submit a usable set (forecast priors set FILE, "
                      f"PUT /v1/priors)"), *exc.problems]) from None


def describe_priors(database: Database, settings: Settings) -> dict[str, Any]:
    """The active set with its source and hash, and the newest submissions (without bodies).

    An active set stored before today's checks that fails them is shown as stored, with its
    `problems` (field and message), so that an operator sees why refits fail.
    """
    try:
        priors, source = active_priors(database, settings)
        document = {"source": source, "content_hash": priors.content_hash,
                    "priors": priors.to_dict()}
    except StoredPriorsError as exc:
        latest = database.priors.latest()
        document = {"source": f"prior set #{latest['id']}",
                    "content_hash": latest["content_hash"], "priors": latest["priors"],
                    "problems": exc.errors}
    return {**document, "history": [{k: v for k, v in r.items()
                                     if k not in ("priors", "statements")}
                                    for r in database.priors.history(limit=HISTORY_SHOWN)]}


def read_priors_file(path: Path | str) -> dict[str, Any]:
    """A priors TOML file as a plain mapping, not yet validated (`submit_priors` does that)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PriorConfigError(f"priors are not valid TOML: {exc}") from None


def validate_priors(priors: Mapping[str, Any] | PriorSet) -> PriorSet:
    """A whole prior set checked against the model and the supported families; nothing is
    stored. Raises PriorConfigError listing every problem (`.errors`: field and message)."""
    return priors if isinstance(priors, PriorSet) else PriorSet.from_dict(priors)


def check_priors(codebook: Codebook, priors: Mapping[str, Any] | PriorSet,
                 draws: int = CHECK_DRAWS, keep_samples: bool = False) -> dict[str, Any]:
    """The prior check of a candidate set: validated, then its prior predictive on the
    vocabulary (numpy draws, no PyMC graph, every number finite); nothing is stored.

    Returns what `POST /v1/priors/check` answers: `content_hash` and `prior_predictive` (the
    summary; its raw `samples` only with `keep_samples`, for plots). Raises PriorConfigError
    for an invalid set, or naming the parameters whose draws make a number non-finite;
    ValueError for draws outside 10..MAX_DRAWS.
    """
    from forecasting.model.prior_predictive import prior_predictive

    validated = validate_priors(priors)
    summary = prior_predictive(codebook, validated, draws=draws)
    if not keep_samples:
        summary.pop("samples")
    return {"content_hash": validated.content_hash, "prior_predictive": summary}


@dataclass(frozen=True)
class PriorSubmission:
    record: dict[str, Any]  # the stored prior set now active
    changed: bool  # False: these priors were already the active set; nothing was stored
    refit: dict[str, Any] | None  # the refit job queued (or coalesced into) for the change
    document: dict[str, Any]  # the answer: `describe_priors` after the change, and `refit`


def submit_priors(database: Database, settings: Settings, refits: RefitService,
                  priors: Mapping[str, Any], actor: str, note: str = "",
                  statements: Mapping[str, Any] | None = None) -> PriorSubmission:
    """Validate a whole prior set, store and audit it, and queue a refit if it changed.

    `note` (why) is required. The statements behind the set (an elicited file's [meta]
    table, or `statements`) are stored with it and shown by the history (issue 21).
    Raises PriorConfigError listing every problem; nothing is stored then.
    """
    validated = validate_priors(priors)
    if not isinstance(note, str) or not note.strip():
        raise PriorConfigError(PriorProblem(
            "note", "required: say why these priors should be used (kept in the history and "
                    "the audit log)"))
    meta = statements if statements is not None else prior_file_meta(priors)
    before = database.priors.latest()
    record = database.priors.save(validated.to_dict(), validated.content_hash, actor,
                                  note.strip(), dict(meta) if meta else None)
    changed = before is None or record["id"] != before["id"]
    refit = refits.request("priors", actor) if changed else None
    return PriorSubmission(record=record, changed=changed, refit=refit,
                           document={**describe_priors(database, settings), "refit": refit})
