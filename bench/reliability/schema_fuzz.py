"""Property-based run of the whole OpenAPI document, writes included, with schemathesis.

    .venv/bin/python bench/reliability/schema_fuzz.py [--examples 1000] [--quick] [--instance DIR]

Starts `forecast serve` on a temporary instance holding the seed episodes and a small fitted
model (2 chains x 100 draws; the gate loosened, since the gate is not under test), and runs
`schemathesis run` (4.x) against its /openapi.json: every check (`--checks all`), the
examples, coverage, fuzzing and stateful phases, --examples test cases per operation, and an
admin token on every request so that writes (episodes, priors, promotions, refits) are
exercised past authentication. No refit worker runs: queued refits stay queued. The
schemathesis JSON report and the server log are kept in the instance folder.

Prints the failures as a table (operation, check, title, count) and the 5xx answers counted in
the server's access log. Exits 1 when schemathesis found any failure or the server answered any
5xx.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Instance, check, print_table, provenance  # noqa: E402

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def failures_from_output(text: str) -> list[tuple[str, str, str]]:
    """(operation, "STxxx title", what it saw) per failing test case, from schemathesis's
    FAILURES section (its ndjson report does not carry the checks' outcomes)."""
    if "= FAILURES =" not in text:
        return []
    section = text.split("= FAILURES =", 1)[1].split("\nAPI Operations:", 1)[0]
    found, operation, current = [], "", None
    for line in section.splitlines():
        stripped = line.strip()
        if m := re.match(r"^_{3,} (.+?) _{3,}$", line):
            operation = m.group(1)
        elif m := re.match(r"^- (ST\d+ .+)$", line):
            current = [operation, m.group(1).strip(), []]
            found.append(current)
        elif current is not None and stripped.startswith("Reproduce with"):
            current = None
        elif current is not None and stripped and not stripped.startswith(("Expected:", "Valid data",
                                                                           "Invalid data")):
            current[2].append(stripped.strip("`"))
    return [(op, title, " ".join(seen)[:160]) for op, title, seen in found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", help="instance folder (default: a new temporary one)")
    parser.add_argument("--examples", type=int, default=1000, help="test cases per operation")
    parser.add_argument("--quick", action="store_true", help="25 examples per operation")
    parser.add_argument("--max-time", type=float, default=None,
                        help="seconds; schemathesis stops generating when spent")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--workers", default="2", help="schemathesis's concurrent workers")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    examples = 25 if args.quick else args.examples

    inst = Instance.create(args.instance, {"FORECAST_REFIT_DELAY": "3600",
                                           "FORECAST_DRAWS": "100", "FORECAST_TUNE": "100"},
                           prefix="reliability-schema-")
    print(f"instance {inst.path}; {provenance()}", flush=True)
    rows: list[tuple] = []
    report = inst.path / "schemathesis.ndjson"
    output = inst.path / "schemathesis.out"
    try:
        inst.prepare(fit=True)
        server = inst.serve(workers=2)
        command = [
            SCHEMATHESIS, "run", f"{server.url}/openapi.json", "--url", server.url,
            "--checks", "all", "--phases", args.phases, "--max-examples", str(examples),
            "--header", f"Authorization: Bearer {inst.tokens['admin']}",
            "--workers", args.workers, "--seed", str(args.seed), "--request-timeout", "120",
            "--suppress-health-check", "all", "--generation-database", "none",
            "--continue-on-failure", "--no-color", "--output-sanitize", "true",
            "--report", "ndjson,junit", "--report-ndjson-path", str(report),
            "--report-junit-path", str(inst.path / "schemathesis-junit.xml"),
        ]
        if args.max_time:
            command += ["--max-time", str(args.max_time)]
        print(" ".join(c if "Bearer" not in c else "'Authorization: Bearer ...'"
                       for c in command), flush=True)
        t0 = time.monotonic()
        done = subprocess.run(command, cwd=inst.path, text=True, capture_output=True)
        seconds = time.monotonic() - t0
        output.write_text(done.stdout + done.stderr)
    finally:
        inst.stop_all()

    access = "\n".join((inst.path / p.name).read_text(errors="replace")
                       for p in inst.path.glob("serve-*.log"))
    statuses = collections.Counter(int(m) for m in re.findall(r'HTTP/1\.[01]" (\d{3}) ', access))
    five_xx = sum(n for s, n in statuses.items() if s >= 500)
    tracebacks = access.count("Traceback (most recent call last)")
    failures = failures_from_output(done.stdout)
    summary = done.stdout.split("Test cases:", 1)[-1].strip().splitlines()[:1]

    grouped = collections.Counter((op, title) for op, title, _ in failures)
    example = {(op, title): seen for op, title, seen in reversed(failures)}
    print_table("failures (operation, failure, first case seen)",
                [(op, title, n, example[op, title]) for (op, title), n in sorted(grouped.items())],
                ("operation", "failure", "cases", "seen"))
    by_code = collections.Counter(t.split()[0] for _, t, _ in failures)
    check(rows, "schemathesis exit code", done.returncode, done.returncode == 0, "0")
    check(rows, "test cases", summary[0] if summary else "?", True)
    check(rows, "failures (operation, failure): distinct", len(grouped), not grouped, "0")
    check(rows, "failures by code", dict(sorted(by_code.items())) or "none", True)
    # ST101/ST102: server errors; the other ST1xx: a response unlike its documentation
    server_errors = sum(n for (_, t), n in grouped.items() if t.startswith(("ST101", "ST102")))
    check(rows, "server errors found by schemathesis", server_errors, server_errors == 0, "0")
    violations = sum(n for (_, t), n in grouped.items()
                     if t.startswith("ST1") and not t.startswith(("ST101", "ST102")))
    check(rows, "response conformance failures (schema, status, type, headers)", violations,
          violations == 0, "0")
    check(rows, "requests in the access log", sum(statuses.values()), True)
    check(rows, "5xx in the access log", five_xx, five_xx == 0, "0")
    check(rows, "tracebacks in the server log", tracebacks, True, "informative")
    check(rows, "status codes", dict(sorted(statuses.items())), True)
    check(rows, "examples per operation / wall time (min)", f"{examples} / {seconds / 60:.1f}",
          True)
    print_table(f"schemathesis ({examples} examples per operation, phases {args.phases}, "
                f"instance {inst.path})", rows)
    return 0 if all(r[3] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
