"""Who is visiting the admin app, and the checks every page and form goes through.

`CurrentVisitor` (a logged-in person, else a redirect to /login) is what pages depend
on; `CheckedVisitor` also checks the CSRF token and is what every state change depends
on. HX-Request is never taken as proof of anything: htmx sends the same token in the
`X-CSRF-Token` header that plain forms send in the `csrf_token` field.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Path, Request
from itsdangerous import BadSignature, Signer

from webapp.errors import MemoryAdminError, NotFound
from webapp.ids import positive_int4
from webapp.request_scope import DatabaseDep as DatabaseDep  # the pages take it from here too
from webapp.request_scope import database
from webapp.services.auth import SessionUser, session_user
from webapp.services.cursors import CursorSigner
from webapp.services.principal import Principal
from webapp.settings import Settings
from webapp.web.forms import form_fields

SESSION_COOKIE = "ma_session"
LOGIN_CSRF_COOKIE = "ma_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(MemoryAdminError):
    """No live session: pages redirect to /login?next=..., htmx gets HX-Redirect."""

    status_code = 401

    def __init__(self, next_path: str) -> None:
        super().__init__("Log in to continue.")
        self.next_path = next_path


class CsrfFailed(MemoryAdminError):
    """A state-changing request without the right CSRF token; nothing was changed."""

    status_code = 403


class AdminOnly(MemoryAdminError):
    """A page or action only admins may use."""

    status_code = 403


@dataclass(frozen=True)
class Visitor:
    """A logged-in person: who they are, their session's CSRF token (which forms and htmx
    requests must send back) and the principal services act as."""

    user: SessionUser
    csrf_token: str

    @property
    def principal(self) -> Principal:
        """The identity the service layer scopes every query and write by."""
        return Principal(
            user_id=self.user.id, username=self.user.username, is_admin=self.user.is_admin
        )


def settings_of(request: Request) -> Settings:
    """The app's Settings."""
    settings: Settings = request.app.state.settings
    return settings


def cursor_signer(request: Request) -> CursorSigner:
    """Signs and checks the opaque browse cursors."""
    signer: CursorSigner = request.app.state.cursor_signer
    return signer


def cookie_signer(request: Request) -> Signer:
    """Signs cookie values with SECRET_KEY."""
    signer: Signer = request.app.state.cookie_signer
    return signer


def session_secret(request: Request) -> str | None:
    """The session secret from the signed cookie, or None if absent or forged."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        return cookie_signer(request).unsign(raw).decode()
    except BadSignature:
        return None


def path_with_query(request: Request) -> str:
    """This request's path and query string, for next= after logging in."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def optional_visitor(request: Request) -> Visitor | None:
    """The logged-in visitor, or None."""
    secret = session_secret(request)
    if secret is None:
        return None
    found = await session_user(database(request), secret=secret)
    if found is None:
        return None
    visitor = Visitor(user=found.user, csrf_token=found.csrf_token)
    request.state.visitor = visitor
    return visitor


async def current_visitor(request: Request) -> Visitor:
    """The logged-in visitor; LoginRequired otherwise."""
    visitor = await optional_visitor(request)
    if visitor is None:
        next_path = path_with_query(request) if request.method == "GET" else "/"
        raise LoginRequired(next_path)
    return visitor


async def submitted_csrf_token(request: Request) -> str:
    """The token a request sent: the X-CSRF-Token header, else the form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return (await form_fields(request)).get(CSRF_FIELD, "")
    return ""


def tokens_match(expected: str, given: str) -> bool:
    """Constant-time comparison of two tokens; an empty token never matches."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


async def checked_visitor(
    request: Request, visitor: Annotated[Visitor, Depends(current_visitor)]
) -> Visitor:
    """The logged-in visitor of a state-changing request with a valid CSRF token."""
    if not tokens_match(visitor.csrf_token, await submitted_csrf_token(request)):
        raise CsrfFailed(
            "The form has expired or did not come from this app. Reload and try again."
        )
    return visitor


async def admin_visitor(visitor: Annotated[Visitor, Depends(current_visitor)]) -> Visitor:
    """The logged-in visitor, who must be an admin."""
    if not visitor.user.is_admin:
        raise AdminOnly("Only admins can use this page.")
    return visitor


async def checked_admin(visitor: Annotated[Visitor, Depends(checked_visitor)]) -> Visitor:
    """An admin's state-changing request with a valid CSRF token."""
    if not visitor.user.is_admin:
        raise AdminOnly("Only admins can do this.")
    return visitor


def safe_next(target: str | None) -> str:
    """next= only to a path of this app: '/...' but not '//host' or '/\\host'."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ch in target for ch in "\r\n\t") or "\\" in target:
        return "/"
    return quote(target, safe="/?&=%:+,;@!$'()*~.-_#")


def memory_id_from_text(text: str) -> int:
    """The memory id a URL or form names; NotFound (404) for a text that cannot be one, a
    number too large for the database included, as for an id that is not the visitor's."""
    memory_id = positive_int4(text)
    if memory_id is None:
        raise NotFound("memory not found")
    return memory_id


async def _memory_id_in_path(memory_id: Annotated[str, Path()]) -> int:
    return memory_id_from_text(memory_id)


# FastAPI runs a plain `def` dependency in a worker thread; these only read app.state, so
# they are async: the thread hop cost more than the whole lookup (request_scope.DatabaseDep too).


async def _settings_dependency(request: Request) -> Settings:
    return settings_of(request)


async def _signer_dependency(request: Request) -> CursorSigner:
    return cursor_signer(request)


CurrentVisitor = Annotated[Visitor, Depends(current_visitor)]
CheckedVisitor = Annotated[Visitor, Depends(checked_visitor)]
AdminVisitor = Annotated[Visitor, Depends(admin_visitor)]
CheckedAdmin = Annotated[Visitor, Depends(checked_admin)]
SettingsDep = Annotated[Settings, Depends(_settings_dependency)]
SignerDep = Annotated[CursorSigner, Depends(_signer_dependency)]
MemoryIdPath = Annotated[int, Depends(_memory_id_in_path)]
"""A page's {memory_id}: a 404 page, never a 422 or a database error, for one that is not
an id (webapp.ids)."""
