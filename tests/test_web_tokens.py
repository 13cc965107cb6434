"""The API tokens page: list scoped to the visitor, create with the secret shown once,
revoke with confirmation; the API honours what the page did."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.api_support import OpenClient
from tests.factories import make_token, make_user
from tests.web_support import Visitor, parse
from webapp.models import ApiToken
from webapp.web import tokens as web_tokens


async def _tokens(session: AsyncSession) -> list[ApiToken]:
    await session.commit()
    return list((await session.execute(select(ApiToken).order_by(ApiToken.id))).scalars())


def _names(page: BeautifulSoup) -> list[str]:
    return [cell.get_text(strip=True) for cell in page.select(".tokens-table tbody th")]


def _create_form(page: BeautifulSoup) -> dict[str, Any]:
    """The create form's hidden fields, as the browser would send them back."""
    form = page.select_one("form.token-create")
    assert form is not None
    return {field["name"]: field["value"] for field in form.select("input[type=hidden]")}


def _secret(response: httpx.Response) -> str:
    field = parse(response).select_one("input#token-secret")
    assert field is not None, response.text
    return str(field["value"])


async def test_a_user_sees_only_their_tokens_an_admin_everyones(
    session: AsyncSession, visitor: Visitor, open_visitor: Any
) -> None:
    ann = await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    await make_user(session, username="root", is_admin=True)
    await make_token(session, user=ann, name="ann-laptop")
    await make_token(session, user=bob, name="bob-ci")
    await visitor.log_in("ann")

    page = parse(await visitor.get("/tokens"))
    assert _names(page) == ["ann-laptop"]
    assert page.select_one(".last-used").get_text(strip=True) == "never"
    assert page.select_one(".token-state").get_text(strip=True) == "active"
    assert page.select_one("#token-owner") is None, "only admins choose an owner"
    assert _names(parse(await visitor.get("/tokens?user=bob"))) == []

    admin = open_visitor()
    await admin.log_in("root")
    everyone = parse(await admin.get("/tokens"))
    assert sorted(_names(everyone)) == ["ann-laptop", "bob-ci"]
    assert _names(parse(await admin.get("/tokens?user=bob"))) == ["bob-ci"]
    nav = [link.get_text() for link in everyone.select("nav.site-nav a")]
    assert nav.index("Tokens") == nav.index("Trash") + 1


async def test_create_shows_the_secret_once_and_it_works_on_the_api(
    session: AsyncSession, visitor: Visitor, open_client: OpenClient
) -> None:
    await make_user(session, username="ann")
    await visitor.log_in("ann")
    form = _create_form(parse(await visitor.get("/tokens")))

    created = await visitor.post("/tokens", {**form, "name": "  laptop agent "})

    assert created.status_code == 200, "the answer itself carries the secret: no redirect"
    assert created.headers["cache-control"] == "no-store"
    secret = _secret(created)
    assert _names(parse(created)) == ["laptop agent"]
    api = open_client(Authorization=f"Bearer {secret}")
    assert (await api.get("/memories")).status_code == 200
    listed = parse(await visitor.get("/tokens"))
    assert listed.select_one("#token-secret") is None
    assert secret not in str(listed)
    assert listed.select_one(".last-used").get_text(strip=True) != "never"
    [token] = await _tokens(session)
    assert token.name == "laptop agent" and secret not in token.token_hash


async def test_sending_the_create_form_again_creates_nothing(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="ann")
    await visitor.log_in("ann")
    form = {**_create_form(parse(await visitor.get("/tokens"))), "name": "ci"}
    first = await visitor.post("/tokens", form)
    assert first.status_code == 200

    again = await visitor.post("/tokens", form)  # what reloading the answer does

    assert again.status_code == 409
    assert parse(again).select_one("#token-secret") is None
    assert "sent again" in parse(again).select_one("[role=alert]").get_text()
    assert len(await _tokens(session)) == 1
    fresh = {**_create_form(parse(first)), "name": "ci"}
    assert (await visitor.post("/tokens", fresh)).status_code == 200, "a new form may"
    assert len(await _tokens(session)) == 2


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * 101, "a\x00b"], ids=["empty", "blank", "too long", "control"]
)
async def test_a_bad_name_is_422_inline(session: AsyncSession, visitor: Visitor, name: str) -> None:
    await make_user(session, username="ann")
    await visitor.log_in("ann")
    form = _create_form(parse(await visitor.get("/tokens")))
    for htmx in (False, True):
        response = await visitor.post("/tokens", {**form, "name": name}, htmx=htmx)
        assert response.status_code == 422
        page = parse(response)
        field = page.select_one("#token-name")
        assert field is not None and field.get("aria-invalid") == "true"
        assert "name" in page.select_one("#token-name-error").get_text()
        assert page.select_one("#token-secret") is None
        assert (page.select_one("h1") is None) == htmx, "htmx gets the fragment only"
    assert await _tokens(session) == []


async def test_an_admin_creates_for_another_user_and_an_unknown_owner_is_422(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="root", is_admin=True)
    bob = await make_user(session, username="bob")
    await visitor.log_in("root")
    form = _create_form(parse(await visitor.get("/tokens")))

    unknown = await visitor.post("/tokens", {**form, "name": "x", "owner": "nobody"})
    assert unknown.status_code == 422
    assert "nobody" in parse(unknown).select_one("#token-owner-error").get_text()

    made = await visitor.post("/tokens", {**form, "name": "bob-agent", "owner": "bob"})
    assert made.status_code == 200
    [token] = await _tokens(session)
    assert (token.name, token.user_id) == ("bob-agent", bob.id)


async def test_a_user_cannot_create_a_token_for_someone_else(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="ann")
    await make_user(session, username="bob")
    await visitor.log_in("ann")
    form = _create_form(parse(await visitor.get("/tokens")))
    response = await visitor.post("/tokens", {**form, "name": "x", "owner": "bob"})
    assert response.status_code == 404
    assert await _tokens(session) == []


async def test_revoke_asks_then_revokes_with_a_redirect_and_the_api_refuses_it(
    session: AsyncSession, visitor: Visitor, open_client: OpenClient
) -> None:
    ann = await make_user(session, username="ann")
    token, secret = await make_token(session, user=ann, name="old")
    api = open_client(Authorization=f"Bearer {secret}")
    assert (await api.get("/memories")).status_code == 200
    await visitor.log_in("ann")

    confirm = await visitor.get(f"/tokens/{token.id}/revoke")
    assert confirm.status_code == 200
    assert (await _tokens(session))[0].revoked_at is None, "GET changes nothing"
    assert parse(confirm).select_one("main h1").get_text() == "Revoke the token “old”?"
    form = parse(confirm).select_one("form[action$='/revoke']")
    assert form is not None and form["method"] == "post"
    dialog = await visitor.get(f"/tokens/{token.id}/revoke", htmx=True)
    assert parse(dialog).select_one("h1") is None
    assert parse(dialog).select_one("[role=dialog] button").get_text() == "Revoke token"

    done = await visitor.post(f"/tokens/{token.id}/revoke")

    assert done.status_code == 303 and done.headers["location"] == "/tokens"
    assert (await api.get("/memories")).status_code == 401
    after = await visitor.get("/tokens")
    assert "Revoked the token “old”" in parse(after).select_one("#status").get_text()
    assert parse(after).select_one(".token-state").get_text(" ", strip=True).startswith("revoked")
    assert parse(after).select_one(".revoke-link") is None


async def test_revoke_with_htmx_answers_the_list(session: AsyncSession, visitor: Visitor) -> None:
    ann = await make_user(session, username="ann")
    token, _secret = await make_token(session, user=ann, name="old")
    await visitor.log_in("ann")
    await visitor.get("/tokens")
    response = await visitor.post(f"/tokens/{token.id}/revoke", htmx=True)
    assert response.status_code == 200
    page = parse(response)
    assert page.select_one("h1") is None
    assert "Revoked the token" in page.select_one("#status[hx-swap-oob]").get_text()
    assert (await _tokens(session))[0].revoked_at is not None


async def test_another_users_token_is_404_and_stays_active(
    session: AsyncSession, visitor: Visitor, open_visitor: Any
) -> None:
    await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    await make_user(session, username="root", is_admin=True)
    token, _secret = await make_token(session, user=bob, name="bobs")
    await visitor.log_in("ann")
    assert (await visitor.get(f"/tokens/{token.id}/revoke")).status_code == 404
    assert (await visitor.post(f"/tokens/{token.id}/revoke")).status_code == 404
    assert (await visitor.get("/tokens/99999999999/revoke")).status_code == 404
    assert (await visitor.get("/tokens/abc/revoke")).status_code == 404
    assert (await _tokens(session))[0].revoked_at is None

    admin = open_visitor()
    await admin.log_in("root")
    assert (await admin.get(f"/tokens/{token.id}/revoke")).status_code == 200
    assert (await admin.post(f"/tokens/{token.id}/revoke")).status_code == 303
    assert (await _tokens(session))[0].revoked_at is not None


async def test_create_and_revoke_need_the_csrf_token(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    token, _secret = await make_token(session, user=ann, name="old")
    await visitor.log_in("ann")
    form = _create_form(parse(await visitor.get("/tokens")))
    del form["csrf_token"]
    assert (await visitor.post("/tokens", {**form, "name": "x"}, csrf=False)).status_code == 403
    revoke = await visitor.post(f"/tokens/{token.id}/revoke", csrf=False)
    assert revoke.status_code == 403
    revoke = await visitor.post(f"/tokens/{token.id}/revoke", {"csrf_token": "forged"}, csrf=False)
    assert revoke.status_code == 403
    [kept] = await _tokens(session)
    assert kept.revoked_at is None


async def test_the_tokens_page_needs_a_login(visitor: Visitor) -> None:
    response = await visitor.get("/tokens")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Ftokens"


async def test_a_long_list_says_it_is_cut_short(
    session: AsyncSession, visitor: Visitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_tokens, "LIST_LIMIT", 2)
    ann = await make_user(session, username="ann")
    for name in ("one", "two", "three"):
        await make_token(session, user=ann, name=name)
    await visitor.log_in("ann")
    page = parse(await visitor.get("/tokens"))
    assert len(_names(page)) == 2
    assert "Showing the first 2 tokens" in page.get_text()
