"""export_jsonl: the matching memories as JSON Lines, streamed from the database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy import select

from webapp.db import Database
from webapp.models import LongTermMemory, User
from webapp.services.filters import namespace_condition, state_condition, tags_condition
from webapp.services.jsonl import FIELDS, export_line
from webapp.services.plan import Plan
from webapp.types import utcnow

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]


async def export_jsonl(
    db: Database,
    *,
    username: str | None = None,
    namespace: str | None = None,
    tags: Sequence[str] = (),
    state: str = "all",
) -> AsyncIterator[bytes]:
    """Yield the matching memories as JSON Lines, oldest id first, streamed from the database."""
    engine = db.engine
    dialect = engine.dialect.name
    query = (
        select(_users.c.username, *(_memories.c[name] for name in FIELDS[1:]))
        .select_from(_memories.join(_users, _users.c.id == _memories.c.user_id))
        .where(state_condition(state, now=utcnow()))
        .order_by(_memories.c.id)
    )
    if username is not None:
        query = query.where(_users.c.username == username)
    if namespace is not None:
        query = query.where(namespace_condition(namespace))
    if tags:
        query = query.where(tags_condition(tags, mode="all", plan=Plan(dialect)))
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=2000))
        async for partition in result.partitions():
            yield b"".join(export_line(row) for row in partition)
