"""Managing people (admins): the users list with paging, creating a user, and each user's
page to set a password, make or unmake an admin, deactivate or reactivate.

Every action is a plain form (Post/Redirect/Get without JavaScript); with htmx, the
response is the changed part of the page. Bad input keeps what was typed (never a
password) and answers 422 with the errors next to their fields; a refused change (the
last active admin, one's own account) answers 409 with the reason.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from webapp.errors import Conflict
from webapp.models import PasswordSet, UserCreate
from webapp.services.people import get_person, people_page, set_active, set_admin, set_password
from webapp.services.users import create_user
from webapp.web.deps import AdminVisitor, CheckedAdmin, DatabaseDep, Visitor
from webapp.web.forms import form_fields
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()
NEW_USER_FIELDS = ("username", "email", "is_admin")
"""What the create form keeps after an error; the passwords are never sent back."""


def _clean(value: str | None, limit: int = 150) -> str | None:
    return (value or "").strip()[:limit] or None


@router.get("/users", name="list_users")
async def list_users_page(
    request: Request,
    db: DatabaseDep,
    visitor: AdminVisitor,
    q: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> Response:
    """Every user with memory counts, a page at a time; q searches username and email."""
    return await _users_page(request, db, q=q, after=after, before=before)


async def _users_page(
    request: Request,
    db: DatabaseDep,
    *,
    q: str | None = None,
    after: str | None = None,
    before: str | None = None,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    search = _clean(q)
    page = await people_page(
        db, search=search, after=_clean(after) if not before else None, before=_clean(before)
    )
    here = request.app.url_path_for("list_users")

    def link(**cursor: str) -> str:
        return here + "?" + urlencode({"q": search, **cursor} if search else cursor)

    context: dict[str, Any] = {
        "people": page,
        "q": search or "",
        "next_url": link(after=page.after) if page.after else None,
        "prev_url": link(before=page.before) if page.before else None,
        "typed": typed or {},
        "errors": errors or {},
    }
    if errors:
        block = "new_user"
        status = 422
    else:
        block, status = "results", 200
    return render(request, "users.html", context, block=block, status_code=status)


@router.post("/users", name="create_user")
async def create_user_form(request: Request, db: DatabaseDep, visitor: CheckedAdmin) -> Response:
    """Create a user from the form (password typed twice); errors come back inline."""
    form = await form_fields(request)
    typed = {name: form.get(name, "").strip() for name in NEW_USER_FIELDS}
    errors: dict[str, str] = {}
    data: UserCreate | None = None
    try:
        data = UserCreate(
            username=typed["username"],
            email=typed["email"] or None,
            password=form.get("password", ""),
            is_admin=typed["is_admin"] == "yes",
        )
    except ValidationError as exc:
        errors.update(_field_errors(exc))
    try:
        PasswordSet(
            password=form.get("password", ""), password_again=form.get("password_again", "")
        )
    except ValidationError as exc:
        for name, message in _field_errors(exc).items():
            errors.setdefault(name, message)
    if data is not None and not errors:
        try:
            await create_user(db, data=data)
        except Conflict:
            errors["username"] = f"A user named {data.username} already exists."
    if errors or data is None:
        return await _users_page(request, db, typed=typed, errors=errors)
    target = request.app.url_path_for("show_user", username=data.username)
    message = f"Created {'admin' if data.is_admin else 'user'} {data.username}."
    response = redirect(request, target, message=message)
    if is_htmx(request):
        # htmx would follow a 303 and swap the whole new page into the form; the new user's
        # page is a new page, so htmx loads it (with the same flash message) instead.
        response.status_code = 200
        del response.headers["location"]
        response.headers["HX-Redirect"] = target
    return response


def _field_errors(exc: ValidationError) -> dict[str, str]:
    """The first message for each form field; a rule over both passwords is the second's."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "password_again"
        if error["type"] == "string_too_short" and field == "password":
            message = f"The password needs at least {error['ctx']['min_length']} characters."
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            message = message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")
        errors.setdefault(field, message)
    return errors


@router.get("/users/{username}", name="show_user")
async def show_user(
    request: Request, username: str, db: DatabaseDep, visitor: AdminVisitor
) -> Response:
    """One user: counts, sessions and tokens, and the forms that change their account."""
    return await _user_page(request, db, visitor, username)


async def _user_page(
    request: Request,
    db: DatabaseDep,
    visitor: Visitor,
    username: str,
    *,
    status: int = 200,
    status_message: str | None = None,
    error: str | None = None,
    password_errors: dict[str, str] | None = None,
) -> Response:
    person = await get_person(db, username=username)
    return render(
        request,
        "user.html",
        {
            "person": person,
            "is_self": person.user.id == visitor.user.id,
            "status_message": status_message,
            "error": error,
            "password_errors": password_errors or {},
        },
        block="account",
        status_code=status,
    )


async def _done(
    request: Request, db: DatabaseDep, visitor: Visitor, username: str, message: str
) -> Response:
    """After a change: the account part with the message (htmx), else back to the page."""
    if is_htmx(request):
        return await _user_page(request, db, visitor, username, status_message=message)
    target = request.app.url_path_for("show_user", username=username)
    return redirect(request, target, message=message)


@router.post("/users/{username}/password", name="set_user_password")
async def set_user_password(
    request: Request, username: str, db: DatabaseDep, visitor: CheckedAdmin
) -> Response:
    """Set or reset the user's password (typed twice)."""
    form = await form_fields(request)
    try:
        data = PasswordSet(
            password=form.get("password", ""), password_again=form.get("password_again", "")
        )
    except ValidationError as exc:
        await get_person(db, username=username)  # an unknown user is a 404, not a 422
        return await _user_page(
            request, db, visitor, username, status=422, password_errors=_field_errors(exc)
        )
    await set_password(db, username=username, data=data)
    return await _done(request, db, visitor, username, f"New password set for {username}.")


@router.post("/users/{username}/admin", name="set_user_admin")
async def set_user_admin(
    request: Request, username: str, db: DatabaseDep, visitor: CheckedAdmin
) -> Response:
    """Make the user an admin (admin=yes) or an ordinary user (admin=no)."""
    form = await form_fields(request)
    make_admin = form.get("admin") == "yes"
    try:
        await set_admin(db, principal=visitor.principal, username=username, is_admin=make_admin)
    except Conflict as exc:
        return await _user_page(request, db, visitor, username, status=409, error=str(exc))
    message = f"{username} is {'now an admin' if make_admin else 'no longer an admin'}."
    return await _done(request, db, visitor, username, message)


@router.post("/users/{username}/active", name="set_user_active")
async def set_user_active(
    request: Request, username: str, db: DatabaseDep, visitor: CheckedAdmin
) -> Response:
    """Reactivate (active=yes) or deactivate (active=no) the user; deactivating logs them
    out everywhere at once and refuses their API tokens while they stay inactive."""
    form = await form_fields(request)
    activate = form.get("active") == "yes"
    try:
        await set_active(db, principal=visitor.principal, username=username, is_active=activate)
    except Conflict as exc:
        return await _user_page(request, db, visitor, username, status=409, error=str(exc))
    message = (
        f"{username} is active again."
        if activate
        else f"{username} is deactivated: logged out everywhere, API tokens refused."
    )
    return await _done(request, db, visitor, username, message)
