"""The gate: a fit is served only if its convergence and its fit to the data meet the rule.

Convergence: every threshold of GateThresholds (R-hat, ESS, divergences, E-BFMI, tree depth),
and no frozen quantity (one without an R-hat although it varies).

Fit (the posterior predictive checks of forecasting.model.diagnostics):
- every headline check (the overall share of each level, the number of (trigger, partner)
  clusters with any restriction, the number of triggers with any restriction) has a
  two-sided posterior predictive p-value of at least `ppc_alpha`;
- of the per-group checks (level shares per bloc, type and partner, restrictions per decade;
  groups with fewer episodes than diagnostics.PPC_MIN_GROUP_EPISODES exempt, and pooled), at
  most a share `ppc_max_group_outside` has a two-sided p-value below `ppc_group_alpha`
  (lies outside its central 1 - ppc_group_alpha interval).

Not gated, reported: PSIS-LOO per episode, per cell and per trigger (docs/model.md, "The
gate", says why). A check that could not be computed fails.
"""

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


def _names(worst: dict[str, float] | None, shown: int = 3) -> str:
    """": a 1.2, b 1.1" for the worst entries of a convergence check, if the diagnostics
    carry them."""
    if not worst:
        return ""
    return ": worst " + ", ".join(f"{name} {value:.4g}" for name, value in
                                  list(worst.items())[:shown])


def _value(x: float) -> str:
    return f"{x:.4g}"


def _ppc_reasons(ppc: dict[str, Any], t: GateThresholds) -> list[str]:
    """The rule on the posterior predictive checks; each failure names check, value, limit."""
    if not ppc or not ppc.get("headline"):
        return [f"posterior predictive checks: not available (needed headline p >= "
                f"{t.ppc_alpha:g}, per-group checks outside <= {t.ppc_max_group_outside:.0%})"]
    reasons = []
    for name, row in ppc["headline"].items():
        if row["p"] < t.ppc_alpha:
            reasons.append(
                f"ppc {name}: observed {_value(row['observed'])}, replicated "
                f"{_value(row['mean'])} [{_value(row['lower'])}, {_value(row['upper'])}], "
                f"p = {row['p']:.3g} (needed p >= {t.ppc_alpha:g})")
    checked, outside = 0, []
    for family, table in (ppc.get("groups") or {}).items():
        for label, entry in table.items():
            if entry.get("exempt"):
                continue
            for quantity, row in entry["checks"].items():
                checked += 1
                if row["p"] < t.ppc_group_alpha:
                    outside.append((row["p"], f"{family}={label} {quantity} observed "
                                    f"{row['observed']:.3f} [{row['lower']:.3f}, "
                                    f"{row['upper']:.3f}] p = {row['p']:.3g}"))
    if checked and len(outside) / checked > t.ppc_max_group_outside:
        worst = "; ".join(text for _, text in sorted(outside)[:5])
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        reasons.append(
            f"ppc groups: {len(outside)} of {checked} per-group checks "
            f"({len(outside) / checked:.1%}) have p < {t.ppc_group_alpha:g} (needed <= "
            f"{t.ppc_max_group_outside:.0%}): {worst}{more}")
    return reasons


def gate(diagnostics: dict[str, Any], thresholds: GateThresholds) -> Verdict:
    """Pass only if every check meets its threshold; each failure names check, value, limit
    (and, for convergence, the worst quantities)."""
    reasons: list[str] = []
    d = diagnostics
    t = thresholds
    worst = d.get("worst") or {}

    def check(name: str, value, ok, limit: str, names: str = ""):
        if value is None:
            reasons.append(f"{name}: not available (needed {limit})")
        elif not ok(value):
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            reasons.append(f"{name}: {shown} (needed {limit}){names}")

    frozen = d.get("frozen") or []
    if frozen:  # varies, yet never moves in some chain (or has no R-hat): a stuck chain
        shown = ", ".join(frozen[:5]) + (f" and {len(frozen) - 5} more" if len(frozen) > 5 else "")
        reasons.append(f"frozen: {len(frozen)} quantities stuck in a chain or without R-hat "
                       f"({shown}; needed none)")
    check("max_rhat", d.get("max_rhat"), lambda v: v <= t.max_rhat, f"<= {t.max_rhat}",
          _names(worst.get("rhat")))
    check("min_ess_bulk", d.get("min_ess_bulk"), lambda v: v >= t.min_ess_bulk,
          f">= {t.min_ess_bulk:g}", _names(worst.get("ess_bulk")))
    check("min_ess_tail", d.get("min_ess_tail"), lambda v: v >= t.min_ess_tail,
          f">= {t.min_ess_tail:g}", _names(worst.get("ess_tail")))
    check("divergences", d.get("divergences"), lambda v: v <= t.max_divergences,
          f"<= {t.max_divergences}")
    check("min_ebfmi", d.get("min_ebfmi"), lambda v: v >= t.min_ebfmi, f">= {t.min_ebfmi}")
    check("treedepth_fraction", d.get("treedepth_fraction"),
          lambda v: v <= t.max_treedepth_fraction, f"<= {t.max_treedepth_fraction}")
    reasons.extend(_ppc_reasons(d.get("ppc") or {}, t))
    passed = not reasons
    return Verdict(passed=passed, verdict="pass" if passed else "fail", reasons=reasons)
