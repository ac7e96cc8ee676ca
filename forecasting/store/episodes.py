"""Episodes in the database: idempotent, all-or-nothing imports with a revision history."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from forecasting.coding.agreement import status
from forecasting.domain.episodes import NATURAL_KEY, SOURCE_SEPARATOR, VALUE_FIELDS, Episode
from forecasting.store.codings import current_codings, record_codings
from forecasting.store.schema import adjudications, audit_log, episode_revisions, episodes
from forecasting.store.transactions import lock_key, retrying, write_transaction

# Rows fetched per query when matching keys of a large import against the table.
_KEY_CHUNK = 500


class NotDoubleCodedError(ValueError):
    """Adjudication of an episode that fewer than two coders have coded."""

    def __init__(self, key: tuple[str, str, str], coders: int):
        self.key = key
        self.field = "trigger_id/partner/intel_type"
        super().__init__(
            "episode trigger_id={!r}, partner={!r}, intel_type={!r} ".format(*key)
            + f"has {coders} coding(s): only an episode coded by two or more coders is "
            "adjudicated; revise a single-coded episode by importing it again")


class UnknownEpisodeError(LookupError):
    def __init__(self, key: tuple[str, str, str]):
        self.key = key
        super().__init__(
            "no episode with trigger_id={!r}, partner={!r}, intel_type={!r}".format(*key)
        )


@dataclass(frozen=True)
class ImportSummary:
    inserted: int
    revised: int
    unchanged: int
    audit_id: int | None
    revised_keys: tuple[tuple[str, str, str], ...] = ()
    # other coders' codings of existing episodes, new or changed (not revisions: issue 20)
    coded: int = 0
    coded_keys: tuple[tuple[str, str, str], ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.revised or self.coded)

    def as_dict(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "revised": self.revised, "unchanged": self.unchanged,
                "codings": self.coded, "audit_id": self.audit_id}


@dataclass(frozen=True)
class EpisodeFilter:
    partner: Sequence[str] = ()
    intel_type: Sequence[str] = ()
    trigger_type: Sequence[str] = ()
    trigger_id: Sequence[str] = ()
    level: Sequence[int] = ()
    since: dt.date | None = None
    until: dt.date | None = None

    def clauses(self) -> list:
        out = []
        for name in ("partner", "intel_type", "trigger_type", "trigger_id", "level"):
            values = getattr(self, name)
            if values:
                out.append(episodes.c[name].in_(list(values)))
        if self.since:
            out.append(episodes.c.trigger_date >= self.since)
        if self.until:
            out.append(episodes.c.trigger_date <= self.until)
        return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _values(episode: Episode) -> dict[str, Any]:
    """Column values of an episode as stored (sources joined, dates as dates)."""
    return {
        "trigger_id": episode.trigger_id,
        "partner": episode.partner,
        "intel_type": episode.intel_type,
        "trigger_type": episode.trigger_type,
        "trigger_date": episode.trigger_date,
        "severity": episode.severity,
        "alignment": episode.alignment,
        "level": episode.level,
        "sources": SOURCE_SEPARATOR.join(episode.sources),
        "coder": episode.coder,
        "confidence": episode.confidence,
        "trigger_description": episode.trigger_description,
        "coded_at": episode.coded_at,
        "notes": episode.notes,
    }


def _compare(current: dict, values: dict, revisions: list, unchanged: list,
             others: list) -> None:
    """File `values` as a revision of the stored `current` row, as unchanged, or (another
    coder's row: issue 20) as that coder's coding of the episode, never a revision."""
    if values["coder"] != current["coder"]:
        others.append((current, values))
        return
    changed = [f for f in VALUE_FIELDS if current[f] != values[f]]
    if changed:
        revisions.append((current, values, changed))
    else:
        unchanged.append(values)


def _revise(conn, current: dict, values: dict, changed: list[str], actor: str,
            now: dt.datetime, codebook_version: str, audit_id: int) -> int:
    """Write `values` over the stored `current` row as its next revision; its number."""
    number = current["revision"] + 1
    conn.execute(update(episodes).where(episodes.c.id == current["id"]).values(
        **values, revision=number, codebook_version=codebook_version, updated_at=now))
    conn.execute(insert(episode_revisions).values(
        episode_id=current["id"], revision=number, values=_jsonable(values),
        changed_fields={f: {"from": _jsonable({f: current[f]})[f],
                            "to": _jsonable({f: values[f]})[f]} for f in changed},
        changed_by=actor, changed_at=now, codebook_version=codebook_version,
        import_id=audit_id,
    ))
    return number


def _coding_of(conn, episode_id: int) -> dict[str, Any]:
    """An episode's coding status, every coder's current coding and its adjudications."""
    by_coder = current_codings(conn, [episode_id]).get(episode_id, {})
    decided = [dict(r._mapping) for r in conn.execute(
        select(adjudications).where(adjudications.c.episode_id == episode_id)
        .order_by(adjudications.c.id))]
    state = status({c: v["values"] for c, v in by_coder.items()},
                   {c: v["recorded_at"] for c, v in by_coder.items()},
                   decided[-1]["at"] if decided else None)
    return {"status": state,
            "codings": [{"coder": c, "recorded_at": v["recorded_at"].isoformat(),
                         "values": v["values"]} for c, v in sorted(by_coder.items())],
            "adjudications": [{"adjudicator": a["adjudicator"], "reason": a["reason"],
                               "revision": a["revision"], "at": a["at"].isoformat()}
                              for a in decided]}


def _insert_ignoring_conflicts(conn):
    """INSERT ... ON CONFLICT (natural key) DO NOTHING, in the connection's dialect."""
    dialect_insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(
        conn.dialect.name)
    if dialect_insert is None:
        raise NotImplementedError(f"episodes are stored in SQLite or PostgreSQL, not "
                                  f"{conn.dialect.name}")
    return dialect_insert(episodes).on_conflict_do_nothing(index_elements=list(NATURAL_KEY))


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()}


def _interchange_row(row) -> dict[str, Any]:
    mapping = row._mapping
    return {
        "trigger_id": mapping["trigger_id"],
        "trigger_type": mapping["trigger_type"],
        "trigger_date": mapping["trigger_date"].isoformat(),
        "severity": mapping["severity"],
        "alignment": mapping["alignment"],
        "partner": mapping["partner"],
        "intel_type": mapping["intel_type"],
        "level": mapping["level"],
        "sources": mapping["sources"],
        "coder": mapping["coder"],
        "confidence": mapping["confidence"],
        "trigger_description": mapping["trigger_description"],
        "coded_at": mapping["coded_at"].isoformat() if mapping["coded_at"] else "",
        "notes": mapping["notes"],
    }


class EpisodeStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # --- writes -------------------------------------------------------------------
    def import_episodes(self, batch: Sequence[Episode], actor: str, codebook_version: str,
                        source: str = "", progress=None) -> ImportSummary:
        """Insert new episodes, revise changed ones, skip identical ones; one transaction.

        `batch` must already be validated (forecasting.domain.episodes): either every row is
        written or, on any database error, none is. Safe to call from many clients at once
        with overlapping batches (store.transactions): each episode is stored once, and
        content already stored by another client counts as unchanged, not as an error.
        """
        return retrying(lambda: self._import_once(batch, actor, codebook_version, source,
                                                  progress), "episode import")

    def _import_once(self, batch, actor, codebook_version, source, progress) -> ImportSummary:
        now = _now()
        with write_transaction(self.engine) as conn:
            # imports one at a time on PostgreSQL too (SQLite's BEGIN IMMEDIATE already does):
            # with row locks instead, two large overlapping batches in different orders
            # deadlocked on each other's new rows again and again (16 clients x 10,000 rows in
            # rotated orders: 6 minutes and 12 failures, against 13 s one at a time).
            # ON CONFLICT DO NOTHING stays: a key stored meanwhile is compared, not a 500.
            lock_key(conn, "episodes:import")
            existing = self._existing(conn, [e.key for e in batch])
            new_rows, revisions, unchanged, others = [], [], [], []
            # new rows keep the batch's order: ids (and so exports) follow the file's order
            for episode in batch:
                current = existing.get(episode.key)
                if current is None:
                    new_rows.append(_values(episode))
                else:
                    _compare(current, _values(episode), revisions, unchanged, others)
            audit_id = conn.execute(
                insert(audit_log).values(at=now, actor=actor, action="import", detail={})
                .returning(audit_log.c.id)).scalar_one()
            inserted, taken = self._insert_new(conn, new_rows, actor, codebook_version,
                                               audit_id, now, progress)
            if taken:
                # another client inserted these keys after our read and has committed: compare
                # against what it stored, as if it had been there all along
                winners = self._existing(conn, [tuple(r[k] for k in NATURAL_KEY)
                                                for r in taken])
                for values in taken:
                    _compare(winners[tuple(values[k] for k in NATURAL_KEY)], values,
                             revisions, unchanged, others)
            for current, values, changed in revisions:
                _revise(conn, current, values, changed, actor, now, codebook_version, audit_id)
                if progress:
                    progress(1)
            coded = record_codings(
                conn, [(c, _jsonable(v)) for c, v, _ in revisions],
                [(c, _jsonable(v)) for c, v in others], actor=actor, now=now,
                import_id=audit_id)
            if progress:
                progress(len(unchanged) + len(others))
            conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(detail={
                "source": source, "rows": len(batch), "inserted": inserted,
                "revised": len(revisions), "unchanged": len(unchanged) + len(others)
                - len(coded), "codings": len(coded)}))
        return ImportSummary(
            inserted=inserted, revised=len(revisions),
            unchanged=len(unchanged) + len(others) - len(coded), audit_id=audit_id,
            revised_keys=tuple(tuple(v[k] for k in NATURAL_KEY) for _, v, _ in revisions),
            coded=len(coded), coded_keys=tuple(coded),
        )

    def adjudicate(self, episode: Episode, reason: str, actor: str, codebook_version: str
                   ) -> dict[str, Any]:
        """Write an adjudicator's final value of a double-coded episode: a revision of the
        episode (audited, as an import's) and an adjudication row with the reason; one
        transaction. Raises UnknownEpisodeError, NotDoubleCodedError."""
        return retrying(lambda: self._adjudicate_once(episode, reason, actor, codebook_version),
                        "adjudication")

    def _adjudicate_once(self, episode, reason, actor, codebook_version) -> dict[str, Any]:
        now = _now()
        with write_transaction(self.engine) as conn:
            lock_key(conn, "episodes:import")  # one writer of episodes at a time, as imports
            current = self._existing(conn, [episode.key]).get(episode.key)
            if current is None:
                raise UnknownEpisodeError(episode.key)
            coders = len(current_codings(conn, [current["id"]]).get(current["id"], {}))
            if coders < 2:
                raise NotDoubleCodedError(episode.key, coders)
            values = _values(episode)
            changed = [f for f in VALUE_FIELDS if current[f] != values[f]]
            audit_id = conn.execute(insert(audit_log).values(
                at=now, actor=actor, action="adjudicate", detail={
                    **dict(zip(NATURAL_KEY, episode.key, strict=True)), "reason": reason,
                    "changed": changed}).returning(audit_log.c.id)).scalar_one()
            number = _revise(conn, current, values, changed, actor, now, codebook_version,
                             audit_id)
            conn.execute(insert(adjudications).values(
                episode_id=current["id"], adjudicator=actor, reason=reason,
                values=_jsonable(values), revision=number, at=now, audit_id=audit_id))
        return {"revision": number, "changed": changed, "audit_id": audit_id,
                "at": now.isoformat()}

    def _existing(self, conn, keys: list[tuple[str, str, str]]) -> dict[tuple, dict]:
        """The stored rows of these keys (no row locks: imports run one at a time)."""
        found: dict[tuple, dict] = {}
        if not keys:
            return found
        total = conn.execute(select(func.count()).select_from(episodes)).scalar_one()
        columns = [episodes.c[c] for c in NATURAL_KEY]
        if total <= 4 * len(keys):
            # cheaper to read the whole (small) table than to ask key by key
            result = conn.execute(select(episodes))
        else:
            result = []
            for start in range(0, len(keys), _KEY_CHUNK):
                chunk = keys[start:start + _KEY_CHUNK]
                result.extend(conn.execute(select(episodes).where(tuple_(*columns).in_(chunk))))
        for row in result:
            mapping = dict(row._mapping)
            found[tuple(mapping[c] for c in NATURAL_KEY)] = mapping
        return found

    def _insert_new(self, conn, rows, actor, codebook_version, audit_id, now, progress
                    ) -> tuple[int, list[dict]]:
        """Insert, skipping keys already stored (ON CONFLICT DO NOTHING: a conflict is never an
        error). Returns (inserted, skipped rows). Plain executemany, then the new ids read back
        (RETURNING over executemany was 7 times slower on PostgreSQL); the ids above the
        table's maximum before the insert are this import's, as imports run one at a time.
        """
        statement = _insert_ignoring_conflicts(conn)
        chunk, inserted, taken = 5000, 0, []
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            floor = conn.execute(select(func.coalesce(func.max(episodes.c.id), 0))).scalar_one()
            conn.execute(statement, [dict(r, codebook_version=codebook_version, revision=1,
                                          created_at=now, updated_at=now) for r in part])
            id_of = {(r.trigger_id, r.partner, r.intel_type): r.id for r in conn.execute(
                select(episodes.c.id, episodes.c.trigger_id, episodes.c.partner,
                       episodes.c.intel_type).where(episodes.c.id > floor))}
            ours = [r for r in part if tuple(r[k] for k in NATURAL_KEY) in id_of]
            taken.extend(r for r in part if tuple(r[k] for k in NATURAL_KEY) not in id_of)
            if ours:
                conn.execute(insert(episode_revisions), [
                    {"episode_id": id_of[tuple(r[k] for k in NATURAL_KEY)], "revision": 1,
                     "values": _jsonable(r), "changed_fields": {}, "changed_by": actor,
                     "changed_at": now, "codebook_version": codebook_version,
                     "import_id": audit_id}
                    for r in ours
                ])
            inserted += len(ours)
            if progress:
                progress(len(ours))
        return inserted, taken

    # --- reads --------------------------------------------------------------------
    def count(self, where: EpisodeFilter | None = None) -> int:
        query = select(func.count()).select_from(episodes)
        if where and (clauses := where.clauses()):
            query = query.where(and_(*clauses))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def list(self, where: EpisodeFilter | None = None, limit: int | None = None,
             offset: int = 0) -> list[dict[str, Any]]:
        """Episodes in a stable order (trigger date, then id), as stored records."""
        query = select(episodes).order_by(episodes.c.trigger_date, episodes.c.id)
        if where and (clauses := where.clauses()):
            query = query.where(and_(*clauses))
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def iter_rows(self, where: EpisodeFilter | None = None) -> Iterator[dict[str, Any]]:
        """Interchange rows (what `forecast export` writes), streamed."""
        query = select(episodes).order_by(episodes.c.trigger_date, episodes.c.id)
        if where and (clauses := where.clauses()):
            query = query.where(and_(*clauses))
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=2000).execute(query):
                yield _interchange_row(row)

    def get(self, trigger_id: str, partner: str, intel_type: str) -> dict[str, Any]:
        key = (trigger_id, partner, intel_type)
        with self.engine.connect() as conn:
            row = conn.execute(select(episodes).where(
                episodes.c.trigger_id == trigger_id, episodes.c.partner == partner,
                episodes.c.intel_type == intel_type)).first()
            if row is None:
                raise UnknownEpisodeError(key)
            record = self._record(row)
            history = conn.execute(
                select(episode_revisions).where(episode_revisions.c.episode_id == record["id"])
                .order_by(episode_revisions.c.revision)
            )
            record["history"] = [
                {"revision": h.revision, "changed_by": h.changed_by,
                 "changed_at": h.changed_at.isoformat(), "codebook_version": h.codebook_version,
                 "changed_fields": h.changed_fields, "values": h.values}
                for h in history
            ]
            record["coding"] = _coding_of(conn, record["id"])
        return record

    def frame(self, where: EpisodeFilter | None = None) -> pd.DataFrame:
        """The model's view of the data: one row per episode, typed columns."""
        query = select(
            episodes.c.id, episodes.c.trigger_id, episodes.c.trigger_type, episodes.c.trigger_date,
            episodes.c.severity, episodes.c.alignment, episodes.c.partner, episodes.c.intel_type,
            episodes.c.level, episodes.c.confidence,
        ).order_by(episodes.c.id)
        if where and (clauses := where.clauses()):
            query = query.where(and_(*clauses))
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all())
        if frame.empty:
            frame = pd.DataFrame(columns=[c.name for c in query.selected_columns])
        frame["trigger_date"] = pd.to_datetime(frame["trigger_date"])
        return frame

    def stats(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            row = conn.execute(select(
                func.count(), func.count(episodes.c.partner.distinct()),
                func.count(episodes.c.trigger_id.distinct()),
                func.count(episodes.c.intel_type.distinct()),
            ).select_from(episodes)).one()
            restricted = conn.execute(
                select(func.count()).select_from(episodes).where(episodes.c.level >= 1)
            ).scalar_one()
        return {"episodes": row[0], "partners": row[1], "triggers": row[2],
                "intel_types": row[3], "restricted": restricted}

    def latest_revision_id(self) -> int:
        """Grows with every insert or revision: what a fit saw, for staleness checks."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(episode_revisions.c.id), 0))
                                ).scalar_one()

    def values_at(self, revision: int, partners: Sequence[str]) -> list[dict[str, Any]]:
        """The episodes of `partners` as the store held them at `revision` (what a fit that
        read that revision saw): each episode's latest revision up to it, as its interchange
        values; episodes coded later are left out. The natural key never changes, so the
        partner filter may read today's rows."""
        latest = (select(episode_revisions.c.episode_id,
                         func.max(episode_revisions.c.id).label("revision_id"))
                  .where(episode_revisions.c.id <= revision)
                  .group_by(episode_revisions.c.episode_id).subquery())
        query = (select(episode_revisions.c["values"])
                 .join(latest, episode_revisions.c.id == latest.c.revision_id)
                 .join(episodes, episodes.c.id == episode_revisions.c.episode_id)
                 .where(episodes.c.partner.in_(list(partners))))
        with self.engine.connect() as conn:
            return [dict(values) for (values,) in conn.execute(query)]

    def changed_since(self, revision: int, partners: Sequence[str]) -> int:
        """Episodes of `partners` coded or revised after `revision`."""
        query = (select(func.count(episode_revisions.c.episode_id.distinct()))
                 .join(episodes, episodes.c.id == episode_revisions.c.episode_id)
                 .where(episode_revisions.c.id > revision,
                        episodes.c.partner.in_(list(partners))))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    @staticmethod
    def _record(row) -> dict[str, Any]:
        mapping = dict(row._mapping)
        record = _interchange_row(row)
        record["sources"] = [s.strip() for s in mapping["sources"].split("|") if s.strip()]
        record.update(id=mapping["id"], revision=mapping["revision"],
                      codebook_version=mapping["codebook_version"],
                      created_at=mapping["created_at"].isoformat(),
                      updated_at=mapping["updated_at"].isoformat())
        return record
