"""``ferry user add|list|revoke``: the people (and scripts) that may use the REST API and the console.

    ferry user add alice --role operator --> the token, printed once (only its hash is stored)
    ferry user list                      --> name, role, created, revoked (never a token)
    ferry user revoke alice              --> her token and console sessions stop working at once

These act on the job store directly, as the machine's administrator does: whoever can run
``ferry`` with the configuration can read the store anyway.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli import app
from service.cli_options import Format, FormatOpt, console, emit_json, runtime
from service.roles import Role

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

user_app = typer.Typer(no_args_is_help=True, help="Manage the users of the REST API and the console.")
app.add_typer(user_app, name="user")
UserArg = Annotated[str, typer.Argument(metavar="NAME", help="the user's name (a-z, 0-9, . _ -)")]


def _sessions(ctx: typer.Context) -> sessionmaker[Session]:
    return runtime(ctx).sessions


@user_app.command("add")
def user_add(ctx: typer.Context, name: UserArg, role: Annotated[Role, typer.Option(
        help="viewer: read; operator: also plan, approve, pause, cancel; admin: also users")] = Role.viewer,
             ) -> None:
    """Create a user and print its API token (shown once; store it now)."""
    from service import users

    token = users.add_user(_sessions(ctx), name, role)
    if sys.stdout.isatty():
        console.print(f"user {name} ({role.value}) added; its token (shown once):", markup=False, highlight=False)
    sys.stdout.write(token + "\n")


@user_app.command("list")
def user_list(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Users, their roles and whether their token was revoked."""
    from rich.table import Table

    from service import users
    from service.render import plain

    rows = users.list_users(_sessions(ctx))
    if fmt is Format.json:
        emit_json(rows)
        return
    table = Table(title="Users", title_justify="left")
    for col in ("name", "role", "created (UTC)", "revoked (UTC)"):
        table.add_column(col)
    for row in rows:
        table.add_row(plain(row["name"]), plain(row["role"]), plain(row["created_at"][:19]),
                      plain((row["revoked_at"] or "")[:19]))
    console.print(table)


@user_app.command("revoke")
def user_revoke(ctx: typer.Context, name: UserArg) -> None:
    """Stop a user's token and console sessions at once (the user stays listed, as revoked)."""
    from service import users

    users.revoke_user(_sessions(ctx), name)
    console.print(f"user {name}: revoked", markup=False, highlight=False)
