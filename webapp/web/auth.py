"""Logging in and out of the admin app."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from webapp.services.auth import LoginFailed, LoginThrottled, end_session, log_in
from webapp.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CheckedVisitor,
    CsrfFailed,
    DatabaseDep,
    SettingsDep,
    cookie_signer,
    optional_visitor,
    safe_next,
    session_secret,
    tokens_match,
)
from webapp.web.render import redirect, render, set_login_csrf_cookie

router = APIRouter()


@router.get("/login", name="login_form")
async def login_form(request: Request, next: str | None = None) -> Response:
    """The login form; someone already logged in goes straight on."""
    if await optional_visitor(request) is not None:
        return redirect(request, safe_next(next))
    return _login_page(request, next=safe_next(next))


def _login_page(
    request: Request, *, next: str, username: str = "", error: str | None = None, status: int = 200
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {"next": next, "username": username, "error": error, "login_csrf": token},
        status_code=status,
    )
    set_login_csrf_cookie(request, response, token)
    return response


@router.post("/login", name="log_in")
async def log_in_form(
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=150)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password (throttled) and start a new session; the old one, if any, ends."""
    target = safe_next(next)
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf_token):
        raise CsrfFailed("The login form has expired. Reload the page and try again.")
    if not username or not password:
        return _login_page(
            request,
            next=target,
            username=username,
            error="Enter your username and password.",
            status=400,
        )
    address = request.client.host if request.client else "unknown"
    try:
        signed_in = await log_in(
            db,
            username=username,
            password=password,
            address=address,
            session_hours=settings.session_hours,
        )
    except (LoginFailed, LoginThrottled) as exc:
        return _login_page(
            request, next=target, username=username, error=str(exc), status=exc.status_code
        )
    old_secret = session_secret(request)
    if old_secret is not None:
        await end_session(db, secret=old_secret)
    response = redirect(request, target)
    response.set_cookie(
        SESSION_COOKIE,
        cookie_signer(request).sign(signed_in.secret.encode()).decode(),
        max_age=settings.session_hours * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout", name="log_out")
async def log_out(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """End the session on the server and forget the cookie."""
    secret = session_secret(request)
    if secret is not None:
        await end_session(db, secret=secret)
    response = redirect(
        request, request.app.url_path_for("login_form"), message="You are logged out."
    )
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
