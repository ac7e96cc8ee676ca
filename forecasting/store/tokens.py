"""API tokens: stored only as hashes, looked up in constant time, revocable, with roles,
and optionally expiring (a token past its `expires_at` authenticates no one)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from forecasting.store.schema import audit_log, tokens

ROLES = ("reader", "coder", "adjudicator", "forecaster", "modeler", "admin")
# What each role may do, beyond reading. Admin may do everything. An adjudicator codes too,
# and records the final value of an episode its coders disagree on (issue 20). A forecaster
# puts forecasts on the record (the ledger, issue 19), as a coder may.
PERMISSIONS = {
    "reader": frozenset(),
    "coder": frozenset({"episodes:write", "ledger:write"}),
    "adjudicator": frozenset({"episodes:write", "codings:adjudicate"}),
    "forecaster": frozenset({"ledger:write"}),
    "modeler": frozenset({"priors:write", "models:promote", "refits:create"}),
    "admin": frozenset({"episodes:write", "priors:write", "models:promote", "refits:create",
                        "tokens:write", "codings:adjudicate", "ledger:write"}),
}
TOKEN_PREFIX = "fct_"


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


def _digest(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough (no stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, name: str, role: str, actor: str = "cli",
               expires_in: dt.timedelta | None = None) -> str:
        """Issue a token; the plain text is returned once and never stored.

        `expires_in`: how long it works (None: until revoked).
        """
        if role not in ROLES:
            raise TokenError(f"role: Requested role {role!r} but it must be one of {list(ROLES)}")
        if not name or len(name) > 120:
            raise TokenError("name: must be 1-120 characters")
        if expires_in is not None and expires_in <= dt.timedelta(0):
            raise TokenError(f"expires_in: must be positive, got {expires_in}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        expires_at = None if expires_in is None else now + expires_in
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tokens).values(name=name, role=role, token_hash=_digest(token),
                                                   created_at=now, expires_at=expires_at))
                conn.execute(insert(audit_log).values(
                    at=now, actor=actor, action="token:create",
                    detail={"name": name, "role": role,
                            "expires_at": expires_at.isoformat() if expires_at else None}))
        except IntegrityError:
            raise TokenError(f"name: a token named {name!r} already exists") from None
        return token

    def revoke(self, name: str, actor: str = "cli") -> None:
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            done = conn.execute(update(tokens).where(tokens.c.name == name,
                                                     tokens.c.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount
            if not done:
                raise TokenError(f"name: no active token named {name!r}")
            conn.execute(insert(audit_log).values(at=now, actor=actor, action="token:revoke",
                                                  detail={"name": name}))

    def list(self) -> list[dict]:
        now = dt.datetime.now(dt.UTC)
        with self.engine.connect() as conn:
            rows = conn.execute(select(tokens.c.name, tokens.c.role, tokens.c.created_at,
                                       tokens.c.revoked_at, tokens.c.expires_at)
                                .order_by(tokens.c.id))
            return [{"name": r.name, "role": r.role, "created_at": r.created_at.isoformat(),
                     "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                     "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                     "expired": r.expires_at is not None and r.expires_at <= now}
                    for r in rows]

    def authenticate(self, token: str | None, at: dt.datetime | None = None) -> Identity | None:
        """Who presents `token`: None if it is unknown, revoked or expired (at `at`, default
        now). Why it failed is not said: the caller logs the failure without the token."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = _digest(token)
        at = at or dt.datetime.now(dt.UTC)
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens.c.name, tokens.c.role, tokens.c.token_hash)
                               .where(tokens.c.token_hash == digest,
                                      tokens.c.revoked_at.is_(None),
                                      or_(tokens.c.expires_at.is_(None),
                                          tokens.c.expires_at > at))).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return Identity(name=row.name, role=row.role)
