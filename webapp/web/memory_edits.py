"""The edits made on the browser's rows and the detail page: importance, tags, content and
expiry, delete and restore.

Every edit is a plain form (Post/Redirect/Get without JavaScript); with htmx, the
response is the edited component instead of a redirect. A failed edit keeps what the
person typed: 422 with the inline error for invalid input, 409 with the current values
for a stale edit, and nothing written in either case.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from webapp.db import Database
from webapp.errors import InvalidInput, NotFound, VersionConflict
from webapp.ids import positive_int4
from webapp.models import LongTermMemory, MemoryUpdate
from webapp.services import edits
from webapp.services.history import memory_history
from webapp.services.memories import delete_memory, get_memory, restore_memory, update_memory
from webapp.validation import number_from_text, validate_tags
from webapp.web.deps import CheckedVisitor, DatabaseDep, MemoryIdPath, Visitor, safe_next
from webapp.web.filters import describe_error
from webapp.web.forms import form_fields
from webapp.web.memories import detail_page, row_response
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()


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
        return await detail_page(
            request, db, memory, status=status, return_to=_return_to(form, memory.id or 0), **editor
        )
    history = None
    if view == "detail":  # the page's history shows the edit too
        principal = request.state.visitor.principal
        history = await memory_history(db, principal=principal, memory=memory)
    return render(
        request,
        "memories/_editor.html",
        {
            "memory": memory,
            "view": view,
            "return_to": _return_to(form, memory.id or 0),
            "history_oob": history,
            **editor,
        },
        status_code=status,
    )


@router.post("/memories/{memory_id}/importance", name="set_importance")
async def set_importance(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Set a memory's importance (0 to 1)."""
    form = await form_fields(request)
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
    form = await form_fields(request)
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
    form = await form_fields(request)
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
    form = await form_fields(request)
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
    form = await form_fields(request)
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
    form = await form_fields(request)
    try:
        memory = await restore_memory(db, principal=visitor.principal, memory_id=memory_id)
    except NotFound:
        memory = await get_memory(db, principal=visitor.principal, memory_id=memory_id)
    return_to = safe_next(form.get("next") or f"/memories/{memory_id}")
    if is_htmx(request):
        return await row_response(
            request, db, visitor, memory, return_to, status_message=f"Restored “{memory.key}”."
        )
    return redirect(request, return_to, message=f"Restored “{memory.key}”.")
