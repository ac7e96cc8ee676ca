import datetime as dt
import json

import pytest
from click.testing import CliRunner

from forecasting.cli import main
from forecasting.store.tokens import TokenError


def test_a_created_token_authenticates_with_its_role_and_is_stored_only_as_a_hash(database):
    token = database.tokens.create("alice", "coder")
    identity = database.tokens.authenticate(token)
    assert (identity.name, identity.role) == ("alice", "coder")
    assert identity.may("episodes:write") and not identity.may("priors:write")
    with database.engine.connect() as conn:
        stored = conn.exec_driver_sql("select token_hash from tokens").scalar_one()
    assert token not in stored and len(stored) == 64


@pytest.mark.parametrize("presented", [None, "", "fct_wrong", "Bearer x", "x" * 500])
def test_wrong_tokens_do_not_authenticate(database, presented):
    database.tokens.create("alice", "admin")
    assert database.tokens.authenticate(presented) is None


def test_a_revoked_token_stops_working(database):
    token = database.tokens.create("bob", "modeler")
    database.tokens.revoke("bob")
    assert database.tokens.authenticate(token) is None
    assert database.tokens.list()[0]["revoked_at"] is not None
    with pytest.raises(TokenError, match="no active token named 'bob'"):
        database.tokens.revoke("bob")


def test_roles_and_names_are_checked(database):
    with pytest.raises(TokenError, match=r"role: Requested role 'god' but it must be one of"):
        database.tokens.create("eve", "god")
    database.tokens.create("eve", "reader")
    with pytest.raises(TokenError, match="a token named 'eve' already exists"):
        database.tokens.create("eve", "reader")


@pytest.mark.parametrize(("role", "allowed"), [
    ("reader", set()),
    ("coder", {"episodes:write"}),
    ("modeler", {"priors:write", "models:promote", "refits:create"}),
    ("admin", {"episodes:write", "priors:write", "models:promote", "refits:create", "tokens:write"}),
])
def test_each_role_may_do_exactly_its_writes(database, role, allowed):
    identity = database.tokens.authenticate(database.tokens.create(f"t-{role}", role))
    everything = {"episodes:write", "priors:write", "models:promote", "refits:create", "tokens:write"}
    assert {p for p in everything if identity.may(p)} == allowed


def test_a_token_past_its_expiry_authenticates_no_one(database):
    token = database.tokens.create("temp", "coder", expires_in=dt.timedelta(days=90))
    [listed] = database.tokens.list()
    expires = dt.datetime.fromisoformat(listed["expires_at"])
    assert dt.timedelta(days=89) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=90)
    assert listed["expired"] is False
    assert database.tokens.authenticate(token).name == "temp"
    assert database.tokens.authenticate(token, at=expires - dt.timedelta(seconds=1)) is not None
    assert database.tokens.authenticate(token, at=expires) is None
    assert database.tokens.authenticate(token, at=expires + dt.timedelta(days=1)) is None


def test_a_token_without_expiry_never_expires(database):
    token = database.tokens.create("forever", "reader")
    assert database.tokens.list()[0]["expires_at"] is None
    far = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
    assert database.tokens.authenticate(token, at=far).name == "forever"


def test_an_expiry_that_is_not_in_the_future_is_refused(database):
    with pytest.raises(TokenError, match="expires_in: must be positive"):
        database.tokens.create("never-valid", "reader", expires_in=dt.timedelta(0))


@pytest.fixture
def forecast_cli(tmp_path):
    """`forecast ARGS...` on a fresh initialised instance, with extra environment."""
    runner = CliRunner()

    def invoke(*args, **env):
        env = {"FORECAST_INSTANCE": str(tmp_path / "instance"), **env}
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    assert invoke("init").exit_code == 0
    return invoke


def _expiry(forecast_cli, name) -> dt.timedelta | None:
    rows = json.loads(forecast_cli("token", "list", "--json").output)
    [row] = [r for r in rows if r["name"] == name]
    if row["expires_at"] is None:
        return None
    return dt.datetime.fromisoformat(row["expires_at"]) - dt.datetime.fromisoformat(
        row["created_at"])


@pytest.mark.parametrize(("option", "env", "expected"), [
    ("90d", {}, dt.timedelta(days=90)),
    ("12h", {}, dt.timedelta(hours=12)),
    ("2w", {"FORECAST_TOKEN_TTL_DAYS": "30"}, dt.timedelta(weeks=2)),
    ("none", {"FORECAST_TOKEN_TTL_DAYS": "30"}, None),
    (None, {"FORECAST_TOKEN_TTL_DAYS": "30"}, dt.timedelta(days=30)),
    (None, {}, None),
])
def test_token_create_takes_its_expiry_from_the_option_or_the_setting(
        forecast_cli, option, env, expected):
    args = ["token", "create", "bot", "--role", "coder"]
    if option is not None:
        args += ["--expires-in", option]
    result = forecast_cli(*args, **env)
    assert result.exit_code == 0, result.output
    assert ("never expires" if expected is None else "expires 2") in result.output
    assert _expiry(forecast_cli, "bot") == expected


@pytest.mark.parametrize("bad", ["90", "0d", "3y", "-5d", "soon"])
def test_token_create_refuses_a_duration_it_cannot_read(forecast_cli, bad):
    result = forecast_cli("token", "create", "bot", "--role", "coder", "--expires-in", bad)
    assert result.exit_code == 2
    assert "is not a duration: write a positive whole number and a unit" in result.output


def test_token_list_shows_the_expiry(forecast_cli):
    forecast_cli("token", "create", "short", "--role", "reader", "--expires-in", "30m")
    forecast_cli("token", "create", "long", "--role", "reader")
    table = forecast_cli("token", "list").output
    assert "expires_at" in table and "never" in table
