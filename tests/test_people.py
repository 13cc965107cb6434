"""Managing people in the service layer: passwords, admin rights, deactivation that locks a
user out at once, the last-admin rule and the users list's pages (services/people.py)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import PASSWORD, make_memory, make_token, make_user
from webapp.db import Database
from webapp.errors import NotFound
from webapp.models import PasswordSet, User, WebSession
from webapp.services.auth import LoginFailed, log_in, session_user
from webapp.services.people import (
    LastAdminRefused,
    OwnAccountRefused,
    get_person,
    people_page,
    refuse_removing_last_admin,
    set_active,
    set_admin,
    set_password,
)
from webapp.services.principal import Principal
from webapp.services.tokens import token_principal
from webapp.services.users import UNUSABLE_PASSWORD, verify_password

NEW_PASSWORD = "a new password"
CLI = Principal.operator()


async def _fresh(session: AsyncSession, username: str) -> User:
    """The user as the database holds it now."""
    await session.commit()
    query = select(User).where(User.username == username)  # type: ignore[arg-type]
    return (await session.execute(query.execution_options(populate_existing=True))).scalar_one()


async def _log_in(db: Database, username: str, password: str = PASSWORD) -> str:
    signed_in = await log_in(
        db, username=username, password=password, address="198.51.100.1", session_hours=1
    )
    return signed_in.secret


async def test_a_user_made_by_an_import_can_be_given_a_password(
    db: AsyncEngine, session: AsyncSession
) -> None:
    session.add(User(username="imported", password_hash=UNUSABLE_PASSWORD))
    await session.commit()
    database = Database(db)
    assert not (await get_person(database, username="imported")).has_password
    with pytest.raises(LoginFailed):
        await _log_in(database, "imported", NEW_PASSWORD)

    data = PasswordSet(password=NEW_PASSWORD, password_again=NEW_PASSWORD)
    await set_password(database, username="imported", data=data)

    assert verify_password((await _fresh(session, "imported")).password_hash, NEW_PASSWORD)
    assert (await get_person(database, username="imported")).has_password
    assert await _log_in(database, "imported", NEW_PASSWORD)


async def test_password_set_rules() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        PasswordSet(password="short", password_again="short")
    with pytest.raises(ValueError, match="do not match"):
        PasswordSet(password=NEW_PASSWORD, password_again=NEW_PASSWORD + "!")


async def test_unknown_or_impossible_names_are_not_found(db: AsyncEngine) -> None:
    database = Database(db)
    for name in ("nobody", "bad name", "nul\x00"):
        with pytest.raises(NotFound):
            await set_password(database, username=name, data=NEW_PASSWORD)
        with pytest.raises(NotFound):
            await get_person(database, username=name)


async def test_make_and_unmake_an_admin(db: AsyncEngine, session: AsyncSession) -> None:
    await make_user(session, username="root", is_admin=True)
    await make_user(session, username="ann")
    database = Database(db)

    await set_admin(database, principal=CLI, username="ann", is_admin=True)
    assert (await _fresh(session, "ann")).is_admin
    await set_admin(database, principal=CLI, username="root", is_admin=False)
    assert not (await _fresh(session, "root")).is_admin

    with pytest.raises(LastAdminRefused, match="last active admin"):
        await set_admin(database, principal=CLI, username="ann", is_admin=False)
    with pytest.raises(LastAdminRefused):
        await set_active(database, principal=CLI, username="ann", is_active=False)
    ann = await _fresh(session, "ann")
    assert ann.is_admin and ann.is_active


async def test_an_inactive_admin_does_not_count_as_the_other_admin(
    db: AsyncEngine, session: AsyncSession
) -> None:
    await make_user(session, username="root", is_admin=True)
    await make_user(session, username="old", is_admin=True)
    database = Database(db)
    await set_active(database, principal=CLI, username="old", is_active=False)

    with pytest.raises(LastAdminRefused):
        await set_admin(database, principal=CLI, username="root", is_admin=False)
    # Changing an ordinary user, or an inactive admin, never meets the rule.
    await set_admin(database, principal=CLI, username="old", is_admin=False)


async def test_an_admin_cannot_remove_their_own_access(
    db: AsyncEngine, session: AsyncSession
) -> None:
    root = await make_user(session, username="root", is_admin=True)
    await make_user(session, username="other", is_admin=True)
    database = Database(db)
    me = Principal.of_user(root)

    with pytest.raises(OwnAccountRefused):
        await set_admin(database, principal=me, username="root", is_admin=False)
    with pytest.raises(OwnAccountRefused):
        await set_active(database, principal=me, username="root", is_active=False)
    fresh = await _fresh(session, "root")
    assert fresh.is_admin and fresh.is_active


async def test_two_admins_removed_at_once_leave_one(db: AsyncEngine, session: AsyncSession) -> None:
    await make_user(session, username="ada", is_admin=True)
    await make_user(session, username="bea", is_admin=True)
    database = Database(db)

    results = await asyncio.gather(
        set_active(database, principal=CLI, username="ada", is_active=False),
        set_admin(database, principal=CLI, username="bea", is_admin=False),
        return_exceptions=True,
    )

    refused = [result for result in results if isinstance(result, LastAdminRefused)]
    assert len(refused) == 1, results
    await session.commit()
    admins = select(func.count()).where(User.is_admin, User.is_active)  # type: ignore[arg-type]
    assert (await session.execute(admins)).scalar_one() == 1


async def test_refuse_removing_last_admin_in_the_callers_transaction(
    db: AsyncEngine, session: AsyncSession
) -> None:
    root = await make_user(session, username="root", is_admin=True)
    ann = await make_user(session, username="ann")
    database = Database(db)
    assert root.id is not None and ann.id is not None
    async with database.write() as writing:
        await refuse_removing_last_admin(writing, user_id=ann.id)  # not an admin: fine
        with pytest.raises(LastAdminRefused):
            await refuse_removing_last_admin(writing, user_id=root.id)


async def test_deactivating_ends_sessions_and_refuses_tokens_at_once(
    db: AsyncEngine, session: AsyncSession
) -> None:
    ann = await make_user(session, username="ann")
    _token, secret = await make_token(session, user=ann, name="agent")
    database = Database(db)
    cookie = await _log_in(database, "ann")
    assert await session_user(database, secret=cookie) is not None
    assert await token_principal(database, secret=secret) is not None

    await set_active(database, principal=CLI, username="ann", is_active=False)

    assert await session_user(database, secret=cookie) is None
    assert await token_principal(database, secret=secret) is None
    sessions = select(func.count()).select_from(WebSession)
    assert (await session.execute(sessions)).scalar_one() == 0
    with pytest.raises(LoginFailed):
        await _log_in(database, "ann")
    person = await get_person(database, username="ann")
    assert (person.sessions, person.tokens) == (0, 1)

    await set_active(database, principal=CLI, username="ann", is_active=True)

    assert await session_user(database, secret=cookie) is None, "ended sessions stay ended"
    agent = await token_principal(database, secret=secret)
    assert agent is not None and agent.username == "ann", "tokens work again"
    assert await _log_in(database, "ann")


async def test_people_pages_walk_forward_and_back(db: AsyncEngine, session: AsyncSession) -> None:
    for name in ("eve", "bob", "dan", "ann", "cat"):
        user = await make_user(session, username=name)
    await make_memory(session, user=user, key="x")  # cat's
    database = Database(db)

    first = await people_page(database, size=2)
    second = await people_page(database, after=first.after, size=2)
    third = await people_page(database, after=second.after, size=2)
    back = await people_page(database, before=third.before, size=2)
    start = await people_page(database, before=back.before, size=2)

    def names(page: object) -> list[str]:
        return [s.user.username for s in page.items]  # type: ignore[attr-defined]

    assert [names(p) for p in (first, second, third)] == [["ann", "bob"], ["cat", "dan"], ["eve"]]
    assert (first.before, third.after, first.total) == (None, None, 5)
    assert names(back) == ["cat", "dan"] and names(start) == ["ann", "bob"]
    assert start.before is None
    assert second.items[0].active == 1
    found = await people_page(database, search="a", size=2)
    assert names(found) == ["ann", "cat"] and found.total == 3 and found.after == "cat"
