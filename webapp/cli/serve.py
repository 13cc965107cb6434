"""Running the web app: `serve` on the configured database, `demo` on generated data."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from webapp.cli.common import PROG, load_settings, run_with_db
from webapp.db import Database
from webapp.demo import DEFAULT_MEMORIES, DEFAULT_PATH, MAX_MEMORIES, demo_settings, prepare_demo
from webapp.settings import Settings, get_settings

_host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
_port_option = click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535)
)


@click.command()
@_host_option
@_port_option
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Run the web app (admin pages and the JSON API) with uvicorn."""
    settings = load_settings()
    settings.resolve_secret_key()  # fail now with a clear line, not in every worker

    async def check(db: Database, _settings: Settings) -> int:
        from webapp.services.users import count_admins

        return await count_admins(db)

    admins = run_with_db(check)
    if admins == 0:
        click.echo(
            "No admin user yet. Create one with:  memory-admin createuser admin --admin",
            err=True,
        )
    _run_app(host, port, workers)


def _run_app(host: str, port: int, workers: int = 1) -> None:
    """Serve webapp.main:create_app with uvicorn; its settings come from the environment."""
    import uvicorn

    click.echo(f"Serving memory-admin on http://{host}:{port}/", err=True)
    uvicorn.run(
        "webapp.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_level="info",
        # uvicorn replaces a worker that does not answer its health check within this many
        # seconds, starting with the check made while it is still importing: on a busy
        # machine (2 cores, load 12) that took over 5 s, its default, so the second worker
        # was killed and respawned over and over, and never served.
        timeout_worker_healthcheck=60,
    )


@click.command()
@_host_option
@_port_option
@click.option(
    "--memories",
    default=DEFAULT_MEMORIES,
    show_default=True,
    type=click.IntRange(1, MAX_MEMORIES),
    help="How many memories to generate.",
)
@click.option("--seed", default=1, show_default=True, help="The same seed gives the same memories.")
@click.option(
    "--path",
    default=DEFAULT_PATH,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The demo's own SQLite file, deleted and recreated on every run.",
)
@click.option("--no-serve", is_flag=True, help="Prepare the database and print the logins only.")
def demo(host: str, port: int, memories: int, seed: int, path: Path, no_serve: bool) -> None:
    """Try memory-admin on generated data: a fresh database, printed logins, then serve.

    The demo always uses its own SQLite file (--path) and ignores DATABASE_URL, so it
    never touches your real data. The file is deleted and recreated on every run; the
    demo refuses to delete a file it did not make. The admin and demo passwords are
    random and printed; logins last until the demo stops.
    """
    settings = load_settings(lambda: demo_settings(path))
    prepared = asyncio.run(prepare_demo(settings, memories=memories, seed=seed))
    states = prepared.states
    click.echo(
        f"{PROG} demo: {prepared.memories:,} memories for {prepared.users} users in {path} "
        f"({states.active:,} active, {states.expired:,} expired, {states.deleted:,} in Trash)"
    )
    click.echo(
        f"Open http://{host}:{port}/ and log in as "
        f"{prepared.admin.username} / {prepared.admin.password} "
        f"(or {prepared.user.username} / {prepared.user.password} to see one user's view)"
    )
    if no_serve:
        return
    assert settings.secret_key is not None
    os.environ["DATABASE_URL"] = settings.database_url
    os.environ["SECRET_KEY"] = settings.secret_key.get_secret_value()
    get_settings.cache_clear()  # create_app reads the environment again, in this process
    _run_app(host, port)
