"""Logging in and out, sessions, CSRF, the login throttle, redirects and security headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.models import LoginThrottle, LongTermMemory, WebSession
from webapp.settings import HTMX_URL
from webapp.types import utcnow


async def _sessions(session: AsyncSession) -> int:
    await session.commit()  # a new transaction: see what the app has written since
    return int((await session.execute(select(func.count()).select_from(WebSession))).scalar_one())


async def test_pages_redirect_to_login_and_back(session: AsyncSession, visitor: Visitor) -> None:
    await make_user(session, username="ann")
    response = await visitor.get("/memories?tag=food")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fmemories%3Ftag%3Dfood"
    form = parse(await visitor.get(response.headers["location"]))
    assert form.select_one("input[name=next]")["value"] == "/memories?tag=food"
    login = await visitor.log_in("ann", next="/memories?tag=food")
    assert login.status_code == 303
    assert login.headers["location"] == "/memories?tag=food"


async def test_htmx_request_without_session_is_sent_to_login(visitor: Visitor) -> None:
    response = await visitor.get("/memories", htmx=True)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


@pytest.mark.parametrize(("username", "password"), [("ann", "wrong password"), ("nobody", "x")])
async def test_wrong_password_and_unknown_user_fail_alike(
    session: AsyncSession, visitor: Visitor, username: str, password: str
) -> None:
    await make_user(session, username="ann")
    response = await visitor.log_in(username, password)
    assert response.status_code == 400
    assert parse(response).select_one("[role=alert]").get_text(strip=True) == (
        "Wrong username or password."
    )
    assert await _sessions(session) == 0


async def test_login_sets_a_safe_cookie_and_a_new_session_each_time(
    session: AsyncSession, open_visitor: Callable[[], Visitor]
) -> None:
    await make_user(session, username="ann")
    visitor = open_visitor()
    first = await visitor.log_in("ann")
    cookie = first.headers["set-cookie"]
    assert "ma_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    old = visitor.client.cookies["ma_session"]
    visitor.client.cookies.delete("ma_session")
    form = parse(await visitor.get("/login"))
    visitor.client.cookies.set("ma_session", old, domain="testserver.local")
    again = await visitor.client.post(
        "/login",
        data={
            "username": "ann",
            "password": "correct horse",
            "csrf_token": form.select_one("input[name=csrf_token]")["value"],
        },
    )
    assert again.status_code == 303
    assert visitor.client.cookies["ma_session"] != old
    assert await _sessions(session) == 1, "logging in again ends the old session"
    stale = open_visitor()
    stale.client.cookies.set("ma_session", old)
    assert (await stale.get("/")).status_code == 303


async def test_login_form_needs_its_csrf_token(session: AsyncSession, visitor: Visitor) -> None:
    await make_user(session, username="ann")
    await visitor.get("/login")
    response = await visitor.client.post(
        "/login", data={"username": "ann", "password": "correct horse", "csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert await _sessions(session) == 0


async def test_logout_ends_the_session_on_the_server(
    session: AsyncSession, open_visitor: Callable[[], Visitor]
) -> None:
    await make_user(session, username="ann")
    visitor = open_visitor()
    await visitor.log_in("ann")
    copied = open_visitor()
    copied.client.cookies.set("ma_session", visitor.client.cookies["ma_session"])
    assert (await copied.get("/")).status_code == 200

    refused = await visitor.post("/logout", csrf=False)
    assert refused.status_code == 403
    assert await _sessions(session) == 1, "a logout without the token changes nothing"

    response = await visitor.post("/logout")
    assert response.status_code == 303
    assert await _sessions(session) == 0
    assert (await copied.get("/")).status_code == 303, "a copied cookie stops working"
    assert (await visitor.get("/memories")).status_code == 303


async def test_five_failures_lock_the_username_even_for_the_right_password(
    session: AsyncSession, open_visitor: Callable[[], Visitor]
) -> None:
    await make_user(session, username="ann")
    for _ in range(5):
        assert (await open_visitor().log_in("ann", "wrong")).status_code == 400
    locked = await open_visitor().log_in("ann")
    assert locked.status_code == 429
    assert "15 minutes" in parse(locked).select_one("[role=alert]").get_text()
    assert await _sessions(session) == 0
    await session.commit()
    row = await session.get(LoginThrottle, "user:ann")
    assert row is not None and row.locked_until is not None
    assert row.locked_until - utcnow() > timedelta(minutes=14)

    await session.execute(
        update(LoginThrottle).values(locked_until=utcnow() - timedelta(seconds=1))
    )
    await session.commit()
    assert (await open_visitor().log_in("ann")).status_code == 303


async def test_five_failures_from_one_address_lock_that_address(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="ann")
    for name in ("a1", "a2", "a3", "a4", "a5"):
        assert (await visitor.log_in(name, "guess")).status_code == 400
    assert (await visitor.log_in("ann")).status_code == 429


@pytest.mark.parametrize(
    ("asked", "landed"),
    [
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/memories?tag=a&tags_mode=all", "/memories?tag=a&tags_mode=all"),
    ],
)
async def test_next_goes_only_to_this_apps_paths(
    session: AsyncSession, visitor: Visitor, asked: str, landed: str
) -> None:
    await make_user(session, username="ann")
    response = await visitor.log_in("ann", next=asked)
    assert response.headers["location"] == landed


async def test_state_changes_need_the_csrf_token(session: AsyncSession, visitor: Visitor) -> None:
    ann = await make_user(session, username="ann")
    memory = await make_memory(session, user=ann)
    await visitor.log_in("ann")
    url = f"/memories/{memory.id}/importance"
    for response in (
        await visitor.post(url, {"importance": "0.9"}, csrf=False),
        await visitor.post(url, {"importance": "0.9", "csrf_token": "forged"}),
        await visitor.post(url, {"importance": "0.9"}, htmx=True, csrf=False),
        await visitor.post(
            url, {"importance": "0.9"}, htmx=True, csrf=False, **{"X-CSRF-Token": "x"}
        ),
    ):
        assert response.status_code == 403
    await session.commit()
    await session.refresh(memory)
    assert memory.importance == 0.5 and memory.version == 1
    assert (await visitor.get(f"/memories/{memory.id}/delete")).status_code == 405


async def test_security_headers_on_every_response(session: AsyncSession, visitor: Visitor) -> None:
    await make_user(session, username="ann")
    anonymous = [await visitor.get("/login"), await visitor.get("/no-such-page")]
    await visitor.log_in("ann")
    pages = [await visitor.get("/"), await visitor.get("/memories", htmx=True)]
    for response in anonymous + pages:
        headers = response.headers
        csp = headers["content-security-policy"]
        assert f"script-src 'self' {HTMX_URL}" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
            assert directive in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"]
        assert "HX-Request" in headers["vary"]
    for response in pages:
        assert response.headers["cache-control"] == "no-store"


async def test_page_loads_the_pinned_htmx_with_its_integrity(
    session: AsyncSession, visitor: Visitor
) -> None:
    page = parse(await visitor.get("/login"))
    script = page.select_one(f'script[src="{HTMX_URL}"]')
    assert script is not None
    assert script["integrity"].startswith("sha384-") and script["crossorigin"] == "anonymous"
    assert not [tag for tag in page.select("script") if tag.string and tag.string.strip()], (
        "no inline scripts: the CSP would block them"
    )


async def test_a_body_over_the_limit_is_refused_and_changes_nothing(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    memory = await make_memory(session, user=ann)
    await visitor.log_in("ann")
    response = await visitor.post(
        f"/memories/{memory.id}/edit", {"content": "x" * (2 * 1024 * 1024), "version": "1"}
    )
    assert response.status_code == 413
    await session.commit()
    await session.refresh(memory)
    assert memory.version == 1
    count = select(func.count()).select_from(LongTermMemory)
    assert (await session.execute(count)).scalar_one() == 1
