"""The memory browser, the detail page, and a list row with its editor open or closed.

The edits made on them are in web/memory_edits.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from webapp.db import Database
from webapp.errors import InvalidInput
from webapp.ids import positive_int4
from webapp.models import LongTermMemory
from webapp.services.browse import Page, browse
from webapp.services.cursors import CursorSigner
from webapp.services.history import memory_history
from webapp.services.memories import get_memory
from webapp.services.users import usernames
from webapp.web.deps import (
    CurrentVisitor,
    DatabaseDep,
    MemoryIdPath,
    SignerDep,
    Visitor,
    safe_next,
)
from webapp.web.filters import (
    ParsedFilters,
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
    return await detail_page(request, db, memory, before=before_event(request))


def before_event(request: Request) -> int | None:
    """The history page asked for: ?before=EVENT_ID (None: the newest events)."""
    text = request.query_params.get("before", "")
    before = positive_int4(text)
    if text and before is None:
        raise InvalidInput("before: give the number of an event of this memory's history")
    return before


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
    return await row_response(request, db, visitor, memory, return_to)


async def row_response(
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


async def detail_page(
    request: Request,
    db: Database,
    memory: LongTermMemory,
    *,
    status: int = 200,
    return_to: str | None = None,
    before: int | None = None,
    block: str | None = None,
    **editor: Any,
) -> Response:
    """The detail page with a page of the memory's history (the newest, or the events
    older than `before`); return_to is where its edit forms lead back to (itself by
    default); block: only that part of it for htmx."""
    visitor: Visitor = request.state.visitor
    history = await memory_history(db, principal=visitor.principal, memory=memory, before=before)
    own_path = request.app.url_path_for("show_memory", memory_id=memory.id)
    return render(
        request,
        "memories/detail.html",
        {
            "memory": memory,
            "owner": history.owner or "?",
            "return_to": return_to or own_path,
            "view": "detail",
            "history": history,
            "before": before,
            **editor,
        },
        block=block,
        status_code=status,
    )
