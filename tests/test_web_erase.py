"""The erase page: preview counts, typed confirmation, admins only, CSRF, with and without htmx."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_token, make_user
from tests.web_support import Visitor, parse
from webapp.models import LongTermMemory, User
from webapp.models_admin import AdminEvent


async def _count(session: AsyncSession, model: type) -> int:
    await session.commit()  # a fresh snapshot
    return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _two_users(session: AsyncSession) -> None:
    await make_user(session, username="root", is_admin=True)
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, key="a1")
    await make_memory(session, user=ann, key="a2", is_deleted=True)
    await make_token(session, user=ann, name="agent")


async def test_users_list_links_to_the_erase_page_with_the_counts(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _two_users(session)
    await visitor.log_in("root")
    users = parse(await visitor.get("/users"))
    link = users.select_one("a.erase-link[href='/users/ann/erase']")
    assert link is not None
    account = parse(await visitor.get("/users/ann"))
    assert account.select_one("a[href='/users/ann/erase']") is not None
    own_account = parse(await visitor.get("/users/root"))
    assert own_account.select_one("a[href='/users/root/erase']") is None, "nobody erases themselves"
    page = parse(await visitor.get("/users/ann/erase"))
    numbers = {
        key: page.select_one(f"#erase-{key}").get_text(strip=True)
        for key in ("memories", "events", "tokens", "sessions")
    }
    assert numbers == {"memories": "2", "events": "0", "tokens": "1", "sessions": "0"}
    assert page.select_one("form input[name=confirm_username]") is not None
    assert page.select_one("form input[name=csrf_token]") is not None


async def test_wrong_confirmation_is_422_with_the_message_and_changes_nothing(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _two_users(session)
    await visitor.log_in("root")
    await visitor.get("/users/ann/erase")
    for htmx in (False, True):
        response = await visitor.post("/users/ann/erase", {"confirm_username": "Ann"}, htmx=htmx)
        assert response.status_code == 422
        page = parse(response)
        assert "Type the username 'ann' exactly" in page.select_one("#erase-error").get_text()
        assert page.select_one("input[name=confirm_username]")["value"] == "Ann"
        assert (page.select_one("html") is None) == htmx, "htmx gets the form area only"
    assert await _count(session, User) == 2
    assert await _count(session, LongTermMemory) == 2


async def test_right_confirmation_erases_and_redirects_with_the_counts(
    session: AsyncSession, visitor: Visitor, open_visitor: Callable[[], Visitor]
) -> None:
    await _two_users(session)
    ann_browser = open_visitor()
    await ann_browser.log_in("ann")
    assert (await ann_browser.get("/memories")).status_code == 200
    await visitor.log_in("root")
    await visitor.get("/users/ann/erase")
    response = await visitor.post("/users/ann/erase", {"confirm_username": "ann"})
    assert response.status_code == 303 and response.headers["location"] == "/users"
    users = parse(await visitor.get("/users"))
    assert (
        users.select_one(".flash").get_text(" ", strip=True)
        == "Erased user ann: 2 memories, 0 events, 1 tokens."
    )
    assert [a.get_text() for a in users.select(".users-table tbody th a")] == ["root"]
    assert await _count(session, LongTermMemory) == 0
    assert await _count(session, AdminEvent) == 1
    assert (await visitor.get("/users/ann/erase")).status_code == 404
    logged_out = await ann_browser.get("/memories")
    assert logged_out.status_code == 303 and logged_out.headers["location"].startswith("/login")


async def test_htmx_success_sends_the_browser_to_the_users_list(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _two_users(session)
    await visitor.log_in("root")
    await visitor.get("/users/ann/erase")
    response = await visitor.post("/users/ann/erase", {"confirm_username": "ann"}, htmx=True)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/users"
    assert await _count(session, User) == 1


async def test_non_admins_are_refused_and_csrf_is_checked(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _two_users(session)
    await make_user(session, username="bob")
    await visitor.log_in("bob")
    assert (await visitor.get("/users/ann/erase")).status_code == 403
    assert (await visitor.post("/users/ann/erase", {"confirm_username": "ann"})).status_code == 403
    await visitor.post("/logout")
    await visitor.log_in("root")
    await visitor.get("/users/ann/erase")
    forged = await visitor.post("/users/ann/erase", {"confirm_username": "ann"}, csrf=False)
    assert forged.status_code == 403
    assert await _count(session, User) == 3
    assert (await visitor.get("/users/nobody/erase")).status_code == 404


async def test_the_page_refuses_to_erase_oneself(session: AsyncSession, visitor: Visitor) -> None:
    await _two_users(session)
    await visitor.log_in("root")
    page = parse(await visitor.get("/users/root/erase"))
    assert "cannot erase yourself" in page.select_one("#erase-refusal").get_text()
    assert page.select_one("input[name=confirm_username]") is None
    await visitor.get("/users/ann/erase")
    response = await visitor.post("/users/root/erase", {"confirm_username": "root"})
    assert response.status_code == 409
    assert await _count(session, User) == 2
