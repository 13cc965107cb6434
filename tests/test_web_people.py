"""The people pages (admins): create users, set passwords, make or unmake admins, deactivate
and reactivate, without JavaScript (Post/Redirect/Get) and with htmx (fragments)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.api_support import NewAgent
from tests.factories import PASSWORD, make_user
from tests.web_support import Visitor, parse
from webapp.models import User
from webapp.services.users import UNUSABLE_PASSWORD, verify_password

NEW_PASSWORD = "a brand new password"


async def _user(session: AsyncSession, username: str) -> User | None:
    await session.commit()
    query = select(User).where(User.username == username)  # type: ignore[arg-type]
    return (
        await session.execute(query.execution_options(populate_existing=True))
    ).scalar_one_or_none()


async def _admin(session: AsyncSession, visitor: Visitor) -> None:
    await make_user(session, username="root", is_admin=True)
    await visitor.log_in("root")


def _new_user(**fields: str) -> dict[str, str]:
    return {
        "username": "carol",
        "email": "carol@example.org",
        "password": NEW_PASSWORD,
        "password_again": NEW_PASSWORD,
        **fields,
    }


async def test_people_pages_are_for_admins_only(session: AsyncSession, visitor: Visitor) -> None:
    await make_user(session, username="ann")
    await make_user(session, username="bob")
    await visitor.log_in("ann")

    for path in ("/users", "/users/bob", "/users/ann"):
        assert (await visitor.get(path)).status_code == 403, path
    for path, data in (
        ("/users", _new_user()),
        ("/users/bob/password", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}),
        ("/users/ann/admin", {"admin": "yes"}),
        ("/users/bob/active", {"active": "no"}),
    ):
        assert (await visitor.post(path, data)).status_code == 403, path
    ann, bob = await _user(session, "ann"), await _user(session, "bob")
    assert ann is not None and not ann.is_admin
    assert bob is not None and bob.is_active and verify_password(bob.password_hash, PASSWORD)
    assert await _user(session, "carol") is None
    nav = parse(await visitor.get("/")).select("nav.site-nav a")
    assert "Users" not in [a.get_text() for a in nav]


async def test_create_a_user_without_javascript(session: AsyncSession, visitor: Visitor) -> None:
    await _admin(session, visitor)

    created = await visitor.post("/users", _new_user(is_admin="yes"))

    assert created.status_code == 303 and created.headers["location"] == "/users/carol"
    page = parse(await visitor.get("/users/carol"))
    assert page.select_one("#status").get_text(strip=True) == "Created admin carol."
    assert page.select_one("h1").get_text() == "carol"
    carol = await _user(session, "carol")
    assert carol is not None and carol.is_admin and carol.email == "carol@example.org"
    assert verify_password(carol.password_hash, NEW_PASSWORD)
    listed = parse(await visitor.get("/users"))
    row = listed.select_one(".users-table th a[href='/users/carol']").find_parent("tr")
    assert [b.get_text() for b in row.select(".badge")] == ["admin"]


async def test_create_a_user_with_htmx_goes_to_their_page(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _admin(session, visitor)

    created = await visitor.post("/users", _new_user(email=""), htmx=True)

    assert created.status_code == 200 and created.headers["HX-Redirect"] == "/users/carol"
    carol = await _user(session, "carol")
    assert carol is not None and not carol.is_admin and carol.email is None


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"password": "short", "password_again": "short"}, "password", "at least 8 characters"),
        ({"password_again": "something else"}, "password_again", "do not match"),
        ({"username": "carol smith"}, "username", "may contain only"),
        ({"username": "root"}, "username", "A user named root already exists"),
        ({"username": ""}, "username", "Username must not be empty"),
    ],
    ids=["short password", "mismatch", "bad username", "duplicate", "empty username"],
)
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
async def test_bad_input_is_422_inline_and_keeps_what_was_typed(
    session: AsyncSession,
    visitor: Visitor,
    fields: dict[str, str],
    field: str,
    message: str,
    htmx: bool,
) -> None:
    await _admin(session, visitor)
    sent = _new_user(is_admin="yes", **fields)

    response = await visitor.post("/users", sent, htmx=htmx)

    assert response.status_code == 422
    page = parse(response)
    assert (page.select_one("html") is None) == htmx
    box = page.select_one(f"[name={field}]")
    assert box["aria-invalid"] == "true"
    assert message in page.select_one(f"#{box['aria-describedby']}").get_text()
    assert page.select_one("[name=username]")["value"] == sent["username"]
    assert page.select_one("[name=email]")["value"] == sent["email"]
    assert page.select_one("[name=is_admin]").has_attr("checked")
    for name in ("password", "password_again"):
        assert not page.select_one(f"[name={name}]").has_attr("value")
    if len(sent["password"]) >= 8:
        assert sent["password"] not in response.text
    if sent["username"] != "root":
        assert await _user(session, sent["username"]) is None


async def test_set_a_password_without_and_with_htmx(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _admin(session, visitor)
    session.add(User(username="imported", password_hash=UNUSABLE_PASSWORD))
    await session.commit()
    page = parse(await visitor.get("/users/imported"))
    assert page.select_one("#password-head").get_text() == "Set a password"

    bad = await visitor.post(
        "/users/imported/password", {"password": NEW_PASSWORD, "password_again": "nope"}
    )
    assert bad.status_code == 422 and "do not match" in bad.text
    done = await visitor.post(
        "/users/imported/password", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )
    assert done.status_code == 303 and done.headers["location"] == "/users/imported"
    imported = await _user(session, "imported")
    assert imported is not None and verify_password(imported.password_hash, NEW_PASSWORD)

    again = await visitor.post(
        "/users/imported/password",
        {"password": PASSWORD + "!", "password_again": PASSWORD + "!"},
        htmx=True,
    )
    assert again.status_code == 200
    fragment = parse(again)
    assert fragment.select_one("html") is None
    assert "New password set for imported." in fragment.select_one("#status").get_text()
    assert fragment.select_one("#password-head").get_text() == "Reset the password"
    assert (await visitor.post("/users/nobody/password", {"password": "x"})).status_code == 404


async def test_a_post_without_the_csrf_token_changes_nothing(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _admin(session, visitor)
    await make_user(session, username="ann")

    for path, data in (
        ("/users", _new_user()),
        ("/users/ann/active", {"active": "no"}),
        ("/users/ann/admin", {"admin": "yes"}),
    ):
        assert (await visitor.post(path, data, csrf=False)).status_code == 403
        assert (await visitor.post(path, data, htmx=True, csrf=False)).status_code == 403
    ann = await _user(session, "ann")
    assert ann is not None and ann.is_active and not ann.is_admin
    assert await _user(session, "carol") is None


async def test_a_new_password_ends_the_users_sessions_only(
    session: AsyncSession,
    open_visitor: Callable[[], Visitor],
    new_agent: NewAgent,
) -> None:
    """A reset password may be because the old one leaked: every browser logged in as the
    user is logged out (ASVS: sessions end on a password change); other users' sessions
    and the user's API tokens (separate credentials) go on."""
    admin = open_visitor()
    await make_user(session, username="root", is_admin=True)
    await admin.log_in("root")
    agent = await new_agent("ann")
    ann, ann_elsewhere, bob = open_visitor(), open_visitor(), open_visitor()
    await make_user(session, username="bob")
    for browser, name in ((ann, "ann"), (ann_elsewhere, "ann"), (bob, "bob")):
        assert (await browser.log_in(name)).status_code == 303

    done = await admin.post(
        "/users/ann/password", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )

    assert done.status_code == 303
    for browser in (ann, ann_elsewhere):
        gone = await browser.get("/memories")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    assert (await bob.get("/memories")).status_code == 200
    assert (await admin.get("/users/ann")).status_code == 200
    assert (await agent.client.get("/memories")).status_code == 200
    assert (await ann.log_in("ann")).status_code == 400, "the old password is refused"
    assert (await ann.log_in("ann", NEW_PASSWORD)).status_code == 303


async def test_deactivate_logs_out_at_once_and_refuses_tokens_until_reactivated(
    session: AsyncSession,
    open_visitor: Callable[[], Visitor],
    new_agent: NewAgent,
) -> None:
    admin = open_visitor()
    await make_user(session, username="root", is_admin=True)
    await admin.log_in("root")
    agent = await new_agent("ann")
    ann = open_visitor()
    await ann.log_in("ann")
    assert (await ann.get("/memories")).status_code == 200
    assert (await agent.client.get("/memories")).status_code == 200

    off = await admin.post("/users/ann/active", {"active": "no"}, htmx=True)

    assert off.status_code == 200
    assert "deactivated" in parse(off).select_one("#status").get_text()
    gone = await ann.get("/memories")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    assert (await ann.get("/memories", htmx=True)).headers["HX-Redirect"].startswith("/login")
    refused: httpx.Response = await agent.client.get("/memories")
    assert refused.status_code == 401
    assert (await ann.log_in("ann")).status_code == 400
    listed = parse(await admin.get("/users"))
    row = listed.select_one(".users-table th a[href='/users/ann']").find_parent("tr")
    assert "inactive" in [b.get_text() for b in row.select(".badge")]

    on = await admin.post("/users/ann/active", {"active": "yes"})

    assert on.status_code == 303
    assert (await agent.client.get("/memories")).status_code == 200
    assert (await ann.log_in("ann")).status_code == 303


async def test_make_and_unmake_an_admin(session: AsyncSession, visitor: Visitor) -> None:
    await _admin(session, visitor)
    await make_user(session, username="ann")

    made = await visitor.post("/users/ann/admin", {"admin": "yes"})

    assert made.status_code == 303 and made.headers["location"] == "/users/ann"
    ann = await _user(session, "ann")
    assert ann is not None and ann.is_admin
    unmade = await visitor.post("/users/ann/admin", {"admin": "no"}, htmx=True)
    assert unmade.status_code == 200
    assert "ann is no longer an admin." in parse(unmade).select_one("#status").get_text()
    ann = await _user(session, "ann")
    assert ann is not None and not ann.is_admin


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
async def test_the_last_active_admin_and_ones_own_access_are_kept(
    session: AsyncSession, visitor: Visitor, htmx: bool
) -> None:
    await _admin(session, visitor)

    for path, data in (
        ("/users/root/admin", {"admin": "no"}),
        ("/users/root/active", {"active": "no"}),
    ):
        refused = await visitor.post(path, data, htmx=htmx)
        assert refused.status_code == 409
        error = parse(refused).select_one("#account-error").get_text()
        assert "last active admin" in error and "Make another user an admin first" in error

    await make_user(session, username="boss", is_admin=True)
    own = await visitor.post("/users/root/active", {"active": "no"}, htmx=htmx)
    assert own.status_code == 409
    assert "You cannot deactivate yourself" in parse(own).select_one("#account-error").get_text()
    root = await _user(session, "root")
    assert root is not None and root.is_admin and root.is_active
    assert (await visitor.get("/users/root")).status_code == 200, "still logged in"


async def test_the_users_list_pages_and_links_each_user(
    session: AsyncSession, visitor: Visitor
) -> None:
    await _admin(session, visitor)
    for n in range(55):
        await make_user(session, username=f"user-{n:02d}")

    first = parse(await visitor.get("/users"))
    names = [a.get_text() for a in first.select(".users-table tbody th > a")]
    assert len(names) == 50 and names[0] == "root"
    assert first.select_one(".count").get_text(strip=True) == "56 users"
    assert first.select_one("a[rel=prev]") is None
    next_url = first.select_one("a[rel=next]")["href"]
    second = await visitor.get(next_url, htmx=True)
    rest = [a.get_text() for a in parse(second).select(".users-table tbody th > a")]
    assert len(rest) == 6 and not set(rest) & set(names)
    assert sorted(names + rest) == names + rest
    assert parse(second).select_one("a[rel=next]") is None
    back = parse(await visitor.get(parse(second).select_one("a[rel=prev]")["href"]))
    assert [a.get_text() for a in back.select(".users-table tbody th > a")] == names
    assert first.select_one(".users-table tbody th > a")["href"] == f"/users/{names[0]}"
    assert (await visitor.get("/users/nobody")).status_code == 404
