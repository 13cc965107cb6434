"""A memory's history on its detail page: older pages of events, and revert to a version.

Without JavaScript the older link is a plain link to the detail page and revert is a form
(Post/Redirect/Get); with htmx the older page is swapped into the history and a revert
answers with the detail page's body (editor, details, history) refreshed.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from webapp.db import Database
from webapp.errors import Conflict, InvalidInput, VersionConflict
from webapp.ids import positive_int4
from webapp.models import LongTermMemory
from webapp.services.history import memory_history, revert_memory
from webapp.services.memories import get_memory
from webapp.web.deps import CheckedVisitor, CurrentVisitor, DatabaseDep, MemoryIdPath
from webapp.web.forms import form_fields
from webapp.web.memories import before_event, detail_page
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()


@router.get("/memories/{memory_id}/history", name="memory_history")
async def history_page(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CurrentVisitor
) -> Response:
    """Older events (?before=EVENT_ID): the history section for htmx; without JavaScript,
    the detail page showing them."""
    before = before_event(request)
    own_path = request.app.url_path_for("show_memory", memory_id=memory_id)
    if not is_htmx(request):
        query = f"?before={before}" if before is not None else ""
        return redirect(request, f"{own_path}{query}#history")
    memory = await get_memory(
        db, principal=visitor.principal, memory_id=memory_id, include_deleted=True
    )
    history = await memory_history(db, principal=visitor.principal, memory=memory, before=before)
    return render(
        request,
        "memories/_history.html",
        {"memory": memory, "history": history, "before": before},
        headers={"HX-Push-Url": f"{own_path}?before={before}" if before else own_path},
    )


@router.post("/memories/{memory_id}/revert", name="revert_memory")
async def revert(
    request: Request, memory_id: MemoryIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Revert to the version after one event (a new edit; the history is kept); stale
    page: 409 with the current state; in Trash: 409, restore first."""
    form = await form_fields(request)
    event_id = positive_int4(form.get("event", ""))
    version = positive_int4(form.get("version", ""))
    if event_id is None or version is None:
        raise InvalidInput("choose a version to revert to, from the memory's page")
    try:
        result = await revert_memory(
            db,
            principal=visitor.principal,
            memory_id=memory_id,
            event_id=event_id,
            expected_version=version,
        )
    except VersionConflict as exc:
        assert isinstance(exc.current, LongTermMemory)
        message = (
            f"Nothing was reverted: this memory was changed since you loaded the page "
            f"(it is now at version {exc.current.version}, the page showed version "
            f"{version}). Its current state and history are below."
        )
        return await _detail(request, db, exc.current, status=409, revert_error=message)
    except Conflict as exc:
        current = await get_memory(
            db, principal=visitor.principal, memory_id=memory_id, include_deleted=True
        )
        return await _detail(request, db, current, status=409, revert_error=f"{exc}.")
    message = (
        f"Reverted to an earlier version (saved as version {result.memory.version})."
        if result.changed
        else "Nothing to revert: that version is the same as the current one."
    )
    if is_htmx(request):
        return await _detail(request, db, result.memory, saved=message)
    return redirect(
        request, request.app.url_path_for("show_memory", memory_id=memory_id), message=message
    )


async def _detail(
    request: Request,
    db: Database,
    memory: LongTermMemory,
    *,
    status: int = 200,
    saved: str | None = None,
    revert_error: str | None = None,
) -> Response:
    """The detail page (its body only, for htmx) with the newest history."""
    extra = {"saved": saved} if saved else {"revert_error": revert_error}
    return await detail_page(request, db, memory, status=status, block="detail", **extra)
