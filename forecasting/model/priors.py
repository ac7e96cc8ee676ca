"""Priors are data: load, validate, hash, round-trip and draw from the model's prior specifications.

A prior file (TOML) maps every top-level parameter of the model
(forecasting.model.arithmetic.PARAMETERS) to a dictionary shaped like pymc-extras'
`Prior.to_dict()`::

    sigma_partner = {dist = "HalfNormal", kwargs = {sigma = 0.5}}

Group scales (`sigma_*`) may carry `centered = true|false`, which overrides the data-driven
choice of parameterisation for the effect they scale.

A `[meta]` table is not a prior: it records where the priors came from (an elicited file
carries its outcome-scale statements there, forecasting.model.elicitation); the loader leaves
it out of the set and of its hash.

`FAMILIES` is the one table of distributions the project supports: the PyMC model builds
them (under the same names), and the simulator, SBC and the prior predictive draw from them
with `draw`. A prior outside the table is refused on load, so an accepted prior set works
everywhere. Each argument is bounded (`Bound`: locations, scales, rates, degrees of freedom,
in logits, from what the outcome scale can show), so that an accepted prior is also proper,
finite and of a width a fit and the prior check can use. A set with problems raises one
PriorConfigError listing all of them. No PyMC import here: the web workers read and validate
priors without it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forecasting.model.arithmetic import PARAMETERS, SCALES


@dataclass(frozen=True)
class PriorProblem:
    """One thing wrong with a prior set: the key it is about and what is wrong."""

    field: str  # "sigma_bloc", "sigma_bloc.kwargs.sigma", "cutpoints.kwargs.mu", ...
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class PriorConfigError(ValueError):
    """A prior specification that the model cannot use.

    Built from a message, or from every `PriorProblem` found at once; the message then
    lists them, "field: problem; field: problem", first field first. `errors` holds them as
    `{"field", "message"}` rows for clients that show them beside their inputs.
    """

    def __init__(self, problems: str | PriorProblem | list[PriorProblem]):
        if isinstance(problems, PriorProblem):
            problems = [problems]
        self.problems: tuple[PriorProblem, ...] = (
            () if isinstance(problems, str) else tuple(problems))
        super().__init__(problems if isinstance(problems, str)
                         else "; ".join(str(p) for p in self.problems))

    @property
    def errors(self) -> list[dict[str, str]]:
        return [{"field": p.field, "message": p.message} for p in self.problems]


# Bounds on a prior's arguments, in logits: eta and the cutpoints are log-odds,
# P(level <= k) = sigmoid(c_k - eta). They come from what the outcome scale can show, not from
# what a float can hold (a scale of 1e308 was once accepted: every later fit failed and the
# prior check answered NaN).
LOCATION_MAX = 20.0
# |location| <= 20: sigmoid(20) = 1 - 2e-9. A prior centred further out says a probability is
# 0 or 1 to within what no data set resolves (100,000 episodes resolve about 1e-5, 11.5
# logits); the default cutpoints sit at 4-5.
SCALE_MIN, SCALE_MAX = 1e-3, 10.0
# 0.001 <= scale <= 10. Below 0.001 logits an effect moves a probability by under 0.025
# points: the term is switched off, which a smaller scale says no better while the sampler,
# working on log(scale), finds it harder. Above 10, three sds span +-30 logits, where every
# probability is 0 or 1 to 1e-13: a wider prior is no vaguer on the outcome scale, it only
# piles prior mass on 0 and 1. Rates (Exponential lam, Gamma beta) are inverse scales.
RATE_MIN, RATE_MAX = 1.0 / SCALE_MAX, 1.0 / SCALE_MIN
DOF_MIN, DOF_MAX = 1.0, 1000.0
# Student-t degrees of freedom: at least 1 (the Cauchy); below, draws reach 1e30 logits and
# more. Above 1,000 the family is the Normal to within any Monte Carlo error: use Normal.
SHAPE_MIN, SHAPE_MAX = 0.5, 1000.0
# Gamma shape: below 0.5 most draws lie orders of magnitude under the mean, a point mass at
# zero in effect; above 1,000 the prior is a point mass at its mean (sd 3% of it).
LOG_SPREAD_MAX = 2.0
# LogNormal sigma (its spread in log units): 2 puts the 95th percentile 27 times above the
# median; wider spans point mass to beyond SCALE_MAX in one prior. Its mu is the log of the
# median, so it lies between log(SCALE_MIN) and log(SCALE_MAX).


@dataclass(frozen=True)
class Bound:
    """Inclusive limits of one argument of a family, and why (shown in the error)."""

    low: float
    high: float
    why: str

    def problem(self, value: float) -> str | None:
        if self.low <= value <= self.high:
            return None
        return f"must be between {self.low:g} and {self.high:g} ({self.why}), got {value!r}"


LOCATION = Bound(-LOCATION_MAX, LOCATION_MAX, "a location in logits; beyond it every "
                 "probability is 0 or 1")
SCALE = Bound(SCALE_MIN, SCALE_MAX, "a scale in logits; below, a point mass; above, prior "
              "mass piles up at probabilities 0 and 1")
RATE = Bound(RATE_MIN, RATE_MAX, "a rate, 1/scale in logits")
DOF = Bound(DOF_MIN, DOF_MAX, "degrees of freedom; below 1 the tails have no mean, above "
            "1000 use Normal")
SHAPE = Bound(SHAPE_MIN, SHAPE_MAX, "a Gamma shape; below, a point mass at zero, above, one at "
              "the mean")
LOG_LOCATION = Bound(math.log(SCALE_MIN), math.log(SCALE_MAX), "the log of the median scale")
LOG_SPREAD = Bound(SCALE_MIN, LOG_SPREAD_MAX, "the spread in log units")


@dataclass(frozen=True)
class Family:
    """A distribution family: its parameters (PyMC's names), which must be positive, its
    support, a numpy draw of `size` values from keyword arguments with defaults filled, and
    the bounds of each argument (`Bound`)."""

    parameters: tuple[str, ...]
    defaults: Mapping[str, float]
    positive: tuple[str, ...]
    support: str  # "real" or "positive"
    draw: Callable[[np.random.Generator, dict[str, Any], Any], np.ndarray]
    bounds: Mapping[str, Bound] = field(default_factory=dict)


def _t(rng, kw, size):
    return kw["mu"] + kw["sigma"] * rng.standard_t(kw["nu"], size)


FAMILIES: dict[str, Family] = {
    "Normal": Family(("mu", "sigma"), {"mu": 0.0}, ("sigma",), "real",
                     lambda rng, kw, size: rng.normal(kw["mu"], kw["sigma"], size),
                     {"mu": LOCATION, "sigma": SCALE}),
    "StudentT": Family(("nu", "mu", "sigma"), {"mu": 0.0}, ("nu", "sigma"), "real", _t,
                       {"nu": DOF, "mu": LOCATION, "sigma": SCALE}),
    "HalfNormal": Family(("sigma",), {}, ("sigma",), "positive",
                         lambda rng, kw, size: np.abs(rng.normal(0.0, kw["sigma"], size)),
                         {"sigma": SCALE}),
    "HalfStudentT": Family(("nu", "sigma"), {}, ("nu", "sigma"), "positive",
                           lambda rng, kw, size: np.abs(_t(rng, kw | {"mu": 0.0}, size)),
                           {"nu": DOF, "sigma": SCALE}),
    "Exponential": Family(("lam",), {}, ("lam",), "positive",
                          lambda rng, kw, size: rng.exponential(1.0 / np.asarray(kw["lam"]),
                                                                size),
                          {"lam": RATE}),
    "Gamma": Family(("alpha", "beta"), {}, ("alpha", "beta"), "positive",
                    lambda rng, kw, size: rng.gamma(kw["alpha"], 1.0 / np.asarray(kw["beta"]),
                                                    size),
                    {"alpha": SHAPE, "beta": RATE}),
    "LogNormal": Family(("mu", "sigma"), {"mu": 0.0}, ("sigma",), "positive",
                        lambda rng, kw, size: rng.lognormal(kw["mu"], kw["sigma"], size),
                        {"mu": LOG_LOCATION, "sigma": LOG_SPREAD}),
}
SPEC_KEYS = ("dist", "kwargs", "centered", "dims")
# The table of a prior file that records where its priors came from (title, statements,
# who elicited them): read by `prior_file_meta`, never a prior, not in the content hash.
META = "meta"

# Why some PyMC names people try are not in the table (the error says so).
_IMPROPER = "improper: its density does not integrate, so it has no prior predictive"
_DISCRETE = "discrete: the model's parameters are real numbers"
REFUSED: dict[str, str] = {
    "Flat": _IMPROPER, "HalfFlat": _IMPROPER,
    **dict.fromkeys(("Distribution", "Continuous", "Discrete", "SymbolicRandomVariable",
                     "CustomDist", "DensityDist"),
                    "not a distribution: an abstract PyMC class or a user-defined density"),
    "DiracDelta": "a point mass: the parameter would not be estimated",
    "Uniform": "hard edges that the data cannot move the parameter past",
    **dict.fromkeys(("Bernoulli", "Binomial", "BetaBinomial", "Categorical", "DiscreteUniform",
                     "DiscreteWeibull", "Geometric", "HyperGeometric", "NegativeBinomial",
                     "OrderedLogistic", "OrderedProbit", "Poisson", "ZeroInflatedBinomial",
                     "ZeroInflatedNegativeBinomial", "ZeroInflatedPoisson"), _DISCRETE),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _unsupported(dist_name: Any) -> str:
    why = f" ({REFUSED[dist_name]})" if isinstance(dist_name, str) and dist_name in REFUSED \
        else ""
    return f"unsupported distribution {dist_name!r}{why}; use one of {sorted(FAMILIES)}"


def _argument_problems(name: str, family: Family, kwargs: Mapping[str, Any]
                       ) -> list[PriorProblem]:
    """Every argument: a number (or one per element of a vector parameter), finite,
    positive where the family needs it, within its bound."""
    size = PARAMETERS[name].size
    problems = []
    for key, value in kwargs.items():
        where = f"{name}.kwargs.{key}"
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and (size is None or len(value) != size):
            wanted = "a number" if size is None else f"a number or {size} numbers"
            problems.append(PriorProblem(where, f"expected {wanted}, got {value!r}"))
            continue
        if not values or not all(_is_number(v) for v in values):
            problems.append(PriorProblem(where, f"expected finite numbers, got {value!r}"))
            continue
        if key in family.positive and not all(v > 0 for v in values):
            problems.append(PriorProblem(where, f"must be positive, got {value!r}"))
            continue
        bound = family.bounds.get(key)
        messages = [m for m in (bound.problem(v) for v in values) if m] if bound else []
        if messages:
            problems.append(PriorProblem(where, messages[0]))
    return problems


def spec_problems(name: str, spec: Any) -> list[PriorProblem]:
    """Everything wrong with one prior, checked against the model and its family."""
    if name not in PARAMETERS:
        return [PriorProblem(name, f"the model has no parameter {name!r}; its parameters are "
                                   f"{sorted(PARAMETERS)}")]
    if not isinstance(spec, Mapping):
        return [PriorProblem(name, f"expected a table like {{dist = \"Normal\", kwargs = "
                                   f"{{mu = 0, sigma = 1}}}}, got {spec!r}")]
    problems = []
    if unknown := set(spec) - set(SPEC_KEYS):
        problems.append(PriorProblem(name, f"unknown keys {sorted(unknown)}; allowed "
                                           f"{list(SPEC_KEYS)}"))
    if "centered" in spec:
        if name not in SCALES:
            problems.append(PriorProblem(f"{name}.centered",
                                         "only group scales (sigma_*) take 'centered'"))
        elif not isinstance(spec["centered"], bool):
            problems.append(PriorProblem(f"{name}.centered",
                                         f"expected true or false, got {spec['centered']!r}"))
    if "dist" not in spec:
        return problems + [PriorProblem(name, "missing 'dist' (the distribution name)")]
    dist_name = spec["dist"]
    family = FAMILIES.get(dist_name) if isinstance(dist_name, str) else None
    if family is None:
        return problems + [PriorProblem(name, _unsupported(dist_name))]
    parameter = PARAMETERS[name]
    if parameter.positive and family.support != "positive":
        positive = sorted(k for k, f in FAMILIES.items() if f.support == "positive")
        problems.append(PriorProblem(name, f"a group scale needs a positive distribution, one "
                                           f"of {positive}; got {dist_name!r}"))
    if not parameter.positive and family.support != "real":
        real = sorted(k for k, f in FAMILIES.items() if f.support == "real")
        problems.append(PriorProblem(name, f"needs a distribution on the real line, one of "
                                           f"{real}; got {dist_name!r}"))
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        return problems + [PriorProblem(f"{name}.kwargs",
                                        f"expected a table of parameters, got {kwargs!r}")]
    if unknown := set(kwargs) - set(family.parameters):
        problems.append(PriorProblem(name, f"{sorted(unknown)} not parameters of {dist_name}; "
                                           f"use {list(family.parameters)}"))
    needed = [p for p in family.parameters if p not in family.defaults]
    if missing := [p for p in needed if p not in kwargs]:
        problems.append(PriorProblem(name, f"missing {missing}; {dist_name} needs {needed}"))
    problems += _argument_problems(name, family, {k: v for k, v in kwargs.items()
                                                  if k in family.parameters})
    alpha, beta = kwargs.get("alpha"), kwargs.get("beta")
    if dist_name == "Gamma" and _is_number(alpha) and _is_number(beta) and beta > 0 \
            and not SCALE_MIN <= alpha / beta <= SCALE_MAX:
        # each argument within its bound can still put the mean far outside the scales
        problems.append(PriorProblem(f"{name}.kwargs", f"the mean alpha / beta = "
                                     f"{alpha / beta:g} must be between {SCALE_MIN:g} and "
                                     f"{SCALE_MAX:g} ({SCALE.why})"))
    mu = kwargs.get("mu")
    if name == "cutpoints" and isinstance(mu, list) and all(_is_number(v) for v in mu) \
            and any(b <= a for a, b in zip(mu, mu[1:], strict=False)):
        # the ordered transform restricts the family to increasing vectors: with decreasing
        # locations almost no draw is increasing, and the prior says the opposite of itself
        problems.append(PriorProblem("cutpoints.kwargs.mu", f"must be increasing, got {mu!r}"))
    return problems


def validate_spec(name: str, spec: Any) -> dict[str, Any]:
    """Check one prior against the model and its family; return a clean copy.

    Raises PriorConfigError listing every problem of this prior.
    """
    if problems := spec_problems(name, spec):
        raise PriorConfigError(problems)
    kwargs = spec.get("kwargs", {})
    clean = {"dist": str(spec["dist"]), "kwargs": copy.deepcopy(dict(kwargs))}
    if "centered" in spec:
        clean["centered"] = spec["centered"]
    if "dims" in spec:
        clean["dims"] = list(spec["dims"]) if isinstance(spec["dims"], list | tuple) else spec["dims"]
    return clean


def distribution_kwargs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The family's keyword arguments with its defaults filled in (PyMC's names)."""
    return dict(FAMILIES[spec["dist"]].defaults) | dict(spec.get("kwargs", {}))


def draw(spec: Mapping[str, Any], rng: np.random.Generator, size=None) -> np.ndarray:
    """Draws from one validated prior spec in numpy."""
    kwargs = {k: np.asarray(v, dtype=float) for k, v in distribution_kwargs(spec).items()}
    return FAMILIES[spec["dist"]].draw(rng, kwargs, size)


def draw_ordered(spec: Mapping[str, Any], rng: np.random.Generator, size: int = 3,
                 max_tries: int = 100_000) -> np.ndarray:
    """One draw of an ordered vector prior (the cutpoints): the family restricted to
    increasing vectors, which is the density PyMC's `ordered` transform gives it.

    Sorting independent draws would give order statistics instead, a different distribution
    when the locations differ, which SBC flags as miscalibration.
    """
    for _ in range(max_tries):
        x = np.broadcast_to(draw(spec, rng, size), (size,))
        if np.all(np.diff(x) > 0):
            return np.array(x)
    raise RuntimeError("could not draw increasing cutpoints from their prior")


def _parameter_order(name: Any) -> tuple[int, str]:
    order = list(PARAMETERS)
    return (order.index(name), "") if name in PARAMETERS else (len(order), str(name))


def draw_ordered_many(spec: Mapping[str, Any], rng: np.random.Generator, draws: int,
                      size: int = 3, max_batches: int = 100) -> tuple[np.ndarray, float]:
    """`draws` draws (draws, size) of an ordered vector prior, as `draw_ordered`, vectorised:
    the family's draws in batches, the increasing rows kept (exact rejection). Also returns
    the share of the family's draws that were increasing (1/6 for three exchangeable
    coordinates; more when the locations are increasing and apart).

    Bounded: at most `max_batches` batches of max(2 draws, 1000) rows, else PriorConfigError
    naming the prior (a validated prior keeps at least about 1/6 of its draws).
    """
    kept, n_drawn, n_kept = [], 0, 0
    batch = max(2 * draws, 1000)
    for _ in range(max_batches):
        x = np.broadcast_to(draw(spec, rng, (batch, size)), (batch, size))
        n_drawn += batch
        increasing = x[np.all(np.diff(x, axis=1) > 0, axis=1)]
        kept.append(increasing)
        n_kept += len(increasing)
        if n_kept >= draws:
            break
    else:
        raise PriorConfigError(PriorProblem(
            "cutpoints", f"only {n_kept} of {n_drawn} prior draws were increasing, fewer than "
                         f"the {draws} needed: make the locations increase"))
    return np.concatenate(kept)[:draws], n_kept / n_drawn


@dataclass(frozen=True)
class PriorSet(Mapping):
    """Validated priors of every model parameter: name -> spec."""

    specs: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.specs, Mapping):
            raise PriorConfigError(PriorProblem("priors", f"expected a table of parameter -> "
                                                          f"prior, got {self.specs!r}"))
        # every problem of every prior at once, in the model's parameter order
        problems = [PriorProblem(name, "missing prior; every parameter of the model needs one")
                    for name in PARAMETERS if name not in self.specs]
        for name in sorted(self.specs, key=_parameter_order):
            problems += spec_problems(name, self.specs[name])
        if problems:
            raise PriorConfigError(problems)
        clean = {name: validate_spec(name, spec) for name, spec in self.specs.items()}
        object.__setattr__(self, "specs", clean)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.specs[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy({k: self.specs[k] for k in sorted(self.specs)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriorSet:
        """From parameter -> spec; a `meta` table (where the priors came from, e.g. the
        statements of forecasting.model.elicitation) is not a prior and is left out."""
        if isinstance(data, Mapping):
            return cls(specs={k: v for k, v in data.items() if k != META})
        return cls(specs=data)

    @property
    def content_hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def centered_overrides(self) -> dict[str, str]:
        """Effect -> "centered"/"noncentered" for scales that fix their parameterisation."""
        return {SCALES[k]: "centered" if v["centered"] else "noncentered"
                for k, v in self.specs.items() if "centered" in v}

    def replace(self, **specs: dict[str, Any]) -> PriorSet:
        """A new set with some priors replaced (validated again)."""
        return PriorSet.from_dict(self.to_dict() | specs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriorSet) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.content_hash)


def parse_priors(text: str) -> PriorSet:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriorConfigError(f"priors are not valid TOML: {exc}") from exc
    return PriorSet.from_dict(raw)


def prior_file_meta(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `meta` table of a prior file read as a mapping, if it has one (a table)."""
    meta = raw.get(META) if isinstance(raw, Mapping) else None
    if meta is not None and not isinstance(meta, Mapping):
        raise PriorConfigError(PriorProblem(META, f"expected a table, got {meta!r}"))
    return dict(meta) if meta is not None else None


def load_priors(path: Path | str) -> PriorSet:
    return parse_priors(Path(path).read_text(encoding="utf-8"))
