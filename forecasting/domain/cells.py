"""Episodes -> aggregated cells, coords and index arrays (pure numpy/pandas, no PyMC).

Episodes with identical predictors (the coded trigger, partner, intel_type, and the
trigger's type, severity and alignment) are collapsed into one cell with a count per
restriction level. Since model revision 3 the coded trigger is a predictor (its cluster
terms: the trigger's event effect, and each partner's reaction to it), so a cell is one
(trigger, partner, type): one episode, as the natural key is unique. Coords of the
vocabularies always come from the codebook (the whole vocabulary, not just what the data
contain), so that a partner with no episodes still gets a forecast from the hyperpriors;
the coords `trigger` (coded trigger ids) and `reaction` ("trigger:partner") come from the
data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.domain.codebook import Codebook, UnknownCodeError
from forecasting.model.arithmetic import CUTPOINT_LABELS, LEVELS, ORDINAL_VALUES

PREDICTORS = ("trigger_id", "partner", "intel_type", "trigger_type", "severity", "alignment")


class CellsError(ValueError):
    """Episodes that cannot be aggregated (missing columns, values out of range)."""


@dataclass(frozen=True, eq=False)
class Cells:
    """The aggregated data a model is built from: one row per distinct predictor set."""

    partner_idx: np.ndarray
    type_idx: np.ndarray
    bloc_idx: np.ndarray
    trigger_idx: np.ndarray  # trigger type
    event_idx: np.ndarray  # coded trigger (coords["trigger"])
    reaction_idx: np.ndarray  # coded trigger x partner (coords["reaction"])
    reaction_event: np.ndarray  # the coded trigger of every reaction
    severity: np.ndarray
    alignment: np.ndarray
    counts: np.ndarray  # (n_cells, 4): episodes per level
    coords: dict[str, list]
    partner_bloc: np.ndarray  # bloc index of every partner of the vocabulary
    n_episodes: int
    fingerprint: str  # the fit's data hash: the cells, their codes and each trigger's date
    codebook_version: str = ""
    trigger_years: np.ndarray | None = None  # per coords["trigger"], NaN where undated

    @property
    def n_cells(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_per_cell(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    @property
    def observed_partners(self) -> np.ndarray:
        """Per partner of the vocabulary: has it any episode?"""
        return self.episodes_per_group()["partner"] > 0

    def level_shares(self) -> np.ndarray:
        total = self.counts.sum(axis=0)
        return total / max(total.sum(), 1)

    def to_frame(self) -> pd.DataFrame:
        """Readable table: codes instead of indices, one column per level."""
        frame = pd.DataFrame({
            "trigger_id": np.asarray(self.coords["trigger"], dtype=object)[self.event_idx],
            "partner": np.asarray(self.coords["partner"], dtype=object)[self.partner_idx],
            "intel_type": np.asarray(self.coords["intel_type"], dtype=object)[self.type_idx],
            "trigger_type": np.asarray(self.coords["trigger_type"], dtype=object)[self.trigger_idx],
            "severity": self.severity,
            "alignment": self.alignment,
        })
        for k in LEVELS:
            frame[k] = self.counts[:, k]
        return frame

    def episodes_per_group(self) -> dict[str, np.ndarray]:
        """Episodes observed per level of every effect (0 for unseen groups)."""
        n = self.n_per_cell
        n_p, n_t = len(self.coords["partner"]), len(self.coords["intel_type"])
        n_b, n_tt = len(self.coords["bloc"]), len(self.coords["trigger_type"])
        return {
            "bloc": np.bincount(self.bloc_idx, weights=n, minlength=n_b),
            "partner": np.bincount(self.partner_idx, weights=n, minlength=n_p),
            "intel_type": np.bincount(self.type_idx, weights=n, minlength=n_t),
            "bloc_type": np.bincount(self.bloc_idx * n_t + self.type_idx, weights=n,
                                     minlength=n_b * n_t),
            "partner_type": np.bincount(self.partner_idx * n_t + self.type_idx, weights=n,
                                        minlength=n_p * n_t),
            "trigger_type": np.bincount(self.trigger_idx, weights=n, minlength=n_tt),
        }


def coords_from_codebook(codebook: Codebook) -> dict[str, list]:
    return {
        "bloc": list(codebook.bloc_codes),
        "partner": list(codebook.partner_codes),
        "intel_type": list(codebook.intel_type_codes),
        "trigger_type": list(codebook.trigger_type_codes),
        "cutpoint": list(CUTPOINT_LABELS),
        "level": list(LEVELS),
    }


def partner_bloc_index(codebook: Codebook) -> np.ndarray:
    blocs = list(codebook.bloc_codes)
    return np.array([blocs.index(codebook.bloc_of(p)) for p in codebook.partner_codes],
                    dtype=np.int64)


def episodes_frame(episodes: pd.DataFrame | Iterable) -> pd.DataFrame:
    """A DataFrame from a DataFrame, or from episodes (pydantic models, dataclasses, dicts)."""
    if isinstance(episodes, pd.DataFrame):
        return episodes
    rows = []
    for e in episodes:
        if isinstance(e, dict):
            rows.append(e)
        elif hasattr(e, "model_dump"):
            rows.append(e.model_dump())
        else:
            rows.append(vars(e))
    return pd.DataFrame(rows, columns=None if rows else [*PREDICTORS, "level"])


def _codes_to_index(values: pd.Series, field_name: str, allowed: list) -> np.ndarray:
    lookup = {code: i for i, code in enumerate(allowed)}
    idx = values.map(lookup)
    if idx.isna().any():
        bad = values[idx.isna()].iloc[0]
        raise UnknownCodeError(field_name, bad, allowed)
    return idx.to_numpy(dtype=np.int64)


def _ordinal(values: pd.Series, field_name: str) -> np.ndarray:
    try:
        out = pd.to_numeric(values, errors="raise")
    except (ValueError, TypeError) as exc:
        raise CellsError(f"{field_name}: expected whole numbers 0-3 ({exc})") from None
    out = out.to_numpy()
    bad = ~np.isin(out, ORDINAL_VALUES)
    if bad.any():
        raise CellsError(f"{field_name}: value {out[bad][0].item()!r} is not one of {list(ORDINAL_VALUES)}")
    return out.astype(np.int64)


def _trigger_dates(frame: pd.DataFrame, e_idx: np.ndarray, n_e: int) -> pd.Series | None:
    """Each coded trigger's date (NaT where undated), as the arrival model and the backtests
    date it: its earliest episode's; None when the episodes carry no dates."""
    if "trigger_date" not in frame.columns:
        return None
    dates = pd.Series(pd.to_datetime(frame["trigger_date"], errors="coerce").to_numpy())
    return dates.groupby(e_idx).min().reindex(range(n_e))


def aggregate(episodes: pd.DataFrame | Iterable, codebook: Codebook) -> Cells:
    """Collapse episodes with identical predictors into counts per level.

    Raises UnknownCodeError for a partner, type or trigger type not in the codebook and
    CellsError for missing columns or ordinal values outside 0-3.
    """
    frame = episodes_frame(episodes)
    missing = [c for c in (*PREDICTORS, "level") if c not in frame.columns]
    if missing:
        raise CellsError(f"episodes lack columns {missing}; needed: {[*PREDICTORS, 'level']}")
    coords = coords_from_codebook(codebook)
    p_idx = _codes_to_index(frame["partner"], "partner", coords["partner"])
    t_idx = _codes_to_index(frame["intel_type"], "intel_type", coords["intel_type"])
    tt_idx = _codes_to_index(frame["trigger_type"], "trigger_type", coords["trigger_type"])
    sev = _ordinal(frame["severity"], "severity")
    ali = _ordinal(frame["alignment"], "alignment")
    level = _ordinal(frame["level"], "level")
    triggers, e_idx = np.unique(frame["trigger_id"].astype(str).to_numpy(), return_inverse=True)
    n_e = len(triggers)
    dates = _trigger_dates(frame, e_idx, n_e)
    # a trigger's year (its decade, for the predictive checks), when the episodes carry dates
    trigger_years = np.full(n_e, np.nan) if dates is None else dates.dt.year.to_numpy(float)

    # one integer key per predictor set: fast for 200,000 rows, and sorts deterministically;
    # the trigger is the least significant part, so that cells of one partner x type are
    # adjacent (the likelihood kernel sums the gradient of a run in a register)
    n_t, n_tt = len(coords["intel_type"]), len(coords["trigger_type"])
    key = ((((p_idx * n_t + t_idx) * n_tt + tt_idx) * 4 + sev) * 4 + ali) * n_e + e_idx
    unique, inverse = np.unique(key, return_inverse=True)
    counts = np.zeros((len(unique), len(LEVELS)), dtype=np.int64)
    np.add.at(counts, (inverse, level), 1)

    e_u = unique % n_e if n_e else unique
    rest = unique // max(n_e, 1)
    ali_u = rest % 4
    rest //= 4
    sev_u = rest % 4
    rest //= 4
    tt_u = rest % n_tt
    rest //= n_tt
    t_u = rest % n_t
    p_u = rest // n_t
    partner_bloc = partner_bloc_index(codebook)
    reactions, r_u = np.unique(e_u * len(coords["partner"]) + p_u, return_inverse=True)
    coords["trigger"] = [str(t) for t in triggers]
    coords["reaction"] = [f"{triggers[r // len(coords['partner'])]}:"
                          f"{coords['partner'][r % len(coords['partner'])]}" for r in reactions]

    table = np.column_stack([e_u, p_u, t_u, tt_u, sev_u, ali_u, counts]).astype(np.int64)
    digest = hashlib.sha256()
    digest.update(repr((coords["partner"], coords["intel_type"], coords["trigger_type"],
                        coords["trigger"])).encode())
    digest.update(np.ascontiguousarray(table).tobytes())
    if dates is not None:
        # the arrival model stored with a fit dates each trigger (trigger_rates): a correction
        # of dates alone must make another fit, not reuse the version fitted on the old ones
        digest.update(repr(dates.dt.strftime("%Y-%m-%d").fillna("undated").tolist()).encode())
    return Cells(
        partner_idx=p_u,
        type_idx=t_u,
        bloc_idx=partner_bloc[p_u],
        trigger_idx=tt_u,
        event_idx=e_u,
        reaction_idx=r_u.astype(np.int64),
        reaction_event=(reactions // len(coords["partner"])).astype(np.int64),
        severity=sev_u,
        alignment=ali_u,
        counts=counts,
        coords=coords,
        partner_bloc=partner_bloc,
        n_episodes=int(len(frame)),
        fingerprint=digest.hexdigest(),
        codebook_version=codebook.version,
        trigger_years=trigger_years,
    )


def empty_cells(codebook: Codebook) -> Cells:
    """Cells with no episodes: one placeholder cell with zero counts (prior-only models)."""
    frame = pd.DataFrame({
        "trigger_id": ["no-trigger"],
        "partner": [codebook.partner_codes[0]], "intel_type": [codebook.intel_type_codes[0]],
        "trigger_type": [codebook.trigger_type_codes[0]], "severity": [0], "alignment": [0],
        "level": [0],
    })
    full = aggregate(frame, codebook)
    digest = hashlib.sha256(b"no episodes").hexdigest()
    return dataclasses.replace(full, counts=np.zeros_like(full.counts), n_episodes=0,
                               fingerprint=digest)
