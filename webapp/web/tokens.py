"""API tokens: list, create (the secret shown once), revoke with confirmation.

The secret exists only in the answer to the POST that created it: that answer is the page
itself, not a redirect (a redirect would lose it), and is never cached. The create form
carries the time it was shown; sending it again (reloading the answer) is caught by the
service as a conflict instead of silently creating a second token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from webapp.db import Database
from webapp.errors import Conflict, InvalidInput, NotFound
from webapp.ids import positive_int4
from webapp.services.tokens import (
    create_token,
    get_token,
    list_tokens,
    revoke_token,
    token_name,
    token_owner,
)
from webapp.services.users import resolve_user
from webapp.types import utcnow
from webapp.web.deps import CheckedVisitor, CurrentVisitor, DatabaseDep, Visitor
from webapp.web.forms import form_fields
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store"}
LIST_LIMIT = 500
"""The most tokens one page lists (an admin with many users narrows it with ?user=)."""


async def _token_id_in_path(token_id: Annotated[str, Path()]) -> int:
    found = positive_int4(token_id)
    if found is None:
        raise NotFound("no such API token")
    return found


TokenIdPath = Annotated[int, Depends(_token_id_in_path)]


def _issued_at(text: str) -> datetime | None:
    """When the submitted form was shown (its `issued` field), if it says so."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _list_url(request: Request, user: str | None) -> str:
    path = request.app.url_path_for("show_tokens")
    return f"{path}?{urlencode({'user': user})}" if user else path


async def _tokens_page(
    request: Request,
    db: Database,
    visitor: Visitor,
    user: str | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """The tokens page (the `body` block for htmx) with the tokens visitor may see."""
    user = (user or "").strip() or None
    user_id = await resolve_user(db, principal=visitor.principal, username=user) if user else None
    tokens = (
        []
        if user and user_id is None
        else await list_tokens(
            db, principal=visitor.principal, user_id=user_id, limit=LIST_LIMIT + 1
        )
    )
    values: dict[str, Any] = {
        "tokens": tokens[:LIST_LIMIT],
        "more_tokens": len(tokens) > LIST_LIMIT,
        "user": user,
        "issued": utcnow().isoformat(),
        "typed": {"name": "", "owner": user or visitor.user.username},
        "list_url": _list_url(request, user),
        **context,
    }
    return render(
        request, "tokens/list.html", values, block="body", status_code=status_code, headers=NO_STORE
    )


@router.get("/tokens", name="show_tokens")
async def show_tokens(
    request: Request, db: DatabaseDep, visitor: CurrentVisitor, user: str | None = None
) -> Response:
    """The visitor's tokens (an admin: everyone's, or one user's) and the create form."""
    return await _tokens_page(request, db, visitor, user)


@router.post("/tokens", name="create_token")
async def create_token_page(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """Create a token and answer with its secret, shown this once (no redirect)."""
    form = await form_fields(request)
    user = form.get("user") or None
    typed = {"name": form.get("name", ""), "owner": form.get("owner", "")}
    errors: dict[str, str] = {}
    try:
        token_name(typed["name"])
    except InvalidInput as exc:
        errors["name"] = str(exc)
    try:
        owner = await token_owner(db, principal=visitor.principal, username=typed["owner"])
    except InvalidInput as exc:
        errors["owner"] = str(exc)
    if errors:
        return await _tokens_page(
            request, db, visitor, user, status_code=422, typed=typed, errors=errors
        )
    try:
        token, secret = await create_token(
            db, user=owner, name=typed["name"], form_issued_at=_issued_at(form.get("issued", ""))
        )
    except Conflict as exc:
        return await _tokens_page(request, db, visitor, user, status_code=409, conflict=str(exc))
    return await _tokens_page(
        request,
        db,
        visitor,
        user,
        created={"token": token, "owner": owner.username, "secret": secret},
        # In the page itself the secret's panel says it; htmx's swap also tells the status region.
        status_message=f"Created the token “{token.name}”." if is_htmx(request) else None,
    )


@router.get("/tokens/{token_id}/revoke", name="confirm_revoke_token")
async def confirm_revoke_token(
    request: Request,
    token_id: TokenIdPath,
    db: DatabaseDep,
    visitor: CurrentVisitor,
    user: str | None = None,
) -> Response:
    """Ask before revoking: a page without JavaScript, a dialog in the page with htmx."""
    listed = await get_token(db, principal=visitor.principal, token_id=token_id)
    return render(
        request,
        "tokens/revoke.html",
        {
            "listed": listed,
            "user": user,
            "list_url": _list_url(request, user),
            "as_dialog": is_htmx(request),
        },
        block="dialog",
    )


@router.post("/tokens/{token_id}/revoke", name="revoke_token")
async def revoke_token_page(
    request: Request, token_id: TokenIdPath, db: DatabaseDep, visitor: CheckedVisitor
) -> Response:
    """Revoke the token: the API refuses it from now on. Post/Redirect/Get with a flash."""
    form = await form_fields(request)
    user = form.get("user") or None
    token = await revoke_token(db, token_id=token_id, principal=visitor.principal)
    message = f"Revoked the token “{token.name}”. Agents using it now get 401."
    if is_htmx(request):
        return await _tokens_page(request, db, visitor, user, status_message=message)
    return redirect(request, _list_url(request, user), message=message)
