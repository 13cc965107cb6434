"""The `memory-admin` command: serve, demo, migrate, users, tokens, import and export.

Every failure is one line on standard error and a non-zero exit, never a traceback
(set MEMORY_ADMIN_DEBUG=1 to see one).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import migrate as migrations
from webapp.db import create_engine, create_sessionmaker
from webapp.demo import DEFAULT_MEMORIES, DEFAULT_PATH, MAX_MEMORIES, demo_settings, prepare_demo
from webapp.errors import DatabaseUnavailable, MemoryAdminError
from webapp.models import UserCreate
from webapp.settings import ConfigError, Settings, get_settings

T = TypeVar("T")
PROG = "memory-admin"


def _settings(make: Callable[[], Settings] = get_settings) -> Settings:
    """Settings from make (the environment's by default); a bad one is a one-line ConfigError."""
    try:
        return make()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "a setting"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else message


def run_with_engine(
    work: Callable[[AsyncEngine, Settings], Awaitable[T]], *, migrate: bool = True
) -> T:
    """Run work with an engine on a migrated database, then dispose of the engine."""
    settings = _settings()

    async def main() -> T:
        engine = create_engine(settings)
        try:
            if migrate:
                await ensure_schema(engine, settings)
            return await work(engine, settings)
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def ensure_schema(engine: AsyncEngine, settings: Settings) -> None:
    """Migrate the default SQLite database; refuse any other database until `migrate` ran."""
    current = await migrations.current_revision(engine)
    head = migrations.head_revision()
    if current == head:
        return
    if settings.uses_default_database:
        await migrations.upgrade(engine)
        return
    if current is None:
        raise DatabaseUnavailable(
            "the database has no memory-admin schema yet; run 'memory-admin migrate' first"
        )
    raise DatabaseUnavailable(
        f"the database schema is at revision {current} but this memory-admin needs {head}; "
        "run 'memory-admin migrate' first"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memory-admin", prog_name=PROG)
def cli() -> None:
    """Long-term memory store for AI agents, with a browser admin app.

    The database is DATABASE_URL (default: memory_admin.db in the current folder).
    """


_host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
_port_option = click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535)
)


@cli.command()
@_host_option
@_port_option
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Run the web app (admin pages and the JSON API) with uvicorn."""
    settings = _settings()
    settings.resolve_secret_key()  # fail now with a clear line, not in every worker

    async def check(engine: AsyncEngine, _settings: Settings) -> int:
        from webapp.services.users import count_admins

        async with create_sessionmaker(engine)() as session:
            return await count_admins(session)

    admins = run_with_engine(check)
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


@cli.command()
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
    settings = _settings(lambda: demo_settings(path))
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


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision."""

    async def work(engine: AsyncEngine, _settings: Settings) -> tuple[str | None, str | None]:
        before = await migrations.current_revision(engine)
        await migrations.upgrade(engine)
        return before, await migrations.current_revision(engine)

    before, after = run_with_engine(work, migrate=False)
    if before == after:
        click.echo(f"Database already at revision {after}.")
    else:
        click.echo(f"Migrated the database from {before or 'empty'} to revision {after}.")


@cli.command()
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

    async def work(engine: AsyncEngine, _settings: Settings) -> None:
        from webapp.services.users import create_user

        async with create_sessionmaker(engine)() as session:
            await create_user(session, data=data)

    run_with_engine(work)
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


@cli.group()
def token() -> None:
    """Create and revoke API tokens for agents."""


@token.command("create")
@click.argument("username")
@click.option("--name", "label", default="cli", show_default=True, help="A label for the token.")
def token_create(username: str, label: str) -> None:
    """Create a token acting as USERNAME; the secret is printed once, on the last line."""
    if not label.strip() or len(label) > 100:
        raise click.BadParameter("must be 1 to 100 characters", param_hint="--name")

    async def work(engine: AsyncEngine, _settings: Settings) -> tuple[int, str]:
        from webapp.services.tokens import create_token
        from webapp.services.users import get_user_by_username

        async with create_sessionmaker(engine)() as session:
            user = await get_user_by_username(session, username=username)
            created, secret = await create_token(session, user=user, name=label.strip())
            assert created.id is not None
            return created.id, secret

    token_id, secret = run_with_engine(work)
    click.echo(f"Created API token {token_id} ({label.strip()!r}) for {username!r}.")
    click.echo("Copy the secret now; it is not shown again:")
    click.echo(secret)


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke the API token with this id."""

    async def work(engine: AsyncEngine, _settings: Settings) -> None:
        from webapp.services.tokens import revoke_token

        async with create_sessionmaker(engine)() as session:
            await revoke_token(session, token_id=token_id)

    run_with_engine(work)
    click.echo(f"Revoked API token {token_id}.")


@cli.command("import")
@click.argument("source", metavar="FILE|-")
@click.option("--dry-run", is_flag=True, help="Report what would happen; write nothing.")
def import_(source: str, dry_run: bool) -> None:
    """Import memories from JSON Lines (one transaction; a bad line writes nothing)."""
    from webapp.services.transfer import import_jsonl

    stream, total = _open_source(source)
    started = time.perf_counter()
    with stream as handle, _progress_bar(total) as advance:

        async def work(engine: AsyncEngine, settings: Settings) -> Any:
            return await import_jsonl(
                engine,
                source=handle,
                settings=settings,
                dry_run=dry_run,
                progress=advance,
            )

        report = run_with_engine(work)
    seconds = time.perf_counter() - started
    rate = report.lines / seconds if seconds > 0 else 0.0
    counts = (
        f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.users_created} new users"
    )
    if dry_run:
        click.echo(f"Dry run, nothing written: would give {counts} ({report.lines} lines).")
    else:
        click.echo(f"Imported {report.lines} lines: {counts} in {seconds:.1f} s ({rate:,.0f}/s).")


def _open_source(source: str) -> tuple[IO[bytes], int | None]:
    if source == "-":
        return nullcontext(sys.stdin.buffer), None  # type: ignore[return-value]
    try:
        handle = open(source, "rb")  # noqa: SIM115  (closed by the caller's with)
    except OSError as exc:
        raise click.FileError(source, hint=exc.strerror or str(exc)) from None
    try:
        total = os.fstat(handle.fileno()).st_size or None
    except OSError:
        total = None
    return handle, total


def _progress_bar(total: int | None) -> Any:
    """A context giving a bytes-read callback; a rich bar on a terminal, silent otherwise."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    @contextmanager
    def bar() -> Any:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            task = progress.add_task("importing", total=total)
            yield lambda consumed: progress.advance(task, consumed)

    return bar()


@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option(
    "--retention-days",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Remove soft-deleted memories deleted more than this many days ago.",
)
@click.option(
    "--expired-grace-days",
    type=click.IntRange(min=0),
    default=7,
    show_default=True,
    help="Remove memories that expired more than this many days ago.",
)
def purge(dry_run: bool, retention_days: int, expired_grace_days: int) -> None:
    """Hard-delete old soft-deleted and long-expired memories of every user (audited)."""
    from webapp.db import Database
    from webapp.services.memories import purge as purge_memories
    from webapp.services.principal import Principal

    async def work(engine: AsyncEngine, _settings: Settings) -> Any:
        return await purge_memories(
            Database(engine),
            principal=Principal.operator(),
            retention_days=retention_days,
            expired_grace_days=expired_grace_days,
            dry_run=dry_run,
        )

    report = run_with_engine(work)
    counts = (
        f"{report.deleted} soft-deleted (deleted over {retention_days} days ago) and "
        f"{report.expired} expired (over {expired_grace_days} days ago)"
    )
    if dry_run:
        click.echo(f"Dry run, nothing removed: would purge {counts}.")
    else:
        click.echo(f"Purged {counts}.")


@cli.command("export")
@click.option("--user", "username", default=None, help="Only this user's memories.")
@click.option("--namespace", default=None, help="Exact namespace, or a prefix ending in '/'.")
@click.option("--tag", "tags", multiple=True, help="Only memories with this tag (repeatable).")
@click.option(
    "--state",
    type=click.Choice(["active", "expired", "deleted", "all"]),
    default="all",
    show_default=True,
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to a file."
)
def export(
    username: str | None,
    namespace: str | None,
    tags: tuple[str, ...],
    state: str,
    output: str | None,
) -> None:
    """Export memories as JSON Lines (every state by default: a backup)."""
    from webapp.services.transfer import export_jsonl

    async def work(engine: AsyncEngine, _settings: Settings) -> int:
        sink = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        try:
            count = 0
            async for chunk in export_jsonl(
                engine, username=username, namespace=namespace, tags=tags, state=state
            ):
                sink.write(chunk)
                count += chunk.count(b"\n")
            sink.flush()
            return count
        finally:
            if output:
                sink.close()

    count = run_with_engine(work)
    if output:
        click.echo(f"Exported {count} memories to {output}.", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning every error into one line on stderr."""
    debug = bool(os.environ.get("MEMORY_ADMIN_DEBUG"))
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(0)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `export | head`); not an error
        sys.exit(0)
    except Exception as exc:
        if debug:
            raise
        _fail(_describe(exc), 1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryAdminError | ConfigError):
        return str(exc)
    if isinstance(exc, OperationalError | DBAPIError):
        return f"database error: {_first_line(str(exc.orig) if exc.orig else str(exc))}"
    if isinstance(exc, OSError):
        return f"cannot reach the database or a file: {exc.strerror or exc}"
    return f"unexpected {type(exc).__name__}: {_first_line(str(exc))}"


def _fail(message: str, code: int) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
