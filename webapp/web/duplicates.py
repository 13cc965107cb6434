"""Near-duplicate review: one user's groups of (nearly) the same memories, merge, dismiss.

The page reads precomputed pairs (webapp.services.duplicates). Merging is a preview
(POST, CSRF-checked, from the group's form) and a confirm carrying the fingerprint of the
previewed versions: a stale confirm gets a fresh preview with 409, as bulk actions do.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from webapp.errors import NotFound
from webapp.services import duplicates
from webapp.services.bulk import StalePreview
from webapp.services.namespaces import namespace_owners
from webapp.services.users import resolve_user
from webapp.web.deps import (
    CheckedVisitor,
    CurrentVisitor,
    DatabaseDep,
    Visitor,
    memory_id_from_text,
)
from webapp.web.render import redirect, render

router = APIRouter()


async def _owner(db: DatabaseDep, visitor: Visitor, user: str | None) -> int:
    """The id of the user whose duplicates are shown: `user=` if visible, else oneself."""
    if not user:
        assert visitor.user.id is not None
        return visitor.user.id
    user_id = await resolve_user(db, principal=visitor.principal, username=user)
    if user_id is None:
        raise NotFound(f"no user named {user!r}")
    return user_id


def _page_url(request: Request, user: str | None, threshold: float) -> str:
    query: dict[str, Any] = {"threshold": f"{threshold:.2f}"}
    if user:
        query["user"] = user
    return f"{request.app.url_path_for('show_duplicates')}?{urlencode(query)}"


@router.get("/duplicates", name="show_duplicates")
async def show_duplicates(
    request: Request,
    db: DatabaseDep,
    visitor: CurrentVisitor,
    user: str | None = Query(default=None, max_length=150),
    threshold: str | None = Query(default=None, max_length=20),
) -> Response:
    """Groups of one user's active memories at or above the similarity threshold."""
    user = (user or "").strip() or None
    chosen = duplicates.parse_threshold(threshold)
    if user is None and visitor.user.is_admin:
        owners = await namespace_owners(db, principal=visitor.principal)
        chooser = {"owners": owners, "user": None, "threshold": chosen}
        return render(request, "duplicates/index.html", chooser)
    user_id = await _owner(db, visitor, user)
    shown = await duplicates.review(db, user_id, chosen)
    context: dict[str, Any] = {
        "groups": shown.groups,
        "waiting": shown.waiting,
        "refreshing": shown.refreshing,
        "user": user,
        "threshold": chosen,
        "minimum": duplicates.MIN_THRESHOLD,
        "shown_max": duplicates.MAX_GROUP_SHOWN,
        "max_groups": duplicates.MAX_GROUPS,
    }
    return render(request, "duplicates/index.html", context)


def _ids(form: Any) -> list[int]:
    return [memory_id_from_text(text) for text in form.getlist("ids") if text.strip()]


def _text(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


async def _group_form(
    request: Request, db: DatabaseDep, visitor: Visitor
) -> tuple[Any, str | None, int, float]:
    """A posted group form: the form, whose group it is (name and id) and the threshold
    of the page to go back to."""
    form = await request.form()
    user = _text(form, "user")
    return (
        form,
        user,
        await _owner(db, visitor, user),
        duplicates.parse_threshold(_text(form, "threshold")),
    )


async def _preview(
    request: Request,
    db: DatabaseDep,
    visitor: Visitor,
    form: Any,
    *,
    stale: str | None = None,
) -> Response:
    user = _text(form, "user")
    user_id = await _owner(db, visitor, user)
    preview = await duplicates.merge_preview(db, user_id, _ids(form))
    context = {
        "preview": preview,
        "user": user,
        "threshold": duplicates.parse_threshold(_text(form, "threshold")),
        "stale": stale,
    }
    return render(request, "duplicates/merge.html", context, status_code=409 if stale else 200)


@router.post("/duplicates/merge", name="duplicates_merge_preview")
async def merge_preview(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """What merging a group would do; nothing changes until the confirm."""
    return await _preview(request, db, visitor, await request.form())


@router.post("/duplicates/merge/apply", name="duplicates_merge_apply")
async def merge_apply(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """Keep the chosen memory, soft-delete the others; a stale preview is shown again."""
    form, user, user_id, threshold = await _group_form(request, db, visitor)
    try:
        kept = await duplicates.merge(
            db,
            principal=visitor.principal,
            user_id=user_id,
            ids=_ids(form),
            keep=memory_id_from_text(_text(form, "keep") or ""),
            expected=_text(form, "fingerprint") or "",
        )
    except StalePreview as exc:
        return await _preview(request, db, visitor, form, stale=str(exc))
    count = len(set(_ids(form))) - 1
    message = f"Merged: kept #{kept}, moved {count} to Trash."
    return redirect(request, _page_url(request, user, threshold), message=message)


@router.post("/duplicates/dismiss", name="duplicates_dismiss")
async def dismiss(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """Stop showing a group until it gains a member."""
    form, user, user_id, threshold = await _group_form(request, db, visitor)
    await duplicates.dismiss(db, user_id, _ids(form))
    return redirect(request, _page_url(request, user, threshold), message="Group dismissed.")
