"""Priors are data: load, validate, hash and round-trip the model's prior specifications.

A prior file (TOML) maps every parameter of the model to a dictionary shaped like
pymc-extras' `Prior.to_dict()`::

    sigma_partner = {dist = "HalfNormal", kwargs = {sigma = 0.5}}

Group scales (`sigma_*`) may carry `centered = true|false`, which overrides the data-driven
choice of parameterisation for the effect they scale. Validation needs PyMC's distribution
signatures, so PyMC is imported lazily (the rest of this module is plain Python).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PriorConfigError(ValueError):
    """A prior specification that the model cannot use; the message names the key."""


# Parameter -> (what it is, shape of a vector-valued argument, the effect it scales)
PARAMETERS: dict[str, dict[str, Any]] = {
    "cutpoints": {"size": 3, "effect": None},
    "beta_severity": {"size": None, "effect": None},
    "beta_alignment": {"size": None, "effect": None},
    "sigma_bloc": {"size": None, "effect": "bloc"},
    "sigma_partner": {"size": None, "effect": "partner"},
    "sigma_type": {"size": None, "effect": "intel_type"},
    "sigma_bloc_type": {"size": None, "effect": "bloc_type"},
    "sigma_pt": {"size": None, "effect": "partner_type"},
    "sigma_trigger": {"size": None, "effect": "trigger_type"},
}
SCALE_EFFECT = {k: v["effect"] for k, v in PARAMETERS.items() if v["effect"]}
# Scales must be strictly positive, and the distribution's support too.
SCALE_PARAMETERS = ("sigma", "tau", "lam", "scale", "alpha", "beta", "nu", "b")
POSITIVE_DISTRIBUTIONS = ("HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma",
                          "InverseGamma", "LogNormal", "Weibull", "HalfFlat")
SPEC_KEYS = ("dist", "kwargs", "centered", "dims")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _distribution(name: str, dist_name: Any):
    import pymc as pm

    dist = getattr(pm, str(dist_name), None)
    if not (isinstance(dist, type) and issubclass(dist, pm.Distribution)):
        raise PriorConfigError(
            f"{name}: unknown distribution {dist_name!r}; use a PyMC distribution name such as "
            "'Normal' or 'HalfNormal'")
    return dist


def _signature(dist) -> set[str]:
    return {p for p, v in inspect.signature(dist.dist).parameters.items()
            if v.kind is v.POSITIONAL_OR_KEYWORD}


def validate_spec(name: str, spec: Any) -> dict[str, Any]:
    """Check one prior against the model and the distribution's signature; return a clean copy."""
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
    dist = _distribution(name, dist_name)
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise PriorConfigError(f"{name}.kwargs: expected a table of parameters, got {kwargs!r}")
    allowed = _signature(dist)
    if unknown := set(kwargs) - allowed:
        raise PriorConfigError(f"{name}: {sorted(unknown)} not parameters of {dist_name}; "
                               f"use {sorted(allowed)}")
    scales = [p for p in SCALE_PARAMETERS if p in allowed]
    if scales and not any(p in kwargs for p in scales):
        raise PriorConfigError(f"{name}: missing scale; {dist_name} needs one of {scales}")
    size = PARAMETERS[name]["size"]
    for key, value in kwargs.items():
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and (size is None or len(value) != size):
            wanted = "a number" if size is None else f"a number or {size} numbers"
            raise PriorConfigError(f"{name}.kwargs.{key}: expected {wanted}, got {value!r}")
        if not all(_is_number(v) for v in values):
            raise PriorConfigError(f"{name}.kwargs.{key}: expected finite numbers, got {value!r}")
        if key in SCALE_PARAMETERS and not all(v > 0 for v in values):
            raise PriorConfigError(f"{name}.kwargs.{key}: scale must be positive, got {value!r}")
    if name.startswith("sigma_") and dist_name not in POSITIVE_DISTRIBUTIONS:
        raise PriorConfigError(f"{name}: a group scale needs a positive distribution, one of "
                               f"{list(POSITIVE_DISTRIBUTIONS)}; got {dist_name!r}")
    if name == "cutpoints" and isinstance(kwargs.get("mu"), list):
        mu = kwargs["mu"]
        if any(b <= a for a, b in zip(mu, mu[1:], strict=False)):
            raise PriorConfigError(f"cutpoints.kwargs.mu: must be increasing, got {mu!r}")
    if "centered" in spec:
        if name not in SCALE_EFFECT:
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
        return {SCALE_EFFECT[k]: "centered" if v["centered"] else "noncentered"
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


def make_rv(name: str, spec: Mapping[str, Any], **kwargs):
    """Create the random variable `name` from a spec, inside the current model context.

    Extra keyword arguments (dims, transform, ...) are passed to the distribution.
    """
    spec = validate_spec(name, spec) if name in PARAMETERS else dict(spec)
    dist = _distribution(name, spec["dist"])
    return dist(name, **spec.get("kwargs", {}), **kwargs)
