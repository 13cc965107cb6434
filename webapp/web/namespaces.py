"""The namespace tree: one user's namespaces (or, for an admin, everyone's) by `/` segment."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from webapp.errors import NotFound
from webapp.services.namespaces import namespace_health, namespace_tree
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
    """The tree of namespaces with counts per state, mean importance and last write.

    An ordinary user sees their own; an admin sees every user's namespaces together, or
    one user's with `user=`. A user the visitor may not see is a 404, as an unknown one.
    """
    user = (user or "").strip() or None
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
