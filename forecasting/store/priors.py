"""Prior sets in the database: versioned, audited; the newest one is used by the next fit.

Each set keeps who submitted it (`created_by`: the token's name, or cli:USER), why (`note`),
and, for a set elicited from outcome-scale statements, the statements and how well each is met
(`statements`, migration 0008). Validation is not done here: callers hand over a validated
forecasting.model.priors.PriorSet.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, insert, select

from forecasting.store.schema import audit_log, prior_sets


def _record(row) -> dict[str, Any]:
    return {"id": row.id, "content_hash": row.content_hash, "priors": row.priors,
            "note": row.note, "created_by": row.created_by,
            "created_at": row.created_at.isoformat(), "statements": row.statements}


class PriorStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def save(self, priors: dict[str, Any], content_hash: str, actor: str, note: str = "",
             statements: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a new prior set (a no-op returning the newest if it is identical)."""
        latest = self.latest()
        if latest is not None and latest["content_hash"] == content_hash:
            return latest
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            new_id = conn.execute(insert(prior_sets).values(
                content_hash=content_hash, priors=priors, note=note, created_by=actor,
                created_at=now, statements=statements).returning(prior_sets.c.id)).scalar_one()
            conn.execute(insert(audit_log).values(
                at=now, actor=actor, action="priors:update",
                detail={"prior_set": new_id, "content_hash": content_hash, "note": note,
                        "elicited": statements is not None}))
        return self.latest()

    def latest(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(prior_sets).order_by(prior_sets.c.id.desc()).limit(1)).first()
        return _record(row) if row else None

    def get(self, set_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(prior_sets).where(prior_sets.c.id == set_id)).first()
        return _record(row) if row else None

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(prior_sets).order_by(prior_sets.c.id.desc()).limit(limit))
            return [_record(r) for r in rows]
