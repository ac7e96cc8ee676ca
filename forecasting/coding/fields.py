"""The coded fields whose agreement is measured, and how each is measured.

Imported by forecasting.settings (to check FORECAST_CODING_ALPHA_FLOOR): it imports nothing.
"""

# field -> Krippendorff level of measurement. The ordinal scales (0-3) are ordinal; the
# codes are nominal; a trigger date is nominal too (two coders agree on a date or not).
CODED_FIELDS = {
    "level": "ordinal",
    "severity": "ordinal",
    "alignment": "ordinal",
    "trigger_type": "nominal",
    "confidence": "nominal",
    "trigger_date": "nominal",
}
# The value domain of the ordinal fields: every scale is 0-3 (forecasting.domain.episodes).
ORDINAL_DOMAIN = (0, 1, 2, 3)
# Krippendorff's conventional bars: rely on a variable at alpha >= 0.8; draw only tentative
# conclusions from 0.667 up; below, do not rely on it.
RELIABLE_ALPHA = 0.8
TENTATIVE_ALPHA = 0.667


def parse_floor(text: str, setting: str = "FORECAST_CODING_ALPHA_FLOOR") -> dict[str, float]:
    """"level=0.8, severity=0.667" -> {"level": 0.8, "severity": 0.667}; "" -> {}.

    Raises ValueError naming the setting, the entry and the fields allowed.
    """
    floor: dict[str, float] = {}
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        name, sep, value = (s.strip() for s in entry.partition("="))
        if not sep or name not in CODED_FIELDS:
            raise ValueError(f"{setting}={text!r}: {entry!r} must be FIELD=ALPHA with FIELD one "
                             f"of {list(CODED_FIELDS)}")
        try:
            alpha = float(value)
        except ValueError:
            raise ValueError(f"{setting}={text!r}: {value!r} in {entry!r} is not a number"
                             ) from None
        if not -1 <= alpha <= 1:
            raise ValueError(f"{setting}={text!r}: {name}={value} must be between -1 and 1")
        floor[name] = alpha
    return floor
