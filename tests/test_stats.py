"""Dashboard numbers (services/stats.py) on both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from webapp.db import Database
from webapp.models import LongTermMemory
from webapp.services.principal import Principal
from webapp.services.stats import dashboard
from webapp.types import utcnow


async def test_dashboard_counts_and_lists(db: AsyncEngine, session: AsyncSession) -> None:
    alice = await make_user(session, username="alice")
    bob = await make_user(session, username="bob")
    now = utcnow()
    soon = await make_memory(session, user=alice, key="soon", expires_at=now + timedelta(days=2))
    await make_memory(session, user=alice, key="later", expires_at=now + timedelta(days=30))
    await make_memory(
        session, user=alice, key="gone", namespace="old", expires_at=now - timedelta(days=1)
    )
    popular = await make_memory(session, user=alice, key="popular", access_count=9)
    # Deleted and past its expiry: deleted wins (counted once, in Trash).
    trashed = await make_memory(
        session, user=alice, key="trashed", access_count=50, expires_at=now - timedelta(days=2)
    )
    await make_memory(session, user=bob, key="bobs", access_count=3)
    await session.execute(
        update(LongTermMemory)
        .where(LongTermMemory.id == trashed.id)  # type: ignore[arg-type]
        .values(is_deleted=True, deleted_at=now, updated_at=now + timedelta(seconds=5))
    )
    await session.commit()
    database = Database(db)

    mine = await dashboard(database, principal=Principal.of_user(alice))
    assert (mine.active, mine.expired, mine.deleted, mine.namespaces) == (3, 1, 1, 2)
    assert [m.key for m in mine.expiring_soon] == ["soon"]
    assert [m.key for m in mine.most_accessed] == ["popular"]  # deleted ones are not listed
    assert mine.recently_changed[0].key == "trashed"
    assert {m.user_id for m in mine.recently_changed} == {alice.id}
    assert soon.id in {m.id for m in mine.expiring_soon} and popular.access_count == 9

    everyone = await dashboard(database, principal=Principal.operator())
    assert (everyone.active, everyone.expired, everyone.deleted) == (4, 1, 1)
    assert [m.key for m in everyone.most_accessed] == ["popular", "bobs"]
    just_bob = await dashboard(database, principal=Principal.operator(), user_id=bob.id)
    assert (just_bob.active, just_bob.namespaces) == (1, 1)

    before = (await dashboard(database, principal=Principal.of_user(alice))).most_accessed
    assert [m.access_count for m in before] == [9]  # looking did not count as access


async def test_empty_dashboard(db: AsyncEngine, session: AsyncSession) -> None:
    carol = await make_user(session, username="carol")
    empty = await dashboard(Database(db), principal=Principal.of_user(carol))
    assert (empty.active, empty.expired, empty.deleted, empty.namespaces) == (0, 0, 0, 0)
    assert empty.expiring_soon == empty.recently_changed == empty.most_accessed == []
