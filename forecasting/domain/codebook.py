"""The codebook: controlled vocabularies episodes are coded against (pure, no I/O but the load)."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType


class CodebookError(ValueError):
    """The codebook file itself is malformed."""


class UnknownCodeError(ValueError):
    """A code that is not in the codebook's vocabulary."""

    def __init__(self, field: str, value: object, allowed: list | tuple):
        self.field, self.value, self.allowed = field, value, list(allowed)
        super().__init__(f"{field}: unknown code {value!r}; use one of {list(allowed)}")


@dataclass(frozen=True)
class Partner:
    code: str
    name: str
    bloc: str


@dataclass(frozen=True)
class Codebook:
    version: str
    blocs: Mapping[str, str]
    partners: Mapping[str, Partner]
    intel_types: Mapping[str, str]
    trigger_types: Mapping[str, str]
    levels: Mapping[int, Mapping[str, str]]
    severity: Mapping[int, Mapping[str, str]]
    alignment: Mapping[int, Mapping[str, str]]
    confidence: Mapping[str, str]
    fingerprint: str

    @property
    def partner_codes(self) -> tuple[str, ...]:
        return tuple(self.partners)

    @property
    def bloc_codes(self) -> tuple[str, ...]:
        return tuple(self.blocs)

    @property
    def intel_type_codes(self) -> tuple[str, ...]:
        return tuple(self.intel_types)

    @property
    def trigger_type_codes(self) -> tuple[str, ...]:
        return tuple(self.trigger_types)

    @property
    def level_codes(self) -> tuple[int, ...]:
        return tuple(self.levels)

    def bloc_of(self, partner: str) -> str:
        return self.partner(partner).bloc

    def partner(self, code: str) -> Partner:
        try:
            return self.partners[code]
        except KeyError:
            raise UnknownCodeError("partner", code, self.partner_codes) from None

    def check(self, field: str, value: object) -> None:
        """Raise UnknownCodeError unless `value` is a code of the vocabulary behind `field`."""
        allowed = {
            "partner": self.partner_codes,
            "intel_type": self.intel_type_codes,
            "trigger_type": self.trigger_type_codes,
            "bloc": self.bloc_codes,
            "level": self.level_codes,
            "severity": tuple(self.severity),
            "alignment": tuple(self.alignment),
            "confidence": tuple(self.confidence),
        }[field]
        if value not in allowed:
            raise UnknownCodeError(field, value, allowed)

    def as_dict(self) -> dict:
        """Plain JSON-able form, as served by `forecast vocab --json` and GET /v1/vocab."""
        return {
            "version": self.version,
            "blocs": [{"code": c, "name": n} for c, n in self.blocs.items()],
            "partners": [
                {"code": p.code, "name": p.name, "bloc": p.bloc} for p in self.partners.values()
            ],
            "intel_types": [{"code": c, "name": n} for c, n in self.intel_types.items()],
            "trigger_types": [{"code": c, "name": n} for c, n in self.trigger_types.items()],
            "levels": [{"code": k, **v} for k, v in self.levels.items()],
            "severity": [{"code": k, **v} for k, v in self.severity.items()],
            "alignment": [{"code": k, **v} for k, v in self.alignment.items()],
            "confidence": [{"code": c, "definition": d} for c, d in self.confidence.items()],
        }


def _ordinal(raw: dict, section: str) -> Mapping[int, Mapping[str, str]]:
    try:
        out = {int(k): MappingProxyType(dict(v)) for k, v in raw[section].items()}
    except (KeyError, ValueError, TypeError) as exc:
        raise CodebookError(
            f"[{section}]: expected integer keys with name/definition ({exc})") from exc
    if sorted(out) != list(range(len(out))):
        raise CodebookError(f"[{section}]: codes must be 0..n-1, got {sorted(out)}")
    return MappingProxyType(out)


def parse_codebook(text: str) -> Codebook:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CodebookError(f"codebook is not valid TOML: {exc}") from exc
    missing = {"version", "blocs", "partners", "intel_types", "trigger_types", "levels",
               "severity", "alignment", "confidence"} - set(raw)
    if missing:
        raise CodebookError(f"codebook lacks sections {sorted(missing)}")
    blocs = MappingProxyType(dict(raw["blocs"]))
    partners = {}
    for code, spec in raw["partners"].items():
        if spec.get("bloc") not in blocs:
            raise CodebookError(f"partners.{code}.bloc: unknown bloc {spec.get('bloc')!r}")
        partners[code] = Partner(code=code, name=spec["name"], bloc=spec["bloc"])
    return Codebook(
        version=str(raw["version"]),
        blocs=blocs,
        partners=MappingProxyType(partners),
        intel_types=MappingProxyType(dict(raw["intel_types"])),
        trigger_types=MappingProxyType(dict(raw["trigger_types"])),
        levels=_ordinal(raw, "levels"),
        severity=_ordinal(raw, "severity"),
        alignment=_ordinal(raw, "alignment"),
        confidence=MappingProxyType(dict(raw["confidence"])),
        fingerprint=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


def load_codebook(path: Path) -> Codebook:
    return parse_codebook(Path(path).read_text(encoding="utf-8"))
