"""The memory-admin command as a user runs it, on both databases: through its entry point in
this process, and in a real process where that is the point (tests/cli_support.py)."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli_support import (
    Result,
    Runner,
    assert_one_line_error,
    invoke_cli,
    records,
    run_cli,
)
from webapp import migrate
from webapp.db import create_sessionmaker
from webapp.models import ApiToken, User
from webapp.services.tokens import hash_token
from webapp.services.users import verify_password

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


def by_identity(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Rows keyed by (user, namespace, key), the import's upsert key."""
    return {(row["user"], row["namespace"], row["key"]): row for row in rows}


def state_of(row: dict[str, Any], now: str) -> str:
    """The state of an exported or generated row (deleted wins over expired)."""
    if row["is_deleted"]:
        return "deleted"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "active"


@pytest.fixture(scope="module")
def dataset(gen_memories: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 generated memories of 5 users (seed 3 has deleted rows of user-00001)."""
    path = tmp_path_factory.mktemp("data") / "memories.jsonl"
    with path.open("wb") as out:
        subprocess.run(
            [sys.executable, str(gen_memories), "--memories", "300", "--users", "5", "--seed", "3"],
            stdout=out,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=60,
        )
    return path


def runner_on(database_url: str, cwd: Path) -> Runner:
    """Runs the command on database_url from cwd: in this process, or as a real process
    with process=True."""

    def run(*args: str, process: bool = False, **kwargs: Any) -> Result:
        how = run_cli if process else invoke_cli
        return how(*args, database_url=database_url, cwd=cwd, **kwargs)

    return run


@pytest.fixture
def cli(db: AsyncEngine, database_url: str, tmp_path: Path) -> Runner:
    """Run the command on the module's migrated database (emptied after the test)."""
    return runner_on(database_url, tmp_path)


@pytest.fixture
def fresh_cli(fresh_database_url: str, tmp_path: Path) -> Runner:
    """Run the command on the fresh, unmigrated database."""
    return runner_on(fresh_database_url, tmp_path)


# --- migrate -----------------------------------------------------------------------------


def test_migrate_creates_the_schema_then_says_already_at_revision(fresh_cli: Runner) -> None:
    head = migrate.head_revision()

    first = fresh_cli("migrate")
    again = fresh_cli("migrate")

    assert first.code == 0, first
    assert "from empty" in first.out and f"revision {head}" in first.out
    assert again.code == 0, again
    assert f"already at revision {head}" in again.out
    created = fresh_cli("createuser", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert created.code == 0, created


def test_migrate_rebuilds_the_index_when_search_language_changes(
    fresh_cli: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index built for another SEARCH_LANGUAGE is refused with the fix in one line;
    `migrate` rebuilds it."""
    monkeypatch.setenv("SEARCH_LANGUAGE", "simple")
    assert fresh_cli("migrate").code == 0
    monkeypatch.setenv("SEARCH_LANGUAGE", "english")

    refused = fresh_cli("users")
    rebuilt = fresh_cli("migrate")

    assert_one_line_error(refused, "built for SEARCH_LANGUAGE=simple", "'memory-admin migrate'")
    assert rebuilt.code == 0, rebuilt
    assert "Rebuilt the full-text index for SEARCH_LANGUAGE=english." in rebuilt.out
    assert fresh_cli("users").code == 0
    assert "Rebuilt" not in fresh_cli("migrate").out


@pytest.mark.parametrize(
    "args",
    [
        ["createuser", "alice", "--password-stdin"],
        ["token", "create", "alice"],
        ["token", "revoke", "1"],
        ["export"],
        ["serve", "--port", "8765"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_commands_refuse_a_database_that_was_never_migrated(
    fresh_cli: Runner, args: list[str]
) -> None:
    # serve in a process of its own: if it wrongly started serving, it would hold this one
    result = fresh_cli(*args, input=PASSWORD + "\n", process=args[0] == "serve")

    assert_one_line_error(result, "memory-admin migrate")
    again = fresh_cli("migrate")
    assert "from empty" in again.out, "the refused command must not have created tables"


# --- users -------------------------------------------------------------------------------


async def load_user(db: AsyncEngine, username: str) -> User | None:
    """The user with this name, read in a session of the test's own."""
    async with create_sessionmaker(db)() as session:
        query = select(User).where(User.username == username)  # type: ignore[arg-type]
        return (await session.execute(query)).scalar_one_or_none()


async def test_createuser_reads_the_password_from_stdin(cli: Runner, db: AsyncEngine) -> None:
    result = cli(
        "createuser",
        "alice",
        "--admin",
        "--email",
        "alice@example.org",
        "--password-stdin",
        input=PASSWORD + "\n",
    )

    assert result.code == 0, result
    assert "alice" in result.out
    user = await load_user(db, "alice")
    assert user is not None
    assert (user.is_admin, user.email) == (True, "alice@example.org")
    assert verify_password(user.password_hash, PASSWORD)


async def test_createuser_prompts_twice_without_password_stdin(
    cli: Runner, db: AsyncEngine
) -> None:
    result = cli("createuser", "bob", input=f"{PASSWORD}\n{PASSWORD}\n")

    assert result.code == 0, result
    user = await load_user(db, "bob")
    assert user is not None and not user.is_admin
    assert verify_password(user.password_hash, PASSWORD)


def test_createuser_refuses_a_duplicate_username(cli: Runner) -> None:
    assert cli("createuser", "alice", "--password-stdin", input=PASSWORD).code == 0

    result = cli("createuser", "alice", "--password-stdin", input=PASSWORD)

    assert_one_line_error(result, "alice", "already exists")


@pytest.mark.parametrize(
    ("username", "password", "fragment"),
    [
        ("carol", "short", "password"),
        ("carol", "", "password"),
        ("has space", PASSWORD, "username"),
    ],
    ids=["short password", "empty password", "bad username"],
)
async def test_createuser_refuses_invalid_input(
    cli: Runner, db: AsyncEngine, username: str, password: str, fragment: str
) -> None:
    result = cli("createuser", username, "--password-stdin", input=password + "\n")

    assert_one_line_error(result, fragment)
    assert await load_user(db, username) is None


# --- tokens ------------------------------------------------------------------------------


async def load_token(db: AsyncEngine, name: str) -> ApiToken:
    """The one token with this label."""
    async with create_sessionmaker(db)() as session:
        query = select(ApiToken).where(ApiToken.name == name)  # type: ignore[arg-type]
        return (await session.execute(query)).scalar_one()


async def test_token_create_prints_the_secret_alone_on_the_last_line_then_revoke(
    cli: Runner, db: AsyncEngine
) -> None:
    assert cli("createuser", "alice", "--password-stdin", input=PASSWORD).code == 0

    result = cli("token", "create", "alice", "--name", "bot", process=True)  # the real stdout

    assert result.code == 0, result
    *before, secret = result.out.splitlines()
    assert re.fullmatch(r"mat_[A-Za-z0-9_-]{20,}", secret), secret
    assert secret not in "\n".join(before)
    token = await load_token(db, "bot")
    assert token.token_hash == hash_token(secret)
    assert token.revoked_at is None

    revoked = cli("token", "revoke", str(token.id))

    assert revoked.code == 0, revoked
    assert str(token.id) in revoked.out
    assert (await load_token(db, "bot")).revoked_at is not None


def test_token_create_for_an_unknown_user_fails(cli: Runner) -> None:
    assert_one_line_error(cli("token", "create", "nobody"), "nobody")


@pytest.mark.parametrize("label", ["", "   ", "x" * 101], ids=["empty", "blank", "too long"])
def test_token_create_refuses_a_bad_name(cli: Runner, label: str) -> None:
    assert cli("createuser", "alice", "--password-stdin", input=PASSWORD).code == 0

    assert_one_line_error(cli("token", "create", "alice", "--name", label), "--name", code=2)


def test_token_revoke_of_an_unknown_id_fails(cli: Runner) -> None:
    assert_one_line_error(cli("token", "revoke", "999999"), "999999")


# --- import ------------------------------------------------------------------------------


def counts(output: str) -> dict[str, int]:
    """The created / updated / unchanged / new users figures an import printed."""
    found = {
        name: int(number)
        for number, name in re.findall(r"\b(\d+) (created|updated|unchanged|new users)\b", output)
    }
    assert set(found) == {"created", "updated", "unchanged", "new users"}, output
    return found


def test_import_file_prints_counts_and_a_second_run_changes_nothing(
    cli: Runner, dataset: Path
) -> None:
    first = cli("import", str(dataset))
    second = cli("import", str(dataset))

    assert first.code == 0, first
    assert counts(first.out) == {"created": 300, "updated": 0, "unchanged": 0, "new users": 5}
    assert second.code == 0, second
    assert counts(second.out) == {"created": 0, "updated": 0, "unchanged": 300, "new users": 0}


def test_import_dash_reads_stdin(cli: Runner, dataset: Path) -> None:
    result = cli("import", "-", input=dataset.read_bytes())

    assert result.code == 0, result
    assert counts(result.out)["created"] == 300
    assert len(records(cli("export").stdout)) == 300


def test_import_dry_run_reports_the_real_counts_and_writes_nothing(
    cli: Runner, dataset: Path, tmp_path: Path
) -> None:
    dry_on_empty = cli("import", "--dry-run", str(dataset))
    assert dry_on_empty.code == 0, dry_on_empty
    assert counts(dry_on_empty.out)["created"] == 300
    assert cli("export").stdout == b""

    assert cli("import", str(dataset)).code == 0
    before = cli("export").stdout
    rows = records(dataset.read_bytes())
    for row in rows[:10]:
        row["content"] += " (edited)"
    for number, row in enumerate(rows[:5]):
        rows.append({**row, "key": f"added-{number}"})
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(json.dumps(row) + "\n" for row in rows))

    dry = cli("import", "--dry-run", str(changed))

    assert dry.code == 0, dry
    expected = {"created": 5, "updated": 10, "unchanged": 290, "new users": 0}
    assert counts(dry.out) == expected
    assert cli("export").stdout == before
    real = cli("import", str(changed))
    assert counts(real.out) == expected


BAD_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "importance out of range": lambda row: json.dumps({**row, "importance": 1.5}),
    "invalid JSON": lambda row: json.dumps(row)[:40],
    "unknown field": lambda row: json.dumps({**row, "colour": "red"}),
    "not an object": lambda row: json.dumps([row]),
    "missing content": lambda row: json.dumps({k: v for k, v in row.items() if k != "content"}),
}


@pytest.mark.parametrize("spoil", list(BAD_LINES.values()), ids=list(BAD_LINES))
async def test_a_bad_line_7_aborts_the_whole_import(
    cli: Runner,
    db: AsyncEngine,
    dataset: Path,
    tmp_path: Path,
    spoil: Callable[[dict[str, Any]], str],
) -> None:
    assert cli("import", str(dataset)).code == 0
    before = cli("export").stdout
    rows = records(dataset.read_bytes())[:20]
    for row in rows:
        row["content"] += " (edited)"
    new_rows = [{**rows[0], "user": "newcomer", "key": f"new-{n}"} for n in range(3)]
    lines = [json.dumps(row) for row in new_rows + rows]  # lines 1-3 create, 4+ update
    lines[6] = spoil(rows[3])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")

    result = cli("import", str(bad))

    assert_one_line_error(result, "line 7")
    assert cli("export").stdout == before
    assert await load_user(db, "newcomer") is None


async def test_a_bad_line_after_the_first_batch_writes_nothing(
    cli: Runner, db: AsyncEngine, gen_memories: Path, tmp_path: Path
) -> None:
    generated = subprocess.run(
        [sys.executable, str(gen_memories), "--memories", "5010", "--users", "5", "--seed", "4"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.splitlines(keepends=True)
    generated[5004] = b'{"user": "user-00001"}\n'
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"".join(generated))

    result = cli("import", str(big))

    assert_one_line_error(result, "line 5005", "required")
    assert cli("export").stdout == b""
    assert await load_user(db, "user-00001") is None


def test_import_of_a_missing_file_fails(cli: Runner, tmp_path: Path) -> None:
    assert_one_line_error(cli("import", str(tmp_path / "absent.jsonl")), "absent.jsonl")


# --- export ------------------------------------------------------------------------------


def test_export_gives_back_every_generated_field(cli: Runner, dataset: Path) -> None:
    generated = records(dataset.read_bytes())
    assert cli("import", str(dataset)).code == 0

    result = cli("export")

    assert result.code == 0, result
    assert result.stderr == ""
    exported = records(result.stdout)
    assert all(list(row) == list(generated[0]) for row in exported)
    assert by_identity(exported) == by_identity(generated)


def test_export_filters_by_user_namespace_tag_and_state(cli: Runner, dataset: Path) -> None:
    generated = records(dataset.read_bytes())
    assert cli("import", str(dataset)).code == 0
    cases: list[tuple[list[str], Callable[[dict[str, Any], str], bool]]] = [
        (
            ["--user", "user-00001", "--state", "deleted"],
            lambda row, now: row["user"] == "user-00001" and row["is_deleted"],
        ),
        (["--state", "active"], lambda row, now: state_of(row, now) == "active"),
        (["--state", "expired"], lambda row, now: state_of(row, now) == "expired"),
        (["--state", "deleted"], lambda row, now: state_of(row, now) == "deleted"),
        (["--namespace", "facts"], lambda row, now: row["namespace"] == "facts"),
        (["--namespace", "projects/"], lambda row, now: row["namespace"].startswith("projects/")),
        (
            ["--tag", "work", "--tag", "family"],
            lambda row, now: {"work", "family"} <= set(row["tags"]),
        ),
    ]

    for args, wanted in cases:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = cli("export", *args)

        assert result.code == 0, (args, result)
        expected = by_identity([row for row in generated if wanted(row, now)])
        assert expected, f"the data set has no rows for {args}; pick another seed"
        assert by_identity(records(result.stdout)) == expected, args


def test_export_to_a_file_with_o(cli: Runner, dataset: Path, tmp_path: Path) -> None:
    assert cli("import", str(dataset)).code == 0

    result = cli("export", "--state", "deleted", "-o", "deleted.jsonl")

    assert result.code == 0, result
    assert result.stdout == b""
    written = (tmp_path / "deleted.jsonl").read_bytes()
    assert written == cli("export", "--state", "deleted").stdout
    assert records(written) and all(row["is_deleted"] for row in records(written))


def test_export_import_export_into_a_fresh_database_is_byte_identical(
    cli: Runner, fresh_cli: Runner, dataset: Path, tmp_path: Path
) -> None:
    awkward = {
        "user": "zoe",
        "namespace": "projects/emigre.v2",
        "key": "naïve key ✓",
        "content": 'Line one\nline two with "quotes", a tab\tand an emoji 🦉',
        "tags": [],
        "importance": 0.0,
        "access_count": 7,
        "last_accessed_at": "2025-03-04T05:06:07.123456Z",
        "expires_at": "2031-01-01T00:00:00Z",
        "is_deleted": True,
        "deleted_at": "2025-03-05T00:00:00.5Z",
        "created_at": "2025-03-01T00:00:00Z",
        "updated_at": "2025-03-04T05:06:07.123456Z",
    }
    source = tmp_path / "source.jsonl"
    source.write_bytes(dataset.read_bytes() + json.dumps(awkward).encode() + b"\n")
    assert cli("import", str(source)).code == 0
    first = cli("export")
    assert first.code == 0 and len(records(first.stdout)) == 301
    backup = tmp_path / "backup.jsonl"
    backup.write_bytes(first.stdout)

    assert fresh_cli("migrate").code == 0
    restored = fresh_cli("import", str(backup))
    second = fresh_cli("export")

    assert restored.code == 0, restored
    assert second.stdout == first.stdout


# --- usage and configuration errors ------------------------------------------------------


USAGE_ERRORS = [
    ["export", "--nope"],
    ["frob"],
    ["export", "--state", "bogus"],
    ["token", "revoke", "abc"],
    ["token", "frob"],
    ["import"],
    ["createuser"],
    ["serve", "--port", "0"],
]
"""Command lines that Click refuses; the first also goes through a real process."""


@pytest.mark.parametrize(
    ("args", "process"),
    [(USAGE_ERRORS[0], True), *((args, False) for args in USAGE_ERRORS)],
    ids=lambda value: (
        " ".join(value) if isinstance(value, list) else ("real process" if value else "in process")
    ),
)
def test_usage_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, args: list[str], process: bool
) -> None:
    database = tmp_path / "untouched.db"
    cli = runner_on(f"sqlite+aiosqlite:///{database}", tmp_path)

    result = cli(*args, process=process)

    assert_one_line_error(result, code=2)
    assert not database.exists()


@pytest.mark.parametrize("args", [[], ["token"]], ids=["no command", "token alone"])
def test_a_group_without_a_command_prints_its_help(tmp_path: Path, args: list[str]) -> None:
    result = runner_on(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path)(*args)

    assert result.code == 0
    assert result.out.startswith("Usage: memory-admin")
    assert "error" not in result.stderr


@pytest.mark.parametrize(
    ("database_url", "fragment"),
    [
        ("mysql://root@127.0.0.1/memories", "DATABASE_URL"),
        ("postgresql://postgres@127.0.0.1/test", "DATABASE_URL"),
        ("not a url", "DATABASE_URL"),
        ("postgresql+asyncpg://postgres@127.0.0.1:1/test", "database"),
    ],
    ids=["mysql", "postgresql without asyncpg", "not a url", "unreachable"],
)
def test_a_bad_or_unreachable_database_url_is_one_line(
    tmp_path: Path, database_url: str, fragment: str
) -> None:
    result = run_cli("migrate", database_url=database_url, cwd=tmp_path)

    assert_one_line_error(result, fragment)


def test_serve_without_secret_key_on_a_configured_database_fails(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'memories.db'}"

    result = run_cli("serve", "--port", "8765", database_url=url, cwd=tmp_path, secret_key=None)

    assert_one_line_error(result, "SECRET_KEY")


# --- purge -------------------------------------------------------------------------------


def purge_counts(output: str) -> tuple[int, int]:
    """(soft-deleted, expired) from purge's summary line."""
    found = re.search(r"(\d+) soft-deleted .* and (\d+) expired", output)
    assert found, output
    return int(found[1]), int(found[2])


def test_purge_dry_run_counts_what_the_real_run_removes(cli: Runner, tmp_path: Path) -> None:
    def line(key: str, **fields: Any) -> str:
        row = {"user": "alice", "namespace": "facts", "key": key, "content": "c", **fields}
        return json.dumps(row) + "\n"

    data = tmp_path / "purge.jsonl"
    data.write_text(
        line("deleted-long-ago", is_deleted=True, deleted_at="2020-01-01T00:00:00Z")
        + line("deleted-recently", is_deleted=True, deleted_at="2999-01-01T00:00:00Z")
        + line("expired-long-ago", expires_at="2020-01-01T00:00:00Z")
        + line("expires-later", expires_at="2999-01-01T00:00:00Z")
        + line("active")
    )
    assert cli("import", str(data)).code == 0

    dry = cli("purge", "--dry-run")
    assert dry.code == 0, dry
    assert purge_counts(dry.out) == (1, 1)
    assert len(records(cli("export").stdout)) == 5

    real = cli("purge")
    assert real.code == 0, real
    assert purge_counts(real.out) == purge_counts(dry.out)
    kept = sorted(row["key"] for row in records(cli("export").stdout))
    assert kept == ["active", "deleted-recently", "expires-later"]
    assert purge_counts(cli("purge", "--dry-run").out) == (0, 0)


def test_purge_takes_the_retention_and_grace_periods(cli: Runner, tmp_path: Path) -> None:
    data = tmp_path / "purge.jsonl"
    data.write_text(
        json.dumps(
            {"user": "bob", "namespace": "n", "key": "gone", "content": "c", "is_deleted": True}
        )  # deleted_at: the import time
        + "\n"
    )
    assert cli("import", str(data)).code == 0
    assert purge_counts(cli("purge", "--dry-run").out) == (0, 0)
    assert purge_counts(cli("purge", "--retention-days", "0").out) == (1, 0)


@pytest.mark.parametrize("option", ["--retention-days", "--expired-grace-days"])
def test_purge_refuses_negative_days(tmp_path: Path, option: str) -> None:
    result = runner_on(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path)("purge", option, "-1")

    assert_one_line_error(result, code=2)


# --- serve -------------------------------------------------------------------------------


def test_serve_on_an_empty_default_database_says_how_to_create_the_first_admin(
    tmp_path: Path,
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SECRET_KEY", "MEMORY_ADMIN_DEBUG")
    }
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:  # a thread, so the test can give up instead of blocking on a read
            lines.put(line)

    assert server.stderr is not None
    threading.Thread(target=pump, args=(server.stderr,), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("No admin user yet" in line for line in seen):
            assert time.monotonic() < deadline, f"no hint on stderr: {seen}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert server.poll() is None, f"serve exited {server.returncode}: {seen}"
    finally:
        server.terminate()
        server.wait(timeout=30)

    hint = next(line for line in seen if "No admin user yet" in line)
    assert "memory-admin createuser admin --admin" in hint
    assert (tmp_path / "memory_admin.db").exists(), "the default database was migrated"
