"""`createuser`: a login for the admin app, its password prompted or read from stdin."""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import ValidationError

from webapp.cli.common import run_with_db
from webapp.db import Database
from webapp.models import UserCreate
from webapp.settings import Settings


@click.command()
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--email", default=None, help="Optional e-mail address.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
def createuser(username: str, admin: bool, email: str | None, password_stdin: bool) -> None:
    """Create a user who can log in to the admin app."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            f"Password for {username}", hide_input=True, confirmation_prompt=True, err=True
        )
    data = _validated(UserCreate, username=username, email=email, password=password, is_admin=admin)

    async def work(db: Database, _settings: Settings) -> None:
        from webapp.services.users import create_user

        await create_user(db, data=data)

    run_with_db(work)
    role = "admin" if admin else "user"
    click.echo(f"Created {role} {username!r}.")


def _validated(model: type[Any], **values: Any) -> Any:
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise click.BadParameter(message, param_hint=where) from None
