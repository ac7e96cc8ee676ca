"""The gate: a fit is served only if every diagnostic meets its threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forecasting.settings import GateThresholds


@dataclass(frozen=True)
class Verdict:
    passed: bool
    verdict: str
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict, "reasons": list(self.reasons)}


def gate(diagnostics: dict[str, Any], thresholds: GateThresholds) -> Verdict:
    """Pass only if every check meets its threshold; each failure names check, value, limit."""
    reasons: list[str] = []

    def check(name: str, value, ok, limit: str):
        if value is None:
            reasons.append(f"{name}: not available (needed {limit})")
        elif not ok(value):
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            reasons.append(f"{name}: {shown} (needed {limit})")

    d = diagnostics
    t = thresholds
    frozen = d.get("frozen") or []
    if frozen:  # no R-hat although it varies: chains that never moved, or moved apart
        shown = ", ".join(frozen[:5]) + (f" and {len(frozen) - 5} more" if len(frozen) > 5 else "")
        reasons.append(f"frozen: {len(frozen)} quantities have no R-hat ({shown}; needed none)")
    check("max_rhat", d.get("max_rhat"), lambda v: v <= t.max_rhat, f"<= {t.max_rhat}")
    check("min_ess_bulk", d.get("min_ess_bulk"), lambda v: v >= t.min_ess_bulk,
          f">= {t.min_ess_bulk:g}")
    check("min_ess_tail", d.get("min_ess_tail"), lambda v: v >= t.min_ess_tail,
          f">= {t.min_ess_tail:g}")
    check("divergences", d.get("divergences"), lambda v: v <= t.max_divergences,
          f"<= {t.max_divergences}")
    check("min_ebfmi", d.get("min_ebfmi"), lambda v: v >= t.min_ebfmi, f">= {t.min_ebfmi}")
    check("treedepth_fraction", d.get("treedepth_fraction"),
          lambda v: v <= t.max_treedepth_fraction, f"<= {t.max_treedepth_fraction}")
    loo = d.get("loo") or {}
    check("max_pareto_k", loo.get("max_pareto_k"), lambda v: v <= t.max_pareto_k,
          f"<= {t.max_pareto_k}")
    passed = not reasons
    return Verdict(passed=passed, verdict="pass" if passed else "fail", reasons=reasons)
