"""`memory-admin passwd` and `memory-admin users` on both databases (tests/cli_support.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.cli_support import Result, assert_one_line_error, invoke_cli
from tests.factories import make_memory, make_user
from webapp.models import User
from webapp.services.users import UNUSABLE_PASSWORD, verify_password
from webapp.types import utcnow

NEW_PASSWORD = "a brand new password"
Run = Callable[..., Result]


@pytest.fixture
def cli(db: AsyncEngine, database_url: str, tmp_path: Path) -> Run:
    """Run the command in this process on the module's migrated database."""

    def run(*args: str, input: str | None = None) -> Result:
        return invoke_cli(*args, database_url=database_url, cwd=tmp_path, input=input)

    return run


async def _hash(session: AsyncSession, username: str) -> str:
    await session.commit()
    query = select(User.password_hash).where(User.username == username)  # type: ignore[arg-type]
    return str((await session.execute(query)).scalar_one())


async def test_passwd_gives_an_imported_user_a_password_from_stdin(
    cli: Run, session: AsyncSession
) -> None:
    session.add(User(username="imported", password_hash=UNUSABLE_PASSWORD))
    await session.commit()

    result = cli("passwd", "imported", "--password-stdin", input=NEW_PASSWORD + "\n")

    assert result.code == 0, result
    assert result.out.strip() == "New password set for 'imported'."
    assert verify_password(await _hash(session, "imported"), NEW_PASSWORD)


async def test_passwd_prompts_twice_and_refuses_a_mismatch(cli: Run, session: AsyncSession) -> None:
    await make_user(session, username="ann")
    before = await _hash(session, "ann")

    mismatch = cli("passwd", "ann", input=f"{NEW_PASSWORD}\nsomething else\n")
    assert mismatch.code != 0 and await _hash(session, "ann") == before

    result = cli("passwd", "ann", input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.code == 0, result
    assert verify_password(await _hash(session, "ann"), NEW_PASSWORD)


async def test_passwd_refuses_an_unknown_user_and_a_short_password(
    cli: Run, session: AsyncSession
) -> None:
    await make_user(session, username="ann")
    before = await _hash(session, "ann")

    assert_one_line_error(
        cli("passwd", "nobody", "--password-stdin", input=NEW_PASSWORD), "no user named 'nobody'"
    )
    assert_one_line_error(cli("passwd", "ann", "--password-stdin", input="short\n"), "password")
    assert await _hash(session, "ann") == before


async def test_users_prints_a_table_with_memory_counts(cli: Run, session: AsyncSession) -> None:
    ann = await make_user(session, username="ann")
    await make_user(session, username="root", is_admin=True)
    off = await make_user(session, username="zed")
    off.is_active = False
    await session.commit()
    now = utcnow()
    for key in ("a", "b", "c"):
        await make_memory(session, user=ann, key=key)
    await make_memory(session, user=ann, key="old", expires_at=now.replace(year=now.year - 1))
    await make_memory(session, user=ann, key="gone", is_deleted=True, deleted_at=now)

    result = cli("users")

    assert result.code == 0, result
    header, *rows = [line.split() for line in result.out.splitlines()]
    assert header == ["USER", "ADMIN", "ACTIVE", "MEMORIES", "EXPIRED", "DELETED"]
    assert rows == [
        ["ann", "no", "yes", "3", "1", "1"],
        ["root", "yes", "yes", "0", "0", "0"],
        ["zed", "no", "no", "0", "0", "0"],
    ]


def test_users_of_an_empty_store_says_how_to_add_one(cli: Run) -> None:
    result = cli("users")
    assert result.code == 0 and "memory-admin createuser" in result.out
