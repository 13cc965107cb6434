"""The memory browser, the detail page and the edits made on them, over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memories_for_filters, make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.models import LongTermMemory, MemoryEvent, User


async def _fresh(session: AsyncSession, memory: LongTermMemory) -> LongTermMemory:
    """The memory as the database holds it now."""
    await session.commit()
    await session.refresh(memory)
    return memory


def _keys(response: Any) -> list[str]:
    return [link.get_text() for link in parse(response).select(".memory-row .memory-key")]


@pytest.fixture
async def ann(session: AsyncSession) -> User:
    """An ordinary user."""
    return await make_user(session, username="ann")


async def test_full_page_and_fragment_come_from_one_template(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    await make_memory(session, user=ann, key="tea", tags=["food"])
    await visitor.log_in("ann")
    page = await visitor.get("/memories?tag=food")
    fragment = await visitor.get("/memories?tag=food", htmx=True)
    restore = await visitor.get(
        "/memories?tag=food", htmx=True, **{"HX-History-Restore-Request": "true"}
    )
    assert parse(page).select_one("form#filters") is not None
    assert parse(page).select_one("html") is not None
    assert parse(fragment).select_one("html") is None
    assert parse(fragment).select_one("form#filters") is None
    assert _keys(page) == _keys(fragment) == ["tea"]
    assert fragment.headers["HX-Push-Url"] == "/memories?tag=food"
    assert parse(restore).select_one("form#filters") is not None, "history restore: whole page"
    for response in (page, fragment, restore):
        assert "HX-Request" in response.headers["vary"]


async def test_filters_in_the_query_string(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    await make_memories_for_filters(session, ann)
    await visitor.log_in("ann")
    cases = {
        "/memories?namespace=food": ["cake"],
        "/memories?namespace=food/drinks": ["tea"],
        "/memories?namespace=food/": ["cake", "tea"],
        "/memories?tag=likes": ["cake", "tea"],
        "/memories?tag=likes&tag=sweet&tags_mode=all": ["cake"],
        "/memories?q=tea": ["tea"],
        "/memories?q=choc*": ["cake"],
        "/memories?min_importance=0.8": ["tea"],
        "/memories?max_importance=0.3": ["cake"],
        "/memories?state=expired": ["old"],
        "/memories?state=deleted": ["gone"],
        "/memories?expiring_within=7": ["cake"],
        "/memories?accessed=never&namespace=work": [],
        "/memories?sort=-access_count&namespace=work": ["read"],
        "/memories?sort=importance&namespace=food/&min_importance=0.5": ["tea"],
    }
    for url, expected in cases.items():
        response = await visitor.get(url)
        assert response.status_code == 200, url
        assert sorted(_keys(response)) == sorted(expected), url


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/memories?min_importance=abc", 422, "importance must be a number"),
        ("/memories?max_importance=1.5", 422, "between 0 and 1"),
        ("/memories?state=gone", 422, "state"),
        ("/memories?cursor=forged", 400, "cursor"),
        ("/memories?q=%22%22", 400, "word"),
    ],
)
async def test_bad_filters_are_shown_in_the_page(
    session: AsyncSession, visitor: Visitor, ann: User, url: str, status: int, message: str
) -> None:
    await visitor.log_in("ann")
    response = await visitor.get(url)
    assert response.status_code == status
    alert = parse(response).select_one("#results [role=alert]")
    assert alert is not None and message in alert.get_text()
    assert parse(response).select_one("form#filters") is not None


async def test_keyset_pages_next_and_previous(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    for number in range(5):
        await make_memory(session, user=ann, key=f"m{number}", importance=number / 10)
    await visitor.log_in("ann")
    first = parse(await visitor.get("/memories?sort=-importance&limit=2"))
    assert first.select_one(".count").get_text(strip=True) == "5 memories"
    assert [a.get_text() for a in first.select(".memory-key")] == ["m4", "m3"]
    second = parse(await visitor.get(first.select_one("a[rel=next]")["href"]))
    assert [a.get_text() for a in second.select(".memory-key")] == ["m2", "m1"]
    back = parse(await visitor.get(second.select_one("a[rel=prev]")["href"], htmx=True))
    assert [a.get_text() for a in back.select(".memory-key")] == ["m4", "m3"]
    assert back.select_one("a[rel=prev]") is None


async def test_ordinary_users_see_only_their_own(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    bob = await make_user(session, username="bob")
    mine = await make_memory(session, user=ann, key="mine")
    theirs = await make_memory(session, user=bob, key="theirs")
    await visitor.log_in("ann")
    assert _keys(await visitor.get("/memories")) == ["mine"]
    assert _keys(await visitor.get("/memories?user=bob")) == []
    detail = await visitor.get(f"/memories/{theirs.id}")
    assert detail.status_code == 404
    assert parse(detail).select_one(".error-page") is not None
    assert "theirs" not in detail.text
    for url, data in (
        (f"/memories/{theirs.id}/importance", {"importance": "0.9"}),
        (f"/memories/{theirs.id}/delete", {}),
        (f"/memories/{theirs.id}/tags/add", {"tag": "x"}),
    ):
        assert (await visitor.post(url, data)).status_code == 404
    assert (await _fresh(session, theirs)).version == 1
    assert (await visitor.get(f"/memories/{mine.id}")).status_code == 200
    assert (await visitor.get("/users")).status_code == 403


async def test_admin_sees_everyone_and_viewing_is_not_an_access(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    await make_user(session, username="root", is_admin=True)
    memory = await make_memory(session, user=ann, key="tea")
    await visitor.log_in("root")
    listing = parse(await visitor.get("/memories"))
    assert [a.get_text() for a in listing.select(".owner-link")] == ["ann"]
    user_link = listing.select_one(".owner-link")["href"]
    by_user = parse(await visitor.get(user_link))
    namespace_link = by_user.select_one(".namespace-link")["href"]
    assert namespace_link == "/memories?user=ann&namespace=facts"
    assert _keys(await visitor.get(namespace_link)) == ["tea"]
    assert (await visitor.get(f"/memories/{memory.id}")).status_code == 200
    fresh = await _fresh(session, memory)
    assert fresh.access_count == 0 and fresh.last_accessed_at is None


async def test_user_content_is_always_escaped(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    memory = await make_memory(
        session, user=ann, key="<b>key</b>", content=payload, tags=["<i>tag</i>"]
    )
    await visitor.log_in("ann")
    for response in (await visitor.get("/memories"), await visitor.get(f"/memories/{memory.id}")):
        assert "<script>alert" not in response.text and "<img src=x" not in response.text
        assert "&lt;script&gt;alert(" in response.text
        page = parse(response)
        assert not page.select("img") and not page.select("b") and not page.select("i")


async def test_importance_edit_with_htmx_and_without(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory = await make_memory(session, user=ann, key="tea")
    await visitor.log_in("ann")
    url = f"/memories/{memory.id}/importance"
    swapped = await visitor.post(url, {"importance": "0.8", "version": "1"}, htmx=True)
    assert swapped.status_code == 200
    editor = parse(swapped).select_one(".memory-editor")
    assert editor.select_one("input[name=importance]")["value"] == "0.80"
    assert editor.select_one("input[name=version]")["value"] == "2"
    assert (await _fresh(session, memory)).importance == 0.8

    plain = await visitor.post(url, {"importance": "0.3", "version": "2", "next": "/memories"})
    assert plain.status_code == 303 and plain.headers["location"] == "/memories"
    followed = parse(await visitor.get("/memories"))
    assert "Importance set to 0.3" in followed.select_one("#status").get_text()
    assert (await _fresh(session, memory)).importance == 0.3
    events = (
        (await session.execute(select(MemoryEvent).where(MemoryEvent.memory_id == memory.id)))
        .scalars()
        .all()
    )
    assert [event.changes for event in events] == [
        {"importance": {"old": 0.5, "new": 0.8}},
        {"importance": {"old": 0.8, "new": 0.3}},
    ]


@pytest.mark.parametrize(
    ("path", "data", "message"),
    [
        ("importance", {"importance": "1.5"}, "between 0 and 1"),
        ("importance", {"importance": "lots"}, "must be a number"),
        ("importance", {"importance": ""}, "must be a number"),
        ("tags/add", {"tag": "x" * 65}, "64"),
        ("tags/add", {"tag": " , "}, "enter a tag"),
        ("edit", {"content": ""}, "content"),
        ("edit", {"content": "ok", "expires_at": "next week"}, "date and time"),
    ],
)
@pytest.mark.parametrize("htmx", [True, False])
async def test_invalid_input_shows_an_inline_error_and_writes_nothing(
    session: AsyncSession,
    visitor: Visitor,
    ann: User,
    path: str,
    data: dict[str, str],
    message: str,
    htmx: bool,
) -> None:
    memory = await make_memory(session, user=ann, key="tea")
    await visitor.log_in("ann")
    response = await visitor.post(
        f"/memories/{memory.id}/{path}", {**data, "version": "1"}, htmx=htmx
    )
    assert response.status_code == 422
    page = parse(response)
    assert message in page.select_one(".memory-editor [role=alert]").get_text()
    typed_name, typed = next(iter(data.items()))
    field = page.select_one(f".memory-editor [name={typed_name}]:not([type=hidden])")
    shown = field.get_text() if field.name == "textarea" else field.get("value", "")
    if typed.strip(" ,"):
        assert shown == typed, "what the person typed is kept"
    assert (await _fresh(session, memory)).version == 1
    assert (page.select_one("html") is None) == htmx


async def test_stale_edit_shows_a_conflict_with_current_values(
    session: AsyncSession, open_visitor: Callable[[], Visitor], ann: User
) -> None:
    memory = await make_memory(session, user=ann, key="tea", tags=["drink"])
    first, second = open_visitor(), open_visitor()
    await first.log_in("ann")
    await second.log_in("ann")
    url = f"/memories/{memory.id}/importance"
    assert (await first.post(url, {"importance": "0.7", "version": "1"}, htmx=True)).is_success
    for htmx in (True, False):
        response = await second.post(url, {"importance": "0.2", "version": "1"}, htmx=htmx)
        assert response.status_code == 409
        editor = parse(response).select_one(".memory-editor")
        conflict = editor.select_one(".conflict").get_text(" ", strip=True)
        assert "changed this memory" in conflict and "importance 0.70" in conflict
        assert "drink" in conflict
        assert editor.select_one("input[name=importance]")["value"] == "0.2"
        assert editor.select_one("input[name=version]")["value"] == "2"
    assert (await _fresh(session, memory)).importance == 0.7
    resent = await second.post(url, {"importance": "0.2", "version": "2"}, htmx=True)
    assert resent.status_code == 200
    assert (await _fresh(session, memory)).importance == 0.2


async def test_tags_add_and_remove(session: AsyncSession, visitor: Visitor, ann: User) -> None:
    memory = await make_memory(session, user=ann, key="tea", tags=["drink"])
    await visitor.log_in("ann")
    added = await visitor.post(
        f"/memories/{memory.id}/tags/add", {"tag": "Morning, hot", "version": "1"}, htmx=True
    )
    assert [tag.get_text() for tag in parse(added).select(".tag")] == ["drink", "morning", "hot"]
    removed = await visitor.post(
        f"/memories/{memory.id}/tags/remove", {"tag": "drink", "version": "2"}
    )
    assert removed.status_code == 303
    assert (await _fresh(session, memory)).tags == ["morning", "hot"]


async def test_content_and_expiry_on_the_detail_page(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory = await make_memory(session, user=ann, key="tea")
    await visitor.log_in("ann")
    response = await visitor.post(
        f"/memories/{memory.id}/edit",
        {
            "content": "Oolong now.",
            "expires_at": "2031-05-01T12:30",
            "version": "1",
            "next": f"/memories/{memory.id}",
        },
    )
    assert response.status_code == 303
    fresh = await _fresh(session, memory)
    assert fresh.content == "Oolong now."
    assert fresh.expires_at is not None and fresh.expires_at.isoformat() == (
        "2031-05-01T12:30:00+00:00"
    )
    page = parse(await visitor.get(f"/memories/{memory.id}"))
    assert page.select_one("textarea[name=content]").get_text() == "Oolong now."
    assert page.select_one("input[name=expires_at]")["value"] == "2031-05-01T12:30"
    cleared = await visitor.post(
        f"/memories/{memory.id}/edit",
        {"content": "Oolong now.", "expires_at": "", "version": "2"},
        htmx=True,
    )
    assert cleared.status_code == 200
    assert (await _fresh(session, memory)).expires_at is None


async def test_delete_then_undo_with_htmx(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory = await make_memory(session, user=ann, key="tea")
    await visitor.log_in("ann")
    deleted = parse(
        await visitor.post(f"/memories/{memory.id}/delete", {"version": "1"}, htmx=True)
    )
    undo = deleted.select_one(".memory-row-deleted form")
    assert undo["hx-post"] == f"/memories/{memory.id}/restore"
    assert (await _fresh(session, memory)).is_deleted
    assert _keys(await visitor.get("/memories")) == []
    restored = parse(await visitor.post(undo["action"], {}, htmx=True))
    assert [a.get_text() for a in restored.select(".memory-key")] == ["tea"]
    assert not (await _fresh(session, memory)).is_deleted


async def test_delete_then_undo_without_javascript(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory = await make_memory(session, user=ann, key="tea")
    await visitor.log_in("ann")
    response = await visitor.post(
        f"/memories/{memory.id}/delete", {"version": "1", "next": "/memories?namespace=facts"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/memories?namespace=facts"
    page = parse(await visitor.get(response.headers["location"]))
    flash = page.select_one("#status")
    assert "Deleted “tea”" in flash.get_text()
    undo = flash.select_one("form")
    assert undo["action"] == f"/memories/{memory.id}/restore"
    back = await visitor.post(undo["action"], {"next": undo.select_one("[name=next]")["value"]})
    assert back.status_code == 303
    assert _keys(await visitor.get("/memories?namespace=facts")) == ["tea"]
    assert "Deleted" not in parse(await visitor.get("/memories")).select_one("#status").get_text()


async def test_rows_open_their_editor_with_and_without_javascript(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    tea = await make_memory(session, user=ann, key="tea", tags=["drink"], importance=0.25)
    await make_memory(session, user=ann, key="cake")
    await visitor.log_in("ann")
    listing = parse(await visitor.get("/memories?namespace=facts"))
    assert not listing.select(".memory-editor"), "rows start read-only"
    facts = listing.select_one(f"#memory-{tea.id} .memory-facts")
    assert facts.select_one(".importance").get_text() == "Importance 0.25"
    edit = facts.select_one("a.edit-link")
    assert edit["href"] == f"/memories?namespace=facts&edit={tea.id}#memory-{tea.id}"

    plain = parse(await visitor.get(edit["href"].partition("#")[0]))
    editors = plain.select(".memory-editor")
    assert len(editors) == 1 and editors[0].find_parent("li")["id"] == f"memory-{tea.id}"
    assert editors[0].select_one("input[name=next]")["value"] == (
        f"/memories?namespace=facts&edit={tea.id}"
    )
    assert (
        editors[0].select_one("a.done-link")["href"] == f"/memories?namespace=facts#memory-{tea.id}"
    )

    current = {"HX-Current-URL": "http://testserver/memories?namespace=facts"}
    swapped = parse(await visitor.get(edit["hx-get"], htmx=True, **current))
    assert swapped.select_one(".memory-editor input[name=importance]")["value"] == "0.25"
    assert swapped.select_one("input[name=next]")["value"] == (
        f"/memories?namespace=facts&edit={tea.id}"
    )
    closed = parse(await visitor.get(f"/memories/{tea.id}/row", htmx=True, **current))
    assert closed.select_one(".memory-facts .importance").get_text() == "Importance 0.25"
    assert closed.select_one(".memory-editor") is None
    redirected = await visitor.get(f"/memories/{tea.id}/editor")
    assert redirected.status_code == 303


async def test_a_refused_plain_edit_keeps_leading_back_to_the_list(
    session: AsyncSession, visitor: Visitor, ann: User
) -> None:
    memory = await make_memory(session, user=ann, key="tea")
    await visitor.log_in("ann")
    back = f"/memories?namespace=facts&edit={memory.id}"
    refused = await visitor.post(
        f"/memories/{memory.id}/importance", {"importance": "2", "version": "1", "next": back}
    )
    assert refused.status_code == 422
    form = parse(refused).select_one(".importance-form")
    assert form.select_one("input[name=next]")["value"] == back
    saved = await visitor.post(form["action"], {"importance": "0.9", "version": "1", "next": back})
    assert saved.status_code == 303 and saved.headers["location"] == back
