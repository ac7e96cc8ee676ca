"""Codings in the database: every coder's coding of a double-coded episode, adjudications.

An episode coded once lives in the episodes table alone (its coder column names who coded
it). When a second coder's row for the same key is imported, the first coding is copied here
from the episode and the second stored beside it; from then on every coder's coding of it is
a row here (append-only: a coder's current coding is their newest row). Which of them the
model reads is decided by forecasting.coding.agreement: the episodes table keeps the value
fed to the model (the first accepted value until an adjudicator writes the final one).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, tuple_

from forecasting.coding.agreement import STATUSES, disagreement, status
from forecasting.domain.episodes import NATURAL_KEY, VALUE_FIELDS
from forecasting.store.schema import adjudications, audit_log, codings, episodes
from forecasting.store.transactions import lock_key, write_transaction

_CHUNK = 500


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def current_codings(conn: Connection, episode_ids: Sequence[int] | None = None
                    ) -> dict[int, dict[str, dict[str, Any]]]:
    """episode id -> coder -> {"values", "recorded_at", "recorded_by", "id"}: each coder's
    newest coding (every episode with codings when `episode_ids` is None)."""
    queries = ([select(codings)] if episode_ids is None else
               [select(codings).where(codings.c.episode_id.in_(list(episode_ids[i:i + _CHUNK])))
                for i in range(0, len(episode_ids), _CHUNK)])
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for query in queries:
        for row in conn.execute(query.order_by(codings.c.id)):
            found.setdefault(row.episode_id, {})[row.coder] = {
                "values": row.values, "recorded_at": row.recorded_at,
                "recorded_by": row.recorded_by, "id": row.id}
    return found


def latest_adjudications(conn: Connection) -> dict[int, dict[str, Any]]:
    """episode id -> its newest adjudication."""
    found = {}
    for row in conn.execute(select(adjudications).order_by(adjudications.c.id)):
        found[row.episode_id] = {"adjudicator": row.adjudicator, "reason": row.reason,
                                 "values": row.values, "revision": row.revision, "at": row.at}
    return found


def record_codings(conn: Connection, primary: Iterable[tuple[dict, dict]],
                   others: Iterable[tuple[dict, dict]], *, actor: str, now: dt.datetime,
                   import_id: int | None) -> list[tuple[str, str, str]]:
    """Inside an import's transaction: store other coders' codings of existing episodes.

    `primary`: (stored row, new values) of episodes revised by their own coder: if that coder
    has a coding of the episode, it follows the revision. `others`: (stored row, values)
    whose coder is not the episode's: a new or changed coding of that coder (an identical one
    is skipped). Values are JSON-ready interchange values. Returns the keys of the episodes
    whose other codings were new or changed.
    """
    primary, others = list(primary), list(others)
    ids = sorted({row["id"] for row, _ in primary + others})
    if not ids:
        return []
    existing = current_codings(conn, ids)
    rows, coded = [], []

    def add(episode_id: int, coder: str, values: dict, at: dt.datetime, by: str) -> None:
        rows.append({"episode_id": episode_id, "coder": coder, "values": values,
                     "recorded_at": at, "recorded_by": by, "import_id": import_id})
        existing.setdefault(episode_id, {})[coder] = {"values": values}

    for row, values in primary:
        # a coder's revision moves their coding; the adjudicator's (the episode's coder after
        # an adjudication) revises the final value only: they are no coder of the episode
        if values["coder"] in existing.get(row["id"], {}):
            add(row["id"], values["coder"], values, now, actor)
    for row, values in others:
        by_coder = existing.get(row["id"])
        if not by_coder:  # the first coding becomes a row, as it was stored
            first = {k: row[k] for k in (*NATURAL_KEY, *VALUE_FIELDS)}
            add(row["id"], row["coder"], _jsonable(first), row["updated_at"], row["coder"])
            by_coder = existing[row["id"]]
        mine = by_coder.get(values["coder"])
        if mine is None or any(mine["values"].get(f) != values[f] for f in VALUE_FIELDS):
            add(row["id"], values["coder"], values, now, actor)
            coded.append(tuple(values[k] for k in NATURAL_KEY))
    if rows:
        conn.execute(insert(codings), rows)
    return coded


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()}


class CodingStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def state(self) -> dict[int, dict[str, Any]]:
        """episode id -> {"key", "status", "codings", "adjudication"} for every episode with
        codings (every other episode is single-coded)."""
        with self.engine.connect() as conn:
            by_episode = current_codings(conn)
            adjudicated = latest_adjudications(conn)
            keys = {}
            ids = sorted(by_episode)
            for i in range(0, len(ids), _CHUNK):
                for row in conn.execute(select(episodes.c.id, *(episodes.c[k] for k in NATURAL_KEY))
                                        .where(episodes.c.id.in_(ids[i:i + _CHUNK]))):
                    keys[row.id] = tuple(row)[1:]
        out = {}
        for episode_id, by_coder in by_episode.items():
            adjudication = adjudicated.get(episode_id)
            out[episode_id] = {
                "key": keys[episode_id],
                "status": status({c: v["values"] for c, v in by_coder.items()},
                                 {c: v["recorded_at"] for c, v in by_coder.items()},
                                 adjudication["at"] if adjudication else None),
                "codings": by_coder, "adjudication": adjudication}
        return out

    def values_by_episode(self) -> dict[int, dict[str, dict[str, Any]]]:
        """episode id -> coder -> values: what the reliability figures are computed from."""
        with self.engine.connect() as conn:
            return {e: {c: v["values"] for c, v in by_coder.items()}
                    for e, by_coder in current_codings(conn).items()}

    def coverage(self, episode_ids: Iterable[int]) -> dict[str, Any]:
        """How each of these episodes is coded: counts per status, the ids of every status
        but single, and which are held back from a fit (the disputed ones)."""
        state = self.state()
        ids = list(episode_ids)
        groups: dict[str, list[int]] = {s: [] for s in STATUSES}
        for episode_id in ids:
            groups[state[episode_id]["status"] if episode_id in state else "single"].append(
                episode_id)
        return {"counts": {s: len(v) for s, v in groups.items()},
                "agreed": groups["agreed"], "adjudicated": groups["adjudicated"],
                "held_back": groups["disputed"]}

    def disagreements(self) -> list[dict[str, Any]]:
        """Every disputed episode: its key, the fields in dispute with each coder's value, when
        each coding was recorded, and its last adjudication if a later coding reopened it."""
        out = []
        for episode_id, entry in sorted(self.state().items(), key=lambda kv: kv[1]["key"]):
            if entry["status"] != "disputed":
                continue
            by_coder = entry["codings"]
            adjudication = entry["adjudication"]
            out.append({
                **dict(zip(NATURAL_KEY, entry["key"], strict=True)), "episode_id": episode_id,
                "fields": disagreement({c: v["values"] for c, v in by_coder.items()}),
                "codings": [{"coder": c, "recorded_at": _iso(v["recorded_at"]),
                             "values": v["values"]} for c, v in sorted(by_coder.items())],
                "last_adjudication": None if adjudication is None else {
                    **adjudication, "at": _iso(adjudication["at"])},
            })
        return out

    def adjudications(self, episode_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [{"adjudicator": r.adjudicator, "reason": r.reason, "values": r.values,
                     "revision": r.revision, "at": r.at.isoformat()}
                    for r in conn.execute(select(adjudications).where(
                        adjudications.c.episode_id == episode_id).order_by(adjudications.c.id))]

    def count(self, episode_id: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count(codings.c.coder.distinct())).where(
                codings.c.episode_id == episode_id)).scalar_one()

    def latest_change_id(self) -> int:
        """Grows with every coding recorded: with the episodes' revisions, what a fit saw."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(codings.c.id), 0))).scalar_one()

    # --- moving codings between instances (`forecast coding export|import`) -------------------

    def export_records(self) -> dict[str, list[dict[str, Any]]]:
        """Every coding and adjudication, oldest first, each named by its episode's natural
        key (ids and revision numbers are this instance's own and are left out)."""
        key_columns = [episodes.c[k] for k in NATURAL_KEY]
        with self.engine.connect() as conn:
            coded = conn.execute(select(codings, *key_columns)
                                 .join(episodes, episodes.c.id == codings.c.episode_id)
                                 .order_by(codings.c.id)).mappings().all()
            decided = conn.execute(select(adjudications, *key_columns)
                                   .join(episodes, episodes.c.id == adjudications.c.episode_id)
                                   .order_by(adjudications.c.id)).mappings().all()
        return {
            "codings": [{**{k: r[k] for k in NATURAL_KEY}, "coder": r["coder"],
                         "values": r["values"], "recorded_at": _iso(r["recorded_at"]),
                         "recorded_by": r["recorded_by"]} for r in coded],
            "adjudications": [{**{k: r[k] for k in NATURAL_KEY},
                               "adjudicator": r["adjudicator"], "reason": r["reason"],
                               "values": r["values"], "at": _iso(r["at"])} for r in decided],
        }

    def import_records(self, coded: Sequence[dict[str, Any]], decided: Sequence[dict[str, Any]],
                       actor: str) -> dict[str, Any]:
        """Store exported codings and adjudications (`export_records`' shape, times as
        datetimes), all or nothing, in one transaction. Per episode, what is stored here must
        be where the file starts (nothing, or an earlier import of it): the rest is appended,
        so that the newest coding of each coder stays the newest. Raises CodingsImportError
        (naming each record at fault, `codings[i]` or `adjudications[i]`) otherwise, or when an
        episode is not stored here."""
        with write_transaction(self.engine) as conn:
            lock_key(conn, "episodes:import")  # with imports and adjudications, one at a time
            ids = self._episode_ids(conn, [r for r in (*coded, *decided)])
            problems = [{"field": f"{name}[{i}]", "message": (
                "no episode trigger_id={!r}, partner={!r}, intel_type={!r} here; import the "
                "episodes first (`forecast import` of the other instance's export)".format(
                    *_key(r)))}
                for name, rows in (("codings", coded), ("adjudications", decided))
                for i, r in enumerate(rows) if _key(r) not in ids]
            if problems:
                raise CodingsImportError(problems)
            new_codings, problems = _appended(
                "codings", coded, ids, self._stored(conn, codings, ids.values()),
                ("coder", "values", "recorded_at"))
            new_decisions, more = _appended(
                "adjudications", decided, ids, self._stored(conn, adjudications, ids.values()),
                ("adjudicator", "reason", "values", "at"))
            if problems or more:
                raise CodingsImportError(problems + more)
            if not new_codings and not new_decisions:
                return {"codings": 0, "adjudications": 0,
                        "unchanged": len(coded) + len(decided), "audit_id": None}
            now = dt.datetime.now(dt.UTC)
            audit_id = conn.execute(insert(audit_log).values(
                at=now, actor=actor, action="codings:import", detail={
                    "codings": len(new_codings), "adjudications": len(new_decisions)})
                .returning(audit_log.c.id)).scalar_one()
            if new_codings:
                conn.execute(insert(codings), [
                    {"episode_id": ids[_key(r)], "coder": r["coder"], "values": r["values"],
                     "recorded_at": r["recorded_at"], "recorded_by": r["recorded_by"],
                     "import_id": audit_id} for r in new_codings])
            if new_decisions:
                revisions = dict(conn.execute(select(episodes.c.id, episodes.c.revision).where(
                    episodes.c.id.in_(sorted({ids[_key(r)] for r in new_decisions})))).all())
                # the adjudicated value is the episode's as exported: its revision here
                conn.execute(insert(adjudications), [
                    {"episode_id": ids[_key(r)], "adjudicator": r["adjudicator"],
                     "reason": r["reason"], "values": r["values"], "at": r["at"],
                     "revision": revisions[ids[_key(r)]], "audit_id": audit_id}
                    for r in new_decisions])
        return {"codings": len(new_codings), "adjudications": len(new_decisions),
                "unchanged": len(coded) + len(decided) - len(new_codings) - len(new_decisions),
                "audit_id": audit_id}

    @staticmethod
    def _episode_ids(conn: Connection, records: Sequence[dict[str, Any]]
                     ) -> dict[tuple[str, str, str], int]:
        wanted = sorted({_key(r) for r in records})
        found = {}
        columns = [episodes.c[k] for k in NATURAL_KEY]
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i:i + _CHUNK]
            for row in conn.execute(select(episodes.c.id, *columns).where(
                    tuple_(*columns).in_(chunk))):
                found[tuple(row)[1:]] = row.id
        return found

    @staticmethod
    def _stored(conn: Connection, table, episode_ids: Iterable[int]) -> dict[int, list[dict]]:
        ids = sorted(set(episode_ids))
        found: dict[int, list[dict]] = {}
        for i in range(0, len(ids), _CHUNK):
            for row in conn.execute(select(table).where(table.c.episode_id.in_(ids[i:i + _CHUNK]))
                                    .order_by(table.c.id)).mappings():
                found.setdefault(row["episode_id"], []).append(dict(row))
        return found


class CodingsImportError(ValueError):
    """Codings that cannot be imported here; `errors` names each record at fault."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        shown = "\n".join(f"  {e['field']}: {e['message']}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} error(s); nothing was imported:\n{shown}{more}")


def _key(record: dict[str, Any]) -> tuple[str, str, str]:
    return tuple(record[k] for k in NATURAL_KEY)


def _same_time(a: dt.datetime, b: dt.datetime) -> bool:
    as_utc = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (a, b)]
    return as_utc[0] == as_utc[1]


def _appended(name: str, records: Sequence[dict[str, Any]], ids: dict, stored: dict[int, list],
              compared: tuple[str, ...]) -> tuple[list[dict], list[dict[str, str]]]:
    """The records to append (those past what each episode already holds here), and the
    problems: an episode whose stored rows are not where the file's start."""
    by_episode: dict[int, list[tuple[int, dict]]] = {}
    for i, r in enumerate(records):
        by_episode.setdefault(ids[_key(r)], []).append((i, r))
    new, problems = [], []
    for episode_id, rows in by_episode.items():
        held = stored.get(episode_id, [])
        same = len(held) <= len(rows) and all(
            all(_same_time(h[f], r[f]) if isinstance(h[f], dt.datetime) else h[f] == r[f]
                for f in compared)
            for h, (_, r) in zip(held, rows, strict=False))
        if not same:
            i = rows[0][0]
            problems.append({"field": f"{name}[{i}]", "message": (
                "the episode trigger_id={!r}, partner={!r}, intel_type={!r} ".format(
                    *_key(rows[0][1]))
                + f"already has {len(held)} {name} here that the file does not start with; "
                "codings are only added to an instance that holds none of the episode's, or "
                "an earlier import of the same ones")})
            continue
        new.extend(r for _, r in rows[len(held):])
    return new, problems
