"""Planner hints (services/plan.py): no_index keeps a column out of every index lookup."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from webapp.models import LongTermMemory
from webapp.services.plan import no_index

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


async def index_lookups(conn: AsyncConnection, statement: Select[Any]) -> list[str]:
    """The lines of statement's plan that look a value up in an index."""
    sql = str(statement.compile(conn.sync_connection, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "sqlite":
        plan = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        return [row[-1] for row in plan if row[-1].startswith("SEARCH")]
    # On a table this small a sequential scan would win anyway; make any index preferable.
    await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = await conn.exec_driver_sql(f"EXPLAIN {sql}")
    return [row[0] for row in plan if "Index Cond" in row[0]]


@pytest.mark.parametrize("name", ["id", "user_id"])
async def test_no_index_keeps_a_column_out_of_index_lookups(
    db: AsyncEngine, session: AsyncSession, name: str
) -> None:
    alice = await make_user(session)
    memory = await make_memory(session, user=alice)
    await make_memory(session, user=await make_user(session))
    column, value = _c[name], getattr(memory, name)
    async with db.begin() as conn:
        hinted = select(_c.id).where(no_index(column, conn.dialect.name) == value)
        assert await index_lookups(conn, select(_c.id).where(column == value))
        assert await index_lookups(conn, hinted) == []
        assert list((await conn.execute(hinted)).scalars()) == [memory.id]


def test_no_index_on_postgresql_refuses_what_adding_zero_would_change() -> None:
    with pytest.raises(TypeError):
        no_index(_c.namespace, "postgresql")
