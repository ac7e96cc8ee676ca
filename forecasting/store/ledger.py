"""The forecast ledger's storage: one append-only table, one hash chain (issue 19).

There is no update or delete here, and the migration (0006) makes the database refuse both
on `ledger_entries`; a correction is a new entry. Appends run one at a time
(`write_transaction` takes SQLite's write lock, `lock_key` a PostgreSQL advisory lock), so
every writer chains to the entry the previous writer committed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select

from forecasting.ledger.chain import GENESIS, canonical_json, entry_hash
from forecasting.store.schema import episode_revisions, episodes, ledger_entries
from forecasting.store.transactions import lock_key, write_transaction

KINDS = ("trigger", "forecast", "score", "correction")
LOCK = "forecast-ledger"


class Appender:
    """Appends entries within one write transaction, each chained to the one before."""

    def __init__(self, conn: Connection):
        self.conn = conn
        last = conn.execute(select(ledger_entries.c.seq, ledger_entries.c.hash)
                            .order_by(ledger_entries.c.seq.desc()).limit(1)).first()
        self.seq, self.head = (last.seq, last.hash) if last else (0, GENESIS)
        self.appended: list[dict[str, Any]] = []

    def registered(self, trigger_id: str) -> bool:
        """Whether the trigger has a registration entry (read within this transaction)."""
        return self.conn.execute(select(ledger_entries.c.seq).where(
            ledger_entries.c.trigger_id == trigger_id, ledger_entries.c.kind == "trigger")
        ).first() is not None

    def append(self, kind: str, trigger_id: str, actor: str, payload: dict, *,
               partner: str | None = None, intel_type: str | None = None,
               model_version: str | None = None, refers_to: int | None = None,
               recorded_at: dt.datetime | None = None) -> dict[str, Any]:
        if kind not in KINDS:
            raise ValueError(f"Requested kind '{kind}' but it must be one of {list(KINDS)}")
        entry = {"seq": self.seq + 1, "kind": kind, "trigger_id": trigger_id,
                 "partner": partner, "intel_type": intel_type, "model_version": model_version,
                 "refers_to": refers_to, "actor": actor,
                 "recorded_at": recorded_at or dt.datetime.now(dt.UTC),
                 "payload": canonical_json(payload), "prev_hash": self.head}
        entry["hash"] = entry_hash(entry)
        entry["id"] = self.conn.execute(insert(ledger_entries).values(**entry)
                                        .returning(ledger_entries.c.id)).scalar_one()
        self.seq, self.head = entry["seq"], entry["hash"]
        record = _record(entry)
        self.appended.append(record)
        return record


def _record(row: Any, payload: bool = True) -> dict[str, Any]:
    """An entry as the service reads it: its payload parsed (or None), its time in ISO 8601."""
    values = dict(row) if isinstance(row, dict) else dict(row._mapping)
    values["payload"] = json.loads(values["payload"]) if payload else None
    values["recorded_at"] = values["recorded_at"].astimezone(dt.UTC).isoformat()
    return values


class LedgerStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def appending(self) -> Iterator[Appender]:
        """One transaction holding the ledger's write lock: read, decide, append."""
        with write_transaction(self.engine) as conn:
            lock_key(conn, LOCK)
            yield Appender(conn)

    def entries(self, *, trigger_id: str | None = None, kinds: Iterable[str] = (),
                seqs: Iterable[int] = (), payloads: bool = True) -> list[dict[str, Any]]:
        """Entries in chain order, payloads parsed (left None without `payloads`: parsing
        them is most of the cost of reading a long ledger)."""
        query = select(ledger_entries).order_by(ledger_entries.c.seq)
        if trigger_id is not None:
            query = query.where(ledger_entries.c.trigger_id == trigger_id)
        if kinds := list(kinds):
            query = query.where(ledger_entries.c.kind.in_(kinds))
        if seqs := list(seqs):
            query = query.where(ledger_entries.c.seq.in_(seqs))
        with self.engine.connect() as conn:
            return [_record(row, payloads) for row in conn.execute(query)]

    def stored_rows(self) -> list[dict[str, Any]]:
        """Every entry exactly as stored, in storage order (by id), for `check_chain`."""
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(
                select(ledger_entries).order_by(ledger_entries.c.id))]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one()

    def outcomes(self, trigger_ids: Iterable[str]) -> dict[tuple[str, str, str], dict]:
        """The coded outcome of every cell of these triggers: its level now, the episode, its
        revision (number and revision row id) and when it was first coded."""
        trigger_ids = sorted(set(trigger_ids))
        if not trigger_ids:
            return {}
        query = (select(episodes.c.trigger_id, episodes.c.partner, episodes.c.intel_type,
                        episodes.c.level, episodes.c.id, episodes.c.revision,
                        episodes.c.created_at, episode_revisions.c.id.label("revision_id"))
                 .join(episode_revisions, and_(episode_revisions.c.episode_id == episodes.c.id,
                                               episode_revisions.c.revision
                                               == episodes.c.revision))
                 .where(episodes.c.trigger_id.in_(trigger_ids)))
        with self.engine.connect() as conn:
            return {(r.trigger_id, r.partner, r.intel_type): {
                "level": int(r.level), "episode_id": r.id, "revision": r.revision,
                "revision_id": r.revision_id, "coded_at": r.created_at.isoformat()}
                for r in conn.execute(query)}

    def referenced_versions(self) -> dict[str, list[str]]:
        """Model versions ledger entries name, with how many entries name each."""
        query = (select(ledger_entries.c.model_version, func.count(), func.min(ledger_entries.c.seq))
                 .where(ledger_entries.c.model_version.is_not(None))
                 .group_by(ledger_entries.c.model_version))
        with self.engine.connect() as conn:
            return {version: [f"forecast ledger ({n} entries, the first {first})"]
                    for version, n, first in conn.execute(query)}


def ledger_references(settings, database, registry) -> dict[str, list[str]]:
    """A REFERENCE_PROVIDER (forecasting/services/models.py): a version a ledger entry names
    is never pruned, so that every frozen forecast can be traced to the posterior it came
    from."""
    return LedgerStore(database.engine).referenced_versions()
