"""`memory-admin backup PATH` (SQLite): a consistent copy taken while the app writes, the
restore the README documents, and one clear line for every way it can fail."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.cli_support import assert_one_line_error, invoke_cli, records
from tests.conftest import generate
from webapp.db import Database, create_engine
from webapp.models import LongTermMemory, MemoryCreate, MemoryEvent, User
from webapp.services import memories
from webapp.services.principal import Principal
from webapp.settings import Settings

pytestmark = pytest.mark.slow

ROWS = 20_000
"""Generated memories in the database: enough that the copy takes a while (about 40 MB)."""


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="module")
def loaded(gen_memories: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database with ROWS generated memories, made once; each test
    works on a copy."""
    folder = tmp_path_factory.mktemp("loaded")
    path, data = folder / "memory_admin.db", folder / "memories.jsonl"
    generate(gen_memories, data, "--memories", str(ROWS), "--users", "20")
    for args in (("migrate",), ("import", str(data))):
        result = invoke_cli(*args, database_url=sqlite_url(path), cwd=folder)
        assert result.code == 0, result
    return path


@pytest.fixture
def database(loaded: Path, tmp_path: Path) -> Path:
    """This test's copy of the loaded database."""
    path = tmp_path / "memory_admin.db"
    shutil.copyfile(loaded, path)
    return path


@pytest.fixture
async def app_db(database: Path) -> AsyncIterator[Database]:
    """The database as the app opens it (WAL, busy timeout, BEGIN IMMEDIATE writers)."""
    engine = create_engine(Settings(database_url=sqlite_url(database), secret_key="x" * 32))
    yield Database(engine)
    await engine.dispose()


def backup(database: Path, target: Path, *, cwd: Path) -> tuple[int, str, str]:
    result = invoke_cli("backup", str(target), database_url=sqlite_url(database), cwd=cwd)
    return result.code, result.out, result.stderr


def counts(path: Path) -> tuple[int, int, int]:
    """(memories, memories in namespace live, create events of that namespace) in path."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        total = connection.execute("SELECT count(*) FROM long_term_memory").fetchone()[0]
        live = connection.execute(
            "SELECT count(*) FROM long_term_memory WHERE namespace = 'live'"
        ).fetchone()[0]
        created = connection.execute(
            "SELECT count(*) FROM memory_event e JOIN long_term_memory m ON m.id = e.memory_id "
            "WHERE m.namespace = 'live' AND e.action = 'create'"
        ).fetchone()[0]
    return total, live, created


async def count_live(db: Database) -> int:
    async with db.read() as session:
        query = select(func.count()).where(LongTermMemory.namespace == "live")  # type: ignore[arg-type]
        return int(await session.scalar(query) or 0)


async def test_a_backup_taken_while_the_app_writes_is_one_consistent_moment(
    database: Path, app_db: Database, tmp_path: Path
) -> None:
    """The app goes on writing during the copy (WAL), and the copy holds each write
    whole (a memory with its event) or not at all, and passes integrity_check."""
    async with app_db.read() as session:
        owner = (await session.execute(select(User).limit(1))).scalar_one()
    agent = Principal.of_user(owner)
    target = tmp_path / "copies" / "backup.db"
    target.parent.mkdir()
    copying = asyncio.create_task(asyncio.to_thread(backup, database, target, cwd=tmp_path))
    written_during = 0
    while not copying.done():
        data = MemoryCreate(namespace="live", key=f"k{written_during}", content="written live")
        await memories.remember(app_db, principal=agent, data=data)
        written_during += 1 if not copying.done() else 0
    code, out, err = await copying
    assert code == 0, err
    assert written_during >= 3, "the writes must have gone on while the copy was made"
    assert f"to {target}" in out and "Backed up" in out
    assert [p.name for p in target.parent.iterdir()] == ["backup.db"], "nothing else left"
    total, live, created = counts(target)
    assert live == created, "a memory without its event, or the other way round"
    assert 0 <= live <= await count_live(app_db)
    assert total == ROWS + live
    assert f"{total:,} memories" in out


async def test_restoring_the_copy_brings_back_the_moment_of_the_backup(
    database: Path, app_db: Database, tmp_path: Path
) -> None:
    """The README's restore: stop the app, put the copy in the database's place (its -wal
    and -shm files removed), start again."""
    target = tmp_path / "backup.db"
    assert backup(database, target, cwd=tmp_path)[0] == 0
    at_backup = invoke_cli("export", database_url=sqlite_url(target), cwd=tmp_path)
    async with app_db.read() as session:
        owner = (await session.execute(select(User).limit(1))).scalar_one()
    data = MemoryCreate(namespace="after", key="later", content="written after the backup")
    await memories.remember(app_db, principal=Principal.of_user(owner), data=data)
    await app_db.engine.dispose()  # the app stops

    for leftover in (database.with_name(database.name + s) for s in ("-wal", "-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(target, database)

    restored = invoke_cli("export", database_url=sqlite_url(database), cwd=tmp_path)
    assert restored.code == 0 and at_backup.code == 0
    assert restored.stdout == at_backup.stdout
    assert len(records(restored.stdout)) == ROWS
    assert all(row["namespace"] != "after" for row in records(restored.stdout))


def test_a_backup_never_replaces_a_file(database: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious.db"
    target.write_bytes(b"not to be lost")
    result = invoke_cli("backup", str(target), database_url=sqlite_url(database), cwd=tmp_path)
    assert_one_line_error(result, str(target), "exists already")
    assert target.read_bytes() == b"not to be lost"


@pytest.mark.parametrize(
    ("make_url", "fragments"),
    [
        (lambda folder: sqlite_url(folder / "missing.db"), ["no database at"]),
        (lambda folder: sqlite_url(folder / "other.db"), ["not a memory-admin database"]),
        (lambda folder: "postgresql+asyncpg://nobody@127.0.0.1:1/none", ["pg_dump"]),
    ],
    ids=["no database", "another sqlite file", "postgresql"],
)
def test_what_cannot_be_copied_is_one_line_and_writes_nothing(
    tmp_path: Path, make_url: object, fragments: list[str]
) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as other:
        other.execute("CREATE TABLE notes (body TEXT)")
    target = tmp_path / "out" / "backup.db"
    target.parent.mkdir()
    url = make_url(tmp_path)  # type: ignore[operator]
    result = invoke_cli("backup", str(target), database_url=url, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert list(target.parent.iterdir()) == []


def test_a_target_folder_that_is_missing_is_one_line(database: Path, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere" / "b.db"
    result = invoke_cli("backup", str(nowhere), database_url=sqlite_url(database), cwd=tmp_path)
    assert_one_line_error(result, "no folder")
    assert not nowhere.parent.exists()


def test_memory_events_are_in_the_copy(database: Path, tmp_path: Path) -> None:
    """The copy is the whole database, not only the memories: events, users, tokens."""
    target = tmp_path / "backup.db"
    assert backup(database, target, cwd=tmp_path)[0] == 0
    with (
        contextlib.closing(sqlite3.connect(database)) as original,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        for table in (User.__tablename__, MemoryEvent.__tablename__, "alembic_version"):
            query = f"SELECT count(*) FROM {table}"
            assert copy.execute(query).fetchone() == original.execute(query).fetchone()
