"""The memory browser, the detail page and the edits made on them.

Every edit is a plain form (Post/Redirect/Get without JavaScript); with htmx, the
response is the edited component instead of a redirect. A failed edit keeps what the
person typed: 422 with the inline error for invalid input, 409 with the current values
for a stale edit, and nothing written in either case.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from webapp.db import Database
from webapp.errors import InvalidInput, NotFound, VersionConflict
from webapp.ids import positive_int4
from webapp.models import LongTermMemory, MemoryUpdate
from webapp.services import edits
from webapp.services.browse import Page, browse
from webapp.services.cursors import CursorSigner
from webapp.services.memories import delete_memory, get_memory, restore_memory, update_memory
from webapp.services.users import usernames
from webapp.validation import number_from_text, validate_tags
from webapp.web.deps import (
    CheckedVisitor,
    CurrentVisitor,
    DatabaseDep,
    MemoryIdPath,
    SignerDep,
    Visitor,
    safe_next,
)
from webapp.web.filters import (
    ParsedFilters,
    describe_error,
    editing_id,
    parse_filters,
    url_with,
    with_edit,
    without_edit,
)
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()


@dataclass
class ListedPage:
    """One page of a memory list as a list page shows it: the filters as parsed, the page
    (None when the filters are bad), whose rows they are (for admins) and the status."""

    filters: ParsedFilters
    page: Page | None
    owners: dict[int, str]
    status: int


async def list_page(
    request: Request, db: Database, signer: CursorSigner, visitor: Visitor, **fixed: Any
) -> ListedPage:
    """The page a list URL asks for (the browser's, or Trash's with its state fixed)."""
    parsed = parse_filters(request, **fixed)
    page = None
    status = 422 if parsed.error else 200
    if parsed.error is None:
        try:
            page = await browse(db, principal=visitor.principal, query=parsed.query, signer=signer)
        except InvalidInput as exc:
            parsed.error, status = str(exc), 400
    owners = page.owners if page is not None and visitor.user.is_admin else {}
    return ListedPage(filters=parsed, page=page, owners=owners, status=status)


@router.get("/memories", name="list_memories")
async def list_memories(
    request: Request, db: DatabaseDep, signer: SignerDep, visitor: CurrentVisitor
) -> Response:
    """The browser: the filter form, one page of memories, a capped count, next / previous."""
    listed = await list_page(request, db, signer, visitor)
    parsed, page, owners, status = listed.filters, listed.page, listed.owners, listed.status
    here = url_with(request.url.path, parsed.query)
    return render(
        request,
        "memories/list.html",
        {
            "filters": parsed,
            "query": parsed.query,
            "page": page,
            "owners": owners,
            "here": here,
            "editing": editing_id(request),
        },
        block="results",
        status_code=status,
        headers={"HX-Push-Url": here} if is_htmx(request) and parsed.error is None else None,
    )


@router.get("/memories/{memory_id}", name="show_memory")
async def show_memory(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CurrentVisitor
) -> Response:
    """One memory: content and metadata (a deleted one too, marked, with restore)."""
    memory = await get_memory(
        db, principal=visitor.principal, memory_id=memory_id, include_deleted=True
    )
    return await _detail_page(request, db, memory)


def _current_list(request: Request) -> str:
    """The list page an htmx request came from (its HX-Current-URL), or /memories."""
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    path = current.path if current.path.startswith("/memories") else "/memories"
    return safe_next(path + (f"?{current.query}" if current.query else ""))


@router.get("/memories/{memory_id}/editor", name="edit_row")
async def edit_row(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CurrentVisitor
) -> Response:
    """A row's editor (importance and tags), swapped in by its Edit button (htmx); the
    list with ?edit=ID does the same without JavaScript."""
    return_to = with_edit(_current_list(request), memory_id)
    if not is_htmx(request):
        return redirect(request, return_to)
    memory = await get_memory(db, principal=visitor.principal, memory_id=memory_id)
    return render(
        request,
        "memories/_editor.html",
        {"memory": memory, "view": "row", "return_to": return_to},
    )


@router.get("/memories/{memory_id}/row", name="show_row")
async def show_row(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CurrentVisitor
) -> Response:
    """A row as the list shows it, editor closed (the editor's Done button, htmx)."""
    return_to = without_edit(_current_list(request))
    if not is_htmx(request):
        return redirect(request, return_to)
    memory = await get_memory(
        db, principal=visitor.principal, memory_id=memory_id, include_deleted=True
    )
    return await _row_response(request, db, visitor, memory, return_to)


async def _row_response(
    request: Request,
    db: Database,
    visitor: Visitor,
    memory: LongTermMemory,
    return_to: str,
    status_message: str | None = None,
) -> Response:
    """One list row as an htmx fragment (owner shown to admins), with an optional status."""
    owners = await usernames(db, user_ids=[memory.user_id]) if visitor.user.is_admin else {}
    return render(
        request,
        "memories/_row.html",
        {
            "memory": memory,
            "owners": owners,
            "return_to": return_to,
            "status_message": status_message,
        },
    )


async def _detail_page(
    request: Request,
    db: Database,
    memory: LongTermMemory,
    *,
    status: int = 200,
    return_to: str | None = None,
    **editor: Any,
) -> Response:
    """The detail page; return_to is where its edit forms lead back to (itself by default)."""
    owners = await usernames(db, user_ids=[memory.user_id])
    own_path = request.app.url_path_for("show_memory", memory_id=memory.id)
    return render(
        request,
        "memories/detail.html",
        {
            "memory": memory,
            "owner": owners.get(memory.user_id, "?"),
            "return_to": return_to or own_path,
            "view": "detail",
            **editor,
        },
        status_code=status,
    )


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


def _version(form: dict[str, str]) -> int | None:
    return positive_int4(form.get("version", ""))


def _return_to(form: dict[str, str], memory_id: int) -> str:
    return safe_next(form.get("next") or f"/memories/{memory_id}")


async def _apply_edit(
    request: Request,
    db: Database,
    visitor: Visitor,
    memory_id: int,
    form: dict[str, str],
    edit: Callable[[], Awaitable[LongTermMemory]],
    *,
    saved: str,
) -> Response:
    """Run an edit (a service call); answer with the component (htmx) or a redirect, and
    with what the person typed kept: 422 and the error, or 409 and the current values."""
    view = "detail" if form.get("view") == "detail" else "row"
    typed = {name: form.get(name, "") for name in ("importance", "tag", "content", "expires_at")}
    try:
        memory = await edit()
    except InvalidInput as exc:
        current = await get_memory(db, principal=visitor.principal, memory_id=memory_id)
        return await _editor_response(
            request, db, current, view, form, status=422, typed=typed, error=str(exc)
        )
    except VersionConflict as exc:
        assert isinstance(exc.current, LongTermMemory)
        return await _editor_response(
            request, db, exc.current, view, form, status=409, typed=typed, conflict=True
        )
    if is_htmx(request):
        return await _editor_response(request, db, memory, view, form, saved=saved)
    return redirect(request, _return_to(form, memory_id), message=saved)


async def _editor_response(
    request: Request,
    db: Database,
    memory: LongTermMemory,
    view: str,
    form: dict[str, str],
    *,
    status: int = 200,
    **editor: Any,
) -> Response:
    """The edit component for htmx; without JavaScript, the detail page around it."""
    if not is_htmx(request):
        return await _detail_page(
            request, db, memory, status=status, return_to=_return_to(form, memory.id or 0), **editor
        )
    return render(
        request,
        "memories/_editor.html",
        {
            "memory": memory,
            "view": view,
            "return_to": _return_to(form, memory.id or 0),
            **editor,
        },
        status_code=status,
    )


@router.post("/memories/{memory_id}/importance", name="set_importance")
async def set_importance(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Set a memory's importance (0 to 1)."""
    form = await _form(request)
    value = form.get("importance", "").strip()
    edit = partial(
        edits.set_importance,
        db,
        principal=visitor.principal,
        memory_id=memory_id,
        importance=number_from_text(value) if value else "",
        expected_version=_version(form),
    )
    return await _apply_edit(
        request, db, visitor, memory_id, form, edit, saved=f"Importance set to {value}."
    )


@router.post("/memories/{memory_id}/tags/add", name="add_tags")
async def add_tags(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Add one tag, or several separated by commas."""
    form = await _form(request)
    new = [tag for tag in form.get("tag", "").split(",") if tag.strip()]
    edit = partial(
        edits.add_tags,
        db,
        principal=visitor.principal,
        memory_id=memory_id,
        tags=new,
        expected_version=_version(form),
    )
    return await _apply_edit(
        request,
        db,
        visitor,
        memory_id,
        form,
        edit,
        saved=f"Tag{'s' if len(new) > 1 else ''} added: {', '.join(_shown(new))}.",
    )


def _shown(tags: list[str]) -> list[str]:
    try:
        return validate_tags(tags)
    except ValueError:
        return tags


@router.post("/memories/{memory_id}/tags/remove", name="remove_tag")
async def remove_tag(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Remove one tag."""
    form = await _form(request)
    tag = form.get("tag", "")
    edit = partial(
        edits.remove_tags,
        db,
        principal=visitor.principal,
        memory_id=memory_id,
        tags=[tag],
        expected_version=_version(form),
    )
    return await _apply_edit(
        request, db, visitor, memory_id, form, edit, saved=f"Tag removed: {tag}."
    )


@router.post("/memories/{memory_id}/edit", name="edit_memory")
async def edit_memory(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Change the content and the expiry (empty: never expires) on the detail page."""
    form = await _form(request)
    changes: dict[str, Any] = {"content": form.get("content", "")}
    expires = form.get("expires_at", "").strip()
    try:
        changes["expires_at"] = _expiry(expires)
    except ValueError:
        current = await get_memory(db, principal=visitor.principal, memory_id=memory_id)
        typed = {name: form.get(name, "") for name in ("content", "expires_at")}
        return await _editor_response(
            request,
            db,
            current,
            "detail",
            form,
            status=422,
            typed=typed,
            error="expires at: enter a date and time like 2026-12-31T18:00",
        )

    async def edit() -> LongTermMemory:
        try:
            update = MemoryUpdate.model_validate({**changes, "version": _version(form)})
        except ValidationError as exc:
            raise InvalidInput(describe_error(exc)) from None
        return await update_memory(
            db, principal=visitor.principal, memory_id=memory_id, changes=update
        )

    return await _apply_edit(
        request, db, visitor, memory_id, {**form, "view": "detail"}, edit, saved="Saved."
    )


def _expiry(text: str) -> datetime | None:
    """A datetime-local value, read as UTC (the form says so), or None for no expiry."""
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.post("/memories/{memory_id}/delete", name="delete_memory")
async def delete_memory_form(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Soft-delete; the answer offers undo (restore) right away."""
    form = await _form(request)
    try:
        memory = await delete_memory(
            db, principal=visitor.principal, memory_id=memory_id, expected_version=_version(form)
        )
    except VersionConflict as exc:
        assert isinstance(exc.current, LongTermMemory)
        return await _editor_response(
            request, db, exc.current, "detail", form, status=409, typed={}, conflict=True
        )
    return_to = safe_next(form.get("next") or "/memories")
    if return_to.startswith(f"/memories/{memory_id}"):
        return_to = "/memories"
    if is_htmx(request):
        return render(request, "memories/_deleted.html", {"memory": memory, "return_to": return_to})
    return redirect(request, return_to, message=f"Deleted “{memory.key}”.", undo_id=memory_id)


@router.post("/memories/{memory_id}/restore", name="restore_memory")
async def restore_memory_form(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Undo a soft delete."""
    form = await _form(request)
    try:
        memory = await restore_memory(db, principal=visitor.principal, memory_id=memory_id)
    except NotFound:
        memory = await get_memory(db, principal=visitor.principal, memory_id=memory_id)
    return_to = safe_next(form.get("next") or f"/memories/{memory_id}")
    if is_htmx(request):
        return await _row_response(
            request, db, visitor, memory, return_to, status_message=f"Restored “{memory.key}”."
        )
    return redirect(request, return_to, message=f"Restored “{memory.key}”.")
