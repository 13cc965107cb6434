"""`token create` and `token revoke`: API tokens for agents."""

from __future__ import annotations

import click

from webapp.cli.common import run_with_db
from webapp.db import Database
from webapp.settings import Settings


@click.group()
def token() -> None:
    """Create and revoke API tokens for agents."""


@token.command("create")
@click.argument("username")
@click.option("--name", "label", default="cli", show_default=True, help="A label for the token.")
def token_create(username: str, label: str) -> None:
    """Create a token acting as USERNAME; the secret is printed once, on the last line."""
    from webapp.validation import validate_token_name

    try:
        label = validate_token_name(label)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None

    async def work(db: Database, _settings: Settings) -> tuple[int, str]:
        from webapp.services.tokens import create_token
        from webapp.services.users import get_user_by_username

        user = await get_user_by_username(db, username=username)
        created, secret = await create_token(db, user=user, name=label)
        assert created.id is not None
        return created.id, secret

    token_id, secret = run_with_db(work)
    click.echo(f"Created API token {token_id} ({label!r}) for {username!r}.")
    click.echo("Copy the secret now; it is not shown again:")
    click.echo(secret)


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke the API token with this id."""

    async def work(db: Database, _settings: Settings) -> None:
        from webapp.services.tokens import revoke_token

        await revoke_token(db, token_id=token_id)

    run_with_db(work)
    click.echo(f"Revoked API token {token_id}.")
