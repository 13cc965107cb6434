"""The dashboard and the users list."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.types import utcnow


async def test_dashboard_counts_and_lists(session: AsyncSession, visitor: Visitor) -> None:
    ann = await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    now = utcnow()
    await make_memory(session, user=ann, key="soon", expires_at=now + timedelta(days=2))
    await make_memory(session, user=ann, key="read", access_count=7, last_accessed_at=now)
    await make_memory(session, user=ann, key="over", expires_at=now - timedelta(days=1))
    await make_memory(session, user=ann, key="gone", is_deleted=True, deleted_at=now)
    await make_memory(session, user=bob, key="bobs")
    await visitor.log_in("ann")
    page = parse(await visitor.get("/"))
    stats = {
        stat.select_one(".stat-label").get_text(): stat.select_one(".stat-value").get_text()
        for stat in page.select(".stat")
    }
    assert stats == {"active": "2", "expired": "1", "in Trash": "1", "namespaces": "1"}
    soon = page.select_one("#soon-head").find_parent("section")
    assert [a.get_text() for a in soon.select("a")] == ["soon"]
    most_read = page.select_one("#read-head").find_parent("section")
    assert [a.get_text() for a in most_read.select("a")] == ["read"]


async def test_dashboard_of_an_empty_store_says_what_to_do(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="ann")
    await visitor.log_in("ann")
    page = parse(await visitor.get("/"))
    assert "No memories yet" in page.get_text()


async def test_users_list_with_counts_and_search(session: AsyncSession, visitor: Visitor) -> None:
    ann = await make_user(session, username="ann")
    await make_user(session, username="annabel")
    await make_user(session, username="root", is_admin=True)
    await make_memory(session, user=ann, key="a")
    await make_memory(session, user=ann, key="b", is_deleted=True, deleted_at=utcnow())
    await visitor.log_in("root")
    page = parse(await visitor.get("/users"))
    rows = {
        row.select_one("th a").get_text(): [td.get_text(strip=True) for td in row.select("td")][:3]
        for row in page.select(".users-table tbody tr")
    }
    assert rows == {"ann": ["1", "0", "1"], "annabel": ["0", "0", "0"], "root": ["0", "0", "0"]}
    found = parse(await visitor.get("/users?q=nab", htmx=True))
    assert [a.get_text() for a in found.select("tbody th a")] == ["annabel"]
    assert found.select_one("html") is None
    none = parse(await visitor.get("/users?q=%25"))
    assert "No user matches" in none.get_text()


async def test_an_empty_store_says_how_memories_arrive(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="ann")
    await visitor.log_in("ann")
    empty = parse(await visitor.get("/memories")).select_one("#results .empty").get_text()
    assert "No memories yet" in empty and "memory-admin import" in empty
    filtered = parse(await visitor.get("/memories?tag=x")).select_one("#results .empty")
    assert "No memories match these filters" in filtered.get_text()
