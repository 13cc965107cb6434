"""Erasing a user (services/erase.py): nothing of theirs is left anywhere in the database,
one content-free admin_event records it, and the refusals change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.erase_support import places_holding, plant
from tests.factories import make_memory, make_token, make_user
from webapp.db import Database
from webapp.errors import Conflict, InvalidInput, NotFound
from webapp.models import (
    LoginThrottle,
    LongTermMemory,
    MemoryEvent,
    MemoryUpdate,
    User,
    WebSession,
)
from webapp.models_admin import AdminAction, AdminEvent
from webapp.services.erase import ERASED_ACTOR, erase_user, preview_erasure
from webapp.services.memories import update_memory
from webapp.services.principal import Principal
from webapp.types import utcnow

WORD = "zqxplantedword"
NAME = "vicqzname"


async def _setup(session: AsyncSession) -> tuple[User, User, User, int]:
    """root (admin), victim (an admin too, with a planted memory, a token, a session, a
    throttle row, an edit of bob's memory) and bob; returns them and bob's memory id."""
    root = await make_user(session, username="root", is_admin=True)
    victim = await make_user(session, username=NAME, is_admin=True)
    bob = await make_user(session, username="bob")
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    db = Database(engine)
    planted = await plant(engine, session_user=victim, word=WORD)
    # root edits the victim's memory: the event is about the victim's content, so it goes.
    await update_memory(
        db,
        principal=Principal.of_user(root),
        memory_id=planted,
        changes=MemoryUpdate(tags=[WORD, "checked"]),
    )
    await make_memory(session, user=victim, key="old", is_deleted=True, deleted_at=utcnow())
    bobs = await make_memory(session, user=bob, key="bobs", content="bob likes tea")
    assert bobs.id is not None
    # The victim edits bob's memory: bob's history keeps the event, not the victim's name.
    await update_memory(
        db,
        principal=Principal.of_user(victim),
        memory_id=bobs.id,
        changes=MemoryUpdate(content="bob likes green tea"),
    )
    await make_token(session, user=victim, name=f"token {WORD}")
    now = utcnow()
    assert victim.id is not None
    session.add(
        WebSession(
            id="s" * 64,
            user_id=victim.id,
            csrf_token="c" * 40,
            expires_at=now + timedelta(hours=1),
        )
    )
    session.add(LoginThrottle(key=f"user:{NAME}", failures=2, window_started_at=now))
    await session.commit()
    return root, victim, bob, bobs.id


async def test_erase_leaves_nothing_of_the_user_anywhere(session: AsyncSession) -> None:
    root, victim, _bob, bobs_id = await _setup(session)
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    db = Database(engine)
    before = await places_holding(engine, WORD)
    # The search can see the planted word in the table, the events, the tags side table
    # and the full-text index (on SQLite); else its "nothing" below would prove nothing.
    assert {"long_term_memory", "memory_event", "api_token"} <= set(before)
    if engine.dialect.name == "sqlite":
        assert {"memory_tag", "long_term_memory_fts_data"} <= set(before)
    assert await places_holding(engine, NAME)

    admin = Principal.of_user(root)
    preview = await preview_erasure(db, principal=admin, username=NAME)
    assert (preview.counts.memories, preview.counts.tokens, preview.counts.sessions) == (2, 1, 1)
    # create + edit + root's tag edit of the planted memory (make_memory writes no event)
    assert preview.counts.events == 3
    assert preview.counts.authored_events == 1

    erased = await erase_user(db, principal=admin, username=NAME, confirm_username=NAME)

    assert erased.counts == preview.counts
    if engine.dialect.name == "sqlite":  # the erasure's own index upkeep put the trigger back
        async with engine.connect() as conn:
            triggers = await conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE name = 'long_term_memory_ad_search'"
            )
            assert triggers.all() == [("long_term_memory_ad_search",)]
    assert await places_holding(engine, WORD) == []
    assert await places_holding(engine, NAME) == []
    kept = (
        await session.execute(select(MemoryEvent).where(MemoryEvent.memory_id == bobs_id))
    ).scalar_one()
    assert (kept.actor, kept.actor_user_id, kept.actor_token_id) == (ERASED_ACTOR, None, None)
    record = (await session.execute(select(AdminEvent))).scalar_one()
    assert record.action == AdminAction.erase_user
    assert (record.actor, record.actor_user_id) == ("user:root", root.id)
    assert record.subject_user_id == victim.id
    assert record.details == {
        "memories": 2,
        "events": 3,
        "tokens": 1,
        "sessions": 1,
        "authored_events": 1,
    }


async def test_a_wrong_confirmation_changes_nothing(session: AsyncSession) -> None:
    root, _victim, _bob, _ = await _setup(session)
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    db = Database(engine)
    before = sorted(await places_holding(engine, WORD))
    with pytest.raises(InvalidInput, match="Type the username"):
        await erase_user(
            db, principal=Principal.of_user(root), username=NAME, confirm_username=NAME.upper()
        )
    assert sorted(await places_holding(engine, WORD)) == before
    assert (await session.execute(select(func.count()).select_from(AdminEvent))).scalar_one() == 0


async def test_the_last_admin_and_oneself_cannot_be_erased(session: AsyncSession) -> None:
    root = await make_user(session, username="root", is_admin=True)
    other = await make_user(session, username="other", is_admin=True)
    db = Database(session.bind)  # type: ignore[arg-type]
    as_root = Principal.of_user(root)
    with pytest.raises(Conflict, match="cannot erase yourself"):
        await erase_user(db, principal=as_root, username="root", confirm_username="root")
    other.is_admin = False
    session.add(other)
    await session.commit()
    operator = Principal.operator()
    preview = await preview_erasure(db, principal=operator, username="root")
    assert preview.refusal is not None and "last active admin" in preview.refusal
    with pytest.raises(Conflict, match="last active admin"):
        await erase_user(db, principal=operator, username="root", confirm_username="root")
    users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    assert users == 2
    await session.commit()  # end the read snapshot of the count above
    await erase_user(db, principal=operator, username="other", confirm_username="other")
    assert (await session.execute(select(func.count()).select_from(User))).scalar_one() == 1


async def test_only_admins_see_or_erase_and_unknown_users_are_not_found(
    session: AsyncSession,
) -> None:
    ann = await make_user(session, username="ann")
    await make_user(session, username="bob")
    await make_memory(session, user=ann, key="mine")
    db = Database(session.bind)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await preview_erasure(db, principal=Principal.of_user(ann), username="bob")
    with pytest.raises(NotFound):
        await erase_user(
            db, principal=Principal.of_user(ann), username="bob", confirm_username="bob"
        )
    with pytest.raises(NotFound):
        await preview_erasure(db, principal=Principal.operator(), username="nobody")
    with pytest.raises(NotFound):
        await preview_erasure(db, principal=Principal.operator(), username="bad name!")
    left = await session.execute(select(func.count()).select_from(LongTermMemory))
    assert left.scalar_one() == 1
