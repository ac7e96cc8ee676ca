"""Bearer tokens: who is calling, and may they do this?"""

from __future__ import annotations

from functools import wraps

from flask import g, request

from forecasting.store.tokens import Identity

from .problems import Problem
from .services import services

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="forecasting"'}


def current_identity() -> Identity | None:
    if "identity" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        g.identity = (services().database.tokens.authenticate(token.strip())
                      if scheme.lower() == "bearer" else None)
    return g.identity


def authenticated() -> Identity:
    identity = current_identity()
    if identity is None:
        detail = ("send Authorization: Bearer TOKEN (create one with `forecast token create`)"
                  if "Authorization" not in request.headers
                  else "the bearer token is unknown or revoked")
        raise Problem(401, "Unauthorized", detail, headers=CHALLENGE)
    return identity


def require(permission: str):
    """Decorate a write view: a valid token whose role grants `permission`."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            identity = authenticated()
            if not identity.may(permission):
                raise Problem(403, "Forbidden",
                              f"token {identity.name!r} has role {identity.role!r}, which may not "
                              f"{permission.replace(':', ' ')}")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def check_read_access() -> None:
    """before_request hook: with FORECAST_OPEN_READS=0, every /v1 read needs a token too."""
    if request.path.startswith("/v1/") and not services().settings.open_reads:
        authenticated()
