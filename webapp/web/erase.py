"""Erase a user (admins): a preview of what goes, then the typed username to confirm."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from webapp.errors import Conflict, InvalidInput
from webapp.services.erase import ErasurePreview, erase_user, preview_erasure
from webapp.web.deps import AdminVisitor, CheckedAdmin, DatabaseDep
from webapp.web.forms import form_fields
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()


@router.get("/users/{username}/erase", name="confirm_erase_user")
async def confirm_erase_user(
    request: Request, db: DatabaseDep, visitor: AdminVisitor, username: str
) -> Response:
    """What erasing the user would remove, and the form to confirm it by typing the name."""
    preview = await preview_erasure(db, principal=visitor.principal, username=username)
    return _page(request, preview)


@router.post("/users/{username}/erase", name="erase_user")
async def erase_user_now(
    request: Request, db: DatabaseDep, visitor: CheckedAdmin, username: str
) -> Response:
    """Erase the user if the typed name matches; the page again with the error otherwise."""
    typed = (await form_fields(request)).get("confirm_username", "")
    try:
        erased = await erase_user(
            db, principal=visitor.principal, username=username, confirm_username=typed
        )
    except (InvalidInput, Conflict) as exc:
        preview = await preview_erasure(db, principal=visitor.principal, username=username)
        return _page(request, preview, error=str(exc), typed=typed, status_code=exc.status_code)
    counts = erased.counts
    message = (
        f"Erased user {erased.username}: {counts.memories} memories, "
        f"{counts.events} events, {counts.tokens} tokens."
    )
    target = request.app.url_path_for("list_users")
    response = redirect(request, target, message=message)
    if is_htmx(request):
        # A redirect would be followed by the XHR and the users page swapped into the
        # form; the browser goes there itself instead, the flash cookie already set.
        response.status_code = 204
        del response.headers["location"]
        response.headers["HX-Redirect"] = target
    return response


def _page(
    request: Request,
    preview: ErasurePreview,
    *,
    error: str | None = None,
    typed: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "erase_user.html",
        {"preview": preview, "error": error, "typed": typed},
        block="erase_form",
        status_code=status_code,
    )
