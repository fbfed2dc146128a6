"""``aicrm apikey …``: keys for the REST API and the MCP server."""

from __future__ import annotations

from typing import Annotated

import typer

from aicrm import apikeys
from aicrm.cli import _output as output
from aicrm.cli._common import JsonOpt, database
from aicrm.crm import users

app = typer.Typer(help="API keys for the REST API and the MCP server.", no_args_is_help=True)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A name; history records it as the actor.")],
    scope: Annotated[str, typer.Option(help="read, write or admin.")] = "read",
    user: Annotated[
        str | None,
        typer.Option(help="The user (email or id) the key and its sign-ins belong to."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    with database() as conn, conn.transaction():
        owner = users.owner_id(conn, user)
        key, token = apikeys.create_key(conn, name, scope, owner)
    if as_json:
        output.emit_json(key.to_dict() | {"token": token})
        return
    output.say(token)
    output.stderr.print(
        f"created API key {key.name} (scope {key.scope}); store it now, it is not shown again",
        markup=False,
    )


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List the keys (names, scopes, use; never the secrets)."""
    with database() as conn:
        keys = apikeys.list_keys(conn)
    if as_json:
        output.emit_json([key.to_dict() for key in keys])
        return
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
        used = f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        output.say(f"{key.name:<24} {key.scope:<6} {state:<18} {used}")


@app.command()
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: it stops working at once."""
    with database() as conn, conn.transaction():
        key = apikeys.revoke_key(conn, name)
    output.say(f"revoked API key {key.name}")
