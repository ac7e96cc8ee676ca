"""A real worker process killed with SIGKILL in the middle of a fit (slow: real sampling)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forecasting.settings import DEFAULT_DATA_DIR, load_settings
from forecasting.store import connect

pytestmark = pytest.mark.slow
FORECAST = str(Path(sys.executable).parent / "forecast")


def _wait_for(predicate, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if (value := predicate()):
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_fit_leaves_no_version_and_the_job_is_retried(tmp_path):
    instance = tmp_path / "instance"
    env = dict(os.environ, FORECAST_INSTANCE=str(instance), FORECAST_DRAWS="200",
               FORECAST_TUNE="200", FORECAST_REFIT_DELAY="0", FORECAST_REFIT_STALE_AFTER="3",
               FORECAST_REFIT_SCHEDULE="")
    seed = (DEFAULT_DATA_DIR / "episodes.csv").read_text().splitlines()
    (tmp_path / "some.csv").write_text("\n".join(seed[:201]) + "\n")
    for args in (["init"], ["import", str(tmp_path / "some.csv")]):  # the import queues a refit
        subprocess.run([FORECAST, *args], env=env, check=True, capture_output=True)
    database = connect(load_settings(env).database_url)
    job = lambda: database.refits.list(limit=1)[0]  # noqa: E731
    assert job()["reason"] == "episodes" and job()["status"] == "queued"

    first = subprocess.Popen([FORECAST, "worker"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _wait_for(lambda: job()["status"] == "running", 120, "the worker to start the fit")
    time.sleep(2)  # into compilation / sampling
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    registry = instance / "models"
    assert [p.name for p in registry.iterdir() if not p.name.startswith(".tmp")] == [], \
        "a killed fit must leave no version behind"
    assert job()["status"] == "running"

    time.sleep(4)  # the dead worker's heartbeat goes stale
    second = subprocess.Popen([FORECAST, "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        done = _wait_for(lambda: job() if job()["status"] not in ("queued", "running") else None,
                         600, "the retried refit to finish")
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(timeout=60)
    assert done["status"] in ("succeeded", "failed"), done["detail"]
    assert done["attempts"] == 2 and done["version"] is not None
    assert (registry / done["version"] / "metadata.json").exists()
    assert done["episodes"] == 200
    if done["promoted"]:  # the worker's promotion is audited, naming the job
        [promotion] = [e for e in database.audit_entries() if e["action"] == "model:promote"]
        assert promotion["actor"] == "refit-worker"
        assert promotion["detail"]["version"] == done["version"]
    database.dispose()
