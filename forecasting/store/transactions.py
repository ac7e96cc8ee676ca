"""Write transactions that many clients can run at once without tripping over each other.

SQLite: a writer takes the database's write lock when its transaction begins
(`BEGIN IMMEDIATE`), so a read-compare-write runs as if alone; other writers wait for the
lock (the busy timeout) instead of failing when their snapshot turns out to be stale.
PostgreSQL: transactions run at READ COMMITTED; a kind of write that must run alone takes a
transaction-level advisory lock (`lock_key`), the stores insert with `ON CONFLICT DO
NOTHING`, and `retrying` runs a transaction again, from the start, after a transient
conflict (a deadlock victim, a serialization failure, a unique violation).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

log = logging.getLogger(__name__)
ATTEMPTS = 8
# PostgreSQL SQLSTATEs worth a fresh attempt: serialization failure, deadlock, unique violation
# (a backstop: the stores avoid it with ON CONFLICT, but a retry reads the winner's row)
_RETRY_SQLSTATES = {"40001", "40P01", "23505"}


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that commits on success, rolls back on an exception."""
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "sqlite":
            # pysqlite would begin lazily at the first write, after our reads: too late
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def lock_key(conn: Connection, name: str) -> None:
    """Serialise one kind of write on PostgreSQL until the transaction ends (SQLite's
    BEGIN IMMEDIATE already serialises every writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


def _worth_retrying(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _RETRY_SQLSTATES
    # SQLite: only "database is locked" (the busy timeout ran out) is transient
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig)


def retrying[T](work: Callable[[], T], what: str) -> T:
    """Run `work` (one whole transaction) again after a transient conflict, a few times."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except (IntegrityError, OperationalError) as exc:
            if attempt == ATTEMPTS or not _worth_retrying(exc):
                raise
            log.info("%s: attempt %d met a concurrent writer (%s); trying again", what,
                     attempt, type(exc.orig).__name__)
            time.sleep(random.uniform(0, 0.05 * attempt))
    raise AssertionError("unreachable")
