"""The API document as a contract: shared vocabularies and problems, stable names, the truth
about tokens, and a committed snapshot that any change to the contract must update."""

import copy
import json
import re

import pytest
from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from api import create_app
from api.deprecation import deprecated
from api.schemas import VersionPath, Vocab
from api.services import services
from api.snapshot import SNAPSHOT, differences, render, served_document
from forecasting.domain.codebook import load_codebook
from forecasting.settings import load_settings

WRITES = {"createEpisodes", "reviseEpisode", "promoteModel", "replacePriors", "checkPriors",
          "requestRefit", "adjudicateEpisode",  # coding quality (issue 20)
          "registerTrigger", "updateLedgerTrigger", "correctLedgerEntry"}  # the ledger (issue 19)
VOCABULARIES = {"Partner": "partner_codes", "Bloc": "bloc_codes",
                "IntelType": "intel_type_codes", "TriggerType": "trigger_type_codes"}


@pytest.fixture(scope="module")
def document():
    return served_document()


@pytest.fixture(scope="module")
def closed_document():
    return served_document({"FORECAST_OPEN_READS": "0"})


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def schemas_with_enum(node, values, where=""):
    """Where in `node` a schema enumerates exactly `values`."""
    found = []
    if isinstance(node, dict):
        if sorted(map(str, node.get("enum", []))) == sorted(map(str, values)):
            found.append(where)
        for key, value in node.items():
            found += schemas_with_enum(value, values, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += schemas_with_enum(value, values, f"{where}/{i}")
    return found


def test_the_served_document_matches_the_committed_snapshot(document):
    committed = SNAPSHOT.read_text(encoding="utf-8")
    changed = differences(document, json.loads(committed))
    assert not changed, (
        "the served API document differs from docs/openapi.json at "
        f"{changed[:10]}: if the change is meant, run `make openapi-snapshot` and review "
        "the diff (docs/api.md, Versioning)")
    assert render(document) == committed, "same content, other layout: run make openapi-snapshot"


def test_a_changed_document_is_reported_where_it_changed(document):
    changed = copy.deepcopy(document)
    changed["paths"]["/v1/vocab"]["get"]["operationId"] = "vocab"
    del changed["components"]["schemas"]["Bloc"]
    changed["paths"]["/v1/new"] = {}

    assert differences(changed, document) == [
        "/paths/~1v1~1vocab/get/operationId: changed", "/paths/~1v1~1new: added",
        "/components/schemas/Bloc: removed"]


def test_each_vocabulary_is_one_component_with_the_codebook_codes(document):
    codebook = load_codebook(load_settings({}).codebook_path)
    schemas = document["components"]["schemas"]
    for name, attribute in VOCABULARIES.items():
        codes = list(getattr(codebook, attribute))
        assert schemas[name]["enum"] == codes
        assert schemas_with_enum(document, codes) == [f"/components/schemas/{name}"]
    assert schemas["Level"]["enum"] == [0, 1, 2, 3]
    assert schemas["Confidence"]["enum"] == list(codebook.confidence)


def test_code_fields_and_parameters_refer_to_their_vocabulary(document):
    schemas = document["components"]["schemas"]
    partner = {"$ref": "#/components/schemas/Partner"}
    assert schemas["Forecast"]["properties"]["partner"] == partner
    assert schemas["Episode"]["properties"]["partner"] == partner
    assert schemas["PartnerEntry"]["properties"]["bloc"] == {"$ref": "#/components/schemas/Bloc"}
    parameters = {p["name"]: p["schema"]
                  for p in document["paths"]["/v1/episodes"]["get"]["parameters"]}
    assert parameters["partner"]["anyOf"] == [partner, {"type": "null"}]
    assert parameters["level"]["anyOf"][0] == {"$ref": "#/components/schemas/Level"}
    # a comma-separated list of codes is a string, of a pattern the codes make
    compare = {p["name"]: p["schema"]
               for p in document["paths"]["/v1/forecasts/compare"]["get"]["parameters"]}
    pattern = re.compile(compare["intel_type"]["anyOf"][0]["pattern"])
    assert pattern.match("humint") and pattern.match("humint,sigint")
    assert not pattern.match("humint,") and not pattern.match("humint,xyz")


def test_every_error_answer_is_the_shared_problem_document(document):
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}, (method, path, status)
    problem = document["components"]["schemas"]["Problem"]
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert "ValidationErrorModel" not in document["components"]["schemas"]


def test_operations_have_unique_readable_ids_and_described_tags(document):
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(i.isalnum() and i[0].islower() for i in ids), ids
    assert {"getForecast", "listEpisodes", "promoteModel", "getVocabulary"} <= set(ids)
    described = {tag["name"] for tag in document["tags"] if tag.get("description")}
    for path, method, operation in operations(document):
        assert operation["tags"] and set(operation["tags"]) <= described, (method, path)


def test_with_open_reads_only_writes_need_a_token(document):
    secured = {operation["operationId"] for _, _, operation in operations(document)
               if operation.get("security")}
    assert secured == WRITES
    for _, _, operation in operations(document):
        assert ("401" in operation["responses"]) == (operation["operationId"] in WRITES)


def test_with_closed_reads_every_v1_operation_needs_a_token(closed_document):
    for path, method, operation in operations(closed_document):
        needs_token = path.startswith("/v1/")
        assert bool(operation.get("security")) == needs_token, (method, path)
        assert ("401" in operation["responses"]) == needs_token, (method, path)


def test_the_main_bodies_carry_examples(document):
    schemas = document["components"]["schemas"]
    for name in ("Forecast", "BatchBody", "ImportResult", "PromoteBody", "Problem"):
        assert schemas[name]["examples"], name
    body = document["paths"]["/v1/episodes"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"one", "batch"}


@pytest.fixture
def app_with_a_deprecated_route(tmp_path):
    app = create_app({"SETTINGS": load_settings({"FORECAST_INSTANCE": str(tmp_path)})})
    bp = APIBlueprint("old", __name__, abp_tags=[Tag(name="service")])

    @bp.get("/v1/old-vocab/<version>", operation_id="getOldVocabulary", responses={200: Vocab})
    @deprecated(since="2026-12-01", sunset="2027-06-01", successor="/v1/vocab")
    def old_vocab(path: VersionPath):
        return jsonify(services().codebook.as_dict())

    app.register_api(bp)
    yield app
    app.extensions["forecasting"].database.dispose()


def test_a_deprecated_operation_says_so_in_headers_and_document(app_with_a_deprecated_route):
    client = app_with_a_deprecated_route.test_client()
    answer = client.get("/v1/old-vocab/x")
    assert answer.status_code == 200
    assert answer.headers["Deprecation"] == "@1796083200"  # 2026-12-01T00:00:00Z
    assert answer.headers["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
    assert answer.headers["Link"] == '</v1/vocab>; rel="successor-version"'
    assert "Deprecation" not in client.get("/v1/vocab").headers

    operations_by_id = {o["operationId"]: o
                        for _, _, o in operations(client.get("/openapi.json").get_json())}
    assert operations_by_id["getOldVocabulary"]["deprecated"] is True
    assert "removed after 2027-06-01; use /v1/vocab" in (
        operations_by_id["getOldVocabulary"]["description"])
    assert "deprecated" not in operations_by_id["getVocabulary"]


def test_a_deprecation_must_end_after_it_starts():
    with pytest.raises(ValueError, match="sunset: 2026-01-01 must come after since"):
        deprecated(since="2026-12-01", sunset="2026-01-01", successor="/v1/vocab")
    with pytest.raises(ValueError, match="since: 'December' is not a date"):
        deprecated(since="December", sunset="2026-01-01", successor="/v1/vocab")


def test_no_two_schemas_share_a_component_name():
    """The document names a component after its model's class: two classes of one name would
    silently describe one route's answer with the other's schema."""
    import importlib
    import pkgutil

    from pydantic import BaseModel

    import api.routes

    modules = [importlib.import_module("api.schemas")] + [
        importlib.import_module(f"api.routes.{m.name}") for m in pkgutil.iter_modules(api.routes.__path__)]
    owners: dict[str, set[str]] = {}
    for module in modules:
        for value in vars(module).values():
            defined_here = isinstance(value, type) and value.__module__ == module.__name__
            if defined_here and issubclass(value, BaseModel):
                owners.setdefault(value.__name__, set()).add(module.__name__)
    assert {name: where for name, where in owners.items() if len(where) > 1} == {}
