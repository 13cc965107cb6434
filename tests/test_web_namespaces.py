"""The namespace tree page: whose namespaces, the figures per node, the links, 404s."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from bs4 import Tag
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.types import utcnow


def _figures(block: Tag) -> dict[str, str]:
    return {
        item.select_one("dt").get_text(strip=True): item.select_one("dd").get_text(strip=True)
        for item in block.select(".ns-figures > div")
    }


def _node(page: Tag, namespace: str) -> Tag:
    found = page.select_one(f'li[data-namespace="{namespace}"]')
    assert found is not None, namespace
    return found


async def _alice_and_bob(session: AsyncSession) -> None:
    alice = await make_user(session, username="alice")
    bob = await make_user(session, username="bob")
    past = utcnow() - timedelta(days=1)
    await make_memory(session, user=alice, namespace="projects", importance=0.4)
    await make_memory(session, user=alice, namespace="projects/apollo", importance=0.2)
    await make_memory(session, user=alice, namespace="projects/apollo", importance=0.6)
    await make_memory(session, user=alice, namespace="projects/apollo", expires_at=past)
    await make_memory(
        session, user=alice, namespace="projects/zeus/x", is_deleted=True, deleted_at=past
    )
    await make_memory(session, user=bob, namespace="bobs/notes")


async def test_user_sees_own_tree_with_own_and_subtree_figures(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _alice_and_bob(session)
    await visitor.log_in("alice")
    page = parse(await visitor.get("/namespaces"))
    assert page.select_one("h1").get_text(strip=True) == "Your namespaces"
    assert page.select_one('nav a[aria-current="page"]').get_text() == "Namespaces"
    assert page.select_one('li[data-namespace="bobs"]') is None, "only alice's own"
    top = _node(page, "projects")
    own = top.select_one(":scope > .ns-node .ns-own")
    total = top.select_one(":scope > .ns-node .ns-total")
    assert _figures(own) == {
        "Active": "1",
        "Expired": "0",
        "Deleted": "0",
        "Mean importance": "0.40",
        "Last write": _figures(own)["Last write"],
    }
    assert _figures(total)["Active"] == "3"
    assert (_figures(total)["Expired"], _figures(total)["Deleted"]) == ("1", "1")
    assert _figures(total)["Mean importance"] == "0.40"
    apollo = _node(top, "projects/apollo")
    assert apollo.select_one(".ns-total") is None, "a leaf has no subtree figures"
    assert _figures(apollo)["Active"] == "2" and _figures(apollo)["Mean importance"] == "0.40"
    zeus = _node(top, "projects/zeus")
    assert "no memories of its own" in zeus.select_one(".ns-total").get_text()
    assert zeus.select_one(":scope > .ns-node .ns-exact") is None, "not a namespace itself"
    assert page.select_one(".count").get_text(strip=True) == "3 namespaces"


async def test_links_filter_the_browser_by_namespace_and_subtree(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _alice_and_bob(session)
    await make_user(session, username="root", is_admin=True)
    await visitor.log_in("root")
    page = parse(await visitor.get("/namespaces?user=alice"))
    assert page.select_one("h1").get_text(strip=True) == "alice’s namespaces"
    top = _node(page, "projects")
    exact = parse_qs(urlsplit(top.select_one(".ns-exact")["href"]).query)
    subtree = parse_qs(urlsplit(top.select_one(".ns-subtree")["href"]).query)
    assert exact == {"namespace": ["projects"], "user": ["alice"]}
    assert subtree == {"namespace": ["projects/"], "user": ["alice"]}
    listed = parse(await visitor.get(top.select_one(".ns-subtree")["href"]))
    assert listed.select_one(".count").get_text(strip=True).startswith("3 ")


async def test_admin_chooses_a_user_from_those_with_memories(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _alice_and_bob(session)
    await make_user(session, username="root", is_admin=True)
    await visitor.log_in("root")
    page = parse(await visitor.get("/namespaces"))
    assert page.select_one("h1").get_text(strip=True) == "Namespaces: choose a user"
    rows = {
        row.select_one("th a").get_text(): [td.get_text() for td in row.select("td")]
        for row in page.select(".ns-owners tbody tr")
    }
    assert rows == {"alice": ["3", "4", "1"], "bob": ["1", "1", "0"]}, "root has none"
    assert page.select_one("form input[name=user]") is not None
    bob = parse(await visitor.get(page.select_one(".ns-owners a[href$='user=bob']")["href"]))
    assert [node["data-namespace"] for node in bob.select("li.ns-item")] == [
        "bobs",
        "bobs/notes",
    ]
    missing = await visitor.get("/namespaces?user=nobody")
    assert missing.status_code == 404


async def test_another_users_tree_is_404_for_a_non_admin(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _alice_and_bob(session)
    await visitor.log_in("alice")
    assert (await visitor.get("/namespaces?user=bob")).status_code == 404
    assert (await visitor.get("/namespaces?user=nobody")).status_code == 404
    own = parse(await visitor.get("/namespaces?user=alice"))
    assert own.select_one('li[data-namespace="projects"]') is not None
    assert own.select_one("form input[name=user]") is None, "the chooser is for admins"


async def test_empty_state_htmx_fragment_and_dashboard_link(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="carol")
    await visitor.log_in("carol")
    page = parse(await visitor.get("/namespaces"))
    assert "No namespaces yet" in page.select_one(".empty").get_text()
    fragment = await visitor.get("/namespaces", htmx=True)
    assert "<html" not in fragment.text and "No namespaces yet" in fragment.text
    dashboard = parse(await visitor.get("/"))
    assert dashboard.select_one('.stat-grid a[href="/namespaces"]') is not None


async def test_logged_out_visitor_is_sent_to_login(visitor: Visitor) -> None:
    response = await visitor.get("/namespaces")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
