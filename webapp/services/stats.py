"""The dashboard's numbers for one user, or for everyone an admin can see."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, case, func, select

from webapp.db import Database
from webapp.models import LongTermMemory
from webapp.services.filters import state_condition
from webapp.services.principal import Principal
from webapp.types import utcnow

EXPIRING_SOON_DAYS = 7
LIST_SIZE = 10

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


@dataclass
class Dashboard:
    """Counts per state and the short lists the dashboard shows."""

    active: int = 0
    expired: int = 0
    deleted: int = 0
    namespaces: int = 0
    expiring_soon: list[LongTermMemory] = field(default_factory=list)
    recently_changed: list[LongTermMemory] = field(default_factory=list)
    most_accessed: list[LongTermMemory] = field(default_factory=list)


async def dashboard(db: Database, *, principal: Principal, user_id: int | None = None) -> Dashboard:
    """Counts (active, expired, deleted, namespaces) and the lists; reading is not access."""
    now = utcnow()
    scope = [principal.visible()]
    if user_id is not None:
        scope.append(_c.user_id == user_id)

    def counted(state: str) -> Any:
        return func.coalesce(func.sum(case((state_condition(state, now=now), 1), else_=0)), 0).cast(
            Integer
        )

    counts = select(
        counted("active"),
        counted("expired"),
        counted("deleted"),
        func.count(func.distinct(_c.namespace)),
    ).where(*scope)
    active = [*scope, state_condition("active", now=now)]
    soon = now + timedelta(days=EXPIRING_SOON_DAYS)
    lists = {
        "expiring_soon": select(LongTermMemory)
        .where(*active, _c.expires_at <= soon)
        .order_by(_c.expires_at, _c.id),
        "recently_changed": select(LongTermMemory)
        .where(*scope, state_condition("all", now=now))
        .order_by(_c.updated_at.desc(), _c.id.desc()),
        "most_accessed": select(LongTermMemory)
        .where(*active, _c.access_count > 0)
        .order_by(_c.access_count.desc(), _c.id.desc()),
    }
    async with db.read() as session:
        numbers = (await session.execute(counts)).one()
        result = Dashboard(
            active=int(numbers[0]),
            expired=int(numbers[1]),
            deleted=int(numbers[2]),
            namespaces=int(numbers[3]),
        )
        for name, query in lists.items():
            rows = (await session.execute(query.limit(LIST_SIZE))).scalars().all()
            setattr(result, name, list(rows))
    return result
