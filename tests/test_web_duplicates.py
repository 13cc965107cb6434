"""The /duplicates page: who sees whose groups, the threshold, merge and dismiss forms."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from tests.test_duplicates import PARIS, TEA, TEA_2, embed
from tests.web_support import Visitor, parse
from webapp.db import Database
from webapp.models import LongTermMemory, User
from webapp.services import duplicates, vectors

pytestmark = pytest.mark.skipif(not vectors.enabled(), reason="the embedding model is missing")


async def _people(db: AsyncEngine, session: AsyncSession) -> tuple[User, list[LongTermMemory]]:
    """alice with two near duplicates (and Paris), bob with one memory, an admin."""
    alice = await make_user(session, username="alice")
    bob = await make_user(session, username="bob")
    await make_user(session, username="root", is_admin=True)
    made = [
        await make_memory(session, user=alice, key="tea", content=TEA, tags=["x"]),
        await make_memory(session, user=alice, key="tea2", content=TEA_2, importance=0.8),
        await make_memory(session, user=alice, key="paris", content=PARIS),
        await make_memory(session, user=bob, key="bobtea", content=TEA),
    ]
    await embed(Database(db), made)
    return alice, made


async def test_own_groups_threshold_and_404s(
    db: AsyncEngine, session: AsyncSession, visitor: Visitor
) -> None:
    await _people(db, session)
    await visitor.log_in("alice")
    page = parse(await visitor.get("/duplicates"))
    assert page.select_one('nav a[aria-current="page"]').get_text() == "Duplicates"  # type: ignore[union-attr]
    (group,) = page.select(".dup-group")
    keys = [a.get_text() for a in group.select(".dup-members a")]
    assert keys == ["facts / tea", "facts / tea2"]
    assert page.select_one("#dup-threshold")["value"] == "0.90"  # type: ignore[index]
    assert (await visitor.get("/duplicates?user=bob")).status_code == 404
    assert (await visitor.get("/duplicates?user=alice")).status_code == 200
    for bad in ("0.5", "2", "abc"):
        response = await visitor.get(f"/duplicates?threshold={bad}")
        assert response.status_code == 400
        assert "threshold must" in response.text


async def test_admin_picks_a_user(db: AsyncEngine, session: AsyncSession, visitor: Visitor) -> None:
    await _people(db, session)
    await visitor.log_in("root")
    page = parse(await visitor.get("/duplicates"))
    assert [a.get_text() for a in page.select(".dup-owners a")] == ["alice", "bob"]
    page = parse(await visitor.get("/duplicates?user=alice"))
    assert len(page.select(".dup-group")) == 1
    assert (await visitor.get("/duplicates?user=nobody")).status_code == 404


async def test_merge_preview_confirm_and_stale(
    db: AsyncEngine, session: AsyncSession, visitor: Visitor
) -> None:
    _, made = await _people(db, session)
    tea, tea2 = made[0], made[1]
    await visitor.log_in("alice")
    await visitor.get("/duplicates")
    fields = {"ids": [str(tea.id), str(tea2.id)], "threshold": "0.90"}
    assert (await visitor.post("/duplicates/merge", fields, csrf=False)).status_code == 403
    preview = parse(await visitor.post("/duplicates/merge", fields))
    assert preview.select_one("input[name=keep][checked]")["value"] == str(tea2.id)  # type: ignore[index]
    fingerprint = preview.select_one("input[name=fingerprint]")["value"]  # type: ignore[index]
    stale = await visitor.post(
        "/duplicates/merge/apply", {**fields, "keep": str(tea.id), "fingerprint": "0-x"}
    )
    assert stale.status_code == 409
    done = await visitor.post(
        "/duplicates/merge/apply", {**fields, "keep": str(tea.id), "fingerprint": fingerprint}
    )
    assert done.status_code == 303
    async with AsyncSession(db) as check:
        rows = {m.key: m for m in await check.scalars(select(LongTermMemory))}
    assert not rows["tea"].is_deleted and rows["tea2"].is_deleted
    assert rows["tea"].importance == 0.8
    page = parse(await visitor.get("/duplicates"))
    assert page.select(".dup-group") == []


async def test_dismiss_and_another_users_ids(
    db: AsyncEngine, session: AsyncSession, visitor: Visitor
) -> None:
    _, made = await _people(db, session)
    await visitor.log_in("alice")
    await visitor.get("/duplicates")
    theirs = {"ids": [str(made[0].id), str(made[3].id)]}
    assert (await visitor.post("/duplicates/dismiss", theirs)).status_code == 404
    assert (await visitor.post("/duplicates/merge", theirs)).status_code == 404
    ours = {"ids": [str(made[0].id), str(made[1].id)]}
    assert (await visitor.post("/duplicates/dismiss", ours, csrf=False)).status_code == 403
    assert (await visitor.post("/duplicates/dismiss", ours)).status_code == 303
    assert parse(await visitor.get("/duplicates")).select(".dup-group") == []


async def test_while_memories_wait_the_page_says_so_and_keeps_the_last_groups(
    db: AsyncEngine, session: AsyncSession, visitor: Visitor
) -> None:
    """The background embedder refreshes the forest once the queue is empty; until then
    the page shows the groups as they were and how many memories wait."""
    alice, _ = await _people(db, session)
    await visitor.log_in("alice")
    assert len(parse(await visitor.get("/duplicates")).select(".dup-group")) == 1
    await make_memory(session, user=alice, key="paris2", content=PARIS)
    page = parse(await visitor.get("/duplicates"))
    assert "1 memory waits for its vector" in page.select_one(".alert.waiting").get_text()  # type: ignore[union-attr]
    assert len(page.select(".dup-group")) == 1, "the new memory has no vector yet"

    database = Database(db)
    assert await vectors.drain(database) == 1
    page = parse(await visitor.get("/duplicates"))
    assert page.select_one(".alert.waiting") is None
    assert len(page.select(".dup-group")) == 2, "the queue is empty: the page refreshes"


async def test_many_new_vectors_are_compared_in_the_background(
    db: AsyncEngine, session: AsyncSession, visitor: Visitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More new vectors than INLINE_REFRESH: the view starts the refresh in the
    background, says so and shows the groups of before; a later view has them."""
    alice, _ = await _people(db, session)
    await visitor.log_in("alice")
    assert len(parse(await visitor.get("/duplicates")).select(".dup-group")) == 1
    monkeypatch.setattr(duplicates, "INLINE_REFRESH", 0)
    await make_memory(session, user=alice, key="paris2", content=PARIS)
    assert await vectors.drain(Database(db)) == 1

    page = parse(await visitor.get("/duplicates"))
    assert "being compared" in page.select_one(".alert.waiting").get_text()  # type: ignore[union-attr]
    assert len(page.select(".dup-group")) == 1
    assert alice.id is not None
    async with asyncio.timeout(30):
        while duplicates.refreshing(alice.id):
            await asyncio.sleep(0.01)
    page = parse(await visitor.get("/duplicates"))
    assert page.select_one(".alert.waiting") is None
    assert len(page.select(".dup-group")) == 2
