"""The ledger's hash chain (pure): canonical JSON, each entry's SHA-256, and the check.

Every entry's hash covers its position (`seq`), its kind, the cell and model version it is
about, who wrote it and when, its payload (canonical JSON text, hashed as stored) and the hash
of the entry before it, so changing, removing or reordering any stored entry changes every
hash after it. The first entry chains to GENESIS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
# the columns an entry's hash covers, besides its own hash
HASHED_FIELDS = ("seq", "kind", "trigger_id", "partner", "intel_type", "model_version",
                 "refers_to", "actor", "recorded_at", "payload", "prev_hash")


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, UTF-8 as is, no NaN (strict JSON)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _timestamp(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        raise ValueError("recorded_at must be timezone-aware")
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the entry's HASHED_FIELDS as canonical JSON."""
    fields = {name: entry.get(name) for name in HASHED_FIELDS}
    fields["recorded_at"] = _timestamp(entry["recorded_at"])
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of `check_chain`: intact, or the first entry that breaks it and how."""

    entries: int
    head: str  # the hash of the last entry (GENESIS when empty): publish it to pin the chain
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "entries": self.entries, "head": self.head,
                "first_broken": None if self.intact else
                {"seq": self.broken_seq, "id": self.broken_id, "problem": self.problem}}


def check_chain(entries: Iterable[Mapping[str, Any]]) -> ChainCheck:
    """Recompute the chain over entries in storage order (by id); stops at the first break.

    A break is a position out of sequence (an entry removed or inserted), a `prev_hash` that
    is not the previous entry's hash, or a stored hash that the entry's fields no longer give
    (an entry edited in place).
    """
    previous, count = GENESIS, 0
    for count, entry in enumerate(entries, start=1):
        seq = entry.get("seq")
        problem = None
        if seq != count:
            problem = (f"entry at position {count} has seq {seq}: an entry was removed, "
                       "inserted or renumbered")
        elif entry.get("prev_hash") != previous:
            problem = (f"entry {seq} names {entry.get('prev_hash')!r} as the previous hash, "
                       f"but entry {count - 1} hashes to {previous!r}")
        elif entry.get("hash") != (recomputed := entry_hash(entry)):
            problem = (f"entry {seq} was changed after it was written: its fields hash to "
                       f"{recomputed}, not the stored {entry.get('hash')}")
        if problem:
            return ChainCheck(count - 1, previous, seq, entry.get("id"), problem)
        previous = recomputed
    return ChainCheck(count, previous)
