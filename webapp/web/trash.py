"""Trash: soft-deleted memories with the days left before purge; restore, purge now."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from webapp.errors import InvalidInput
from webapp.services.bulk import BulkAction, Selection, apply
from webapp.services.memories import purge_deleted
from webapp.services.retention import Retention
from webapp.services.users import resolve_user
from webapp.types import utcnow
from webapp.web.deps import (
    AdminVisitor,
    CheckedAdmin,
    CheckedVisitor,
    CurrentVisitor,
    DatabaseDep,
    SettingsDep,
    SignerDep,
    memory_id_from_text,
)
from webapp.web.filters import url_with
from webapp.web.forms import form_fields, form_list
from webapp.web.memories import list_page
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()
TRASH_FIXED = ("state",)
"""Trash always shows deleted memories, so its URLs never carry a state."""


@router.get("/trash", name="show_trash")
async def show_trash(
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    signer: SignerDep,
    visitor: CurrentVisitor,
) -> Response:
    """Deleted memories, most recently deleted first, with restore and (admins) purge."""
    return await _trash_page(request, db, settings, signer, visitor)


async def _trash_page(
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    signer: SignerDep,
    visitor: CurrentVisitor,
    *,
    status_message: str | None = None,
) -> Response:
    listed = await list_page(request, db, signer, visitor, state="deleted")
    parsed, page, owners, status = listed.filters, listed.page, listed.owners, listed.status
    now = utcnow()
    retention = Retention.of(settings)
    days_left = {
        memory.id: retention.days_left(memory.deleted_at, now)
        for memory in (page.items if page else [])
        if memory.deleted_at is not None
    }
    here = url_with(request.app.url_path_for("show_trash"), parsed.query, omit=TRASH_FIXED)
    return render(
        request,
        "trash.html",
        {
            "filters": parsed,
            "query": parsed.query,
            "page": page,
            "owners": owners,
            "days_left": days_left,
            "retention_days": retention.deleted_days,
            "here": here,
            "status_message": status_message,
        },
        block="results",
        status_code=status,
    )


@router.post("/trash/restore", name="restore_from_trash")
async def restore_from_trash(
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    signer: SignerDep,
    visitor: CheckedVisitor,
) -> Response:
    """Restore the chosen memories (one or many), all or none."""
    form = await form_fields(request)
    only = form.get("only", "")
    chosen = [only] if only else await form_list(request, "id")
    ids = [memory_id_from_text(value) for value in chosen if value]
    if not ids:
        message = "Select the memories to restore."
    else:
        result = await apply(
            db, principal=visitor.principal, selection=Selection(ids=ids), action=BulkAction.restore
        )
        message = f"Restored {result.changed} memor{'y' if result.changed == 1 else 'ies'}."
    if is_htmx(request):
        return await _trash_page(request, db, settings, signer, visitor, status_message=message)
    back = form.get("next", "")
    return redirect(request, back if back.startswith("/trash") else "/trash", message=message)


@router.get("/trash/purge", name="confirm_purge")
async def confirm_purge(
    request: Request, db: DatabaseDep, visitor: AdminVisitor, user: str | None = None
) -> Response:
    """Ask before purging: how many memories would be removed for good."""
    user_id = await _user_id(db, visitor, user)
    count = await purge_deleted(db, principal=visitor.principal, user_id=user_id, dry_run=True)
    return render(request, "trash_purge.html", {"count": count, "user": user})


@router.post("/trash/purge", name="purge_trash")
async def purge_trash(request: Request, db: DatabaseDep, visitor: CheckedAdmin) -> Response:
    """Remove every memory in Trash (of one user, if named) for good; needs the confirmation."""
    form = await form_fields(request)
    user = form.get("user") or None
    if form.get("confirm") != "yes":
        return redirect(request, _with_user("/trash/purge", user))
    user_id = await _user_id(db, visitor, user)
    removed = await purge_deleted(db, principal=visitor.principal, user_id=user_id)
    return redirect(
        request,
        _with_user("/trash", user),
        message=f"Purged {removed} memor{'y' if removed == 1 else 'ies'} for good.",
    )


def _with_user(path: str, user: str | None) -> str:
    return f"{path}?{urlencode({'user': user})}" if user else path


async def _user_id(db: DatabaseDep, visitor: CurrentVisitor, user: str | None) -> int | None:
    if not user:
        return None
    found = await resolve_user(db, principal=visitor.principal, username=user)
    if found is None:
        raise InvalidInput(f"no user named {user!r}")
    return found
