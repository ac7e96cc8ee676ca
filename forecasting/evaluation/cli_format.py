"""Evaluation reports (JSON-able dicts) -> rich Tables for `forecast backtest|sbc|sensitivity`."""

from __future__ import annotations

from rich.table import Table

SCORE_LABELS = {"brier": "Brier", "log": "log", "rps": "RPS", "brier_any": "Brier (any)",
                "log_any": "log (any)"}


def _f(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def backtest_tables(report: dict) -> list[Table]:
    """Mean scores per forecaster; model - baseline differences with intervals; folds."""
    scores = report["scores"]
    model = report["model"]
    t1 = Table(title=f"Backtest: {report['n_episodes']} held-out episodes, {report['n_folds']} "
                     f"folds (mean loss, lower is better; observed any restriction "
                     f"{report['observed_any']:.1%})")
    t1.add_column("forecaster")
    for s in scores:
        t1.add_column(SCORE_LABELS.get(s, s), justify="right")
    t1.add_column("cov50/90 (PIT)", justify="right")
    for name, f in report["forecasters"].items():
        cov = f["pit"]["coverage"]
        label = f"[bold]{name}[/]" if name == model else name
        t1.add_row(label, *[_f(f["scores"][s]) for s in scores],
                   f"{cov['0.5']:.2f}/{cov['0.9']:.2f}")
    ci = next((c["ci"] for comp in report["comparisons"].values() for c in comp.values()), 0.9)
    t2 = Table(title=f"{model} - baseline, mean per episode with {ci:.0%} trigger-clustered "
                     "bootstrap interval (< 0: model better)")
    t2.add_column("baseline")
    for s in scores:
        t2.add_column(SCORE_LABELS.get(s, s), justify="right")
    for base, comp in report["comparisons"].items():
        cells = []
        for s in scores:
            c = comp[s]
            style = "green" if c["hi"] < 0 else ("red" if c["lo"] > 0 else "")
            text = f"{c['mean']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]"
            cells.append(f"[{style}]{text}[/]" if style else text)
        t2.add_row(base, *cells)
    t3 = Table(title="Folds")
    for col in ("origin", "train", "test", "observed any", f"{model} log", "R-hat max", "div"):
        t3.add_column(col, justify="right")
    for fold in report["folds"]:
        t3.add_row(fold["origin"], str(fold["n_train"]), str(fold["n_test"]),
                   f"{fold['observed_any']:.2f}",
                   _f(fold["scores"].get(model, {}).get("log")),
                   _f(fold.get(f"{model}_max_rhat"), 3),
                   "-" if fold.get(f"{model}_divergences") is None
                   else str(int(fold[f"{model}_divergences"])))
    return [t1, t2, t3]


def sbc_tables(report: dict) -> list[Table]:
    t = Table(title=f"SBC: {report['n_ok']}/{report['n_sims']} simulations of "
                    f"{report['n_episodes']} episodes, ranks among {report['n_draws']} draws; "
                    f"Bonferroni min p = {report['adjusted_min_pvalue']:.3f} "
                    f"({'uniform' if report['uniform'] else 'NOT uniform'})")
    t.add_column("quantity")
    t.add_column("chi2", justify="right")
    t.add_column("bins", justify="right")
    t.add_column("p-value", justify="right")
    for name, test in report["tests"].items():
        p = test["pvalue"]
        t.add_row(name, f"{test['chi2']:.2f}", str(test["bins"]),
                  f"[red]{p:.3f}[/]" if p < 0.01 else f"{p:.3f}")
    c = Table(title="Coverage of posterior intervals of the true P(any restriction) per cell "
                    "(expected: what exact calibration gives with this many draws)")
    c.add_column("interval")
    c.add_column("coverage", justify="right")
    c.add_column("expected", justify="right")
    expected = report.get("coverage_expected", {})
    for level, value in report["coverage"].items():
        c.add_row(f"{float(level):.0%}", f"{value:.3f}", _f(expected.get(level), 3))
    return [t, c]


def sensitivity_tables(report: dict) -> list[Table]:
    t = Table(title=f"Power-scaling sensitivity of model version {report.get('version')} "
                    f"(threshold {report['threshold']}; the element most sensitive to its prior "
                    "in each group)")
    for col in ("group", "elements", "prior", "likelihood", "worst element", "diagnosis"):
        t.add_column(col, justify="right" if col in ("elements", "prior", "likelihood") else "left")
    for name, g in report["groups"].items():
        diag = g["diagnosis"]
        style = "" if diag == "ok" else ("red" if "conflict" in diag else "yellow")
        t.add_row(name, str(g["elements"]), _f(g["max_prior"], 3), _f(g["max_likelihood"], 3),
                  g["worst_element"], f"[{style}]{diag}[/]" if style else diag)
    noise = report.get("noise")
    if noise:  # the floor below which a sensitivity is the importance weights' noise
        t.caption = (f"noise floor ({noise['controls']} standard-normal controls): prior max "
                     f"{noise['prior']['max']:.3f}, likelihood max {noise['likelihood']['max']:.3f}"
                     f"; weights {'reliable' if report.get('reliable') else 'NOT reliable'} "
                     "(Pareto k)")
    h = Table(title="Headline forecasts: P(any restriction), scenario "
                    + ", ".join(f"{k}={v}" for k, v in report["scenario"].items()))
    for col in ("cell", "prior", "likelihood", "diagnosis"):
        h.add_column(col)
    for row in report["headline"]:
        h.add_row(row["cell"], _f(row["prior"], 3), _f(row["likelihood"], 3), row["diagnosis"])
    return [t, h]


def rate_backtest_tables(report: dict) -> list[Table]:
    """`forecast backtest-rates`: scores per horizon and forecaster; predicted vs observed."""
    tables = []
    for months, part in report["horizons"].items():
        t = Table(title=f"Trigger arrivals, next {months} months: {part['origins']} origins "
                        "(mean loss, lower is better)")
        for col in ("forecaster", "log per type", "CRPS per type", "log total", "CRPS total",
                    "90% covers total", "log per type - baseline (90%)"):
            t.add_column(col, justify="right")
        for name, f in part["forecasters"].items():
            d = f.get("log_vs_baseline")
            diff = "-" if d is None else f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
            label = f"[bold]{name}[/]" if name == report.get("chosen") else name
            t.add_row(label, _f(f["log_per_type"], 3), _f(f["crps_per_type"], 3),
                      _f(f["log_total"], 3), _f(f["crps_total"], 3),
                      f"{f['coverage90_total']:.2f}", diff)
        tables.append(t)
        shown = [r for r in part["per_origin"] if r["forecaster"] in (report.get("chosen"),
                                                                       "constant_rate")]
        o = Table(title=f"All triggers in the next {months} months: predicted (mean, 90%) vs "
                        "observed")
        for col in ("origin", "forecaster", "predicted", "90% interval", "observed"):
            o.add_column(col, justify="right")
        for r in shown:
            o.add_row(r["origin"], r["forecaster"], f"{r['mean']:.1f}",
                      f"[{r['lo']:.0f}, {r['hi']:.0f}]", str(r["observed"]))
        tables.append(o)
    return tables
