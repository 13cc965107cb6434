"""The dashboard (the users list is in people.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from webapp.services.stats import EXPIRING_SOON_DAYS, dashboard
from webapp.services.users import resolve_user, usernames
from webapp.web.deps import CurrentVisitor, DatabaseDep
from webapp.web.render import render

router = APIRouter()


@router.get("/", name="show_dashboard")
async def show_dashboard(
    request: Request, db: DatabaseDep, visitor: CurrentVisitor, user: str | None = None
) -> Response:
    """Counts per state, and the memories expiring soon, recently changed and most read."""
    user_id = await resolve_user(db, principal=visitor.principal, username=user) if user else None
    if user_id is None:
        user = None
    stats = await dashboard(db, principal=visitor.principal, user_id=user_id)
    listed = [*stats.expiring_soon, *stats.recently_changed, *stats.most_accessed]
    owners = (
        await usernames(db, user_ids=(memory.user_id for memory in listed))
        if visitor.user.is_admin
        else {}
    )
    return render(
        request,
        "dashboard.html",
        {"stats": stats, "owners": owners, "user": user, "soon_days": EXPIRING_SOON_DAYS},
    )
