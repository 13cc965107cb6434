"""SQLite's file faults: a full disk, a read-only file system and a lock held by another
program each give a clear 503 (or one line on the command line), write nothing, leave
the file intact (PRAGMA integrity_check), and the app recovers once the fault is gone.

The full and the read-only disks are small tmpfs mounts the tests make, which needs root
(CI runs as root; elsewhere these tests are skipped).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli_support import assert_one_line_error, invoke_cli
from webapp.main import create_app
from webapp.settings import get_settings

pytestmark = pytest.mark.slow

SECRET = "faults-sqlite-secret-key-0123456789"


@contextlib.contextmanager
def tmpfs(megabytes: int) -> Iterator[Path]:
    """A fresh tmpfs of that size, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    folder = Path(tempfile.mkdtemp(prefix="ma-tmpfs-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], check=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
        folder.rmdir()


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def new_database(path: Path) -> str:
    """A migrated database at path with user ann; ann's token."""
    for args in (("migrate",), ("createuser", "ann", "--password-stdin")):
        result = invoke_cli(
            *args,
            database_url=url_of(path),
            cwd=path.parent,
            input="a-long-password\n",
            secret_key=SECRET,
        )
        assert result.code == 0, result
    result = invoke_cli(
        "token", "create", "ann", database_url=url_of(path), cwd=path.parent, secret_key=SECRET
    )
    assert result.code == 0, result
    return result.out.strip().splitlines()[-1]


@contextlib.asynccontextmanager
async def app_on(
    path: Path, monkeypatch: pytest.MonkeyPatch, **settings: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The app (lifespan included) on the database at path, and a client of it."""
    monkeypatch.setenv("DATABASE_URL", url_of(path))
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("SEMANTIC_SEARCH", "false")  # no background embedder writing
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    app = create_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            yield client
    finally:
        get_settings.cache_clear()


def intact(path: Path) -> tuple[int, int]:
    """integrity_check passes; (memories, events)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        memories = connection.execute("SELECT count(*) FROM long_term_memory").fetchone()[0]
        events = connection.execute("SELECT count(*) FROM memory_event").fetchone()[0]
    return memories, events


def put(key: str, content: str) -> dict[str, object]:
    return {"namespace": "notes", "key": key, "content": content}


async def test_a_full_disk_is_a_clear_503_that_writes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tmpfs(4) as disk:
        database = disk / "memory_admin.db"
        token = new_database(database)
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * 512 * 1024)  # given back at the end: room again
        headers = {"Authorization": f"Bearer {token}"}
        created, refusal = 0, None
        async with app_on(database, monkeypatch) as client:
            for number in range(2_000):
                answer = await client.put(
                    "/api/v1/memories", json=put(f"k{number}", f"{number} " * 5000), headers=headers
                )
                if answer.status_code != 201:
                    refusal = answer
                    break
                created += 1
            assert refusal is not None and refusal.status_code == 503, refusal and refusal.text
            assert "disk is full" in refusal.json()["detail"]
            assert created > 0
            listed = await client.get("/api/v1/memories", params={"limit": 1}, headers=headers)
            assert listed.status_code == 200 and listed.json()["count"] == created
            page = await client.get("/login")
            assert page.status_code == 200

            ballast.unlink()
            again = await client.put(
                "/api/v1/memories", json=put("after", "room again"), headers=headers
            )
            assert again.status_code == 201, again.text
        assert intact(database) == (created + 1, created + 1)


def test_an_import_onto_a_full_disk_is_one_line_and_imports_nothing(tmp_path: Path) -> None:
    with tmpfs(3) as disk:
        database = disk / "memory_admin.db"
        new_database(database)
        before = intact(database)
        lines = tmp_path / "big.jsonl"
        record = '{"user": "ann", "namespace": "bulk", "key": "k%d", "content": "%s"}\n'
        lines.write_text("".join(record % (n, "word " * 400) for n in range(3_000)))
        result = invoke_cli(
            "import", str(lines), database_url=url_of(database), cwd=tmp_path, secret_key=SECRET
        )
        assert_one_line_error(result, "disk is full")
        assert intact(database) == before


async def test_a_read_only_file_system_is_a_clear_503_and_the_file_is_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tmpfs(8) as disk:
        database = disk / "memory_admin.db"
        token = new_database(database)
        headers = {"Authorization": f"Bearer {token}"}
        async with app_on(database, monkeypatch) as client:
            assert (
                await client.put("/api/v1/memories", json=put("k", "before"), headers=headers)
            ).status_code == 201
        content = database.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        try:
            async with app_on(database, monkeypatch) as client:
                for request in (
                    client.put("/api/v1/memories", json=put("k2", "refused"), headers=headers),
                    client.get(
                        "/api/v1/recall", params={"namespace": "notes", "key": "k"}, headers=headers
                    ),
                    client.get("/healthz"),
                ):
                    answer = await request
                    assert answer.status_code == 503, answer.text
                    assert "unavailable" in answer.json()["detail"]
                    assert "Traceback" not in answer.text
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert database.read_bytes() == content
        async with app_on(database, monkeypatch) as client:  # writable again: it works
            answer = await client.put("/api/v1/memories", json=put("k2", "after"), headers=headers)
            assert answer.status_code == 201, answer.text
        assert intact(database) == (2, 2)


async def test_a_lock_held_by_another_program_is_a_clear_503_and_reads_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "memory_admin.db"
    token = new_database(database)
    headers = {"Authorization": f"Bearer {token}"}
    async with app_on(database, monkeypatch, SQLITE_BUSY_TIMEOUT_MS="300") as client:
        assert (
            await client.put("/api/v1/memories", json=put("k", "before"), headers=headers)
        ).status_code == 201
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            other.execute("DELETE FROM login_throttle")  # any write: the lock is taken
            refused = await client.put(
                "/api/v1/memories", json=put("k2", "refused"), headers=headers
            )
            assert refused.status_code == 503, refused.text
            assert "another program holds its lock" in refused.json()["detail"]
            assert "database is locked" not in refused.text
            listed = await client.get("/api/v1/memories", headers=headers)
            assert listed.status_code == 200, "readers are not blocked by a writer (WAL)"
            other.execute("ROLLBACK")
        answer = await client.put("/api/v1/memories", json=put("k2", "after"), headers=headers)
        assert answer.status_code == 201, answer.text
    assert intact(database) == (2, 2)
