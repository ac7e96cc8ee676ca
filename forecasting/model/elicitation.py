"""Priors from statements on the outcome scale (the modeler's workbench, issue 21).

A modeler states what they believe about outcomes, not parameters, in a TOML file::

    [meta]
    title = "Five Eyes after grave disclosures"
    base = "default"          # the prior set the solver starts from: default | active | a file
    tolerance = 0.05          # a statement is met when its probability is within this of q

    [[statements]]
    id = "five-eyes-grave"
    quantity = "any_restriction"
    bloc = "five_eyes"
    trigger_type = "disclosure_incident"
    severity = 3
    interval = [0.02, 0.20]   # ... lies in [0.02, 0.20] ...
    probability = 0.9         # ... with probability 0.9

`quantity` is one of prior_predictive.STATEMENT_QUANTITIES (P(any restriction) of a cell, the
base rate, odds ratios between partners of a bloc, types, blocs, trigger types, severities,
events); a statement gives exactly one of `interval = [a, b]`, `below = r`, `above = r`, with
`probability = q`. Every statement moves only the priors its quantity depends on (`KNOBS`;
`[meta] adjust = [...]` names them instead): the scale of each (and the location of real-valued
ones such as the cutpoints, shifted together).

The solver: prior draws in numpy with common random numbers (one set of standardised draws;
a candidate prior only shifts and scales them, so the objective is smooth enough for a
gradient method), then `scipy.optimize.least_squares` on the stated quantiles (on the logit
or log scale), with a small pull towards the base prior that decides between priors the
statements cannot tell apart. The answer is rounded to 3 significant digits and checked again
on fresh prior predictive draws (`prior_predictive.draw_prior`): per statement, the target and
achieved probability and quantiles. A statement off by more than the tolerance is *not met*;
if it can be met on its own, it is named as conflicting with the statements that move the same
priors, else as beyond what its priors can reach. Nothing is traded off silently.

PreliZ (maximum entropy for one distribution) was considered: it installs cleanly but took
6-6.5 s to import here (it pulls in PyTensor), and the statements are about quantities of
several parameters at once, which no single-distribution fit addresses.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tomli_w
from scipy.optimize import least_squares
from scipy.special import logit

from forecasting.domain.cells import Cells, empty_cells
from forecasting.domain.codebook import Codebook
from forecasting.model.arithmetic import PARAMETERS
from forecasting.model.prior_predictive import (
    STATEMENT_QUANTITIES,
    draw_prior,
    scale_effects,
    statement_samples,
    unit_effects,
)
from forecasting.model.priors import (
    FAMILIES,
    LOCATION_MAX,
    SCALE_MAX,
    SCALE_MIN,
    PriorConfigError,
    PriorProblem,
    PriorSet,
    draw,
)

SOLVE_DRAWS = 1000  # prior draws the solver evaluates each candidate on
CHECK_DRAWS = 4000  # fresh draws the answer is checked on
# The base rate averages over this many of the vocabulary's scenarios while solving (1.6 s
# per candidate with 256 on the loaded 2-core machine, 8x less with 32); the check uses 256.
SOLVE_SCENARIOS = 32
DEFAULT_TOLERANCE = 0.05
PULL = 0.01  # weight of the pull towards the base prior, per log-factor / logit of shift
SIGNIFICANT = 3  # digits the written prior keeps
MAX_STATEMENTS = 12
MAX_ITERATIONS = 60  # least-squares steps per solve (each costs one draw per prior moved + 1)
# The finite-difference step of the solver's Jacobian, per knob (a log-factor or a shift). The
# objective jumps at fine scales (a draw's cutpoints come from the first increasing row of its
# block, and which row that is changes with their scale); a step of 0.01 read those jumps as
# slopes and stopped early on some draws (the example over 16 solver seeds: cost up to 0.047,
# a statement missed by 0.1); 0.2 spans them (48 seeds: cost at most 0.0006, every statement
# within 0.033 on fresh draws).
DIFF_STEP = 0.2
BASES = ("default", "active")
# which priors each quantity moves: (parameter, "scale" | "shift")
KNOBS: dict[str, tuple[tuple[str, str], ...]] = {
    "any_restriction": (("cutpoints", "shift"), ("cutpoints", "scale")),
    # the base rate averages over every scenario: its spread is the cutpoints' and the
    # events' (how much triggers of one kind differ), not one term's
    "share_restricted": (("cutpoints", "shift"), ("cutpoints", "scale"),
                         ("sigma_event", "scale"), ("sigma_reaction", "scale")),
    "partners_odds_ratio": (("sigma_partner", "scale"), ("sigma_pt", "scale")),
    "types_odds_ratio": (("sigma_type", "scale"), ("sigma_bloc_type", "scale"),
                         ("sigma_pt", "scale")),
    "blocs_odds_ratio": (("sigma_bloc", "scale"),),
    "trigger_types_odds_ratio": (("sigma_trigger", "scale"),),
    "severity_odds_ratio": (("beta_severity", "shift"), ("beta_severity", "scale")),
    "alignment_odds_ratio": (("beta_alignment", "shift"), ("beta_alignment", "scale")),
    "events_odds_ratio": (("sigma_event", "scale"), ("sigma_reaction", "scale")),
}
_KEYS = {"id", "text", "quantity", "interval", "below", "above", "probability"}
_META_KEYS = {"title", "base", "tolerance", "adjust", "author"}
# the family's location argument, and its scale argument with how the scale is stored
_LOCATION = {"Normal": "mu", "StudentT": "mu"}
_SCALE = {"Normal": ("sigma", "plain"), "StudentT": ("sigma", "plain"),
          "HalfNormal": ("sigma", "plain"), "HalfStudentT": ("sigma", "plain"),
          "Exponential": ("lam", "inverse"), "Gamma": ("beta", "inverse"),
          "LogNormal": ("mu", "log")}


class StatementError(PriorConfigError):
    """A statements file the solver cannot use; `errors` name the statement and field."""


# -- the statements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One judgment: `quantity` at `where` lies in `interval` (or below / above a bound) with
    `probability`."""

    id: str
    quantity: str
    where: Mapping[str, Any]
    probability: float
    interval: tuple[float, float] | None = None
    below: float | None = None
    above: float | None = None
    text: str = ""

    @property
    def scale(self) -> str:
        return STATEMENT_QUANTITIES[self.quantity][1]

    def targets(self) -> list[tuple[float, float]]:
        """(quantile level, value): an interval is central, a bound one-sided."""
        q = self.probability
        if self.interval is not None:
            return [((1 - q) / 2, self.interval[0]), ((1 + q) / 2, self.interval[1])]
        if self.below is not None:
            return [(q, self.below)]
        return [(1 - q, self.above)]

    def mass(self, samples: np.ndarray) -> float:
        """The share of draws for which the statement holds (its achieved probability)."""
        if self.interval is not None:
            return float(np.mean((samples >= self.interval[0]) & (samples <= self.interval[1])))
        if self.below is not None:
            return float(np.mean(samples < self.below))
        return float(np.mean(samples > self.above))

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.where.items())
        what = f"{self.quantity}({where})" if where else self.quantity
        if self.interval is not None:
            claim = f"in [{self.interval[0]:g}, {self.interval[1]:g}]"
        else:
            claim = f"below {self.below:g}" if self.below is not None else f"above {self.above:g}"
        return f"{what} {claim} with probability {self.probability:g}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "quantity": self.quantity, **self.where}
        for key in ("interval", "below", "above"):
            if getattr(self, key) is not None:
                value = getattr(self, key)
                out[key] = list(value) if key == "interval" else value
        out["probability"] = self.probability
        if self.text:
            out["text"] = self.text
        return out


@dataclass(frozen=True)
class Statements:
    statements: tuple[Statement, ...]
    title: str = ""
    base: str = "default"
    tolerance: float = DEFAULT_TOLERANCE
    adjust: tuple[str, ...] | None = None
    author: str = ""

    def as_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"title": self.title, "base": self.base,
                                "tolerance": self.tolerance}
        if self.adjust is not None:
            meta["adjust"] = list(self.adjust)
        if self.author:
            meta["author"] = self.author
        return {"meta": meta, "statements": [s.as_dict() for s in self.statements]}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _statement(i: int, raw: Any, codebook: Codebook, problems: list[PriorProblem]
               ) -> Statement | None:
    name = f"statements[{i}]"
    if not isinstance(raw, Mapping):
        problems.append(PriorProblem(name, f"expected a table, got {raw!r}"))
        return None
    if isinstance(raw.get("id"), str) and raw["id"].strip():
        name = f"statements[{i}] ({raw['id']})"
    else:
        problems.append(PriorProblem(f"{name}.id", "required: a short name for the statement"))
    start = len(problems)
    quantity = raw.get("quantity")
    if quantity not in STATEMENT_QUANTITIES:
        problems.append(PriorProblem(f"{name}.quantity", f"Requested quantity {quantity!r} but "
                                     f"it must be one of {list(STATEMENT_QUANTITIES)}"))
        return None
    _, scale, allowed = STATEMENT_QUANTITIES[quantity]
    if unknown := set(raw) - _KEYS - set(allowed):
        problems.append(PriorProblem(name, f"unknown keys {sorted(unknown)}; {quantity} takes "
                                           f"{sorted(_KEYS | set(allowed))}"))
    codes = {"partner": codebook.partner_codes, "bloc": codebook.bloc_codes,
             "intel_type": codebook.intel_type_codes,
             "trigger_type": codebook.trigger_type_codes}
    where: dict[str, Any] = {}
    for key in allowed:
        if key not in raw:
            continue
        value = raw[key]
        if key in codes and value not in codes[key]:
            problems.append(PriorProblem(f"{name}.{key}", f"unknown code {value!r}; use one of "
                                                          f"{list(codes[key])}"))
        elif key in ("severity", "alignment") and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3):
            problems.append(PriorProblem(f"{name}.{key}", f"expected an integer 0-3, got "
                                                          f"{value!r}"))
        else:
            where[key] = value
    if "partner" in where and "bloc" in where:
        problems.append(PriorProblem(name, "give a partner or a bloc, not both"))
    if quantity == "partners_odds_ratio" and "bloc" not in raw:
        problems.append(PriorProblem(f"{name}.bloc", "required: the bloc whose partners are "
                                                     "compared"))
    q = raw.get("probability")
    if not (_number(q) and 0 < q < 1):
        problems.append(PriorProblem(f"{name}.probability",
                                     f"expected a number strictly between 0 and 1, got {q!r}"))
    given = [k for k in ("interval", "below", "above") if k in raw]
    if len(given) != 1:
        problems.append(PriorProblem(name, f"give exactly one of interval = [a, b], below = r, "
                                           f"above = r; got {given or 'none'}"))
    low, high = (0.0, 1.0) if scale == "probability" else (0.0, math.inf)
    what = "probabilities strictly between 0 and 1" if scale == "probability" \
        else "positive odds ratios"
    values = None
    if len(given) == 1:
        value = raw[given[0]]
        values = value if given[0] == "interval" else [value]
        if given[0] == "interval" and not (isinstance(value, list) and len(value) == 2):
            problems.append(PriorProblem(f"{name}.interval", f"expected [a, b], got {value!r}"))
        elif not all(_number(v) and low < v < high for v in values):
            problems.append(PriorProblem(f"{name}.{given[0]}", f"expected {what}, got "
                                                               f"{value!r}"))
        elif given[0] == "interval" and not values[0] < values[1]:
            problems.append(PriorProblem(f"{name}.interval", f"expected a < b, got {value!r}"))
    text = raw.get("text", "")
    if not isinstance(text, str):
        problems.append(PriorProblem(f"{name}.text", f"expected a string, got {text!r}"))
    if len(problems) > start:
        return None
    return Statement(id=raw["id"].strip(), quantity=quantity, where=where, probability=float(q),
                     interval=(float(values[0]), float(values[1])) if given[0] == "interval"
                     else None,
                     below=float(values[0]) if given[0] == "below" else None,
                     above=float(values[0]) if given[0] == "above" else None, text=text)


def statements_from_dict(raw: Any, codebook: Codebook) -> Statements:
    """Validate a statements document ({meta, statements}); StatementError lists every
    problem, each naming the statement (its index and id) and the field."""
    if not isinstance(raw, Mapping):
        raise StatementError(PriorProblem("statements", f"expected a table, got {raw!r}"))
    problems: list[PriorProblem] = []
    if unknown := set(raw) - {"meta", "statements"}:
        problems.append(PriorProblem("statements", f"unknown top-level keys {sorted(unknown)}; "
                                                   f"use [meta] and [[statements]]"))
    meta = raw.get("meta", {})
    if not isinstance(meta, Mapping):
        problems.append(PriorProblem("meta", f"expected a table, got {meta!r}"))
        meta = {}
    if unknown := set(meta) - _META_KEYS:
        problems.append(PriorProblem("meta", f"unknown keys {sorted(unknown)}; allowed "
                                             f"{sorted(_META_KEYS)}"))
    tolerance = meta.get("tolerance", DEFAULT_TOLERANCE)
    if not (_number(tolerance) and 0 < tolerance < 0.5):
        problems.append(PriorProblem("meta.tolerance", f"expected a number between 0 and 0.5 "
                                                       f"(a probability), got {tolerance!r}"))
    base = meta.get("base", "default")
    if not isinstance(base, str) or not base:
        problems.append(PriorProblem("meta.base", f"expected 'default', 'active' or a prior "
                                                  f"file, got {base!r}"))
    adjust = meta.get("adjust")
    if adjust is not None and not (isinstance(adjust, list) and adjust
                                   and all(a in PARAMETERS for a in adjust)):
        problems.append(PriorProblem("meta.adjust", f"expected a list of model parameters "
                                                    f"from {list(PARAMETERS)}, got {adjust!r}"))
    for key in ("title", "author"):
        if not isinstance(meta.get(key, ""), str):
            problems.append(PriorProblem(f"meta.{key}", "expected a string"))
    items = raw.get("statements")
    if not isinstance(items, list) or not items:
        problems.append(PriorProblem("statements", "expected at least one [[statements]] table"))
        items = []
    if len(items) > MAX_STATEMENTS:
        problems.append(PriorProblem("statements", f"at most {MAX_STATEMENTS} statements, got "
                                                   f"{len(items)}"))
        items = []
    parsed = [_statement(i, s, codebook, problems) for i, s in enumerate(items)]
    ids = [s["id"].strip() for s in items if isinstance(s, Mapping)
           and isinstance(s.get("id"), str) and s["id"].strip()]
    if dupes := sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(PriorProblem("statements", f"ids must be unique; repeated: {dupes}"))
    if problems:
        raise StatementError(problems)
    return Statements(statements=tuple(parsed), title=meta.get("title", ""), base=base,
                      tolerance=float(tolerance),
                      adjust=tuple(adjust) if adjust is not None else None,
                      author=meta.get("author", ""))


def parse_statements(text: str, codebook: Codebook) -> Statements:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StatementError(f"statements are not valid TOML: {exc}") from None
    return statements_from_dict(raw, codebook)


# -- priors as locations and scales -------------------------------------------------------------


def _location_scale(spec: Mapping[str, Any]) -> tuple[np.ndarray, float]:
    kwargs = dict(FAMILIES[spec["dist"]].defaults) | dict(spec.get("kwargs", {}))
    loc_key = _LOCATION.get(spec["dist"])
    loc = np.asarray(kwargs[loc_key], dtype=float) if loc_key else np.asarray(0.0)
    key, kind = _SCALE[spec["dist"]]
    value = float(kwargs[key])
    scale = {"plain": value, "inverse": 1.0 / value, "log": math.exp(value)}[kind]
    return loc, scale


def _round(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT}g}")


def _with_location_scale(spec: Mapping[str, Any], loc: np.ndarray, scale: float
                         ) -> dict[str, Any]:
    """The spec with its location and scale replaced (rounded for the written file)."""
    out = {k: v for k, v in spec.items() if k != "kwargs"}
    kwargs = dict(spec.get("kwargs", {}))
    if loc_key := _LOCATION.get(spec["dist"]):
        kwargs[loc_key] = ([_round(v) for v in np.atleast_1d(loc)] if np.ndim(loc)
                           else _round(float(loc)))
    key, kind = _SCALE[spec["dist"]]
    kwargs[key] = _round({"plain": scale, "inverse": 1.0 / scale, "log": math.log(scale)}[kind])
    out["kwargs"] = kwargs
    return out


def _standard(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The family at location 0 and scale 1, shape arguments kept."""
    return _with_location_scale(spec, np.zeros(np.shape(_location_scale(spec)[0])), 1.0)


@dataclass(frozen=True)
class Knob:
    parameter: str
    kind: str  # "scale" (x = log factor) or "shift" (x added to the location, in logits)


# P(any restriction) of a scenario also moves the scales of the terms the scenario names
_SCENARIO_KNOBS = {"partner": (("sigma_bloc", "scale"), ("sigma_partner", "scale")),
                   "bloc": (("sigma_bloc", "scale"),),
                   "intel_type": (("sigma_type", "scale"),),
                   "trigger_type": (("sigma_trigger", "scale"),),
                   "severity": (("beta_severity", "scale"),),
                   "alignment": (("beta_alignment", "scale"),)}


def statement_knobs(s: Statement) -> tuple[tuple[str, str], ...]:
    """(parameter, "scale" | "shift") pairs a statement moves: its quantity's `KNOBS`, and
    for P(any restriction) of a scenario the scales of the terms it names (a grave
    trigger's probability is as uncertain as the severity slope is)."""
    pairs = list(KNOBS[s.quantity])
    if s.quantity == "any_restriction":
        pairs += [pair for key in s.where for pair in _SCENARIO_KNOBS[key]]
    return tuple(dict.fromkeys(pairs))


def knobs_for(statements: Statements, base: PriorSet) -> list[Knob]:
    """What the solver may change: each statement's `statement_knobs`, or `[meta] adjust`
    (scale, and location for real-valued families)."""
    if statements.adjust is not None:
        pairs = [(p, kind) for p in statements.adjust for kind in ("shift", "scale")
                 if kind == "scale" or base[p]["dist"] in _LOCATION]
    else:
        pairs = [pair for s in statements.statements for pair in statement_knobs(s)]
    return [Knob(p, kind) for p, kind in dict.fromkeys(pairs)
            if kind == "scale" or base[p]["dist"] in _LOCATION]


def _bounds(knobs: list[Knob], base: PriorSet) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for k in knobs:
        loc, scale = _location_scale(base[k.parameter])
        if k.kind == "scale":
            lo.append(math.log(SCALE_MIN / scale) + 1e-3)
            hi.append(math.log(SCALE_MAX / scale) - 1e-3)
        else:
            lo.append(-LOCATION_MAX - float(np.min(loc)) + 1e-3)
            hi.append(LOCATION_MAX - float(np.max(loc)) - 1e-3)
    return np.array(lo), np.array(hi)


def apply_knobs(base: PriorSet, knobs: list[Knob], x: np.ndarray) -> PriorSet:
    """The base prior set with each knob's parameter shifted and scaled by x (rounded)."""
    changes: dict[str, list] = {}
    for k, value in zip(knobs, x, strict=True):
        loc, scale = changes.get(k.parameter) or list(_location_scale(base[k.parameter]))
        if k.kind == "scale":
            scale = scale * math.exp(value)
        else:
            loc = loc + value
        changes[k.parameter] = [loc, scale]
    return base.replace(**{p: _with_location_scale(base[p], loc, scale)
                           for p, (loc, scale) in changes.items()})


# -- common random numbers ----------------------------------------------------------------------

_CUT_BLOCK = 32  # standardised cutpoint rows per draw: the first increasing one is used


class CommonDraws:
    """Standardised prior draws drawn once; `draws(locations, scales)` shifts and scales
    them into the draws of any prior of the same families (shape arguments as the base's),
    the group effects built by prior_predictive.scale_effects.

    The cutpoints: per draw, the first increasing row of a block of standardised rows (the
    family restricted to increasing vectors, as the ordered transform gives); a block with
    none (under 1 in 300 even at the least favourable 1/6 acceptance) takes its sorted first
    row. The written prior is checked on prior_predictive's own draws.
    """

    def __init__(self, cells: Cells, base: PriorSet, draws: int = SOLVE_DRAWS, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.cells, self.base, self.n = cells, base, draws
        cut = _standard(base["cutpoints"])
        self.cut = np.broadcast_to(draw(cut, rng, (draws, _CUT_BLOCK, 3)),
                                   (draws, _CUT_BLOCK, 3))
        self.standard = {name: np.broadcast_to(draw(_standard(base[name]), rng, draws),
                                               (draws,)).astype(float)
                         for name in PARAMETERS if name != "cutpoints"}
        self.units = unit_effects(cells, rng, draws)

    def draws(self, location_scale: Mapping[str, tuple[np.ndarray, float]]
              ) -> dict[str, np.ndarray]:
        ls = {name: location_scale.get(name) or _location_scale(self.base[name])
              for name in PARAMETERS}
        loc, scale = ls["cutpoints"]
        x = loc + scale * self.cut
        increasing = np.all(np.diff(x, axis=-1) > 0, axis=-1)
        first = increasing.argmax(axis=1)
        rows = np.arange(self.n)
        cut = np.where(increasing.any(axis=1)[:, None], x[rows, first],
                       np.sort(x[:, 0], axis=-1))
        d = {"cutpoints": cut}
        for name, z in self.standard.items():
            loc, scale = ls[name]
            d[name] = loc + scale * z
        scale_effects(d, self.units, self.cells)
        return d


# -- solving ------------------------------------------------------------------------------------


def _transform(statement: Statement, values):
    values = np.asarray(values, dtype=float)
    if statement.scale == "probability":
        return logit(np.clip(values, 1e-9, 1 - 1e-9))
    return np.log(np.maximum(values, 1e-300))


def _samples(d, cells, statement: Statement, seed: int, scenarios: int | None = None
             ) -> np.ndarray:
    extra = {} if scenarios is None else {"scenarios": scenarios}
    with np.errstate(over="ignore", invalid="ignore"):
        return statement_samples(d, cells, statement.quantity, dict(statement.where),
                                 np.random.default_rng(seed), **extra)


def _location_scales(base: PriorSet, knobs: list[Knob], x: np.ndarray
                     ) -> dict[str, tuple[np.ndarray, float]]:
    out: dict[str, list] = {}
    for k, value in zip(knobs, x, strict=True):
        loc, scale = out.get(k.parameter) or list(_location_scale(base[k.parameter]))
        out[k.parameter] = [loc, scale * math.exp(value)] if k.kind == "scale" \
            else [loc + value, scale]
    return {p: (np.asarray(v[0]), float(v[1])) for p, v in out.items()}


def _surrogate_bias(statements: list[Statement], base: PriorSet, knobs: list[Knob],
                    crn: CommonDraws, x: np.ndarray, seed: int) -> dict[tuple[str, float], float]:
    """For base-rate statements: how far the solver's cheap base rate (SOLVE_SCENARIOS
    scenarios) puts each stated quantile from the checked one (every scenario), at x."""
    cheap = [s for s in statements if s.quantity == "share_restricted"]
    if not cheap:
        return {}
    d = crn.draws(_location_scales(base, knobs, x))
    bias = {}
    for s in cheap:
        full = _transform(s, _samples(d, crn.cells, s, seed))
        fast = _transform(s, _samples(d, crn.cells, s, seed, SOLVE_SCENARIOS))
        for level, _ in s.targets():
            bias[(s.id, level)] = float(np.quantile(fast, level) - np.quantile(full, level))
    return bias


def solve(statements: list[Statement], base: PriorSet, knobs: list[Knob], crn: CommonDraws,
          seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """The knob values (x) whose prior meets `statements`' quantiles best, least squares on
    the logit / log scale, pulled towards the base prior by `PULL`.

    A base rate is computed over SOLVE_SCENARIOS scenarios while solving; the gap to the
    full one is measured at the solution and the solve repeated with targets moved by it
    (one correction: the gap changes little with the priors)."""
    x, info = _solve(statements, base, knobs, crn, seed, {}, np.zeros(len(knobs)))
    if bias := _surrogate_bias(statements, base, knobs, crn, x, seed):
        x, again = _solve(statements, base, knobs, crn, seed, bias, x)
        info = again | {"evaluations": info["evaluations"] + again["evaluations"],
                        "base_rate_correction": max(abs(b) for b in bias.values())}
    return x, info


def _solve(statements: list[Statement], base: PriorSet, knobs: list[Knob], crn: CommonDraws,
           seed: int, bias: dict[tuple[str, float], float], x0: np.ndarray
           ) -> tuple[np.ndarray, dict[str, Any]]:
    targets = [(s, level, float(_transform(s, value)) + bias.get((s.id, level), 0.0))
               for s in statements for level, value in s.targets()]

    def residuals(x):
        d = crn.draws(_location_scales(base, knobs, x))
        cache: dict[str, np.ndarray] = {}
        out = []
        for s, level, target in targets:
            if s.id not in cache:
                cache[s.id] = _transform(s, _samples(d, crn.cells, s, seed, SOLVE_SCENARIOS))
            out.append(np.quantile(cache[s.id], level) - target)
        return np.concatenate([out, PULL * x])

    lo, hi = _bounds(knobs, base)
    result = least_squares(residuals, np.clip(x0, lo, hi), bounds=(lo, hi),
                           diff_step=DIFF_STEP, x_scale=1.0, max_nfev=MAX_ITERATIONS)
    return result.x, {"evaluations": int(result.nfev), "cost": float(result.cost),
                      "status": int(result.status)}


def check_statements(priors: PriorSet, statements: Statements, cells: Cells,
                     draws: int = CHECK_DRAWS, seed: int = 1) -> list[dict[str, Any]]:
    """Each statement against fresh prior predictive draws of `priors`
    (prior_predictive.draw_prior): target and achieved probability and quantiles, and
    whether it is met within the tolerance."""
    d, _ = draw_prior(cells, priors, draws, seed)
    rows = []
    for i, s in enumerate(statements.statements):
        samples = _samples(d, cells, s, seed + 1 + i)
        mass = s.mass(samples)
        rows.append({
            "id": s.id, "statement": s.describe(), "quantity": s.quantity,
            "label": STATEMENT_QUANTITIES[s.quantity][0],
            "target_probability": s.probability, "achieved_probability": mass,
            "quantiles": [{"level": level, "target": value,
                           "achieved": float(np.quantile(samples, level))}
                          for level, value in s.targets()],
            "median": float(np.median(samples)),
            "summary": {f"{q:g}": float(v) for q, v in zip(
                (0.05, 0.25, 0.5, 0.75, 0.95),
                np.quantile(samples, (0.05, 0.25, 0.5, 0.75, 0.95)), strict=True)},
            "scale": s.scale,
            "met": abs(mass - s.probability) <= statements.tolerance,
        })
    return rows


@dataclass
class Elicitation:
    """What `elicit` found: the prior set, how each statement is met, conflicts."""

    priors: PriorSet
    base_hash: str
    knobs: list[Knob]
    checks: list[dict[str, Any]]
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    solver: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return all(c["met"] for c in self.checks)

    def changes(self, base: PriorSet) -> dict[str, dict[str, Any]]:
        return {name: {"from": base[name], "to": self.priors[name]}
                for name in PARAMETERS if base[name] != self.priors[name]}


def elicit(statements: Statements, codebook_or_cells: Codebook | Cells, base: PriorSet, *,
           draws: int = SOLVE_DRAWS, check_draws: int = CHECK_DRAWS, seed: int = 0
           ) -> Elicitation:
    """Solve for the prior that meets `statements`, starting from `base`; check it on fresh
    draws; name the statements that cannot be met, and why."""
    cells = (codebook_or_cells if isinstance(codebook_or_cells, Cells)
             else empty_cells(codebook_or_cells))
    knobs = knobs_for(statements, base)
    crn = CommonDraws(cells, base, draws, seed)
    x, solver = solve(list(statements.statements), base, knobs, crn, seed)
    priors = apply_knobs(base, knobs, x)
    checks = check_statements(priors, statements, cells, check_draws, seed + 1)
    result = Elicitation(priors=priors, base_hash=base.content_hash, knobs=knobs, checks=checks,
                         solver=solver)
    for check in checks:
        if check["met"]:
            continue
        s = next(s for s in statements.statements if s.id == check["id"])
        own = [k for k in knobs if (k.parameter, k.kind) in statement_knobs(s)] \
            if statements.adjust is None else knobs
        alone = Statements(statements=(s,), tolerance=statements.tolerance,
                           adjust=statements.adjust)
        x1, _ = solve([s], base, own, crn, seed)
        alone_check = check_statements(apply_knobs(base, own, x1), alone, cells, check_draws,
                                       seed + 1)[0]
        params = {k.parameter for k in own}
        if alone_check["met"]:
            others = [o.id for o in statements.statements if o.id != s.id
                      and params & {p for p, _ in statement_knobs(o)}] \
                if statements.adjust is None else \
                [o.id for o in statements.statements if o.id != s.id]
            result.conflicts.append({
                "id": s.id, "kind": "conflicting", "with": others,
                "alone_probability": alone_check["achieved_probability"],
                "message": f"{s.id} can be met on its own (probability "
                           f"{alone_check['achieved_probability']:.2f}) but not together with "
                           f"{', '.join(others) or 'the others'}: they ask different things of the "
                           f"same priors ({', '.join(sorted(params))})"})
        else:
            result.conflicts.append({
                "id": s.id, "kind": "unreachable", "with": [],
                "alone_probability": alone_check["achieved_probability"],
                "message": f"{s.id} cannot be met even on its own by changing "
                           f"{', '.join(sorted(params))} (best probability "
                           f"{alone_check['achieved_probability']:.2f} against "
                           f"{s.probability:g}): the model's structure or the prior bounds "
                           f"do not allow it; restate it or adjust other priors "
                           f"([meta] adjust)"})
    return result


# -- the prior file -----------------------------------------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(float(v)) if isinstance(v, float) else str(v)


def _inline(spec: Mapping[str, Any]) -> str:
    kwargs = ", ".join(f"{k} = {_value(v)}" for k, v in spec.get("kwargs", {}).items())
    extra = "".join(f", {k} = {_value(spec[k])}" for k in ("centered",) if k in spec)
    return f'{{dist = {json.dumps(spec["dist"])}, kwargs = {{{kwargs}}}{extra}}}'


def elicitation_meta(statements: Statements, result: Elicitation, base_source: str
                    ) -> dict[str, Any]:
    """The [meta] table a written prior file carries (the loader ignores it for the
    priors; `forecast priors set` stores it as the statements behind the set)."""
    return {
        "title": statements.title,
        "elicited_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "base": base_source, "base_hash": result.base_hash,
        "tolerance": statements.tolerance, "met": result.met,
        "adjusted": sorted({k.parameter for k in result.knobs}),
        "statements": [s.as_dict() | {"achieved_probability": round(c["achieved_probability"], 4)}
                       for s, c in zip(statements.statements, result.checks, strict=True)],
    }


def render_prior_file(priors: PriorSet, meta: Mapping[str, Any] | None = None) -> str:
    """An ordinary prior file: one line per parameter, then the [meta] table with the
    statements it came from."""
    lines = ["# Prior set elicited from outcome-scale statements (forecast priors elicit).",
             "# The statements it meets, and how well, are in [meta] below; the loader reads",
             "# the priors and keeps [meta] as the record of where they came from.", ""]
    lines += [f"{name} = {_inline(priors[name])}" for name in PARAMETERS]
    text = "\n".join(lines) + "\n"
    if meta:
        text += "\n" + tomli_w.dumps({"meta": dict(meta)})
    return text
