"""A consumer's view: a client generated from the served document with openapi-python-client
(as docs/api.md tells consumers to) is complete, tidy, and works against a live server."""

import enum
import importlib
import inspect
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from api.snapshot import served_document
from forecasting.domain.codebook import load_codebook
from forecasting.settings import load_settings

PACKAGE = "forecast_client"
# The generator configuration docs/api.md gives consumers: PNG plots as bytes. No post hooks:
# the formatting of the generated code is the consumer's business, not this test's.
CONFIG = f"""package_name_override: {PACKAGE}
project_name_override: forecast-client
content_type_overrides:
  image/png: application/octet-stream
post_hooks: []
"""
DEAD_PROXY = "http://127.0.0.1:9"  # any attempt to reach the network fails at once
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def document():
    return served_document()


@pytest.fixture(scope="module")
def generated(document, tmp_path_factory):
    """(generator output, the generated package imported); the package is removed after."""
    if not GENERATOR.is_file():
        pytest.skip("openapi-python-client is not installed (pip install -e '.[test]')")
    folder = tmp_path_factory.mktemp("client")
    (folder / "openapi.json").write_text(json.dumps(document))
    (folder / "config.yaml").write_text(CONFIG)
    env = {"PATH": str(GENERATOR.parent), "HOME": str(folder), "HTTP_PROXY": DEAD_PROXY,
           "HTTPS_PROXY": DEAD_PROXY, "ALL_PROXY": DEAD_PROXY, "NO_PROXY": ""}
    run = subprocess.run([str(GENERATOR), "generate", "--path", "openapi.json",
                          "--config", "config.yaml", "--output-path", "out"],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(folder / "out"))
    try:
        yield run.stdout + run.stderr, importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder / "out"))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _submodule(name: str):
    return importlib.import_module(f"{PACKAGE}.{name}")


def _operation_module(operation: dict):
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", operation["operationId"]).lower()
    return _submodule(f"api.{operation['tags'][0]}.{snake}")


def _operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_the_generator_reports_no_warnings(generated):
    output, _ = generated
    assert "warning" not in output.lower(), output


def test_each_vocabulary_is_one_enum_of_the_codebook_codes(generated):
    models = _submodule("models")
    enums = {name: tuple(sorted(member.value for member in cls))  # the generator sorts them
             for name, cls in vars(models).items()
             if inspect.isclass(cls) and issubclass(cls, enum.Enum)}
    codebook = load_codebook(load_settings({}).codebook_path)
    assert enums["Partner"] == tuple(sorted(codebook.partner_codes))
    assert enums["Bloc"] == tuple(sorted(codebook.bloc_codes))
    assert enums["IntelType"] == tuple(sorted(codebook.intel_type_codes))
    assert enums["TriggerType"] == tuple(sorted(codebook.trigger_type_codes))
    assert enums["Confidence"] == tuple(sorted(codebook.confidence))
    assert enums["Level"] == (0, 1, 2, 3)
    repeated = [values for values, count in Counter(enums.values()).items() if count > 1]
    assert not repeated, f"enums defined more than once: {repeated}"


def test_every_operation_has_a_readable_method_and_typed_answers(generated, document):
    for name, operation in _operations(document):
        module = _operation_module(operation)
        parse = inspect.getsource(module._parse_response)
        branches = dict(re.findall(r"response\.status_code == (\d+):(.*?)(?=\n    if |\n    if$|\Z)",
                                   parse, re.S))
        for status in operation["responses"]:
            assert status in branches, f"{name}: {status} is not parsed by the client"
            if int(status) >= 400:
                assert "Problem.from_dict" in branches[status], f"{name}: {status} untyped"
            else:
                assert re.search(r"\w+\.from_dict|File\(", branches[status]), \
                    f"{name}: {status} untyped"


@pytest.fixture
def live_server(app, served_model):
    """The test app served over HTTP on a free port, in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def test_a_generated_client_answers_a_forecast_a_problem_and_a_write(
        generated, document, live_server, served_model, second_model, tokens):
    client_module, models = _submodule("client"), _submodule("models")
    get_forecast = _submodule("api.forecasts.get_forecast")
    promote_model = _submodule("api.models.promote_model")

    with client_module.Client(base_url=live_server, raise_on_unexpected_status=True) as client:
        assert client.get_httpx_client().get("/openapi.json").json() == document
        forecast = get_forecast.sync(client=client, partner=models.Partner.ISR,
                                     intel_type=models.IntelType.HUMINT)
        assert isinstance(forecast, models.Forecast)
        assert forecast.partner is models.Partner.ISR
        assert forecast.model.version == served_model.version
        assert 0 <= forecast.any_restriction.mean <= 1

        missing = get_forecast.sync_detailed(client=client, partner=models.Partner.ISR,
                                             intel_type=models.IntelType.HUMINT,
                                             trigger_id="no-such-trigger")
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.Problem)
        assert missing.parsed.errors[0].field == "trigger_id"

        anonymous = promote_model.sync_detailed(second_model.version, client=client,
                                                body=models.PromoteBody(reason="try"))
        assert anonymous.status_code == 401
        assert isinstance(anonymous.parsed, models.Problem)

    with client_module.AuthenticatedClient(base_url=live_server, token=tokens["modeler"],
                                           raise_on_unexpected_status=True) as client:
        promoted = promote_model.sync(second_model.version, client=client,
                                      body=models.PromoteBody(reason="generated client test"))
        assert isinstance(promoted, models.ModelSummary)
        assert (promoted.version, promoted.current) == (second_model.version, True)
        again = get_forecast.sync(client=client, partner=models.Partner.ISR,
                                  intel_type=models.IntelType.HUMINT)
        assert again.model.version == second_model.version

