"""The OpenAPI app class: the generated document, completed with what only runtime knows.

Codes (partners, intelligence types, trigger types, confidence) are data in the codebook,
not Python types, so the generated schemas say `string`; here they gain their `enum`,
and every operation that can answer 401 is marked as needing the bearer token.
"""

from __future__ import annotations

from typing import Any

from flask_openapi3 import OpenAPI

from forecasting.domain.codebook import Codebook

from .responses import FiniteJSONProvider


def _walk(node: Any, visit) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def _string_schema(schema: dict) -> dict | None:
    if schema.get("type") == "string":
        return schema
    for option in schema.get("anyOf", []):
        if option.get("type") == "string":
            return option
    return None


def add_codebook_enums(spec: dict, codebook: Codebook) -> dict:
    enums = {"partner": list(codebook.partner_codes), "intel_type": list(codebook.intel_type_codes),
             "trigger_type": list(codebook.trigger_type_codes),
             "confidence": list(codebook.confidence)}
    enums.update({f"trigger_type_{s}": enums["trigger_type"] for s in ("a", "b")})

    def visit(node: dict) -> None:
        for name, prop in (node.get("properties") or {}).items():
            if name in enums and (target := _string_schema(prop)) is not None:
                target["enum"] = enums[name]
        if (node.get("in") in ("query", "path") and node.get("name") in enums
                and (target := _string_schema(node.get("schema", {}))) is not None):
            target["enum"] = enums[node["name"]]

    _walk(spec.get("components", {}), visit)
    _walk(spec.get("paths", {}), visit)
    return spec


def add_security(spec: dict) -> dict:
    for methods in spec.get("paths", {}).values():
        for operation in methods.values():
            if isinstance(operation, dict) and "401" in operation.get("responses", {}):
                operation.setdefault("security", [{"bearer": []}])
    return spec


class ForecastAPI(OpenAPI):
    codebook: Codebook | None = None
    json_provider_class = FiniteJSONProvider

    def generate_spec_json(self):
        super().generate_spec_json()
        if self.codebook is not None:
            add_codebook_enums(self.spec_json, self.codebook)
        add_security(self.spec_json)
