"""Bearer tokens: who is calling, and may they do this?

Every check runs in a before_request hook (`check_access`), before flask-openapi3 validates the
query or body: an anonymous caller of a write route gets 401 and a token whose role may not
write gets 403, whatever they sent, and learn nothing of the route's schema.
"""

from __future__ import annotations

import logging
from functools import wraps

from flask import current_app, g, request

from forecasting.store.tokens import Identity

from .limits import check_failed_auth_budget, count_failed_auth
from .problems import Problem
from .services import services

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="forecasting"'}
# Failed authentications: the client address and why, never the token.
log = logging.getLogger("forecasting.auth")


def current_identity() -> Identity | None:
    if "identity" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        g.identity = (services().database.tokens.authenticate(token.strip())
                      if scheme.lower() == "bearer" else None)
    return g.identity


def authenticated() -> Identity:
    check_failed_auth_budget()
    identity = current_identity()
    if identity is None:
        if "Authorization" not in request.headers:
            reason = "no bearer token"
            detail = "send Authorization: Bearer TOKEN (create one with `forecast token create`)"
        else:
            reason = "unknown, revoked or expired token"
            detail = "the bearer token is unknown, revoked or expired"
        log.warning("authentication failed: %s from %s on %s %s", reason, request.remote_addr,
                    request.method, request.path)
        count_failed_auth()
        raise Problem(401, "Unauthorized", detail, headers=CHALLENGE)
    return identity


def authorize(permission: str) -> Identity:
    identity = authenticated()
    if not identity.may(permission):
        raise Problem(403, "Forbidden",
                      f"token {identity.name!r} has role {identity.role!r}, which may not "
                      f"{permission.replace(':', ' ')}")
    return identity


def require(permission: str):
    """Decorate a write view: a valid token whose role grants `permission`. The view carries
    `required_permission`, which `check_access` reads before any validation."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            authorize(permission)  # already checked before the request; cheap (cached on g)
            return view(*args, **kwargs)

        wrapper.required_permission = permission
        return wrapper

    return decorate


def is_anonymous() -> bool:
    """No valid token came with this request (an open read): show no one's names."""
    return current_identity() is None


def check_access() -> None:
    """before_request hook: the endpoint's permission first; with FORECAST_OPEN_READS=0, every
    /v1 read needs a token too."""
    view = current_app.view_functions.get(request.endpoint or "")
    permission = getattr(view, "required_permission", None)
    if request.method == "OPTIONS":  # answered by Flask itself (Allow), no view runs
        return
    if permission is not None:
        authorize(permission)
    elif request.path.startswith("/v1/") and not services().settings.open_reads:
        authenticated()
