"""Posterior draws -> forecasts: level probabilities, P(any restriction), grids, comparisons.

Pure numpy (no PyMC, no Flask). The model's maths is forecasting.model.arithmetic's: a
cell's linear predictor is its entry of pt_eff plus the scenario's entry of the
trigger x severity x alignment table (`scenario_effects`), and level probabilities follow
from the cutpoints (`level_probabilities`). A forecast is for a new trigger: its cluster
terms (the event's, the partner's reaction's) are integrated out (`integrate_clusters`), so
the interval says how much events vary, not only how uncertain the parameters are. A
forecast for a coded trigger conditions on its coded reactions instead
(forecasting.serving.live_events).

A `ForecastEngine` copies the draws of one model version into numpy arrays once (chain x draw
stacked into one sample axis, which is the last, contiguous axis, so that the per-cell sorts for
quantiles run over contiguous memory) and answers every query from them. Draws are kept as
float32: sorting for quantiles is the main cost and runs ~1.7x faster, and float32's 7 digits are
far finer than the 4 decimals served.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from forecasting.domain.codebook import Codebook, UnknownCodeError
from forecasting.model.arithmetic import (
    CENTERS,
    CLUSTER_SCALES,
    LEVEL_LABELS,
    cluster_sd,
    integrate_clusters,
    scenario_effects,
)
from forecasting.model.predictive import evenly, thin
from forecasting.serving.live_events import (
    MAX_DRAWS,
    CodedReactions,
    conditional_level_probabilities,
    conditioning_weights,
    episode_log_likelihood,
    grid_values,
    weighted_level_probabilities,
)

DECIMALS = 4
# Summary statistics of every quantity: the mean, then these quantiles.
# Symmetric, so that P(any) = 1 - P(level 0) gets its quantiles from level 0's reversed.
QUANTILES = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
DTYPE = np.float32
# cells per quadrature call of a live grid: bounds its memory (~0.5 MB per cell at 500 draws)
LIVE_CHUNK = 32
SORTS = ("risk", "partner", "intel_type")
QUERY_KEYS = {"partner", "intel_type", "trigger_type", "severity", "alignment"}


class NotInModelError(LookupError):
    """A code the codebook knows but the fitted model version does not (added after the fit)."""

    def __init__(self, field: str, value: str, version: str | None):
        self.field, self.value, self.version = field, value, version
        super().__init__(
            f"{field}: {value!r} is in the codebook but not in model version {version}, which "
            f"predates it; refit the model to forecast for it")


class ScenarioError(ValueError):
    """A scenario value out of range or of the wrong type; `field` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Scenario:
    """What happened: the trigger and how grave it was.

    Defaults describe the commonest question: a serious (2) disclosure incident while the US is
    seen as ambivalent (1) toward the adversary.
    """

    trigger_type: str = "disclosure_incident"
    severity: int = 2
    alignment: int = 1

    @classmethod
    def from_mapping(cls, values: Mapping | Scenario | None) -> Scenario:
        if values is None:
            return cls()
        if isinstance(values, Scenario):
            return values
        unknown = set(values) - {"trigger_type", "severity", "alignment"}
        if unknown:
            raise ScenarioError(sorted(unknown)[0], "not a scenario field; use trigger_type, "
                                "severity, alignment")
        return cls(**values)

    def as_dict(self) -> dict:
        return {"trigger_type": self.trigger_type, "severity": self.severity,
                "alignment": self.alignment}


def _check_ordinal(field: str, value, allowed: Iterable[int]) -> int:
    allowed = sorted(allowed)
    # bool is an int subclass, and 2.0 or "2" would hide a caller's parsing bug
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ScenarioError(field, f"must be an integer {allowed[0]}-{allowed[-1]}, got {value!r}")
    if int(value) not in allowed:
        raise ScenarioError(field, f"must be {allowed[0]}-{allowed[-1]}, got {value!r}")
    return int(value)


def summarise(x: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """Mean and QUANTILES over the last (sample) axis: (..., S) -> (..., 6) float64.

    Same values as np.quantile's default (linear) method, from one sort per row;
    `overwrite=True` sorts `x` in place (saves a copy of a large array).
    """
    mean = x.mean(axis=-1, dtype=np.float64)
    s = x if overwrite else x.copy()
    s.sort(axis=-1)
    pos = QUANTILES * (s.shape[-1] - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, s.shape[-1] - 1)
    frac = pos - lo
    out = np.empty(x.shape[:-1] + (6,))
    out[..., 0] = mean
    out[..., 1:] = s[..., lo] * (1 - frac) + s[..., hi] * frac
    return out


def summarise_levels(probs: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """(..., 4, S) level probabilities -> (..., 5, 6): P(any restriction), then levels 0..3.

    Sorting 1 - p reverses p's order, so any's quantiles are 1 - level 0's, reversed: one sort
    fewer per cell (exact, QUANTILES being symmetric).
    """
    levels = summarise(probs, overwrite=overwrite)
    any_row = 1.0 - levels[..., :1, :]
    any_row[..., 1:] = any_row[..., :0:-1].copy()
    return np.concatenate([any_row, levels], axis=-2)


def _rounded(stats: np.ndarray) -> np.ndarray:
    return np.round(stats, DECIMALS)


def stats_dict(row: list[float]) -> dict:
    """One row of `summarise`, rounded and as Python floats, under the contract's keys."""
    mean, q05, q25, q50, q75, q95 = row
    return {"mean": mean, "median": q50, "ci50": [q25, q75], "ci90": [q05, q95]}




@dataclass(frozen=True)
class CodedTrigger:
    """A coded trigger and its reactions coded so far (episodes: partner, intel_type, level,
    and whatever else should be echoed back, e.g. sources)."""

    trigger_id: str
    scenario: Scenario
    episodes: tuple[Mapping, ...]


class ForecastEngine:
    """Forecasts from one model version's posterior draws (immutable, so thread-safe).

    Answers are cached (`cache=True`): a version's answers never change and there are finitely
    many (partners x types x triggers x 4 x 4; all of them take ~10 MB), so the cache needs no
    eviction. A computed grid also answers every single query of its scenario; `warm_up` computes
    grids ahead of the first request. dict get/set are atomic: safe across request threads.
    """

    def __init__(self, posterior: xr.DataTree | xr.Dataset, metadata: Mapping,
                 codebook: Codebook, *, cache: bool = True, max_draws: int | None = None):
        """`max_draws`: use at most this many posterior draws, thinned evenly within each chain
        (bounds the memory and time of every answer; None uses them all)."""
        ds, attrs = _posterior_dataset(posterior)
        fitted_draws = ds.sizes["chain"] * ds.sizes["draw"]
        ds = thin(ds, max_draws)
        self.codebook = codebook
        self.model_info = {
            "version": metadata.get("version"),
            "fitted_at": metadata.get("fitted_at"),
            "episodes": metadata.get("episodes"),
            "verdict": metadata.get("verdict"),
        }
        if ds.sizes["chain"] * ds.sizes["draw"] < fitted_draws:  # thinned: say so
            self.model_info["draws_used"] = int(ds.sizes["chain"] * ds.sizes["draw"])
        self._vocabularies = {"partner": codebook.partners, "intel_type": codebook.intel_types,
                              "trigger_type": codebook.trigger_types}
        self.partners = [str(p) for p in ds["partner"].values]
        self.intel_types = [str(t) for t in ds["intel_type"].values]
        self.trigger_types = [str(t) for t in ds["trigger_type"].values]
        self._partner_index = {p: i for i, p in enumerate(self.partners)}
        self._type_index = {t: i for i, t in enumerate(self.intel_types)}
        self._trigger_index = {t: i for i, t in enumerate(self.trigger_types)}
        self._pt_eff = _draws(ds["pt_eff"], ("partner", "intel_type"))  # (P, T, S)
        self._trigger_eff = _draws(ds["trigger_eff"], ("trigger_type",))  # (TT, S)
        self._cutpoints = _draws(ds["cutpoints"], ("cutpoint",))  # (3, S)
        # the draws served, whole: forecasting.serving.explain reads each term of eta from them
        self.posterior = ds
        self.observed_partners = metadata.get("model_config", {}).get("observed_partners")
        self.store_revision = metadata.get("store_revision")  # what the fit read
        _check_centers(attrs, metadata)
        # the scenario's contribution per draw, for every trigger x severity x alignment:
        # (TT, 4, 4, S), so that a query only adds the cell's effect
        table = scenario_effects(self._trigger_eff.T, _draws(ds["beta_severity"], ()),
                                 _draws(ds["beta_alignment"], ()))  # samples first
        self._scenario_eta = np.ascontiguousarray(np.moveaxis(table, 0, -1), dtype=DTYPE)
        # a version without cluster terms (model revision 2) has none to integrate out
        scales = [_draws(ds[name], ()) if name in ds else np.zeros_like(self._cutpoints[0])
                  for name in CLUSTER_SCALES]
        self._cluster_sd = cluster_sd(*scales).astype(DTYPE)  # (S,)
        self._cluster_scales = {name: scale for name, scale in zip(CLUSTER_SCALES, scales,
                                                                   strict=True)}
        self._has_clusters = all(name in ds for name in CLUSTER_SCALES)
        self.n_draws = self._cutpoints.shape[-1]
        self._cache_enabled = cache
        self._answers: dict[tuple, np.ndarray] = {}

    @classmethod
    def from_version(cls, registry, version: str, codebook: Codebook, *,
                     max_draws: int | None = None) -> ForecastEngine:
        """Load `version` ("current" allowed) from a forecasting.registry.Registry."""
        mv = registry.get(version)
        tree = registry.load_posterior(mv.version, groups=["posterior"])
        return cls(tree, mv.metadata, codebook, max_draws=max_draws)

    def all_scenarios(self) -> list[Scenario]:
        """Every scenario this version can answer (trigger types x severities x alignments)."""
        return [Scenario(t, s, a) for t in self.codebook.trigger_type_codes
                if t in self._trigger_index
                for s in self.codebook.severity for a in self.codebook.alignment]

    def warm_up(self, scenarios: Iterable[Scenario | Mapping] | None = None) -> None:
        """Compute the grids of `scenarios` (default: the default scenario) before they are
        asked for, e.g. in a server's loader before it swaps in a new version. All 96 take a
        few seconds."""
        for scenario in [Scenario()] if scenarios is None else scenarios:
            self._grid_stats(self._scenario_key(Scenario.from_mapping(scenario)))

    @property
    def version(self) -> str | None:
        return self.model_info["version"]

    @property
    def missing_partners(self) -> list[str]:
        """Codebook partners this version cannot forecast for (added after it was fitted)."""
        return [p for p in self.codebook.partner_codes if p not in self._partner_index]

    # -- validation ------------------------------------------------------------------------

    def _index(self, field: str, value, index: dict[str, int]) -> int:
        vocabulary = self._vocabularies[field]
        if not isinstance(value, str) or value not in vocabulary:
            raise UnknownCodeError(field, value, tuple(vocabulary))
        try:
            return index[value]
        except KeyError:
            raise NotInModelError(field, value, self.version) from None

    def _scenario_key(self, scenario: Scenario) -> tuple[int, int, int]:
        """Indices into the scenario table: (trigger type, severity, alignment)."""
        return (self._index("trigger_type", scenario.trigger_type, self._trigger_index),
                _check_ordinal("severity", scenario.severity, self.codebook.severity),
                _check_ordinal("alignment", scenario.alignment, self.codebook.alignment))

    # -- queries ---------------------------------------------------------------------------

    def forecast(self, partner: str, intel_type: str, trigger_type: str = Scenario.trigger_type,
                 severity: int = Scenario.severity, alignment: int = Scenario.alignment) -> dict:
        """One cell under one scenario, in CONTRACT.md's forecast shape."""
        scenario = Scenario(trigger_type, severity, alignment)
        key = self.cell_index(partner, intel_type, scenario)
        stats = self._cached(key)
        if stats is None:
            p, t, scenario_key = key
            stats = self._summaries(self._pt_eff[p, t] + self._scenario_eta[scenario_key])
            self._remember(key, stats)
        return self._shape(partner, intel_type, scenario, stats)

    def conditioned(self, partner: str, intel_type: str, trigger: CodedTrigger, *,
                    levels: np.ndarray | None = None) -> dict:
        """One cell after a coded trigger, conditioned on its reactions coded so far.

        The cell's own episode, if it is coded, is left out of the conditioning (the answer
        is what the other reactions say about it) and reported as `observed_level`.
        `levels` (4, S): the level probabilities, if already computed from `live_draws`
        (forecasting.serving.explain computes them among its own rows): not computed twice.
        """
        live = self.live_draws(partner, intel_type, trigger)
        if levels is not None:
            probs = levels[None]
        else:
            probs = conditional_level_probabilities(
                live["eta"][None, :], live["cutpoints"], live["sigma_event"],
                live["sigma_reaction"], live["coded"], live["reaction"])
        stats = _rounded(summarise_levels(probs.astype(DTYPE), overwrite=True))[0]
        answer = self._shape(partner, intel_type, trigger.scenario, stats)
        answer["trigger_id"] = trigger.trigger_id
        answer["conditioned_on"] = live["conditioned_on"]
        if live["not_conditioned_on"]:
            answer["not_conditioned_on"] = live["not_conditioned_on"]
        answer["observed_level"] = live["observed_level"]
        answer["draws_used"] = int(len(live["keep"]))
        return answer

    def cell_draws(self, partner: str, intel_type: str, scenario: Scenario) -> dict:
        """What `forecast` computes a cell's answer from, per draw (samples last): `eta` (S,),
        `cutpoints` (3, S), `cluster_sd`, the cluster scales and the cell's `index` (partner,
        type, trigger type, severity, alignment). For forecasting.serving.explain."""
        p, t, scenario_key = self.cell_index(partner, intel_type, scenario)
        return {"eta": self._pt_eff[p, t] + self._scenario_eta[scenario_key],
                "cutpoints": self._cutpoints, "cluster_sd": self._cluster_sd,
                **self._cluster_scales, "index": (p, t, *scenario_key), "keep": None}

    def live_draws(self, partner: str, intel_type: str, trigger: CodedTrigger) -> dict:
        """What `conditioned` computes a live answer from: `cell_draws`' keys at the draws
        `keep`, the coded reactions (`coded`, the queried partner's `reaction` among them) and
        the episodes conditioned on, not conditioned on, and the cell's own."""
        if not self._has_clusters:  # a version before model revision 3 cannot condition
            raise NotInModelError("trigger_id", trigger.trigger_id, self.version)
        p, t, scenario_key = self.cell_index(partner, intel_type, trigger.scenario)
        keep = evenly(self.n_draws, MAX_DRAWS)
        scenario_eta = self._scenario_eta[scenario_key][keep]
        return {"eta": self._pt_eff[p, t, keep] + scenario_eta,
                "cutpoints": self._cutpoints[:, keep],
                "cluster_sd": self._cluster_sd[keep],
                **{name: scale[keep] for name, scale in self._cluster_scales.items()},
                "index": (p, t, *scenario_key), "keep": keep,
                **self._conditioning_set(partner, intel_type, trigger, keep, scenario_eta)}

    def _conditioning_set(self, partner: str, intel_type: str, trigger: CodedTrigger,
                          keep: np.ndarray, scenario_eta: np.ndarray) -> dict:
        """What a cell's live answer conditions on: the coded reactions but the cell's own
        (`coded`, the cell's partner's position among them `reaction`), the episodes
        conditioned on, not conditioned on, and the cell's own coded level."""
        # episodes of codes this version predates cannot inform it: listed, not used
        known = [e for e in trigger.episodes if e["partner"] in self._partner_index
                 and e["intel_type"] in self._type_index]
        skipped = [dict(e) for e in trigger.episodes if e not in known]
        others = [e for e in known
                  if (e["partner"], e["intel_type"]) != (partner, intel_type)]
        own = [e for e in trigger.episodes
               if (e["partner"], e["intel_type"]) == (partner, intel_type)]
        partners = list(dict.fromkeys(e["partner"] for e in others))
        coded = CodedReactions(
            reaction=np.array([partners.index(e["partner"]) for e in others], dtype=int),
            eta=np.array([self._pt_eff[self._index("partner", e["partner"], self._partner_index),
                                       self._index("intel_type", e["intel_type"],
                                                   self._type_index), keep] + scenario_eta
                          for e in others]).reshape(len(others), len(keep)),
            level=np.array([int(e["level"]) for e in others], dtype=int))
        return {"coded": coded, "partners": partners,
                "reaction": partners.index(partner) if partner in partners else None,
                "conditioned_on": [dict(e) for e in others], "not_conditioned_on": skipped,
                "observed_level": int(own[0]["level"]) if own else None}

    def conditioned_grid_stats(self, trigger: CodedTrigger) -> np.ndarray:
        """Every cell of the model after a coded trigger, each conditioned as `conditioned`
        conditions it (the same numbers): rounded summaries (P, T, 5, 6), model order.

        The (u, v) posterior is computed once per set of cells that share it, not per cell:
        the cells of a coded partner not coded themselves share one, every partner not yet
        coded shares one (its reaction is a fresh draw), and a coded cell, which leaves its
        own episode out, has its own. Each episode's log-likelihood on the grid, the costly
        part, is computed twice in all (for its partner's total, and for the partner's
        leave-one-out sums), and summed in the order `conditioned` sums it.
        """
        if not self._has_clusters:
            raise NotInModelError("trigger_id", trigger.trigger_id, self.version)
        scenario_key = self._scenario_key(trigger.scenario)
        keep = evenly(self.n_draws, MAX_DRAWS)
        scenario_eta = self._scenario_eta[scenario_key][keep]
        cutpoints = self._cutpoints[:, keep]
        sigma = {name: scale[keep] for name, scale in self._cluster_scales.items()}
        coded_cells = {(e["partner"], e["intel_type"]) for e in trigger.episodes}
        coded_partners = {partner for partner, _ in coded_cells}
        groups: dict[tuple, list[tuple[int, int]]] = {}
        sets = {}
        for partner, p in self._partner_index.items():
            for intel_type, t in self._type_index.items():
                own = (partner, intel_type) in coded_cells
                key = ((partner, intel_type) if own else None,
                       partner if partner in coded_partners else None)
                if key not in sets:
                    sets[key] = self._conditioning_set(partner, intel_type, trigger, keep,
                                                       scenario_eta)
                groups.setdefault(key, []).append((p, t))
        u, v = grid_values(sigma["sigma_event"], sigma["sigma_reaction"])
        known = [e for e in trigger.episodes if e["partner"] in self._partner_index
                 and e["intel_type"] in self._type_index]

        def loglik(e: Mapping) -> np.ndarray:
            eta = self._pt_eff[self._partner_index[e["partner"]],
                               self._type_index[e["intel_type"]], keep] + scenario_eta
            return episode_log_likelihood(eta, int(e["level"]), cutpoints, u, v)

        shape = (u.shape[0], v.shape[0], len(keep))
        totals: dict[str, np.ndarray] = {}  # coded partner -> its episodes' log-likelihood
        for e in known:
            totals.setdefault(e["partner"], np.zeros(shape))
            totals[e["partner"]] += loglik(e)
        mine: tuple[str | None, list] = (None, [])  # a coded partner's episodes, one at a time
        stats = np.empty(self._pt_eff.shape[:2] + (5, 6))
        for key, cells in groups.items():
            found, own = sets[key], key[0]
            slot = {q: totals[q] for q in found["partners"]}
            if own is not None and own[0] in slot:  # the partner's sum without the cell's own
                if mine[0] != own[0]:
                    episodes = [e for e in known if e["partner"] == own[0]]
                    mine = (own[0], [(e, loglik(e)) for e in episodes])
                slot[own[0]] = np.zeros(shape)
                for e, ll in mine[1]:
                    if e["intel_type"] != own[1]:
                        slot[own[0]] += ll
            partner_loglik = (np.stack([slot[q] for q in found["partners"]]) if slot
                              else np.zeros((0, *shape)))
            weights = conditioning_weights(cutpoints, sigma["sigma_event"],
                                           sigma["sigma_reaction"], found["coded"],
                                           found["reaction"], loglik=partner_loglik)
            for start in range(0, len(cells), LIVE_CHUNK):
                p, t = (np.array(x) for x in zip(*cells[start:start + LIVE_CHUNK], strict=True))
                probs = weighted_level_probabilities(self._pt_eff[p, t][:, keep] + scenario_eta,
                                                     cutpoints, weights)
                stats[p, t] = _rounded(summarise_levels(probs.astype(DTYPE), overwrite=True))
        return stats

    def conditioned_grid(self, trigger: CodedTrigger, sort: str = "risk",
                         stats: np.ndarray | None = None) -> dict:
        """`grid` after a coded trigger: every cell the model knows, conditioned on the
        trigger's coded reactions as `conditioned` would answer it (each cell with its
        `observed_level`), the episodes conditioned on and the draws used. `stats`: the
        trigger's `conditioned_grid_stats`, if already computed."""
        stats = self.conditioned_grid_stats(trigger) if stats is None else stats
        observed = {(e["partner"], e["intel_type"]): int(e["level"]) for e in trigger.episodes}
        forecasts = []
        for p, t, cell in self._grid_cells(stats, sort):
            answer = self._shape(p, t, trigger.scenario, cell)
            answer["observed_level"] = observed.get((p, t))
            forecasts.append(answer)
        known = [dict(e) for e in trigger.episodes if e["partner"] in self._partner_index
                 and e["intel_type"] in self._type_index]
        answer = {"trigger_id": trigger.trigger_id, "scenario": trigger.scenario.as_dict(),
                  "conditioned_on": known,
                  "draws_used": int(len(evenly(self.n_draws, MAX_DRAWS))),
                  "forecasts": forecasts}
        skipped = [dict(e) for e in trigger.episodes if dict(e) not in known]
        if skipped:
            answer["not_conditioned_on"] = skipped
        return answer

    def batch(self, queries: list[Mapping]) -> list[dict]:
        """Many cells at once; every query is validated before any is computed."""
        resolved = []
        for i, query in enumerate(queries):
            try:
                resolved.append(self._resolve_query(query))
            except UnknownCodeError as exc:
                field = f"queries[{i}].{exc.field}"
                raise UnknownCodeError(field, exc.value, exc.allowed) from None
            except ScenarioError as exc:
                message = str(exc).split(": ", 1)[1]
                raise ScenarioError(f"queries[{i}].{exc.field}", message) from None
        stats = {key: self._cached(key) for _, _, _, key in resolved}
        todo = [key for key, value in stats.items() if value is None]
        if todo:
            p, t, tt, s, a = (np.array(x) for x in zip(
                *[(p, t, *scenario_key) for p, t, scenario_key in todo], strict=True))
            computed = self._summaries(self._pt_eff[p, t] + self._scenario_eta[tt, s, a])
            for key, value in zip(todo, computed, strict=True):
                stats[key] = value
                self._remember(key, value)
        return [self._shape(partner, intel_type, scenario, stats[key])
                for partner, intel_type, scenario, key in resolved]

    def grid(self, scenario: Mapping | Scenario | None = None, sort: str = "risk") -> list[dict]:
        """Every codebook partner x intel type the model knows, under one scenario.

        sort: "risk" (P(any restriction) mean, highest first), "partner" or "intel_type"
        (alphabetical by code, then the other). Partners added to the codebook after the fit
        are left out (see `missing_partners`).
        """
        scenario = Scenario.from_mapping(scenario)
        if sort not in SORTS:
            raise ValueError(f"Requested sort '{sort}' but it must be one of {list(SORTS)}")
        stats = self._grid_stats(self._scenario_key(scenario))  # (P, T, 5, 6), model order
        return [self._shape(p, t, scenario, s) for p, t, s in self._grid_cells(stats, sort)]

    def _grid_cells(self, stats: np.ndarray, sort: str) -> list[tuple[str, str, np.ndarray]]:
        """(partner, type, its stats) of every codebook cell the model knows, in `sort` order:
        "risk" (P(any restriction) mean, highest first), "partner" or "intel_type"."""
        if sort not in SORTS:
            raise ValueError(f"Requested sort '{sort}' but it must be one of {list(SORTS)}")
        cells = [(p, t, stats[self._partner_index[p], self._type_index[t]])
                 for p in self.codebook.partner_codes if p in self._partner_index
                 for t in self.codebook.intel_type_codes if t in self._type_index]
        if sort == "risk":
            cells.sort(key=lambda c: (-c[2][0, 0], c[0], c[1]))
        elif sort == "partner":
            cells.sort(key=lambda c: (c[0], c[1]))
        else:
            cells.sort(key=lambda c: (c[1], c[0]))
        return cells

    def compare(self, partners: str | Iterable[str], intel_types: str | Iterable[str],
                scenario_a: Mapping | Scenario | None,
                scenario_b: Mapping | Scenario | None) -> list[dict]:
        """Both scenarios for every partner x type, and P(any restriction) under b minus under a.

        The difference is taken draw by draw, so its interval accounts for the correlation of
        the two forecasts (they share every parameter but the scenario's).
        """
        partners = [partners] if isinstance(partners, str) else list(partners)
        intel_types = [intel_types] if isinstance(intel_types, str) else list(intel_types)
        a, b = Scenario.from_mapping(scenario_a), Scenario.from_mapping(scenario_b)
        eta_a, eta_b = (self._scenario_eta[self._scenario_key(x)] for x in (a, b))
        cells = [(p, t, self._index("partner", p, self._partner_index),
                  self._index("intel_type", t, self._type_index))
                 for p, t in itertools.product(partners, intel_types)]
        if not cells:
            return []
        p_idx, t_idx = np.array([c[2] for c in cells]), np.array([c[3] for c in cells])
        cell_eta = self._pt_eff[p_idx, t_idx]  # (N, S)
        probs_a = self.level_probabilities(cell_eta + eta_a)
        probs_b = self.level_probabilities(cell_eta + eta_b)
        # P(any) = 1 - P(level 0), so the difference in any is a's level 0 minus b's
        diff = probs_a[:, 0] - probs_b[:, 0]  # (N, S)
        stats_a, stats_b = _rounded(summarise_levels(probs_a)), _rounded(summarise_levels(probs_b))
        stats_d = _rounded(summarise(diff)).tolist()
        p_positive = np.round((diff > 0).mean(axis=-1), DECIMALS).tolist()
        return [
            {
                "partner": p, "intel_type": t,
                "a": self._shape(p, t, a, stats_a[i]),
                "b": self._shape(p, t, b, stats_b[i]),
                "difference": {**stats_dict(stats_d[i]), "prob_positive": p_positive[i]},
            }
            for i, (p, t, _, _) in enumerate(cells)
        ]

    # -- helpers ---------------------------------------------------------------------------

    def _summaries(self, eta: np.ndarray) -> np.ndarray:
        """Linear predictors (..., S) -> rounded summaries (..., 5, 6)."""
        return _rounded(summarise_levels(self.level_probabilities(eta), overwrite=True))

    def level_probabilities(self, eta: np.ndarray) -> np.ndarray:
        """(..., S) linear predictors of a new trigger -> (..., 4, S), its clusters integrated."""
        return integrate_clusters(eta, self._cutpoints, self._cluster_sd, axis=-2)

    def cell_scenario_eta(self, partner_index: int, type_index: int,
                          trigger_types: Iterable[str]) -> np.ndarray:
        """A cell's linear predictor per draw under every severity and alignment of each of
        `trigger_types` (codes the model knows): (K, 4, 4, S), before clusters."""
        k = np.array([self._trigger_index[code] for code in trigger_types], dtype=int)
        return self._pt_eff[partner_index, type_index] + self._scenario_eta[k]

    def _cached(self, key: tuple) -> np.ndarray | None:
        p, t, scenario_key = key
        grid = self._answers.get(("grid", scenario_key))
        return grid[p, t] if grid is not None else self._answers.get(key)

    def _remember(self, key: tuple, stats: np.ndarray) -> None:
        if self._cache_enabled:
            self._answers[key] = stats

    def _grid_stats(self, scenario_key: tuple[int, int, int]) -> np.ndarray:
        """Summaries of every cell of the model under one scenario: (P, T, 5, 6)."""
        stats = self._answers.get(("grid", scenario_key))
        if stats is None:
            stats = self._summaries(self._pt_eff + self._scenario_eta[scenario_key])
            self._remember(("grid", scenario_key), stats)
        return stats

    def cell_index(self, partner, intel_type, scenario: Scenario) -> tuple:
        """Validated indices of a cell and scenario: (partner, type, (trigger type, severity,
        alignment)); UnknownCodeError, NotInModelError or ScenarioError naming the field."""
        return (self._index("partner", partner, self._partner_index),
                self._index("intel_type", intel_type, self._type_index),
                self._scenario_key(scenario))

    def _resolve_query(self, query: Mapping):
        unknown = set(query) - QUERY_KEYS
        if unknown:
            raise ScenarioError(sorted(unknown)[0], f"not a query field; use {sorted(QUERY_KEYS)}")
        for key in ("partner", "intel_type"):
            if key not in query:
                raise ScenarioError(key, "is required")
        scenario = Scenario.from_mapping(
            {k: query[k] for k in ("trigger_type", "severity", "alignment") if k in query})
        key = self.cell_index(query["partner"], query["intel_type"], scenario)
        return query["partner"], query["intel_type"], scenario, key

    def _shape(self, partner: str, intel_type: str, scenario: Scenario,
               stats: np.ndarray) -> dict:
        """stats: (5, 6) rounded = (any, level 0..3) x (mean, quantiles)."""
        # one conversion of the whole block: per-value float() calls cost more than the maths
        stats = stats.tolist()
        return {
            "partner": partner,
            "intel_type": intel_type,
            # validated by now; int() turns numpy integers into JSON-able ones
            "scenario": {"trigger_type": scenario.trigger_type, "severity": int(scenario.severity),
                         "alignment": int(scenario.alignment)},
            "any_restriction": stats_dict(stats[0]),
            "levels": {level: stats_dict(stats[k + 1]) for k, level in enumerate(LEVEL_LABELS)},
            "model": dict(self.model_info),
        }


def _posterior_dataset(posterior: xr.DataTree | xr.Dataset) -> tuple[xr.Dataset, dict]:
    if isinstance(posterior, xr.DataTree):
        if "posterior" not in posterior.children:
            raise ValueError("the model tree has no 'posterior' group")
        return posterior["posterior"].to_dataset(), {**posterior.attrs}
    return posterior, {**posterior.attrs}


def _draws(da: xr.DataArray, dims: tuple[str, ...]) -> np.ndarray:
    """dims + (sample,) array, chain and draw stacked, contiguous along the samples."""
    values = da.transpose(*dims, "chain", "draw").values
    return np.ascontiguousarray(values.reshape(values.shape[: len(dims)] + (-1,)), dtype=DTYPE)


def _check_centers(attrs: Mapping, metadata: Mapping) -> None:
    """A version fitted with other covariate centres would be silently shifted: refuse it."""
    for covariate, centre in CENTERS.items():
        name = f"{covariate}_center"
        for source in (attrs, metadata, metadata.get("model_config", {})):
            if name in source:
                if float(source[name]) != centre:
                    raise ValueError(f"{name}: the version was fitted with {source[name]}, the "
                                     f"model's arithmetic centres at {centre}; refit it")
                break
        else:
            raise ValueError(f"the posterior's root attrs lack {name!r}, which the forecasts need")
