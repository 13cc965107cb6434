"""Trash: days left before purge, restore one or many, purge now (admins, confirmed)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.models import EventAction, LongTermMemory, MemoryEvent
from webapp.types import utcnow


async def _states(session: AsyncSession) -> dict[str, bool]:
    await session.commit()
    rows = await session.execute(select(LongTermMemory.key, LongTermMemory.is_deleted))
    return {str(key): bool(deleted) for key, deleted in rows.all()}


async def test_trash_shows_deleted_memories_with_days_left(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    now = utcnow()
    await make_memory(session, user=ann, key="fresh", is_deleted=True, deleted_at=now)
    await make_memory(
        session,
        user=ann,
        key="older",
        is_deleted=True,
        deleted_at=now - timedelta(days=20, hours=1),
    )
    await make_memory(
        session, user=ann, key="due", is_deleted=True, deleted_at=now - timedelta(days=40)
    )
    await make_memory(session, user=ann, key="alive")
    await make_memory(session, user=bob, key="bobs", is_deleted=True, deleted_at=now)
    await visitor.log_in("ann")
    page = parse(await visitor.get("/trash"))
    rows = {
        row.select_one("a").get_text(): row.select_one(".days-left").get_text(strip=True)
        for row in page.select(".trash-table tbody tr")
    }
    assert rows == {"fresh": "30 days", "older": "10 days", "due": "due now"}
    assert page.select_one(".count").get_text(strip=True) == "3 deleted memories"
    assert page.select_one("a[href^='/trash/purge']") is None, "purge is for admins"


async def test_restore_selected_and_restore_one(session: AsyncSession, visitor: Visitor) -> None:
    ann = await make_user(session, username="ann")
    now = utcnow()
    memories = [
        await make_memory(session, user=ann, key=key, is_deleted=True, deleted_at=now)
        for key in ("a", "b", "c", "d")
    ]
    await visitor.log_in("ann")
    await visitor.get("/trash")
    response = await visitor.post(
        "/trash/restore", {"id": [str(memories[0].id), str(memories[1].id)]}, htmx=True
    )
    assert response.status_code == 200
    assert "Restored 2 memories" in response.text
    assert sorted(a.get_text() for a in parse(response).select(".trash-table tbody a")) == [
        "c",
        "d",
    ]
    one = await visitor.post(
        "/trash/restore", {"id": [str(memories[3].id)], "only": str(memories[2].id)}
    )
    assert one.status_code == 303
    assert await _states(session) == {"a": False, "b": False, "c": False, "d": True}


async def test_purge_now_asks_first_and_is_for_admins(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    await make_user(session, username="root", is_admin=True)
    now = utcnow()
    await make_memory(session, user=ann, key="gone", is_deleted=True, deleted_at=now)
    await make_memory(session, user=ann, key="kept")
    await visitor.log_in("ann")
    assert (await visitor.get("/trash/purge")).status_code == 403
    assert (await visitor.post("/trash/purge", {"confirm": "yes"})).status_code == 403
    assert await _states(session) == {"gone": True, "kept": False}

    await visitor.post("/logout")
    await visitor.log_in("root")
    confirm = parse(await visitor.get("/trash/purge?user=ann"))
    assert "1 deleted memory" in confirm.get_text(" ")
    unconfirmed = await visitor.post("/trash/purge", {"user": "ann"})
    assert unconfirmed.status_code == 303 and "/trash/purge" in unconfirmed.headers["location"]
    assert await _states(session) == {"gone": True, "kept": False}
    done = await visitor.post("/trash/purge", {"user": "ann", "confirm": "yes"})
    assert done.status_code == 303
    assert await _states(session) == {"kept": False}
    purges = select(func.count()).where(MemoryEvent.action == EventAction.purge)
    assert (await session.execute(purges)).scalar_one() == 1
