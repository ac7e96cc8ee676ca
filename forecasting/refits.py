"""Automated, diagnostics-gated refits, delivered by huey (SQLite by default, Redis by URL).

A change (episodes, priors, a hand request, the periodic schedule) calls `request`: a job
row is queued in the database (or the change coalesces into the job already queued) and
its id is handed to huey with the settling delay. A worker claims the job only while no
other refit runs, beats a heartbeat while fitting, and records the outcome. The database
row, not the queue, is the source of truth: a worker killed mid-fit leaves a job whose
heartbeat goes stale, and the sweeper (at worker start and every minute) queues it again.
Versions are written atomically by the registry, so a killed fit leaves none behind.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from huey import RedisHuey, SqliteHuey, crontab
from huey.api import Huey

from forecasting.domain.codebook import Codebook, load_codebook
from forecasting.registry import Registry
from forecasting.services.models import promote_if_new_and_passing, prune
from forecasting.settings import Settings
from forecasting.store import Database

log = logging.getLogger(__name__)
REASONS = ("episodes", "priors", "manual", "periodic")
BUSY_RETRY_SECONDS = 15.0
WORKER_ACTOR = "refit-worker"  # who promotes a passing refit (the audit row names the job)


def make_huey(settings: Settings, immediate: bool = False) -> Huey:
    """Embedded SQLite queue in the instance folder, or Redis when FORECAST_QUEUE_URL says so."""
    url = settings.queue_url
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("forecasting-refits", url=url, immediate=immediate)
    if url:
        raise ValueError(f"FORECAST_QUEUE_URL={url!r}: use a redis:// URL, or leave it empty "
                         "for the embedded SQLite queue")
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("forecasting-refits", filename=str(settings.instance_path / "queue.sqlite3"),
                      immediate=immediate)


def model_status(database: Database, registry: Registry) -> dict[str, Any]:
    """Current version, whether it is stale (and since when), queued and running refits."""
    current = registry.current_or_none()
    latest_priors = database.priors.latest()
    stale, since, why = False, None, []
    if current is None:
        stale, why = True, ["no current model"]
    else:
        seen = current.metadata.get("store_revision")
        if seen is None or database.episodes.latest_revision_id() > seen:
            stale = True
            why.append("episodes added or revised since the fit")
            since = database.refits.first_change_after(seen or 0)
        if database.codings.latest_change_id() > current.metadata.get("coding_revision", 0):
            stale = True  # another coder's coding may hold an episode back (issue 20)
            why.append("codings recorded since the fit")
        seen_priors = current.metadata.get("prior_set_id")
        if latest_priors is not None and latest_priors["id"] != seen_priors:
            stale = True
            why.append("priors changed since the fit")
            since = min(filter(None, [since, latest_priors["created_at"]]), default=None)
    active = database.refits.active()
    return {
        "current_version": current.version if current else None,
        "current_fitted_at": current.fitted_at if current else None,
        "stale": stale, "stale_since": since, "stale_reasons": why,
        "queued": [j for j in active if j["status"] == "queued"],
        "running": [j for j in active if j["status"] == "running"],
    }


def release_memory() -> None:
    """Free what a fit left behind, and hand the freed heap back to the system.

    A fit's posterior tree (an xarray DataTree: parents and children refer to each other) and
    its PyTensor graph are reference cycles, freed only by a full collection; with the
    worker's ~650,000 long-lived objects CPython runs one only every few dozen refits, so
    each refit's tens of MB piled up until then (docs/reliability.md, "Worker memory").
    glibc then keeps most freed pages in its arenas: malloc_trim returns them.
    """
    gc.collect()
    if (trim := _malloc_trim()) is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def _default_fit(settings: Settings, database: Database, registry: Registry, codebook: Codebook):
    from forecasting.services.fits import fit_and_register  # imports PyMC: only workers pay for it

    # the worker promotes (and audits) itself, naming the job
    return fit_and_register(settings, database, registry, codebook, promote=False)


@dataclass
class RefitService:
    """Everything a web process or a worker needs to request, run and report refits."""

    settings: Settings
    database: Database
    registry: Registry
    codebook: Codebook
    huey: Huey
    fit: Callable = _default_fit
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self):
        service = self

        @self.huey.task(name="refit", retries=2, retry_delay=30)
        def refit_task(job_id: int):
            service.run(job_id)

        @self.huey.task(name="sweep")
        def sweep_task():
            service.sweep()

        cron = self.settings.refit_schedule
        if cron:
            minute, hour, day, month, day_of_week = cron.split()

            @self.huey.periodic_task(crontab(minute, hour, day, month, day_of_week),
                                     name="periodic-refit")
            def periodic_refit():
                service.request("periodic", "schedule")

        @self.huey.periodic_task(crontab(minute="*"), name="sweep-orphans")
        def periodic_sweep():
            service.sweep()

        self.refit_task, self.sweep_task = refit_task, sweep_task

    @classmethod
    def from_settings(cls, settings: Settings, database: Database, *,
                      registry: Registry | None = None, codebook: Codebook | None = None,
                      huey: Huey | None = None, **kwargs) -> RefitService:
        """The service every process builds (API, CLI, worker): the queue from the settings."""
        return cls(settings=settings, database=database,
                   registry=registry or Registry(settings.registry_path),
                   codebook=codebook or load_codebook(settings.codebook_path),
                   huey=huey or make_huey(settings), **kwargs)

    # -- producing ----------------------------------------------------------------------
    def request(self, reason: str, actor: str, delay: float | None = None) -> dict:
        """Queue a refit after the settling delay, coalescing with one already queued."""
        if reason not in REASONS:
            raise ValueError(f"Requested reason '{reason}' but it must be one of {list(REASONS)}")
        delay = self.settings.refit_delay_seconds if delay is None else delay
        job, created = self.database.refits.request(reason, actor, delay)
        if created:
            self.refit_task.schedule(args=(job["id"],), delay=delay)
        log.info("refit %s for %s by %s (%s)", job["id"], reason, actor,
                 "queued" if created else "coalesced")
        return job

    # -- consuming ----------------------------------------------------------------------
    def run(self, job_id: int) -> dict | None:
        """Run one job in this process: claim, fit, gate, promote on pass (audited), record."""
        from huey.exceptions import RetryTask

        jobs = self.database.refits
        claim = jobs.claim(job_id, self.worker_name, self.stale_after)
        if claim == "gone":
            return jobs.get(job_id)
        if claim == "busy":  # one refit at a time: come back later
            raise RetryTask(delay=BUSY_RETRY_SECONDS)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job_id, stop), daemon=True)
        beat.start()
        try:
            # in its own frame, so that the fit's objects are unreachable when memory is released
            return self._fit_and_record(job_id)
        except Exception as exc:
            log.exception("refit %s raised", job_id)
            job = jobs.get(job_id)
            if job["attempts"] >= 3:
                return jobs.finish(job_id, "error", detail={"error": repr(exc)})
            jobs.requeue(job_id, {"error": repr(exc)})
            raise  # huey retries it
        finally:
            stop.set()
            beat.join(timeout=5)
            release_memory()  # an unattended worker must not grow refit after refit

    def _fit_and_record(self, job_id: int) -> dict:
        """Fit unless nothing changed, gate, promote on pass (audited), record."""
        jobs = self.database.refits
        status = model_status(self.database, self.registry)
        if not status["stale"]:
            return jobs.finish(job_id, "skipped", detail={
                "note": "the current model already reflects every change",
                "version": status["current_version"]})
        outcome = self.fit(self.settings, self.database, self.registry, self.codebook)
        version = outcome.version
        job = jobs.get(job_id)
        promoted = promote_if_new_and_passing(
            self.registry, self.database, version, WORKER_ACTOR,
            f"refit {job_id} ({job['reason']}, requested by {job['requested_by']}) passed "
            "its diagnostics gate")
        record = jobs.finish(
            job_id, "succeeded" if version.passed else "failed",
            version=version.version, verdict=version.verdict,
            promoted=int(promoted), episodes=version.episodes,
            data_hash=version.metadata.get("data_hash"),
            detail={"reasons": version.reasons, "reused": outcome.reused,
                    "timings": version.metadata.get("timings", {})})
        if promoted and self.settings.retention.prune_after_refit:
            self._prune_after(job_id)
        return record

    def _prune_after(self, job_id: int) -> None:
        """Apply the retention policy after a promotion; a failed prune fails no refit."""
        try:
            prune(self.settings, self.registry, self.database, WORKER_ACTOR,
                  reason=f"after refit {job_id} was promoted")
        except Exception:
            log.exception("pruning model versions after refit %s failed", job_id)

    @property
    def stale_after(self) -> float:
        """A running job silent this long belongs to a dead worker."""
        return self.settings.refit_stale_after_seconds

    def _beat(self, job_id: int, stop: threading.Event) -> None:
        while not stop.wait(self.stale_after / 6):
            try:
                self.database.refits.heartbeat(job_id)
            except Exception:  # a missed beat is not worth killing the fit for
                log.warning("heartbeat of refit %s failed", job_id, exc_info=True)

    def sweep(self) -> list[int]:
        """Queue again the jobs of dead workers, and re-deliver queued jobs the queue lost."""
        requeued = []
        for job_id in self.database.refits.orphans(self.stale_after):
            self.database.refits.requeue(job_id, {"note": "worker stopped; queued again"})
            requeued.append(job_id)
        for job_id in self.database.refits.queued_ids():
            if job_id in requeued or not self._in_queue(job_id):
                self.refit_task.schedule(args=(job_id,), delay=0)
        if requeued:
            log.warning("requeued refits of dead workers: %s", requeued)
        return requeued

    def _in_queue(self, job_id: int) -> bool:
        """Is a delivery of this job pending in huey (queued or scheduled)?"""
        pending = list(self.huey.pending()) + list(self.huey.scheduled())
        return any(t.name == "refit" and tuple(t.args) == (job_id,) for t in pending)

    def consumer(self, workers: int = 1):
        return self.huey.create_consumer(workers=workers, worker_type="thread", periodic=True,
                                         check_worker_health=True)
