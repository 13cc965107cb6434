"""Commands on the stored data: `migrate` the schema, `import`, `export` and `purge` memories."""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import migrate as migrations
from webapp.cli.common import load_settings, run_with_db, run_with_engine
from webapp.db import Database
from webapp.services.fulltext_language import reindex
from webapp.settings import Settings


@click.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision; rebuild the full-text index
    if it was built for another SEARCH_LANGUAGE."""

    async def work(engine: AsyncEngine, settings: Settings) -> tuple[str | None, str | None, bool]:
        before = await migrations.current_revision(engine)
        await migrations.upgrade(engine, search_language=settings.search_language)
        rebuilt = await reindex(engine, settings.search_language)
        return before, await migrations.current_revision(engine), rebuilt

    before, after, rebuilt = run_with_engine(work, migrate=False)
    if before == after:
        click.echo(f"Database already at revision {after}.")
    else:
        click.echo(f"Migrated the database from {before or 'empty'} to revision {after}.")
    if rebuilt:
        language = load_settings().search_language
        click.echo(f"Rebuilt the full-text index for SEARCH_LANGUAGE={language}.")


@click.command("import")
@click.argument("source", metavar="FILE|-")
@click.option("--dry-run", is_flag=True, help="Report what would happen; write nothing.")
def import_(source: str, dry_run: bool) -> None:
    """Import memories from JSON Lines (one transaction; a bad line writes nothing)."""
    from webapp.services.transfer import import_jsonl

    stream, total = _open_source(source)
    started = time.perf_counter()
    with stream as handle, _progress_bar(total) as advance:

        async def work(db: Database, settings: Settings) -> Any:
            return await import_jsonl(
                db,
                source=handle,
                settings=settings,
                dry_run=dry_run,
                progress=advance,
            )

        report = run_with_db(work)
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


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option(
    "--retention-days",
    type=click.IntRange(min=0),
    default=None,
    help="Remove soft-deleted memories deleted more than this many days ago "
    "(default: TRASH_RETENTION_DAYS, 30 unless set).",
)
@click.option(
    "--expired-grace-days",
    type=click.IntRange(min=0),
    default=None,
    help="Remove memories that expired more than this many days ago "
    "(default: EXPIRED_GRACE_DAYS, 7 unless set).",
)
def purge(dry_run: bool, retention_days: int | None, expired_grace_days: int | None) -> None:
    """Hard-delete old soft-deleted and long-expired memories of every user (audited)."""
    from webapp.services.memories import purge as purge_memories
    from webapp.services.principal import Principal
    from webapp.services.retention import Retention

    async def work(db: Database, settings: Settings) -> Any:
        retention = Retention.of(
            settings, deleted_days=retention_days, expired_grace_days=expired_grace_days
        )
        report = await purge_memories(
            db, principal=Principal.operator(), retention=retention, dry_run=dry_run
        )
        return report, retention

    report, retention = run_with_db(work)
    counts = (
        f"{report.deleted} soft-deleted (deleted over {retention.deleted_days} days ago) and "
        f"{report.expired} expired (over {retention.expired_grace_days} days ago)"
    )
    if dry_run:
        click.echo(f"Dry run, nothing removed: would purge {counts}.")
    else:
        click.echo(f"Purged {counts}.")


@click.command("export")
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

    async def work(db: Database, _settings: Settings) -> int:
        sink = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        try:
            count = 0
            async for chunk in export_jsonl(
                db, username=username, namespace=namespace, tags=tags, state=state
            ):
                sink.write(chunk)
                count += chunk.count(b"\n")
            sink.flush()
            return count
        finally:
            if output:
                sink.close()

    count = run_with_db(work)
    if output:
        click.echo(f"Exported {count} memories to {output}.", err=True)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(path: Path) -> None:
    """Copy the SQLite database to PATH (a new file) while the app serves it: a
    consistent copy of one moment, checked before it takes its name. On PostgreSQL, use
    pg_dump."""
    from webapp.services.backup import BackupFailed, backup_sqlite

    settings = load_settings()
    source = settings.sqlite_path
    if source is None:
        raise BackupFailed(
            "backup copies a SQLite database; for PostgreSQL use pg_dump "
            "(the README's Backups section), or `memory-admin export`"
        )
    done = backup_sqlite(source, path, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    size = done.bytes / 1_000_000
    click.echo(
        f"Backed up {done.memories:,} memories ({size:,.1f} MB) from {source} "
        f"to {done.path} in {done.seconds:.1f} s."
    )
