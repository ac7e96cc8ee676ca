"""What the reliability scripts share: a throw-away instance, the real processes, measurements.

Every script runs the service as it is deployed: `forecast serve` (gunicorn) and `forecast
worker` (the huey consumer) as child processes of the script, on a temporary FORECAST_INSTANCE,
configured only through FORECAST_* variables. What is measured is what a client sees: of the
service's code, only the store's PostgreSQL probe is imported here (the one the test suite uses).
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from forecasting.store.db import postgres_unreachable

ROOT = Path(__file__).resolve().parents[2]
# The code the child processes run: this checkout, or another one (e.g. `git archive` of an
# older commit) to show that the harness finds a defect a later commit fixed.
CODE = Path(os.environ.get("RELIABILITY_CODE") or ROOT).resolve()
FORECAST = [sys.executable, "-m", "forecasting.cli"]
SEED_EPISODES = ROOT / "data" / "episodes.csv"
POSTGRES_URL = os.environ.get("FORECAST_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Small fits: a refit in well under a minute on 2 busy cores. They cannot pass the production
# gate, so the harness's instances loosen it; the gate is not what is under test here.
TINY_SAMPLER = {"FORECAST_CHAINS": "2", "FORECAST_DRAWS": "100", "FORECAST_TUNE": "100"}
LOOSE_GATE = {
    "FORECAST_GATE_MAX_RHAT": "10", "FORECAST_GATE_MIN_ESS_BULK": "0",
    "FORECAST_GATE_MIN_ESS_TAIL": "0", "FORECAST_GATE_MAX_DIVERGENCES": "1000000",
    "FORECAST_GATE_MIN_EBFMI": "0", "FORECAST_GATE_MAX_TREEDEPTH_FRACTION": "0.99",
    "FORECAST_GATE_PPC_ALPHA": "0", "FORECAST_GATE_PPC_GROUP_ALPHA": "0",
    "FORECAST_GATE_PPC_MAX_GROUP_OUTSIDE": "0.99",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_reason(url: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    return postgres_unreachable(url)


def postgres_schema_url(schema: str, url: str = POSTGRES_URL) -> str:
    """A fresh schema of its own (dropped first), so that the test suite's resets of `public`
    and the harness never touch each other's tables."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@dataclass
class Instance:
    """A temporary FORECAST_INSTANCE and the environment every child process gets."""

    path: Path
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    children: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def create(cls, where: str | None, extra: dict[str, str] | None = None,
               prefix: str = "reliability-") -> Instance:
        path = Path(where).resolve() if where else Path(tempfile.mkdtemp(prefix=prefix))
        path.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORECAST_")}
        env.update({
            "FORECAST_INSTANCE": str(path),
            "FORECAST_RATE_LIMIT": "0",  # load runs measure the service, not the limiter
            "FORECAST_REFIT_SCHEDULE": "",  # refits only when the script asks
            "PYTENSOR_FLAGS": os.environ.get(
                "PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.cache' / 'pytensor'}"),
            "PYTHONUNBUFFERED": "1",
            **TINY_SAMPLER, **LOOSE_GATE, **(extra or {}),
        })
        return cls(path=path, env=env)

    def forecast(self, *args: str, check: bool = True, timeout: float = 900) -> str:
        """Run a `forecast` command to completion; its standard output."""
        done = subprocess.run([*FORECAST, *args], env=self.env, cwd=CODE, text=True,
                              capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"forecast {' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def prepare(self, seed: bool = True, fit: bool = False) -> None:
        """Migrate, import the seed episodes, issue one token per role, optionally fit."""
        self.forecast("init")
        if seed:
            self.forecast("import", str(SEED_EPISODES))
        for role in ("coder", "modeler", "admin"):
            self.tokens[role] = self.forecast("token", "create", f"reliability-{role}",
                                              "--role", role).strip().splitlines()[-1]
        if fit:
            self.forecast("fit")

    def start(self, *args: str, log_name: str) -> subprocess.Popen:
        """Start a long-running `forecast` command in its own process group, logging to a file."""
        log = open(self.path / f"{log_name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([*FORECAST, *args], env=self.env, cwd=CODE, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_file = log
        self.children.append(proc)
        return proc

    def serve(self, workers: int = 2) -> Server:
        # migrations may have landed in the working tree since `prepare`: apply them
        self.forecast("init")
        port = free_port()
        proc = self.start("serve", "--port", str(port), "--workers", str(workers),
                          log_name=f"serve-{port}")
        server = Server(proc, f"http://127.0.0.1:{port}")
        server.wait_healthy()
        return server

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop one child we started, and its process group (gunicorn's workers)."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc.log_file.close()

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            self.stop(proc)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.path / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@dataclass
class Server:
    proc: subprocess.Popen
    url: str

    def wait_healthy(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"forecast serve exited with {self.proc.returncode}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"forecast serve not healthy after {timeout} s")


def provenance() -> str:
    """The code measured: the commit, and whether the shared working tree differs from it."""
    when = time.strftime(", %Y-%m-%d %H:%M UTC", time.gmtime())
    if CODE != ROOT:
        return f"code from {CODE} (RELIABILITY_CODE){when}"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           text=True, capture_output=True).stdout.strip()
    return f"code at {head or '?'}" + (" plus uncommitted changes" if dirty else "") + when


# -- processes ----------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc: no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# -- episodes -----------------------------------------------------------------------------
def seed_rows() -> list[dict[str, str]]:
    with open(SEED_EPISODES, newline="") as f:
        return list(csv.DictReader(f))


def codebook_codes() -> tuple[list[str], list[str]]:
    import tomllib

    book = tomllib.loads((ROOT / "data" / "codebook.toml").read_text())
    return list(book["partners"]), list(book["intel_types"])


def new_episodes(count: int, prefix: str, seed: int = 0) -> list[dict]:
    """`count` valid episodes on new triggers (`prefix`-NNNN), every cell of a trigger filled in
    turn; trigger fields and sources copied from the seed data's triggers."""
    rng = np.random.default_rng(seed)
    partners, types = codebook_codes()
    templates = {r["trigger_id"]: r for r in seed_rows()}
    templates = list(templates.values())
    out, t = [], 0
    while len(out) < count:
        base = templates[t % len(templates)]
        trigger = f"{prefix}-{t:04d}"
        for p in partners:
            for it in types:
                if len(out) == count:
                    break
                out.append({
                    "trigger_id": trigger, "trigger_type": base["trigger_type"],
                    "trigger_date": base["trigger_date"], "severity": int(base["severity"]),
                    "alignment": int(base["alignment"]), "partner": p, "intel_type": it,
                    "level": int(rng.choice(4, p=[0.7, 0.15, 0.1, 0.05])),
                    "sources": base["sources"], "coder": "reliability-harness",
                    "confidence": "medium",
                    "trigger_description": f"Reliability harness copy of {base['trigger_id']}",
                })
        t += 1
    return out


# -- figures ------------------------------------------------------------------------------
def percentile_ms(latencies: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(latencies) * 1000, q)) if len(latencies) else float("nan")


def slope_per_hour(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of values over times (seconds), per hour."""
    t, v = np.asarray(times, float), np.asarray(values, float)
    if len(t) < 2 or np.ptp(t) == 0:
        return float("nan")
    return float(np.polyfit(t, v, 1)[0] * 3600)


def print_table(title: str, rows: Iterable[tuple], header: tuple = ("figure", "value", "limit",
                                                                      "ok")) -> None:
    rows = [tuple("" if c is None else str(c) for c in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    sys.stdout.flush()


def check(rows: list[tuple], name: str, value, ok: bool, limit: str = "") -> bool:
    """Append a (figure, value, limit, ok) row; return ok."""
    rows.append((name, value, limit, "yes" if ok else "NO"))
    return ok
