"""Which coded episodes a forecast rests on (pure pandas: no store, no PyMC).

The model pools: a cell learns most from its own episodes (same partner, same type), then from
its partner's other types (the partner term), then from its bloc's other partners with the same
type (the bloc x type term). `evidence` lists them in that order, most recent first within each
kind, at most `limit` of each, and counts every one; a forecast with no episode of its own cell
says so plainly (`"direct": false`).
"""

from __future__ import annotations

import pandas as pd

from forecasting.domain.codebook import Codebook

# relation key -> what the episode is to the queried cell, closest first
RELATIONS = {
    "same_partner_and_type": "same partner and type",
    "same_partner_other_types": "same partner, other types",
    "same_bloc_and_type": "same bloc and type, other partners",
}
DEFAULT_LIMIT = 10
FIELDS = ("trigger_id", "trigger_type", "trigger_date", "severity", "alignment", "partner",
          "intel_type", "level", "sources", "confidence")


def _sources(value) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split("|") if s.strip()]
    return [str(s) for s in value]


def _date(value) -> str:
    return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]


def _episode(row: dict, relation: str) -> dict:
    return {"trigger_id": str(row["trigger_id"]), "trigger_type": str(row["trigger_type"]),
            "trigger_date": _date(row["trigger_date"]), "severity": int(row["severity"]),
            "alignment": int(row["alignment"]), "partner": str(row["partner"]),
            "intel_type": str(row["intel_type"]), "level": int(row["level"]),
            "sources": _sources(row["sources"]), "confidence": str(row["confidence"]),
            "relation": RELATIONS[relation]}


def _note(partner: str, intel_type: str, bloc: str, counts: dict, restricted: dict) -> str:
    own, others, mates = (counts[k] for k in RELATIONS)
    pooled = (f"{others} episode(s) of {partner} with other types and {mates} of other {bloc} "
              f"partners with {intel_type}")
    if own:
        return (f"{own} coded episode(s) of {partner} x {intel_type} ("
                f"{restricted['same_partner_and_type']} with a restriction) inform this forecast "
                f"directly; it also borrows from {pooled}, through the model's pooling.")
    if others:
        return (f"No direct evidence: no episode of {partner} x {intel_type} is coded. The "
                f"forecast rests on {pooled}, through the model's pooling.")
    return (f"No direct evidence: no episode of {partner} is coded at all, so its partner terms "
            f"are drawn from its bloc ({bloc}). The forecast rests on {mates} episode(s) of "
            f"other {bloc} partners with {intel_type} and on the rest of the data, through the "
            f"model's pooling.")


def evidence(episodes: pd.DataFrame, codebook: Codebook, partner: str, intel_type: str,
             limit: int = DEFAULT_LIMIT) -> dict:
    """The episodes behind the forecast of PARTNER x INTEL_TYPE: the API's `"evidence"`.

    `episodes` has at least FIELDS as columns (`sources` a list or ` | `-separated text);
    rows of other partners and blocs are ignored. Returns `direct`, `note`, `counts` and
    `restricted` (episodes with level >= 1) per relation, `limit`, and `episodes` (at most
    `limit` of each relation, closest relation first, most recent first within it).
    """
    codebook.check("partner", partner)
    codebook.check("intel_type", intel_type)
    if limit < 0:
        raise ValueError(f"limit: must be 0 or more, got {limit}")
    bloc = codebook.bloc_of(partner)
    frame = episodes.loc[:, list(FIELDS)] if len(episodes) else pd.DataFrame(columns=FIELDS)
    mates = {code for code, p in codebook.partners.items() if p.bloc == bloc} - {partner}
    same_type = frame["intel_type"] == intel_type
    same_partner = frame["partner"] == partner
    kinds = {
        "same_partner_and_type": frame[same_partner & same_type],
        "same_partner_other_types": frame[same_partner & ~same_type],
        "same_bloc_and_type": frame[frame["partner"].isin(mates) & same_type],
    }
    counts = {k: int(len(rows)) for k, rows in kinds.items()}
    restricted = {k: int((rows["level"].astype(int) >= 1).sum()) for k, rows in kinds.items()}
    listed = []
    for key, rows in kinds.items():
        rows = rows.assign(_date=rows["trigger_date"].map(_date)).sort_values(
            ["_date", "trigger_id", "partner", "intel_type"],
            ascending=[False, True, True, True])
        listed += [_episode(row, key) for row in rows.head(limit).to_dict("records")]
    return {"direct": counts["same_partner_and_type"] > 0,
            "note": _note(partner, intel_type, bloc, counts, restricted),
            "counts": counts, "restricted": restricted, "limit": int(limit),
            "episodes": listed}
