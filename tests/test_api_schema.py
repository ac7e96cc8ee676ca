"""Property-based run of the OpenAPI document against the app (schemathesis).

Every operation is called with generated inputs, with an admin token so that the write
paths run too; no response may be a 500 or disagree with the documented schema.
"""

import schemathesis
from fixtures_api import auth
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES = 20
# Writes with rules JSON Schema cannot state (episodes: dates not in the future, coded after
# the trigger, keys unique within a batch; priors: each distribution's own parameters and
# support): a schema-valid body may rightly be 400.
BUSINESS_RULES = {("POST", "/v1/episodes"),
                  ("PUT", "/v1/episodes/{trigger_id}/{partner}/{intel_type}"),
                  ("PUT", "/v1/priors"), ("POST", "/v1/priors/check"),
                  # trigger_id excludes the scenario parameters: no JSON Schema can say so
                  ("GET", "/v1/forecasts"), ("GET", "/v1/forecasts/explain.png"),
                  ("GET", "/v1/forecasts/grid"),
                  # codes and dates are checked against the codebook
                  ("POST", "/v1/coding/adjudications"),
                  # a statement takes one of interval/below/above, and fields by its quantity
                  ("POST", "/v1/priors/elicit"),
                  # a and b name prior sets, which the store decides
                  ("GET", "/v1/priors/compare"), ("GET", "/v1/priors/compare.png"),
                  # partners, types and the trigger's scenario are checked against the codebook
                  ("POST", "/v1/ledger/triggers")}


def test_the_api_honours_its_openapi_document(app, served_model, tokens):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    headers = auth(tokens["admin"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:
        excluded = ([positive_data_acceptance]
                    if (operation.method.upper(), operation.path) in BUSINESS_RULES else [])
        _property_check(operation, headers, excluded)()


def _property_check(operation, headers, excluded):
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    return check


def _undocumented(value, schema, components, where=""):
    """The fields of `value` that `schema` (the served document's, refs resolved through
    `components`) does not name, as paths."""
    if "$ref" in schema:
        return _undocumented(value, components[schema["$ref"].rsplit("/", 1)[1]], components,
                             where)
    if "anyOf" in schema:
        return min((_undocumented(value, option, components, where)
                    for option in schema["anyOf"]), key=len)
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            inner = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            if isinstance(inner, dict):
                found += _undocumented(item, inner, components, f"{where}.{key}")
            else:
                found.append(f"{where}.{key}")
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [path for item in value
                for path in _undocumented(item, schema["items"], components, f"{where}[]")]
    return []


def test_every_field_of_a_horizon_answer_is_documented(client, served_model):
    """The response check above accepts fields the document leaves out (extra keys are
    allowed): each one a horizon answer has must be named, the arrival model's included."""
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/v1/forecasts/horizon"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    components = document["components"]["schemas"]
    for query in ("", "&trigger_type=legal_case&months=6"):
        answer = client.get(f"/v1/forecasts/horizon?partner=ISR&intel_type=humint{query}")
        assert answer.status_code == 200
        body = answer.get_json()
        assert body["model"]["arrival_model"] and body["arrivals"]["by_trigger_type"]
        assert _undocumented(body, schema, components) == []
