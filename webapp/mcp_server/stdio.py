"""MCP over stdio: the agent tools for a local client that starts `memory-admin mcp`.

A desktop agent starts the command and speaks MCP on its standard input and output, so
the process writes nothing else there: the SDK's stdio_server points file descriptor 1 at
standard error while it serves, so a stray print (or a library's native log line) cannot
corrupt the protocol, and logging goes to standard error. There is no token: whoever can
start the command can read the database anyway. The audit trail names the actor
`mcp stdio as USERNAME`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio
from mcp.server.stdio import stdio_server

from webapp.db import Database
from webapp.errors import NotFound
from webapp.mcp_server.server import build_server
from webapp.services import vectors
from webapp.services.principal import Principal
from webapp.services.users import get_user_by_username
from webapp.settings import Settings
from webapp.traffic import Traffic

logger = logging.getLogger("memory_admin.mcp")

CHANNEL = "mcp stdio"


async def stdio_principal(db: Database, *, username: str) -> Principal:
    """The principal the stdio server acts as: username, who must exist and be active."""
    user = await get_user_by_username(db, username=username)
    if not user.is_active:
        raise NotFound(f"user {username!r} is deactivated")
    return Principal.of_local_agent(user, CHANNEL)


async def _embed_in_background(db: Database, traffic: Traffic) -> None:
    """Give new memories their vectors between tool calls; the model loads in a thread
    meanwhile, so the client's first request is answered at once."""
    if await anyio.to_thread.run_sync(vectors.enabled):
        await vectors.drain_forever(db, yield_to=traffic)


async def serve_stdio(db: Database, settings: Settings, *, username: str, read_only: bool) -> None:
    """Serve the tools on standard input and output, as username, until the client closes
    standard input. New memories get their vectors in the background, as in the app."""
    principal = await stdio_principal(db, username=username)
    traffic = Traffic()
    server = build_server(
        db,
        acting=lambda _ctx: principal,
        read_only=read_only,
        content_max_bytes=settings.content_max_bytes,
        traffic=traffic,
    )
    embedder = None
    if settings.background_embedding:
        embedder = asyncio.create_task(_embed_in_background(db, traffic))
    logger.info("serving MCP on stdio as %s%s", username, " (read-only)" if read_only else "")
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        if embedder is not None:
            embedder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await embedder
