import pytest

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
