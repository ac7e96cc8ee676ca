"""Refit jobs in the database: queue-independent, so that no request is lost in a crash.

The state machine: queued -> running -> succeeded | failed | skipped | error, and
running -> queued again when a worker dies (its heartbeat goes stale) or a fit raises.
At most one job is queued at a time (new requests coalesce into it), and a job is only
claimed while no other job is running with a fresh heartbeat.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, update

from forecasting.store.schema import audit_log, episode_revisions, refit_jobs
from forecasting.store.transactions import lock_key, write_transaction

FINAL = ("succeeded", "failed", "skipped", "error")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    # aware UTC on every database (schema.UTCDateTime): "...+00:00"
    return None if value is None else value.isoformat()


def job_record(row) -> dict[str, Any]:
    m = row._mapping
    started, finished = m["started_at"], m["finished_at"]
    return {
        "id": m["id"], "status": m["status"], "reason": m["reason"],
        "requested_by": m["requested_by"], "requested_at": _iso(m["requested_at"]),
        "not_before": _iso(m["not_before"]), "coalesced": m["coalesced"],
        "attempts": m["attempts"], "worker": m["worker"], "started_at": _iso(started),
        "heartbeat_at": _iso(m["heartbeat_at"]), "finished_at": _iso(finished),
        "duration_s": (finished - started).total_seconds() if started and finished else None,
        "version": m["version"], "verdict": m["verdict"],
        "promoted": None if m["promoted"] is None else bool(m["promoted"]),
        "episodes": m["episodes"], "data_hash": m["data_hash"], "detail": m["detail"] or {},
    }


class RefitJobStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def request(self, reason: str, actor: str, delay_seconds: float) -> tuple[dict, bool]:
        """Queue a refit, or coalesce into the one already queued. Returns (job, created).

        Every request is audited with who asked, in the same transaction, coalesced ones
        too ("coalesced": true names the job they joined). Requests are serialised, so two
        at once never queue two jobs.
        """
        now = _now()
        with write_transaction(self.engine) as conn:
            lock_key(conn, "refit_jobs:request")
            queued = conn.execute(select(refit_jobs).where(refit_jobs.c.status == "queued")
                                  .order_by(refit_jobs.c.id).limit(1)).first()
            if queued is not None:
                conn.execute(update(refit_jobs).where(refit_jobs.c.id == queued.id)
                             .values(coalesced=refit_jobs.c.coalesced + 1))
                job_id, created = queued.id, False
            else:
                job_id = conn.execute(insert(refit_jobs).values(
                    status="queued", reason=reason, requested_by=actor, requested_at=now,
                    not_before=now + dt.timedelta(seconds=delay_seconds), coalesced=0,
                    attempts=0).returning(refit_jobs.c.id)).scalar_one()
                created = True
            conn.execute(insert(audit_log).values(
                at=now, actor=actor, action="refit:request",
                detail={"job": job_id, "reason": reason, "coalesced": not created}))
        return self.get(job_id), created

    def claim(self, job_id: int, worker: str, stale_after: float) -> str:
        """Try to start a queued job: 'claimed', 'busy' (another runs), or 'gone'."""
        now = _now()
        fresh = now - dt.timedelta(seconds=stale_after)
        with self.engine.begin() as conn:
            row = conn.execute(select(refit_jobs.c.status).where(refit_jobs.c.id == job_id)).first()
            if row is None or row.status != "queued":
                return "gone"
            busy = conn.execute(select(func.count()).select_from(refit_jobs).where(
                refit_jobs.c.status == "running", refit_jobs.c.heartbeat_at >= fresh)).scalar_one()
            if busy:
                return "busy"
            done = conn.execute(update(refit_jobs).where(
                refit_jobs.c.id == job_id, refit_jobs.c.status == "queued").values(
                status="running", worker=worker, started_at=now, heartbeat_at=now,
                attempts=refit_jobs.c.attempts + 1)).rowcount
        return "claimed" if done else "gone"

    def heartbeat(self, job_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(refit_jobs).where(refit_jobs.c.id == job_id,
                                                  refit_jobs.c.status == "running")
                         .values(heartbeat_at=_now()))

    def finish(self, job_id: int, status: str, **values: Any) -> dict:
        assert status in FINAL, status
        with self.engine.begin() as conn:
            conn.execute(update(refit_jobs).where(refit_jobs.c.id == job_id).values(
                status=status, finished_at=_now(), **values))
        return self.get(job_id)

    def requeue(self, job_id: int, detail: dict) -> None:
        """Back to the queue after a crash or an exception (its attempts are kept)."""
        with self.engine.begin() as conn:
            conn.execute(update(refit_jobs).where(refit_jobs.c.id == job_id).values(
                status="queued", worker=None, heartbeat_at=None, detail=detail))

    def orphans(self, stale_after: float) -> list[int]:
        """Running jobs whose worker stopped beating (killed): to be queued again."""
        cutoff = _now() - dt.timedelta(seconds=stale_after)
        with self.engine.connect() as conn:
            return list(conn.execute(select(refit_jobs.c.id).where(
                refit_jobs.c.status == "running",
                or_(refit_jobs.c.heartbeat_at < cutoff, refit_jobs.c.heartbeat_at.is_(None))
            )).scalars())

    def queued_ids(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(refit_jobs.c.id).where(
                refit_jobs.c.status == "queued").order_by(refit_jobs.c.id)).scalars())

    def get(self, job_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(refit_jobs).where(refit_jobs.c.id == job_id)).first()
        return job_record(row) if row else None

    def list(self, limit: int = 50, status: str | None = None) -> list[dict]:
        query = select(refit_jobs).order_by(refit_jobs.c.id.desc()).limit(limit)
        if status:
            query = query.where(refit_jobs.c.status == status)
        with self.engine.connect() as conn:
            return [job_record(r) for r in conn.execute(query)]

    def first_change_after(self, revision_id: int) -> str | None:
        """When the first episode change after `revision_id` was made (staleness start)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(func.min(episode_revisions.c.changed_at)).where(
                episode_revisions.c.id > revision_id)).scalar_one()
        return _iso(value)

    def active(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(refit_jobs).where(
                and_(refit_jobs.c.status.in_(("queued", "running")))).order_by(refit_jobs.c.id))
            return [job_record(r) for r in rows]
