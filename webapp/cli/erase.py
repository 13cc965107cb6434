"""`erase-user`: remove a user and everything of theirs, after the same preview as the page."""

from __future__ import annotations

import click

from webapp.cli.common import run_with_db
from webapp.db import Database
from webapp.services.erase import ErasurePreview
from webapp.services.principal import Principal
from webapp.settings import Settings

CLI_ACTOR = Principal.operator()


@click.command("erase-user")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask; erase at once.")
def erase_user_command(username: str, yes: bool) -> None:
    """Erase USERNAME for good: their memories, the events about them, tokens and sessions."""
    from webapp.services.erase import erase_user, preview_erasure

    async def preview(db: Database, _settings: Settings) -> ErasurePreview:
        return await preview_erasure(db, principal=CLI_ACTOR, username=username)

    found = run_with_db(preview)
    click.echo(describe(found))
    if found.refusal:
        raise click.ClickException(found.refusal)
    typed = (
        username
        if yes
        else click.prompt("Type the username to confirm", default="", show_default=False, err=True)
    )

    async def erase(db: Database, _settings: Settings) -> ErasurePreview:
        return await erase_user(db, principal=CLI_ACTOR, username=username, confirm_username=typed)

    erased = run_with_db(erase)
    counts = erased.counts
    click.echo(
        f"Erased user {erased.username}: {counts.memories} memories, "
        f"{counts.events} events, {counts.tokens} tokens, {counts.sessions} sessions."
    )


def describe(preview: ErasurePreview) -> str:
    """The preview as lines of text: what erasing the user would remove."""
    counts = preview.counts
    lines = [
        f"Erasing user {preview.username} removes:",
        f"  memories (all states)        {counts.memories:>10,}",
        f"  events about their memories  {counts.events:>10,}",
        f"  API tokens                   {counts.tokens:>10,}",
        f"  sessions                     {counts.sessions:>10,}",
    ]
    if counts.authored_events:
        lines.append(
            f"  ({counts.authored_events:,} events they made on other users' memories stay, "
            "their author shown as 'erased user')"
        )
    return "\n".join(lines)
