"""Token commands: create, revoke and list API tokens."""

from __future__ import annotations

import datetime as dt
import re

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, main, out, pass_context
from forecasting.store.tokens import ROLES

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
NEVER = "never"  # --expires-in none: unlike the option left out, which means the settings' default
_DURATION = re.compile(r"([0-9]+)([mhdw])")


class Duration(click.ParamType):
    """`90d`, `12h`, `2w`, `30m`; `none` for a token that never expires."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.timedelta) or value in (None, NEVER):
            return value
        text = str(value).strip().lower()
        if text in ("none", "never"):
            return NEVER
        match = _DURATION.fullmatch(text)
        if match is None or int(match[1]) == 0:
            self.fail(f"{value!r} is not a duration: write a positive whole number and a unit "
                      "(m, h, d or w), e.g. 90d, or none for a token that never expires",
                      param, ctx)
        return dt.timedelta(**{_UNITS[match[2]]: int(match[1])})


@main.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command(name="create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--expires-in", type=Duration(), default=None,
              help="How long the token works: 90d, 12h, 2w, 30m, or none (never expires). "
                   "Default: FORECAST_TOKEN_TTL_DAYS days, or never when that is unset.")
@pass_context
def token_create(ctx: CliContext, name: str, role: str,
                 expires_in: dt.timedelta | str | None) -> None:
    """Issue a token; it is printed once, alone on the last line, and stored only as a hash."""
    if expires_in is None:
        days = ctx.settings.token_ttl_days
        expires_in = None if days is None else dt.timedelta(days=days)
    elif expires_in == NEVER:
        expires_in = None
    value = ctx.database().tokens.create(name, role, actor=ctx.actor, expires_in=expires_in)
    until = ("never expires" if expires_in is None else
             f"expires {(dt.datetime.now(dt.UTC) + expires_in).isoformat(timespec='minutes')}")
    err.print(f"token {name!r} ({role}, {until}) created; keep it secret, it cannot be shown "
              "again:")
    click.echo(value)


@token.command(name="revoke")
@click.argument("name")
@pass_context
def token_revoke(ctx: CliContext, name: str) -> None:
    """Revoke the token called NAME at once."""
    ctx.database().tokens.revoke(name, actor=ctx.actor)
    out.print(f"token {name!r} revoked")


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def token_list(ctx: CliContext, as_json: bool) -> None:
    """List tokens (names, roles, expiry; never the tokens themselves)."""
    rows = ctx.database().tokens.list()
    if as_json:
        echo_json(rows)
        return
    table = Table("name", "role", "created_at", "expires_at", "revoked_at")
    for r in rows:
        expiry = r["expires_at"] or "never"
        table.add_row(r["name"], r["role"], r["created_at"],
                      f"{expiry} (expired)" if r["expired"] else expiry, r["revoked_at"] or "")
    out.print(table)
