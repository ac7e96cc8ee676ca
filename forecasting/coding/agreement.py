"""Which double-coded episodes agree, which disagree, which were adjudicated; the floor.

The rule (docs/coding.md): an episode coded by one coder is *single*; by two or more who
agree on every coded field, *agreed*; by coders who disagree on any coded field, *disputed*
until an adjudicator records its final value, then *adjudicated*. A coding recorded after
the adjudication reopens the dispute if it disagrees. A disputed episode is held back from
the fit (never fed with one coder's value picked arbitrarily); every other episode is fed
with the value the episodes table holds: the single coding, the agreed one, or the
adjudicated one.

Pure: codings and adjudications in, statuses and reasons out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from forecasting.coding.fields import CODED_FIELDS

STATUSES = ("single", "agreed", "adjudicated", "disputed")
FLOOR_SETTING = "FORECAST_CODING_ALPHA_FLOOR"


def differing_fields(by_coder: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The coded fields on which the coders' values are not all the same."""
    return [f for f in CODED_FIELDS if len({str(v[f]) for v in by_coder.values()}) > 1]


def status(by_coder: Mapping[str, Mapping[str, Any]], recorded: Mapping[str, dt.datetime],
           adjudicated_at: dt.datetime | None) -> str:
    """One episode's status from its current codings (coder -> values), when each was
    recorded, and when it was last adjudicated (None: never)."""
    if len(by_coder) < 2:
        return "single"
    if adjudicated_at is not None and adjudicated_at >= max(recorded.values()):
        return "adjudicated"
    return "disputed" if differing_fields(by_coder) else "agreed"


def disagreement(by_coder: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """field -> coder -> value, for the fields the coders disagree on."""
    return {f: {coder: values[f] for coder, values in sorted(by_coder.items())}
            for f in differing_fields(by_coder)}


def floor_check(report: Mapping[str, Any], floor: Mapping[str, float]
                ) -> tuple[list[str], list[str]]:
    """(reasons the refit's gate fails, notes) for a reliability report against the floor.

    A field below its floor fails, naming the field, its alpha, interval and the floor. A
    field that could not be measured (no double coding at all, or no variation) does not
    fail: it is noted as not measured."""
    reasons, notes = [], []
    if not floor:
        return reasons, notes
    if not report.get("episodes"):
        notes.append(f"coding reliability: not measured (no double-coded episodes; floor "
                     f"{_floor_text(floor)} not checked)")
        return reasons, notes
    for field, needed in floor.items():
        entry = report["fields"][field]
        alpha = entry["alpha"]
        if alpha is None:
            notes.append(f"coding {field}: alpha not measured ({entry['episodes']} double-coded "
                         f"episodes, no variation in the values; floor {needed:g} not checked)")
        elif alpha < needed:
            interval = entry.get("ci95")
            shown = (f" (95% interval {interval[0]:.3f} to {interval[1]:.3f})"
                     if interval else "")
            reasons.append(f"coding {field}: Krippendorff's alpha {alpha:.3f}{shown} on "
                           f"{entry['episodes']} double-coded episodes (needed >= {needed:g}, "
                           f"{FLOOR_SETTING})")
    return reasons, notes


def _floor_text(floor: Mapping[str, float]) -> str:
    return ", ".join(f"{field} >= {value:g}" for field, value in floor.items())
