"""`memory-admin demo`: the generated memories, the prepared database and the command itself."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli_support import Result, assert_one_line_error, invoke_cli
from webapp.db import Database, create_engine
from webapp.demo import (
    ADMIN,
    DEMO_USER,
    USERS,
    DemoRefused,
    StateCounts,
    demo_settings,
    generate_memories,
    prepare_demo,
)
from webapp.formats import format_time
from webapp.models import LongTermMemory, MemoryEvent
from webapp.services.jsonl import ParseOptions, RecordParser
from webapp.services.users import UNUSABLE_PASSWORD, UserSummary, list_users, verify_password
from webapp.settings import Settings

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
LOGINS = re.compile(r"log in as admin / (\S+) \(or demo / (\S+) to see one user's view\)")


def iso(moment: datetime) -> str:
    """A time as the generator writes it."""
    return format_time(moment) or ""


# --- the generator -----------------------------------------------------------------------


def test_the_same_seed_gives_the_same_memories() -> None:
    first = list(generate_memories(200, seed=5, now=NOW))

    assert list(generate_memories(200, seed=5, now=NOW)) == first
    assert list(generate_memories(200, seed=6, now=NOW)) != first


def test_generated_memories_pass_the_import_rules_and_cover_every_state() -> None:
    states = StateCounts()
    records = list(generate_memories(1_000, seed=1, now=NOW, states=states))
    parser = RecordParser(ParseOptions(for_sqlite=True, content_max_bytes=65_536, now=NOW))
    now, year_ago = iso(NOW), iso(NOW - timedelta(days=365))

    for record in records:
        parser.parse(orjson.dumps(record))  # raises ValueError on any rule broken
        assert year_ago <= record["created_at"] <= record["updated_at"] <= now
        assert (record["access_count"] == 0) == (record["last_accessed_at"] is None)
        assert len(record["tags"]) <= 4
        assert record["content"].count(". ") >= 1, "content has several sentences"
    identities = {(r["user"], r["namespace"], r["key"]) for r in records}
    assert len(identities) == len(records)
    assert {r["user"] for r in records} == {name for name, _share in USERS}
    assert {r["namespace"] for r in records} >= {"profile", "preferences/food", "work/meetings"}
    assert any(r["namespace"].startswith("projects/") for r in records)
    importance = [r["importance"] for r in records]
    assert min(importance) < 0.15 and max(importance) > 0.85

    deleted = [r for r in records if r["is_deleted"]]
    expired = [r for r in records if not r["is_deleted"] and (r["expires_at"] or "~") <= now]
    soon = iso(NOW + timedelta(days=7))
    expiring = [
        r for r in records if not r["is_deleted"] and now < (r["expires_at"] or "~") <= soon
    ]
    assert (states.deleted, states.expired) == (len(deleted), len(expired))
    assert states.active == len(records) - len(deleted) - len(expired)
    assert deleted and expired and expiring
    month_ago = iso(NOW - timedelta(days=30))
    assert all(month_ago <= r["deleted_at"] <= now for r in deleted), "Trash keeps 30 days"


# --- preparing the database --------------------------------------------------------------


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a demo database file, disposed afterwards."""
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{path}"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def summaries(path: Path) -> dict[str, UserSummary]:
    """Every user of the database at path, by name, with their memory counts per state."""
    async with opened(path) as engine:
        return {s.user.username: s for s in await list_users(Database(engine))}


async def test_prepare_demo_loads_the_memories_and_both_logins_work(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"

    demo = await prepare_demo(demo_settings(path), memories=300, seed=1)

    assert (demo.memories, demo.users) == (300, len(USERS))
    users = await summaries(path)
    assert set(users) == {name for name, _share in USERS}
    totals = StateCounts()
    for summary in users.values():
        totals.active += summary.active
        totals.expired += summary.expired
        totals.deleted += summary.deleted
    assert totals == demo.states
    assert min(totals.active, totals.expired, totals.deleted) > 0
    admin, user = users[ADMIN].user, users[DEMO_USER].user
    assert admin.is_admin and verify_password(admin.password_hash, demo.admin.password)
    assert not user.is_admin and verify_password(user.password_hash, demo.user.password)
    others = [s.user for name, s in users.items() if name not in (ADMIN, DEMO_USER)]
    assert all(other.password_hash == UNUSABLE_PASSWORD for other in others)
    assert users[DEMO_USER].active > 0
    async with opened(path) as engine, engine.connect() as conn:
        events = await conn.execute(
            select(MemoryEvent.actor, func.count()).group_by(MemoryEvent.actor)  # type: ignore[arg-type]
        )
        assert dict(events.all()) == {"import": 300}, "every memory has its create event"


@pytest.mark.parametrize("kind", ["text file", "real database"])
async def test_prepare_demo_refuses_to_delete_a_file_it_did_not_make(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "precious.db"
    if kind == "text file":
        path.write_text("my notes\n")
    else:
        async with opened(path) as engine, engine.begin() as conn:
            await conn.run_sync(LongTermMemory.metadata.create_all)
    before = path.read_bytes()

    with pytest.raises(DemoRefused, match="not a memory-admin demo database"):
        await prepare_demo(demo_settings(path), memories=10, seed=1)

    assert path.read_bytes() == before


# --- the command -------------------------------------------------------------------------


def run_demo(tmp_path: Path, *args: str) -> Result:
    """Run `memory-admin demo ARGS` (in this process) with DATABASE_URL set to a file the
    demo must ignore."""
    return invoke_cli(
        "demo", *args, database_url=f"sqlite+aiosqlite:///{tmp_path / 'real.db'}", cwd=tmp_path
    )


@pytest.mark.slow
async def test_demo_no_serve_prints_logins_and_a_second_run_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "d.db"

    first = run_demo(tmp_path, "--no-serve", "--memories", "300", "--path", str(path))

    assert first.code == 0, first
    summary, login = first.out.splitlines()
    assert summary.startswith(f"memory-admin demo: 300 memories for 6 users in {path} (")
    assert "http://127.0.0.1:8000/" in login
    found = LOGINS.search(login)
    assert found, login
    admin_password, demo_password = found.groups()
    users = await summaries(path)
    assert sum(s.active + s.expired + s.deleted for s in users.values()) == 300
    assert all(sum(getattr(s, state) for s in users.values()) for state in ("expired", "deleted"))
    assert users[ADMIN].user.is_admin
    assert verify_password(users[ADMIN].user.password_hash, admin_password)
    assert verify_password(users[DEMO_USER].user.password_hash, demo_password)
    assert not (tmp_path / "real.db").exists(), "the demo ignores DATABASE_URL"

    second = run_demo(tmp_path, "--no-serve", "--memories", "300", "--path", str(path))

    assert second.code == 0, second
    assert second.out.splitlines()[0] == summary
    again = await summaries(path)
    assert {n: (s.active, s.expired, s.deleted) for n, s in again.items()} == {
        n: (s.active, s.expired, s.deleted) for n, s in users.items()
    }
    assert not verify_password(again[ADMIN].user.password_hash, admin_password)
    new_found = LOGINS.search(second.out)
    assert new_found and verify_password(again[ADMIN].user.password_hash, new_found[1])


@pytest.mark.slow
@pytest.mark.parametrize("memories", ["0", "1000001"])
def test_demo_refuses_a_bad_number_of_memories(tmp_path: Path, memories: str) -> None:
    result = run_demo(tmp_path, "--no-serve", "--memories", memories)

    assert_one_line_error(result, "--memories", code=2)
    assert not (tmp_path / "memory_admin_demo.db").exists()


@pytest.mark.slow
def test_demo_refusing_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("keep me\n")

    result = run_demo(tmp_path, "--no-serve", "--path", "notes.db")

    assert_one_line_error(result, "notes.db", "not a memory-admin demo database", code=1)
    assert (tmp_path / "notes.db").read_text() == "keep me\n"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_demo_serves_its_own_database(tmp_path: Path) -> None:
    port = free_port()
    env_url = f"sqlite+aiosqlite:///{tmp_path / 'real.db'}"
    command = [sys.executable, "-m", "webapp.cli", "demo", "--memories", "50", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "MEMORY_ADMIN_DEBUG"}
    env |= {"DATABASE_URL": env_url, "SECRET_KEY": "not-the-demo-key"}
    server = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        body = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.2)
        assert b'"status":"ok"' in body, f"no answer from the demo (exit {server.poll()})"
        assert (tmp_path / "memory_admin_demo.db").exists()
        assert not (tmp_path / "real.db").exists(), "the app must serve the demo's database"
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert LOGINS.search(out.decode())
