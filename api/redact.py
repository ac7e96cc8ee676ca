"""What an anonymous (open) read may not show: who did what, where a worker runs, why a refit
broke. Token holders see these; everyone else gets the same document with them left out.

Token names are people or services; a worker is `host:pid`; a refit's error text can quote
paths and database URLs. None of them helps a reader of forecasts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ACTOR_KEYS = ("changed_by", "created_by", "requested_by", "promoted_by", "actor")
JOB_KEYS = ("worker", "detail")


def without(record: dict[str, Any], keys) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


def episode(record: dict[str, Any]) -> dict[str, Any]:
    """An episode with its history: the revisions without the token that made each."""
    if "history" not in record:
        return record
    return {**record, "history": [without(h, ACTOR_KEYS) for h in record["history"]]}


def job(record: dict[str, Any]) -> dict[str, Any]:
    """A refit job without who asked, which worker ran it and its error detail."""
    return without(record, ACTOR_KEYS + JOB_KEYS)


def priors(document: dict[str, Any]) -> dict[str, Any]:
    """The priors document without who submitted each set."""
    return {**document, "history": [without(h, ACTOR_KEYS) for h in document.get("history", [])]}


def source_name(source: str) -> str:
    """A prior set's source as shown to anyone: a file by its name, never its absolute path."""
    return f"default priors file {Path(source).name}" if os.path.isabs(source) else source
