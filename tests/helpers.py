"""Small builders shared by tests."""

from __future__ import annotations

import io

from forecasting.domain.episodes import ALL_FIELDS
from forecasting.domain.interchange import write_rows


def episode_row(**overrides) -> dict:
    """A valid interchange row; override any field."""
    row = {
        "trigger_id": "2017-oval-office-disclosure",
        "trigger_type": "disclosure_incident",
        "trigger_date": "2017-05-15",
        "severity": "3",
        "alignment": "1",
        "partner": "ISR",
        "intel_type": "humint",
        "level": "1",
        "sources": "The Washington Post, 2017-05-15 | The New York Times, 2017-05-16",
        "coder": "tester",
        "confidence": "medium",
        "trigger_description": "Classified partner material disclosed to Russian officials",
        "coded_at": "2026-11-01",
        "notes": "",
    }
    row.update({k: str(v) for k, v in overrides.items()})
    return row


def csv_text(rows: list[dict]) -> str:
    stream = io.StringIO()
    write_rows(({f: r.get(f, "") for f in ALL_FIELDS} for r in rows), stream, "csv")
    return stream.getvalue()
