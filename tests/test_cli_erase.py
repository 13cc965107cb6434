"""`memory-admin erase-user`: the preview, the typed confirmation or --yes, and failures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.cli_support import Result, assert_one_line_error, invoke_cli
from tests.factories import make_memory, make_token, make_user
from webapp.models import User
from webapp.models_admin import AdminEvent

pytestmark = pytest.mark.slow

EraseRunner = Callable[..., Result]


@pytest.fixture
def erase_cli(db: AsyncEngine, database_url: str, tmp_path: Path) -> EraseRunner:
    """Runs `memory-admin erase-user ARGS` in this process on the test database."""

    def run(*args: str, input: str | None = None) -> Result:
        return invoke_cli("erase-user", *args, database_url=database_url, cwd=tmp_path, input=input)

    return run


async def _users(session: AsyncSession) -> list[str]:
    await session.commit()
    return sorted((await session.execute(select(User.username))).scalars())


async def _ann(session: AsyncSession) -> None:
    await make_user(session, username="root", is_admin=True)
    ann = await make_user(session, username="ann")
    for key in ("a", "b", "c"):
        await make_memory(session, user=ann, key=key)
    await make_token(session, user=ann, name="agent")


async def test_prints_the_preview_and_erases_on_the_typed_username(
    session: AsyncSession, erase_cli: EraseRunner
) -> None:
    await _ann(session)
    result = erase_cli("ann", input="ann\n")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == "Erasing user ann removes:"
    assert lines[1].split() == ["memories", "(all", "states)", "3"]
    assert lines[3].split() == ["API", "tokens", "1"]
    assert "Type the username to confirm" in result.stderr
    assert lines[-1] == "Erased user ann: 3 memories, 0 events, 1 tokens, 0 sessions."
    assert await _users(session) == ["root"]
    record = (await session.execute(select(AdminEvent))).scalar_one()
    assert record.actor == "operator:cli" and record.actor_user_id is None


async def test_a_wrong_or_empty_answer_erases_nothing(
    session: AsyncSession, erase_cli: EraseRunner
) -> None:
    await _ann(session)
    for answer in ("y\n", "\n"):
        result = erase_cli("ann", input=answer)
        assert result.code == 1
        assert "Type the username 'ann' exactly" in result.stderr
        assert "Traceback" not in result.stderr
    assert await _users(session) == ["ann", "root"]
    count = await session.execute(select(func.count()).select_from(AdminEvent))
    assert count.scalar_one() == 0


async def test_yes_erases_without_asking(session: AsyncSession, erase_cli: EraseRunner) -> None:
    await _ann(session)
    result = erase_cli("ann", "--yes")
    assert result.code == 0, result
    assert "Type the username" not in result.stderr
    assert result.out.splitlines()[-1].startswith("Erased user ann: 3 memories")
    assert await _users(session) == ["root"]


async def test_unknown_user_and_last_admin_fail_in_one_line(
    session: AsyncSession, erase_cli: EraseRunner
) -> None:
    await _ann(session)
    assert_one_line_error(erase_cli("nobody", "--yes"), "no user named 'nobody'")
    refused = erase_cli("root", "--yes")
    assert refused.code == 1
    assert "root is the last active admin" in refused.stderr
    assert await _users(session) == ["ann", "root"]
