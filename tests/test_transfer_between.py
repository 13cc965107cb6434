"""`export` and `import` move a store between SQLite and PostgreSQL, both ways, at
100,000 memories, and nothing changes on the way (README: Backups, between the two)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_support import invoke_cli, records
from tests.conftest import generate, postgres_database

pytestmark = pytest.mark.slow

ROWS = 100_000


def run(*args: str, url: str, cwd: Path) -> str:
    result = invoke_cli(*args, database_url=url, cwd=cwd)
    assert result.code == 0, result.stderr
    return result.out + result.stderr


async def test_sqlite_to_postgresql_and_back_keeps_every_memory_as_it_was(
    gen_memories: Path, tmp_path: Path
) -> None:
    generated = generate(
        gen_memories, tmp_path / "generated.jsonl", "--memories", str(ROWS), "--seed", "7"
    )
    first_sqlite = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
    second_sqlite = f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"
    from_sqlite, from_postgres, back = (tmp_path / f"{n}.jsonl" for n in ("a", "b", "c"))

    for url in (first_sqlite, second_sqlite):
        run("migrate", url=url, cwd=tmp_path)
    run("import", str(generated), url=first_sqlite, cwd=tmp_path)
    run("export", "-o", str(from_sqlite), url=first_sqlite, cwd=tmp_path)
    async with postgres_database() as postgres:
        run("migrate", url=postgres, cwd=tmp_path)
        said = run("import", str(from_sqlite), url=postgres, cwd=tmp_path)
        run("export", "-o", str(from_postgres), url=postgres, cwd=tmp_path)
    run("import", str(from_postgres), url=second_sqlite, cwd=tmp_path)
    run("export", "-o", str(back), url=second_sqlite, cwd=tmp_path)

    exported = from_sqlite.read_bytes()
    assert len(exported.splitlines()) == ROWS
    assert from_postgres.read_bytes() == exported, "SQLite -> PostgreSQL changed something"
    assert back.read_bytes() == exported, "PostgreSQL -> SQLite changed something"
    assert f"{ROWS} created" in said or f"{ROWS:,} created" in said
    states = {(row["is_deleted"], row["expires_at"] is None) for row in records(exported)}
    assert len(states) >= 3, "the data must hold deleted, expiring and plain memories"
