"""The OpenAPI app class: the generated document, completed with what only runtime knows.

Codes (partners, blocs, intelligence types, trigger types, levels, confidence) are data in the
codebook, not Python types, so the generated schemas say `string` or `integer`. Here each
vocabulary becomes one shared component (`Partner`, `Bloc`, `IntelType`, `TriggerType`,
`Level`, `Confidence`) whose enum the codebook fills in, and every field or parameter holding
such a code refers to it: a generated client has one `Partner` enum, not one per operation.
The problem document (`Problem`, with typed `FieldError` items) is shared the same way, and
flask-openapi3's default 400 (a list of pydantic errors, which this API never sends) is
replaced by it. The security scheme is set on exactly the operations that need a token on
this instance: writes always, every /v1 read too when FORECAST_OPEN_READS=0.
"""

from __future__ import annotations

import re
from typing import Any

from flask_openapi3 import OpenAPI

from forecasting.domain.codebook import Codebook
from forecasting.domain.episodes import Episode

from .deprecation import mark_deprecated
from .responses import FiniteJSONProvider
from .schemas import EXAMPLES, VOCABULARY, ProblemDoc, PromoteBody

REF = "#/components/schemas/{model}"
PROBLEM_REF = {"$ref": REF.format(model="Problem")}
EPISODE_REF = {"$ref": REF.format(model="Episode")}
EPISODE_BATCH_REF = {"$ref": REF.format(model="EpisodeBatch")}
MAX_BATCH_EPISODES = 10000
# vocabulary -> (component name, JSON type, what a code names)
VOCABULARIES = {
    "partner": ("Partner", "string", "A partner's code (GET /v1/vocab names each)"),
    "bloc": ("Bloc", "string", "A bloc of partners"),
    "intel_type": ("IntelType", "string", "An intelligence type"),
    "trigger_type": ("TriggerType", "string", "A trigger type"),
    "level": ("Level", "integer", "A restriction level: 0 none, 1 selective, 2 reduced, "
                                  "3 suspended"),
    "confidence": ("Confidence", "string", "A coder's confidence in a coded episode"),
}
# Fields and parameters named so hold a code of that vocabulary (also in schemas this
# package does not define, such as the domain's Episode).
BY_NAME = {"partner": "partner", "bloc": "bloc", "intel_type": "intel_type",
           "trigger_type": "trigger_type", "trigger_type_a": "trigger_type",
           "trigger_type_b": "trigger_type", "level": "level", "observed_level": "level",
           "confidence": "confidence"}
UNAUTHORIZED = {"description": "Missing or invalid bearer token",
                "content": {"application/problem+json": {"schema": PROBLEM_REF}}}


def codes(codebook: Codebook, vocabulary: str) -> list:
    return {"partner": list(codebook.partner_codes), "bloc": list(codebook.bloc_codes),
            "intel_type": list(codebook.intel_type_codes),
            "trigger_type": list(codebook.trigger_type_codes),
            "level": list(codebook.levels), "confidence": list(codebook.confidence)}[vocabulary]


def vocabulary_components(codebook: Codebook) -> dict[str, dict]:
    return {name: {"title": name, "type": kind, "enum": codes(codebook, vocabulary),
                   "description": f"{what} (codebook {codebook.version})"}
            for vocabulary, (name, kind, what) in VOCABULARIES.items()}


def shared_components() -> dict[str, dict]:
    """Problem and its field errors; the bodies the views read by hand (an episode, a batch of
    them, a promotion's reason), which flask-openapi3 does not collect."""
    problem = ProblemDoc.model_json_schema(ref_template=REF)
    found = problem.pop("$defs", {})
    episode = Episode.model_json_schema(ref_template=REF)
    found.update(episode.pop("$defs", {}))
    batch = {"title": "EpisodeBatch", "type": "object", "required": ["episodes"],
             "additionalProperties": False,
             "properties": {"episodes": {"type": "array", "items": EPISODE_REF, "minItems": 1,
                                         "maxItems": MAX_BATCH_EPISODES}}}
    return {**found, "Problem": problem, "Episode": episode, "EpisodeBatch": batch,
            "PromoteBody": PromoteBody.model_json_schema(ref_template=REF)}


def _walk(node: Any, visit) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def _code_list(schema: dict, codes: list) -> dict:
    """A string of comma-separated codes: its pattern (the server also strips blanks)."""
    one = "|".join(re.escape(str(c)) for c in codes)
    pattern = f"^(?:{one})(?:,(?:{one}))*$"
    target = schema if schema.get("type") == "string" else next(
        o for o in schema.get("anyOf", []) if o.get("type") == "string")
    target["pattern"] = pattern
    return {k: v for k, v in schema.items() if k != "format"}


def _reference(schema: dict, name: str | None, codebook: Codebook) -> dict | None:
    """`schema` as a reference to its vocabulary's component, or None if it holds no code."""
    mark = schema.get("format", "")
    vocabulary = (mark.removeprefix(VOCABULARY) if mark.startswith(VOCABULARY)
                  else BY_NAME.get(name or ""))
    if vocabulary is None:
        return None
    if vocabulary.endswith(","):  # a list of codes, not one
        return _code_list(schema, codes(codebook, vocabulary.rstrip(",")))
    component, kind, _ = VOCABULARIES[vocabulary]
    ref = {"$ref": REF.format(model=component)}
    kept = {k: schema[k] for k in ("description", "default") if schema.get(k) is not None}
    if schema.get("type") == kind:
        return {**ref, **kept}
    options = schema.get("anyOf", [])
    if any(o.get("type") == kind for o in options):
        return {**{k: v for k, v in schema.items() if k not in ("anyOf", "title", "format")},
                "anyOf": [ref if o.get("type") == kind else o for o in options]}
    return None


def refer_vocabularies(spec: dict, codebook: Codebook) -> dict:
    def visit(node: dict) -> None:
        for name, prop in (node.get("properties") or {}).items():
            if (isinstance(prop, dict)
                    and (replaced := _reference(prop, name, codebook)) is not None):
                node["properties"][name] = replaced
        if (node.get("in") in ("query", "path") and isinstance(node.get("schema"), dict)
                and (replaced := _reference(node["schema"], node.get("name"), codebook))
                is not None):
            node["schema"] = replaced

    _walk(spec.get("components", {}), visit)
    _walk(spec.get("paths", {}), visit)
    _walk(spec, _unmark)
    return spec


def _unmark(node: dict) -> None:
    if isinstance(node.get("format"), str) and node["format"].startswith(VOCABULARY):
        del node["format"]


def _operations(spec: dict):
    for path, methods in spec.get("paths", {}).items():
        for method, operation in methods.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def type_validation_errors(spec: dict, status: str) -> dict:
    """flask-openapi3 documents its validation answer as a list of pydantic errors; this API
    answers a problem document (api/problems.validation_error_response)."""
    for _, _, operation in _operations(spec):
        response = operation["responses"].get(status)
        if response is not None and "application/json" in response.get("content", {}):
            operation["responses"][status] = {
                "description": "Invalid request: a parameter or the body fails its schema",
                "content": {"application/problem+json": {"schema": PROBLEM_REF}}}
    spec["components"]["schemas"].pop("ValidationErrorModel", None)
    return spec


def add_security(spec: dict, open_reads: bool) -> dict:
    """Writes (the operations that answer 401) need the token; with closed reads, /v1 too."""
    for path, _, operation in _operations(spec):
        if not open_reads and path.startswith("/v1/"):
            operation["responses"].setdefault("401", UNAUTHORIZED)
        if "401" in operation["responses"]:
            operation.setdefault("security", [{"bearer": []}])
    return spec


class ForecastAPI(OpenAPI):
    codebook: Codebook | None = None
    open_reads: bool = True
    json_provider_class = FiniteJSONProvider

    def generate_spec_json(self):
        super().generate_spec_json()
        schemas = self.spec_json.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(shared_components())
        if self.codebook is not None:
            schemas.update(vocabulary_components(self.codebook))
            refer_vocabularies(self.spec_json, self.codebook)
        for name, examples in EXAMPLES.items():
            schemas[name]["examples"] = examples
        type_validation_errors(self.spec_json, str(self.validation_error_status))
        add_security(self.spec_json, self.open_reads)
        mark_deprecated(self.spec_json, self)
