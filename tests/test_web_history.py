"""The history on the detail page and revert, over HTTP, with and without htmx."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_user
from tests.web_support import Visitor, parse
from webapp.db import Database
from webapp.models import LongTermMemory, MemoryCreate, MemoryEvent, User
from webapp.services import memories
from webapp.services.principal import Principal


@pytest.fixture
async def ann(session: AsyncSession) -> User:
    """An ordinary user."""
    return await make_user(session, username="ann")


async def _remembered(session: AsyncSession, user: User, content: str = "v1") -> int:
    """A memory written as the user's own (with its create event), returning its id."""
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    data = MemoryCreate(namespace="facts", key="tea", content=content, tags=["drink"])
    result = await memories.remember(Database(engine), principal=Principal.of_user(user), data=data)
    assert result.memory.id is not None
    return result.memory.id


async def _edit(visitor: Visitor, memory_id: int, content: str, version: int) -> None:
    response = await visitor.post(
        f"/memories/{memory_id}/edit",
        {"content": content, "expires_at": "", "version": str(version)},
    )
    assert response.status_code == 303, response.text


async def _stored(session: AsyncSession, memory_id: int) -> LongTermMemory:
    await session.commit()
    memory = await session.get(LongTermMemory, memory_id, populate_existing=True)
    assert memory is not None
    return memory


async def _events(session: AsyncSession, memory_id: int) -> int:
    await session.commit()
    query = select(func.count()).where(MemoryEvent.memory_id == memory_id)
    return int(await session.scalar(query) or 0)


def _text(element: object) -> str:
    """An element's text with its whitespace collapsed, as a reader hears it."""
    return " ".join(element.get_text().split())  # type: ignore[attr-defined]


def _revert_forms(page: object) -> list[str]:
    """The event ids offered for revert, newest first."""
    return [form.select_one("input[name=event]")["value"] for form in page.select(".revert-form")]  # type: ignore[attr-defined]


async def test_history_shows_each_change_who_and_when(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    long_text = "\n".join(f"line {n}" for n in range(12))
    await _edit(visitor, memory_id, "v2", 1)
    await _edit(visitor, memory_id, long_text, 2)
    page = parse(await visitor.get(f"/memories/{memory_id}"))
    events = page.select("#history .history-event")
    assert [e.select_one(".history-action").get_text() for e in events] == [
        "Edited",
        "Edited",
        "Created",
    ]
    assert all(e.select_one(".actor").get_text() == "ann" for e in events)
    assert all(e.select_one("time[datetime]") is not None for e in events)
    newest, middle, created = events
    assert [line.get_text() for line in newest.select(".diff-del")] == ["removed: - v2"]
    assert "added: + line 0" in [line.get_text() for line in newest.select(".diff-add")]
    assert _text(middle.select_one("del.diff-old")) == "was v1"
    assert _text(middle.select_one("ins.diff-new")) == "now v2"
    assert "drink" in created.get_text(), "a create shows the initial values"
    assert len(_revert_forms(page)) == 2, "every version but the current one can be restored"
    assert newest.select_one(".revert-form") is None


async def test_history_pages_with_javascript_off_and_htmx(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann, content="c0")
    await visitor.log_in("ann")
    for n in range(1, 56):
        await _edit(visitor, memory_id, f"c{n}", n)
    page = parse(await visitor.get(f"/memories/{memory_id}"))
    assert len(page.select(".history-event")) == 50
    older = page.select_one("#history a[rel=next]")
    assert older is not None
    second = parse(await visitor.get(older["href"]))
    contents = [e.select_one("ins.diff-new, .diff-new") for e in second.select(".history-event")]
    assert len(contents) == 6 and second.select_one("#history a[rel=next]") is None
    assert "c0" in second.select(".history-event")[-1].get_text()
    fragment = await visitor.get(older["hx-get"], htmx=True)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert len(parse(fragment).select(".history-event")) == 6
    bad = await visitor.get(f"/memories/{memory_id}?before=abc")
    assert bad.status_code == 422


async def test_revert_without_javascript_is_post_redirect_get(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    await _edit(visitor, memory_id, "v2", 1)
    await _edit(visitor, memory_id, "v3", 2)
    page = parse(await visitor.get(f"/memories/{memory_id}"))
    oldest = _revert_forms(page)[-1]
    response = await visitor.post(
        f"/memories/{memory_id}/revert", {"event": oldest, "version": "3"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/memories/{memory_id}"
    after = await visitor.get(f"/memories/{memory_id}")
    assert "Reverted" in after.text
    shown = parse(after)
    assert shown.select_one("textarea[name=content]").get_text() == "v1"
    top = shown.select_one("#history .history-event")
    assert _text(top.select_one("del.diff-old")) == "was v3"
    stored = await _stored(session, memory_id)
    assert (stored.content, stored.version) == ("v1", 4)
    assert await _events(session, memory_id) == 4


async def test_revert_with_htmx_swaps_the_detail(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    await _edit(visitor, memory_id, "v2", 1)
    page = parse(await visitor.get(f"/memories/{memory_id}"))
    response = await visitor.post(
        f"/memories/{memory_id}/revert",
        {"event": _revert_forms(page)[-1], "version": "2"},
        htmx=True,
    )
    assert response.status_code == 200
    fragment = parse(response)
    assert "<html" not in response.text
    assert fragment.select_one("#memory-detail textarea[name=content]").get_text() == "v1"
    assert len(fragment.select("#history .history-event")) == 3
    assert "Reverted" in fragment.select_one("#status").get_text()
    assert (await _stored(session, memory_id)).content == "v1"


async def test_inline_edit_with_htmx_updates_the_history(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    await visitor.get(f"/memories/{memory_id}")
    response = await visitor.post(
        f"/memories/{memory_id}/edit",
        {"content": "fresh", "expires_at": "", "version": "1", "view": "detail"},
        htmx=True,
    )
    history = parse(response).select_one("#history[hx-swap-oob]")
    assert history is not None
    assert len(history.select(".history-event")) == 2
    assert "fresh" in history.select_one(".history-event").get_text()


async def test_stale_revert_is_a_409_that_changes_nothing(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    await _edit(visitor, memory_id, "v2", 1)
    page = parse(await visitor.get(f"/memories/{memory_id}"))
    oldest = _revert_forms(page)[-1]
    await _edit(visitor, memory_id, "someone else's", 2)
    for htmx in (False, True):
        response = await visitor.post(
            f"/memories/{memory_id}/revert", {"event": oldest, "version": "2"}, htmx=htmx
        )
        assert response.status_code == 409
        shown = parse(response)
        assert "changed since you loaded the page" in shown.select_one(".alert").get_text()
        assert shown.select_one("textarea[name=content]").get_text() == "someone else's"
    stored = await _stored(session, memory_id)
    assert (stored.content, stored.version) == ("someone else's", 3)
    assert await _events(session, memory_id) == 3


async def test_same_version_deleted_memory_and_missing_csrf(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    await _edit(visitor, memory_id, "v2", 1)
    await _edit(visitor, memory_id, "v1", 2)
    page = parse(await visitor.get(f"/memories/{memory_id}"))
    created = page.select(".history-event")[-1]
    assert created.select_one(".revert-form") is None, "the created version is the current one"
    event_id = _revert_forms(page)[0]
    refused = await visitor.post(
        f"/memories/{memory_id}/revert", {"event": event_id, "version": "3"}, csrf=False
    )
    assert refused.status_code == 403
    assert (await _stored(session, memory_id)).content == "v1"
    await visitor.post(f"/memories/{memory_id}/delete", {"version": "3"})
    deleted = parse(await visitor.get(f"/memories/{memory_id}"))
    assert deleted.select(".revert-form") == []
    response = await visitor.post(
        f"/memories/{memory_id}/revert", {"event": event_id, "version": "4"}
    )
    assert response.status_code == 409
    assert "restore it first" in parse(response).select_one(".alert").get_text()
    stored = await _stored(session, memory_id)
    assert stored.is_deleted and stored.content == "v1"


async def test_another_users_history_and_revert_are_404(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    await make_user(session, username="bob")
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    await _edit(visitor, memory_id, "v2", 1)
    event_id = _revert_forms(parse(await visitor.get(f"/memories/{memory_id}")))[0]
    await visitor.client.post("/logout", data={"csrf_token": visitor.csrf_token})
    visitor.client.cookies.clear()
    await visitor.log_in("bob")
    assert (await visitor.get(f"/memories/{memory_id}?before=999")).status_code == 404
    history = await visitor.get(f"/memories/{memory_id}/history?before=999", htmx=True)
    assert history.status_code == 404
    response = await visitor.post(
        f"/memories/{memory_id}/revert", {"event": event_id, "version": "2"}
    )
    assert response.status_code == 404
    assert (await _stored(session, memory_id)).content == "v2"


async def test_an_expiry_change_reads_as_a_utc_time(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory_id = await _remembered(session, ann)
    await visitor.log_in("ann")
    response = await visitor.post(
        f"/memories/{memory_id}/edit",
        {"content": "v1", "expires_at": "2031-05-06T07:08", "version": "1"},
    )
    assert response.status_code == 303, response.text
    page = parse(await visitor.get(f"/memories/{memory_id}"))
    newest = page.select("#history .history-event")[0]
    assert _text(newest.select_one("del.diff-old")) == "was never"
    assert _text(newest.select_one("ins.diff-new")) == "now 2031-05-06 07:08 UTC"
