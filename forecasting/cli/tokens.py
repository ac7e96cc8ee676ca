"""Token commands: create, revoke and list API tokens."""

from __future__ import annotations

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, main, out, pass_context
from forecasting.store.tokens import ROLES


@main.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command(name="create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@pass_context
def token_create(ctx: CliContext, name: str, role: str) -> None:
    """Issue a token; it is printed once, alone on the last line, and stored only as a hash."""
    value = ctx.database().tokens.create(name, role, actor=ctx.actor)
    err.print(f"token {name!r} ({role}) created; keep it secret, it cannot be shown again:")
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
    """List tokens (names and roles; never the tokens themselves)."""
    rows = ctx.database().tokens.list()
    if as_json:
        echo_json(rows)
        return
    table = Table("name", "role", "created_at", "revoked_at")
    for r in rows:
        table.add_row(r["name"], r["role"], r["created_at"], r["revoked_at"] or "")
    out.print(table)
