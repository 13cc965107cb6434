"""`memory-admin embed`: give every memory waiting for its vector one now."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import click

from webapp.cli.common import run_with_db
from webapp.db import Database
from webapp.errors import InvalidInput
from webapp.services import duplicates, vectors
from webapp.services.users import get_user_by_username
from webapp.settings import Settings


@click.command("embed")
@click.option("--user", "username", default=None, help="Only this user's memories.")
@click.option(
    "--batch",
    default=256,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Memories embedded and written per transaction.",
)
def embed(username: str | None, batch: int) -> None:
    """Embed the memories that have no vector yet (after an upgrade, or an import).

    The app does this in the background too; this command uses both cores and shows
    progress. Each batch is committed on its own: stopped, it goes on where it left off.
    """

    async def work(db: Database, _settings: Settings) -> tuple[int, float, float]:
        if not vectors.enabled():
            raise InvalidInput(
                "semantic search is off (SEMANTIC_SEARCH=false, or the model's packages are "
                "missing): nothing to embed with"
            )
        user_id = None
        if username is not None:
            user_id = (await get_user_by_username(db, username=username)).id
        total = await vectors.pending(db, user_id=user_id)
        started = time.perf_counter()
        done = 0
        with _progress_bar(total) as advance:
            while written := await vectors.drain(db, batch=batch, user_id=user_id):
                done += written
                if advance is not None:
                    advance(written)
        embedded = time.perf_counter()
        # The near-duplicate pairs of the new vectors, now rather than at the first visit
        # of /duplicates.
        for owner in await duplicates.users_with_vectors(db) if user_id is None else [user_id]:
            await duplicates.refresh(db, owner)
        return done, embedded - started, time.perf_counter() - embedded

    done, seconds, pairing = run_with_db(work)
    rate = done / seconds if seconds > 0 else 0.0
    click.echo(
        f"Embedded {done} memories in {seconds:.1f} s ({rate:,.1f}/s); "
        f"near-duplicate pairs brought up to date in {pairing:.1f} s."
    )


def _progress_bar(total: int) -> AbstractContextManager[Callable[[int], Any] | None]:
    """A rich bar (count, rate, time left) on a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    @contextmanager
    def bar() -> Any:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            "{task.fields[rate]}",
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            task = progress.add_task("embedding", total=total, rate="")
            started = time.perf_counter()

            def advance(count: int) -> None:
                progress.advance(task, count)
                done = progress.tasks[0].completed
                elapsed = time.perf_counter() - started
                progress.update(task, rate=f"{done / elapsed:,.0f}/s" if elapsed else "")

            yield advance

    return bar()
