"""Bulk actions in the browser and Trash: preview, confirm, stale, undo; without and with htmx."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.models import LongTermMemory, MemoryEvent, User


async def _memories(session: AsyncSession) -> dict[str, tuple[list[str], float, bool]]:
    """Every memory by key: tags, importance, deleted."""
    await session.commit()
    rows = await session.execute(
        select(
            LongTermMemory.key,
            LongTermMemory.tags,
            LongTermMemory.importance,
            LongTermMemory.is_deleted,
        )
    )
    return {str(key): (list(tags), importance, bool(gone)) for key, tags, importance, gone in rows}


async def _events(session: AsyncSession) -> int:
    await session.commit()
    return (await session.execute(select(func.count()).select_from(MemoryEvent))).scalar_one()


async def _ann_with_four(session: AsyncSession) -> tuple[User, list[LongTermMemory]]:
    ann = await make_user(session, username="ann")
    made = [
        await make_memory(session, user=ann, key=key, tags=["work"] if key != "d" else ["home"])
        for key in ("a", "b", "c", "d")
    ]
    return ann, made


def said(response: httpx.Response) -> str:
    """The page's text, whitespace collapsed."""
    return " ".join(parse(response).get_text(" ").split())


def _confirm_fields(preview: httpx.Response) -> tuple[str, list[tuple[str, str]]]:
    """The confirm form of a preview page: its action URL and its fields."""
    form = parse(preview).select_one("form[action*='/bulk/apply']")
    assert form is not None, preview.text
    fields = [
        (str(field["name"]), str(field.get("value", "")))
        for field in form.select("input[name]")
        if field["name"] != "csrf_token"
    ]
    return str(form["action"]), fields


async def _post_pairs(
    visitor: Visitor, url: str, pairs: list[tuple[str, str]], *, htmx: bool = False
) -> httpx.Response:
    headers = {"accept": "text/html", "content-type": "application/x-www-form-urlencoded"}
    if htmx:
        headers |= {"HX-Request": "true", "X-CSRF-Token": visitor.csrf_token}
    else:
        pairs = [*pairs, ("csrf_token", visitor.csrf_token)]
    return await visitor.client.post(url, content=urlencode(pairs), headers=headers)


async def test_rows_have_checkboxes_that_join_the_bulk_form(
    session: AsyncSession, visitor: Visitor
) -> None:
    _, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    page = parse(await visitor.get("/memories"))
    boxes = page.select("li.memory-row .memory-title > input.row-select")
    assert sorted(int(box["value"]) for box in boxes) == sorted(m.id for m in made)  # type: ignore[misc]
    assert {box["form"] for box in boxes} == {"bulk-form"}
    assert {box["name"] for box in boxes} == {"ids"}
    assert boxes[0].find_parent("div")["class"] == ["memory-title"]  # type: ignore[index]
    bar = page.select_one("form#bulk-form")
    assert bar is not None and bar["method"] == "get"
    assert len(bar.select("input[name=page_ids]")) == 4


async def test_preview_then_confirm_without_javascript(
    session: AsyncSession, visitor: Visitor
) -> None:
    """Two checked rows: the preview changes nothing; the confirm adds the tag, one event each."""
    _, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    query = [("action", "add_tag"), ("value", "Urgent"), ("scope", "selected")]
    query += [("ids", str(made[0].id)), ("ids", str(made[1].id)), ("next", "/memories")]
    events_before = await _events(session)
    preview = await visitor.get("/memories/bulk/preview?" + urlencode(query))
    assert preview.status_code == 200
    text = said(preview)
    assert "2 memories selected" in text
    assert "Add tag “urgent”" in text
    assert [a.get_text() for a in parse(preview).select(".bulk-sample tbody a")] == ["a", "b"]
    assert (await _memories(session))["a"][0] == ["work"]
    assert await _events(session) == events_before

    url, fields = _confirm_fields(preview)
    done = await _post_pairs(visitor, url, fields)
    assert done.status_code == 303 and done.headers["location"] == "/memories"
    after = await visitor.get("/memories")
    assert "Added tag “urgent” to 2 memories." in parse(after).select_one("#status").get_text()  # type: ignore[union-attr]
    tags = {key: value[0] for key, value in (await _memories(session)).items()}
    assert tags == {"a": ["work", "urgent"], "b": ["work", "urgent"], "c": ["work"], "d": ["home"]}
    assert await _events(session) == events_before + 2


async def test_all_on_this_page_and_htmx_partials(session: AsyncSession, visitor: Visitor) -> None:
    _, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    query = [("action", "set_importance"), ("value", "0.9"), ("scope", "page")]
    query += [("page_ids", str(memory.id)) for memory in made]
    preview = await visitor.get("/memories/bulk/preview?" + urlencode(query), htmx=True)
    assert preview.status_code == 200
    assert "<html" not in preview.text and "4 memories selected" in said(preview)
    url, fields = _confirm_fields(preview)
    done = await _post_pairs(visitor, url, fields, htmx=True)
    assert done.status_code == 200 and done.headers["HX-Redirect"] == "/memories"
    assert {value[1] for value in (await _memories(session)).values()} == {0.9}


async def test_a_stale_preview_is_shown_again(session: AsyncSession, visitor: Visitor) -> None:
    """A memory added to the filter after the preview: 409, the new count, nothing deleted."""
    ann, _ = await _ann_with_four(session)
    await visitor.log_in("ann")
    preview = await visitor.get(
        "/memories/bulk/preview?"
        + urlencode({"action": "delete", "scope": "filter", "tag": "work"})
    )
    assert "3 memories selected" in said(preview)
    url, fields = _confirm_fields(preview)
    assert "tag=work" in url
    await make_memory(session, user=ann, key="late", tags=["work"])
    stale = await _post_pairs(visitor, url, fields)
    assert stale.status_code == 409
    page = parse(stale)
    assert "changed since the preview" in page.select_one(".alert").get_text()  # type: ignore[union-attr]
    assert "4 memories selected" in said(stale)
    assert not any(gone for _, _, gone in (await _memories(session)).values())
    url, fields = _confirm_fields(stale)
    assert (await _post_pairs(visitor, url, fields)).status_code == 303
    deleted = {key for key, (_, _, gone) in (await _memories(session)).items() if gone}
    assert deleted == {"a", "b", "c", "late"}


async def test_bad_values_are_shown_in_the_preview_form(
    session: AsyncSession, visitor: Visitor
) -> None:
    _, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    before = await _memories(session)
    for action, value, message in [
        ("set_importance", "1.5", "importance"),
        ("add_tag", "bad tag!" * 20, "tag"),
        ("set_expiry", "next tuesday", "expiry"),
    ]:
        query = {"action": action, "value": value, "ids": str(made[0].id)}
        preview = await visitor.get("/memories/bulk/preview?" + urlencode(query))
        assert preview.status_code == 422, action
        page = parse(preview)
        assert message in page.select_one("form.bulk-value .alert").get_text()  # type: ignore[union-attr]
        assert page.select_one("#bulk-preview-value")["aria-invalid"] == "true"  # type: ignore[index]
        assert page.select_one("form[action*='/bulk/apply']") is None, "no confirm for a bad value"
    forged = await visitor.post(
        "/memories/bulk/apply",
        {"action": "set_importance", "value": "7", "ids": str(made[0].id), "fingerprint": "x"},
    )
    assert forged.status_code == 422
    assert await _memories(session) == before


async def test_confirm_needs_the_csrf_token(session: AsyncSession, visitor: Visitor) -> None:
    _, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    fields: dict[str, Any] = {"action": "delete", "ids": [str(m.id) for m in made]}
    assert (await visitor.post("/memories/bulk/apply", fields, csrf=False)).status_code == 403
    assert not any(gone for _, _, gone in (await _memories(session)).values())


async def test_others_rows_are_not_found(session: AsyncSession, visitor: Visitor) -> None:
    await _ann_with_four(session)
    bob = await make_user(session, username="bob")
    bobs = await make_memory(session, user=bob, key="secret", tags=["work"])
    await visitor.log_in("ann")
    query = urlencode({"action": "delete", "ids": str(bobs.id)})
    assert (await visitor.get("/memories/bulk/preview?" + query)).status_code == 404
    applied = await visitor.post("/memories/bulk/apply", {"action": "delete", "ids": str(bobs.id)})
    assert applied.status_code == 404
    by_filter = await visitor.get(
        "/memories/bulk/preview?"
        + urlencode({"action": "delete", "scope": "filter", "user": "bob"})
    )
    assert "0 memories selected" in said(by_filter)
    assert not (await _memories(session))["secret"][2]


async def test_filter_wide_delete_then_undo(session: AsyncSession, visitor: Visitor) -> None:
    """Undo restores exactly the rows of that delete, not one deleted before it."""
    ann, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    await visitor.post(f"/memories/{made[0].id}/delete", {})
    preview = await visitor.get(
        "/memories/bulk/preview?"
        + urlencode({"action": "delete", "scope": "filter", "state": "all", "next": "/memories"})
    )
    assert "4 memories selected" in said(preview)  # "a" is deleted already
    url, fields = _confirm_fields(preview)
    assert (await _post_pairs(visitor, url, fields)).status_code == 303
    page = parse(await visitor.get("/memories"))
    assert "Deleted 3 memories. 1 memory already were so." in page.select_one("#status").get_text(
        " "
    )  # type: ignore[union-attr]
    undo = page.select_one("#status form")
    assert undo is not None and undo["action"] == "/memories/bulk/undo"
    token = undo.select_one("input[name=token]")["value"]  # type: ignore[index]
    assert (await visitor.post("/memories/bulk/undo", {"token": "forged"})).status_code == 404
    restored = await visitor.post("/memories/bulk/undo", {"token": token, "next": "/memories"})
    assert restored.status_code == 303
    deleted = {key for key, (_, _, gone) in (await _memories(session)).items() if gone}
    assert deleted == {"a"}

    await visitor.post("/logout")
    await session.commit()  # end the read of _memories before writing
    await make_user(session, username="eve")
    await visitor.log_in("eve")
    assert (await visitor.post("/memories/bulk/undo", {"token": token})).status_code == 404
    assert ann.id is not None


async def test_trash_restores_many(session: AsyncSession, visitor: Visitor) -> None:
    _, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    for memory in made[:3]:
        await visitor.post(f"/memories/{memory.id}/delete", {})
    trash = parse(await visitor.get("/trash"))
    assert len(trash.select(".trash-table input.row-select[form=bulk-form]")) == 3
    options = [o["value"] for o in trash.select("#bulk-form select[name=action] option")]
    assert options == ["restore", "export"]
    preview = await visitor.get(
        "/trash/bulk/preview?" + urlencode({"action": "restore", "scope": "filter"})
    )
    assert "3 memories selected" in said(preview)
    url, fields = _confirm_fields(preview)
    done = await _post_pairs(visitor, url, fields)
    assert done.status_code == 303 and done.headers["location"] == "/trash"
    assert "Restored 3 memories." in (await visitor.get("/trash")).text
    assert not any(gone for _, _, gone in (await _memories(session)).values())


async def test_export_goes_to_the_export_endpoint(session: AsyncSession, visitor: Visitor) -> None:
    _, made = await _ann_with_four(session)
    await visitor.log_in("ann")
    by_filter = await visitor.get(
        "/memories/bulk/preview?"
        + urlencode({"action": "export", "scope": "filter", "tag": "work"})
    )
    assert by_filter.status_code == 303
    assert by_filter.headers["location"] == "/memories/export?tag=work"
    by_ids = await visitor.get(
        "/memories/bulk/preview?" + urlencode([("action", "export"), ("ids", str(made[1].id))])
    )
    assert by_ids.headers["location"] == f"/memories/export?id={made[1].id}"
