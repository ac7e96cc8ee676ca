"""Priors are data: load, validate, hash, round-trip and draw from the model's prior specifications.

A prior file (TOML) maps every top-level parameter of the model
(forecasting.model.arithmetic.PARAMETERS) to a dictionary shaped like pymc-extras'
`Prior.to_dict()`::

    sigma_partner = {dist = "HalfNormal", kwargs = {sigma = 0.5}}

Group scales (`sigma_*`) may carry `centered = true|false`, which overrides the data-driven
choice of parameterisation for the effect they scale.

`FAMILIES` is the one table of distributions the project supports: the PyMC model builds
them (under the same names), and the simulator, SBC and the prior predictive draw from them
with `draw`. A prior outside the table is refused on load, so an accepted prior set works
everywhere. No PyMC import here: the web workers read and validate priors without it.
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


class PriorConfigError(ValueError):
    """A prior specification that the model cannot use; the message names the key."""


@dataclass(frozen=True)
class Family:
    """A distribution family: its parameters (PyMC's names), which must be positive, its
    support, and a numpy draw of `size` values from keyword arguments with defaults filled."""

    parameters: tuple[str, ...]
    defaults: Mapping[str, float]
    positive: tuple[str, ...]
    support: str  # "real" or "positive"
    draw: Callable[[np.random.Generator, dict[str, Any], Any], np.ndarray]


def _t(rng, kw, size):
    return kw["mu"] + kw["sigma"] * rng.standard_t(kw["nu"], size)


FAMILIES: dict[str, Family] = {
    "Normal": Family(("mu", "sigma"), {"mu": 0.0}, ("sigma",), "real",
                     lambda rng, kw, size: rng.normal(kw["mu"], kw["sigma"], size)),
    "StudentT": Family(("nu", "mu", "sigma"), {"mu": 0.0}, ("nu", "sigma"), "real", _t),
    "HalfNormal": Family(("sigma",), {}, ("sigma",), "positive",
                         lambda rng, kw, size: np.abs(rng.normal(0.0, kw["sigma"], size))),
    "HalfStudentT": Family(("nu", "sigma"), {}, ("nu", "sigma"), "positive",
                           lambda rng, kw, size: np.abs(_t(rng, kw | {"mu": 0.0}, size))),
    "Exponential": Family(("lam",), {}, ("lam",), "positive",
                          lambda rng, kw, size: rng.exponential(1.0 / np.asarray(kw["lam"]),
                                                                size)),
    "Gamma": Family(("alpha", "beta"), {}, ("alpha", "beta"), "positive",
                    lambda rng, kw, size: rng.gamma(kw["alpha"], 1.0 / np.asarray(kw["beta"]),
                                                    size)),
    "LogNormal": Family(("mu", "sigma"), {"mu": 0.0}, ("sigma",), "positive",
                        lambda rng, kw, size: rng.lognormal(kw["mu"], kw["sigma"], size)),
}
SPEC_KEYS = ("dist", "kwargs", "centered", "dims")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _family(name: str, dist_name: Any) -> Family:
    family = FAMILIES.get(dist_name) if isinstance(dist_name, str) else None
    if family is None:
        raise PriorConfigError(f"{name}: unsupported distribution {dist_name!r}; use one of "
                               f"{sorted(FAMILIES)}")
    return family


def validate_spec(name: str, spec: Any) -> dict[str, Any]:
    """Check one prior against the model and its family; return a clean copy."""
    if name not in PARAMETERS:
        raise PriorConfigError(
            f"{name}: the model has no parameter {name!r}; its parameters are {sorted(PARAMETERS)}")
    if not isinstance(spec, Mapping):
        raise PriorConfigError(f"{name}: expected a table like {{dist = \"Normal\", kwargs = "
                               f"{{mu = 0, sigma = 1}}}}, got {spec!r}")
    if unknown := set(spec) - set(SPEC_KEYS):
        raise PriorConfigError(f"{name}: unknown keys {sorted(unknown)}; allowed {list(SPEC_KEYS)}")
    if "dist" not in spec:
        raise PriorConfigError(f"{name}: missing 'dist' (the distribution name)")
    dist_name = spec["dist"]
    family = _family(name, dist_name)
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise PriorConfigError(f"{name}.kwargs: expected a table of parameters, got {kwargs!r}")
    if unknown := set(kwargs) - set(family.parameters):
        raise PriorConfigError(f"{name}: {sorted(unknown)} not parameters of {dist_name}; "
                               f"use {list(family.parameters)}")
    if missing := [p for p in family.parameters if p not in kwargs and p not in family.defaults]:
        raise PriorConfigError(f"{name}: missing {missing}; {dist_name} needs "
                               f"{[p for p in family.parameters if p not in family.defaults]}")
    parameter = PARAMETERS[name]
    size = parameter.size
    for key, value in kwargs.items():
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and (size is None or len(value) != size):
            wanted = "a number" if size is None else f"a number or {size} numbers"
            raise PriorConfigError(f"{name}.kwargs.{key}: expected {wanted}, got {value!r}")
        if not all(_is_number(v) for v in values):
            raise PriorConfigError(f"{name}.kwargs.{key}: expected finite numbers, got {value!r}")
        if key in family.positive and not all(v > 0 for v in values):
            raise PriorConfigError(f"{name}.kwargs.{key}: must be positive, got {value!r}")
    if parameter.positive and family.support != "positive":
        positive = sorted(k for k, f in FAMILIES.items() if f.support == "positive")
        raise PriorConfigError(f"{name}: a group scale needs a positive distribution, one of "
                               f"{positive}; got {dist_name!r}")
    if not parameter.positive and family.support != "real":
        real = sorted(k for k, f in FAMILIES.items() if f.support == "real")
        raise PriorConfigError(f"{name}: needs a distribution on the real line, one of {real}; "
                               f"got {dist_name!r}")
    if name == "cutpoints" and isinstance(kwargs.get("mu"), list):
        mu = kwargs["mu"]
        if any(b <= a for a, b in zip(mu, mu[1:], strict=False)):
            raise PriorConfigError(f"cutpoints.kwargs.mu: must be increasing, got {mu!r}")
    if "centered" in spec:
        if name not in SCALES:
            raise PriorConfigError(f"{name}.centered: only group scales (sigma_*) take 'centered'")
        if not isinstance(spec["centered"], bool):
            raise PriorConfigError(f"{name}.centered: expected true or false, got "
                                   f"{spec['centered']!r}")
    clean = {"dist": str(dist_name), "kwargs": copy.deepcopy(dict(kwargs))}
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


@dataclass(frozen=True)
class PriorSet(Mapping):
    """Validated priors of every model parameter: name -> spec."""

    specs: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        missing = set(PARAMETERS) - set(self.specs)
        if missing:
            raise PriorConfigError(f"{sorted(missing)[0]}: missing prior; every parameter of the "
                                   f"model needs one (missing: {sorted(missing)})")
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
        return cls(specs=dict(data))

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


def load_priors(path: Path | str) -> PriorSet:
    return parse_priors(Path(path).read_text(encoding="utf-8"))
