"""Many clients writing the same episodes at once: each stored exactly once, no error.

Threads stand in for the API's worker processes: each opens its own connection from the
shared engine, as a request does, and they all start together behind a barrier.
"""

from __future__ import annotations

import datetime as dt
import threading

from helpers import episode_row
from sqlalchemy import func, select

from forecasting.domain.episodes import validate_episodes
from forecasting.store.schema import audit_log, episode_revisions

TODAY = dt.date(2026, 11, 29)
CLIENTS = 16
TYPES = ["sigint", "humint", "geoint", "sources", "methods", "cyber", "ct", "military"]
PARTNERS = ["GBR", "CAN", "AUS", "NZL", "ISR", "SAU"]


def _rows(partners, **overrides):
    return [episode_row(partner=p, intel_type=t, **overrides) for p in partners for t in TYPES]


def _run_together(database, batches, actor="client"):
    """Import every batch from its own thread at the same moment; the errors raised."""
    barrier = threading.Barrier(len(batches))
    errors, summaries = [], []

    def client(number, batch):
        barrier.wait()
        try:
            summaries.append(database.episodes.import_episodes(
                batch, actor=f"{actor}-{number}", codebook_version="test"))
        except Exception as exc:  # noqa: BLE001 - every failure is what the test reports
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n, b)) for n, b in enumerate(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors, summaries


def _revision_counts(database) -> dict[int, int]:
    with database.engine.connect() as conn:
        return dict(conn.execute(select(episode_revisions.c.episode_id, func.count())
                                 .group_by(episode_revisions.c.episode_id)).all())


def test_the_same_new_batch_from_many_clients_is_stored_once(database, codebook):
    batch = validate_episodes(list(enumerate(_rows(PARTNERS), start=2)), codebook, TODAY)
    errors, summaries = _run_together(database, [batch] * CLIENTS)
    assert errors == []
    assert database.episodes.count() == len(batch)
    assert sum(s.inserted for s in summaries) == len(batch)
    assert sum(s.unchanged for s in summaries) == len(batch) * (CLIENTS - 1)
    assert set(_revision_counts(database).values()) == {1}, "one revision per episode"
    with database.engine.connect() as conn:
        imports = conn.execute(select(func.count()).select_from(audit_log)
                               .where(audit_log.c.action == "import")).scalar_one()
    assert imports == CLIENTS, "every client's import is audited"


def test_overlapping_batches_from_many_clients_store_each_episode_once(database, codebook):
    # client n sends partners n % 6 and (n + 1) % 6: every episode arrives from several
    # clients, and no two batches are the same
    batches = [validate_episodes(list(enumerate(
        _rows([PARTNERS[n % 6], PARTNERS[(n + 1) % 6]]), start=2)), codebook, TODAY)
        for n in range(CLIENTS)]
    errors, summaries = _run_together(database, batches)
    assert errors == []
    assert database.episodes.count() == len(PARTNERS) * len(TYPES)
    assert sum(s.inserted for s in summaries) == len(PARTNERS) * len(TYPES)
    assert set(_revision_counts(database).values()) == {1}


def test_concurrent_revisions_of_one_episode_each_become_one_revision(database, codebook):
    first = validate_episodes([(2, episode_row())], codebook, TODAY)
    database.episodes.import_episodes(first, actor="alice", codebook_version="test")
    # half the clients send one new note, half another: two distinct new contents
    variants = [validate_episodes([(2, episode_row(notes=f"note {n % 2}"))], codebook, TODAY)
                for n in range(CLIENTS)]
    errors, summaries = _run_together(database, variants)
    assert errors == []
    revised = sum(s.revised for s in summaries)
    record = database.episodes.get("2017-oval-office-disclosure", "ISR", "humint")
    # identical content never makes a new revision: each change of content makes one, so
    # the count of revisions equals the changes the clients' arrival order made
    assert record["revision"] == 1 + revised
    assert [h["revision"] for h in record["history"]] == list(range(1, revised + 2))
    assert 1 <= revised <= CLIENTS
    assert record["notes"] in ("note 0", "note 1")
    assert sum(s.unchanged for s in summaries) == CLIENTS - revised


def test_the_same_rows_in_different_orders_from_many_clients_are_stored_once(database, codebook):
    batch = validate_episodes(list(enumerate(_rows(PARTNERS), start=2)), codebook, TODAY)
    # each client starts at another row: new rows would be taken in crossing orders
    batches = [batch[n * 3:] + batch[:n * 3] for n in range(CLIENTS)]
    errors, summaries = _run_together(database, batches)
    assert errors == []
    assert database.episodes.count() == len(batch)
    assert sum(s.inserted for s in summaries) == len(batch)
    assert set(_revision_counts(database).values()) == {1}
