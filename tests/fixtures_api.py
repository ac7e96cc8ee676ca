"""An app per test: temporary instance, seeded database, tiny pre-fitted models, tokens.

The instance is built once per session (migrations and NetCDF writes are slow) and
copied for each test, so that every test starts from the same fresh state.
"""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from fixtures_registry import save_fit_versions
from helpers import episode_row

from api import create_app
from forecasting.cli import main
from forecasting.domain.episodes import validate_episodes
from forecasting.registry import Registry
from forecasting.services.setup import initialise
from forecasting.settings import load_settings
from forecasting.store import connect

TYPES = ["sigint", "humint", "geoint", "sources", "methods", "cyber", "ct", "military"]
ROLES = ("reader", "coder", "modeler", "admin")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def api_template(tmp_path_factory, codebook, fitted_version):
    """Built once: a seeded database, one token per role, three saved model versions."""
    folder = tmp_path_factory.mktemp("api-template") / "instance"
    settings = load_settings({"FORECAST_INSTANCE": str(folder)})
    database = initialise(settings)
    rows = [episode_row(intel_type=t, level=int(t == "sources")) for t in TYPES]
    database.episodes.import_episodes(validate_episodes(list(enumerate(rows, 2)), codebook),
                                      actor="fixture", codebook_version=codebook.version)
    tokens = {role: database.tokens.create(f"{role}-token", role) for role in ROLES}
    database.dispose()
    registry = Registry(settings.registry_path)
    versions = save_fit_versions(registry, fitted_version)
    return folder, tokens, versions


@pytest.fixture(scope="session")
def fitted_posterior(fitted_version):
    """The posterior group of the session's fit: what a stand-in fit stores (with `derive`)."""
    return Registry(fitted_version.path.parent).load_posterior(fitted_version.version,
                                                               groups=["posterior"])


def copy_instance(api_template, folder):
    """Settings of a fresh copy of the template instance in `folder`; rate limits off (the
    tests of limiting turn them on)."""
    shutil.copytree(api_template[0], folder)
    return load_settings({"FORECAST_INSTANCE": str(folder), "FORECAST_RATE_LIMIT": "0"})


def cli_on(settings):
    """`forecast ARGS...` against the instance of `settings`; returns click's Result."""
    runner = CliRunner()
    env = {"FORECAST_INSTANCE": str(settings.instance_path)}

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


def audit_rows(settings, *actions: str) -> list[tuple[str, str, dict]]:
    """(actor, action, detail) of the instance's audit rows of these actions, oldest first."""
    database = connect(settings.database_url)
    rows = [(e["actor"], e["action"], e["detail"]) for e in database.audit_entries(limit=10_000)
            if e["action"] in actions]
    database.dispose()
    return rows[::-1]


@pytest.fixture
def api_settings(api_template, tmp_path):
    return copy_instance(api_template, tmp_path / "instance")


@pytest.fixture
def twin_settings(api_template, tmp_path):
    """A second copy of the same template: one face acts on each, and the two are compared."""
    return copy_instance(api_template, tmp_path / "twin")


@pytest.fixture
def tokens(api_template):
    """One token per role: {"reader": ..., "coder": ..., "modeler": ..., "admin": ...}."""
    return api_template[1]


def _version(api_settings, api_template, name):
    return Registry(api_settings.registry_path).get(api_template[2][name])


@pytest.fixture
def served_model(api_settings, api_template):
    """A passing version, made current."""
    registry = Registry(api_settings.registry_path)
    return registry.promote(api_template[2]["served"])


@pytest.fixture
def second_model(api_settings, api_template):
    """Another passing version (other data, 500 episodes), stored but not current."""
    return _version(api_settings, api_template, "second")


@pytest.fixture
def failed_model(api_settings, api_template):
    """A version whose gate failed."""
    return _version(api_settings, api_template, "failed")


@pytest.fixture
def app(api_settings):
    app = create_app({"SETTINGS": api_settings, "TESTING": True})
    yield app
    app.extensions["forecasting"].database.dispose()


@pytest.fixture
def client(app):
    return app.test_client()
