"""`createuser`, `passwd` and `users`: logins for the admin app (passwords prompted twice or
read from stdin) and the table of users with their memory counts."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from webapp.cli.common import run_with_db
from webapp.db import Database
from webapp.models import PasswordSet, UserCreate
from webapp.settings import Settings

if TYPE_CHECKING:
    from webapp.services.users import UserSummary


@click.command()
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--email", default=None, help="Optional e-mail address.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
def createuser(username: str, admin: bool, email: str | None, password_stdin: bool) -> None:
    """Create a user who can log in to the admin app."""
    password = _read_password(username, password_stdin)
    data = _validated(UserCreate, username=username, email=email, password=password, is_admin=admin)

    async def work(db: Database, _settings: Settings) -> None:
        from webapp.services.users import create_user

        await create_user(db, data=data)

    run_with_db(work)
    role = "admin" if admin else "user"
    click.echo(f"Created {role} {username!r}.")


@click.command()
@click.argument("username")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
def passwd(username: str, password_stdin: bool) -> None:
    """Set or reset USERNAME's password (also gives one to a user made by an import)."""

    async def exists(db: Database, _settings: Settings) -> None:
        from webapp.services.people import get_person

        await get_person(db, username=username)

    run_with_db(exists)  # an unknown user fails before the prompt, not after it
    password = _read_password(username, password_stdin)
    data = _validated(PasswordSet, password=password, password_again=password)

    async def work(db: Database, _settings: Settings) -> None:
        from webapp.services.people import set_password

        await set_password(db, username=username, data=data)

    run_with_db(work)
    click.echo(f"New password set for {username!r}.")


@click.command()
def users() -> None:
    """List every user: admin, active, and their memory counts per state."""

    async def work(db: Database, _settings: Settings) -> list[UserSummary]:
        from webapp.services.users import list_users

        return await list_users(db, limit=None)

    summaries = run_with_db(work)
    if not summaries:
        click.echo("No users yet. Create one with: memory-admin createuser NAME --admin")
        return
    header = ("USER", "ADMIN", "ACTIVE", "MEMORIES", "EXPIRED", "DELETED")
    rows = [
        (
            s.user.username,
            "yes" if s.user.is_admin else "no",
            "yes" if s.user.is_active else "no",
            f"{s.active:,}",
            f"{s.expired:,}",
            f"{s.deleted:,}",
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())


def _read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt(
        f"Password for {username}", hide_input=True, confirmation_prompt=True, err=True
    )
    return password


def _validated(model: type[Any], **values: Any) -> Any:
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise click.BadParameter(message, param_hint=where) from None
