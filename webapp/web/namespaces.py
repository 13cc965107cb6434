"""The namespace tree: one user's namespaces (or, for an admin, everyone's) by `/` segment."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from webapp.errors import NotFound
from webapp.services.namespaces import namespace_health, namespace_owners, namespace_tree
from webapp.services.users import resolve_user
from webapp.web.deps import CurrentVisitor, DatabaseDep
from webapp.web.render import render

router = APIRouter()


@router.get("/namespaces", name="show_namespaces")
async def show_namespaces(
    request: Request,
    db: DatabaseDep,
    visitor: CurrentVisitor,
    user: str | None = Query(default=None, max_length=150),
) -> Response:
    """The tree of one user's namespaces: counts per state, mean importance, last write.

    An ordinary user sees their own. An admin picks a user (`user=`) from the list of
    users with memories; a user the visitor may not see is a 404, as an unknown one.
    """
    user = (user or "").strip() or None
    if user is None and visitor.user.is_admin:
        owners = await namespace_owners(db, principal=visitor.principal)
        return render(request, "namespaces.html", {"owners": owners, "user": None})
    if user is not None:
        if await resolve_user(db, principal=visitor.principal, username=user) is None:
            raise NotFound(f"no user named {user!r}")
    flat = await namespace_health(db, principal=visitor.principal, user=user)
    return render(
        request,
        "namespaces.html",
        {"tree": namespace_tree(flat), "user": user, "namespace_count": len(flat)},
        block="results",
    )
