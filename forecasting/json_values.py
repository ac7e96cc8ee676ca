"""Values as strict JSON holds them: no NaN or infinity, no numpy scalars or arrays.

Python's encoder writes a non-finite float as a bare `NaN`, which strict parsers refuse. The
registry's metadata, the evaluation reports and the API's answers all pass through `finite`:
an undefined number (the R-hat of a constant, a degenerate diagnostic) becomes null.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (at any depth) replaced by None, numpy scalars
    and arrays as Python numbers and lists, and mapping keys as strings."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
