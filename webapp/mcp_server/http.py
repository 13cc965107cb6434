"""MCP over streamable HTTP at /mcp, with the API's bearer tokens.

Every HTTP request is authenticated before the MCP SDK sees it, exactly as an /api/v1
request is (services.tokens.bearer_principal, services.users.act_as): no token, or an
unknown or revoked one, is a 401 and no MCP message is read; an admin's token may add
`?user=NAME` to act for that user. The principal is put in the request's ASGI scope, where
each tool call finds it (`acting`), so a token revoked mid-conversation stops working at
its next request.

The SDK runs stateless with JSON responses: no MCP session is kept in memory between
requests, so any number of workers and hosts can serve /mcp behind one load balancer (the
app servers are stateless, SPEC section 7), and a tool call is one POST answered with one
JSON body, with no event stream to hold open.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from webapp.db import Database
from webapp.db_errors import is_unavailable, unavailable_message
from webapp.errors import MemoryAdminError
from webapp.mcp_server.server import build_server
from webapp.services.principal import Principal
from webapp.services.tokens import bearer_principal
from webapp.services.users import act_as

logger = logging.getLogger("memory_admin.mcp")

MCP_PATH = "/mcp"
PRINCIPAL = "memory_admin.principal"
"""The ASGI scope key holding the principal a request acts as."""
QUERY_NAMES = frozenset({"user"})


def _acting(ctx: ServerRequestContext[Any, Any]) -> Principal:
    """The principal McpEndpoint put in the scope of the HTTP request carrying ctx."""
    scope = getattr(ctx.request, "scope", None)
    principal = scope.get(PRINCIPAL) if scope is not None else None
    if not isinstance(principal, Principal):  # never act for nobody
        raise RuntimeError("an MCP request reached a tool without an authenticated principal")
    return principal


def _bearer_secret(request: Request) -> str | None:
    """The secret of `Authorization: Bearer SECRET`, as FastAPI's HTTPBearer reads it."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


class McpEndpoint:
    """The ASGI app at /mcp: authenticates each request, then hands it to the SDK."""

    def __init__(self, db: Database, *, content_max_bytes: int, max_body_bytes: int) -> None:
        self.db = db
        self.server = build_server(db, acting=_acting, content_max_bytes=content_max_bytes)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            scope[PRINCIPAL] = await self._authenticate(request)
        except MemoryAdminError as exc:
            await _refuse(scope, receive, send, exc.status_code, str(exc), exc.headers)
            return
        except (DBAPIError, PoolTimeout, OSError) as exc:
            if not is_unavailable(exc):
                raise
            logger.exception("database unavailable")
            await _refuse(scope, receive, send, 503, unavailable_message(exc))
            return
        # A manager for each request: stateless, it keeps nothing between requests, and
        # its task group is then the request's own, so /mcp needs no lifespan of the app
        # (a manager runs once, and only inside its run()). It costs ~0.1 ms.
        manager = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            max_request_body_size=self.max_body_bytes,
            # No DNS-rebinding check: it guards servers that trust whoever reaches them,
            # and /mcp trusts only a bearer token, which a rebound page does not have.
            security_settings=None,
        )
        async with manager.run():
            await manager.handle_request(scope, receive, send)

    async def _authenticate(self, request: Request) -> Principal:
        """The principal of the request's token (and `user=`); the API's errors otherwise."""
        unknown = sorted(set(request.query_params) - QUERY_NAMES)
        if unknown:
            raise MemoryAdminError(f"unknown query parameter: {', '.join(unknown)}")
        # Outside the request's pinned read connection (RequestScope): the tool call runs
        # in the SDK's task, with a connection of its own, and this one would sit idle
        # for the whole call. The token's reads (and its touch) share one connection,
        # handed back before the call: a checkout costs a ping on PostgreSQL.
        with self.db.unpinned_reads():
            async with self.db.pinned_reads():
                token = await bearer_principal(self.db, secret=_bearer_secret(request))
                username = request.query_params.get("user")
                return await act_as(self.db, principal=token, username=username)


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer as the API does, `{"detail": ...}` with the status, before any MCP message."""
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)
