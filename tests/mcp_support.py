"""MCP clients of the SDK for the tests: over streamable HTTP to a real `memory-admin
serve`, and over stdio to `memory-admin mcp` (tests/test_mcp_http.py, test_mcp_stdio.py,
test_langgraph_store.py). Semantic search is off in both: ranking by meaning has tests of
its own, and loading the model in every server would cost each run its CPU."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.serve_support import Server, serving
from webapp.models import LongTermMemory, MemoryEvent
from webapp.settings import Settings

QUIET = {"SEMANTIC_SEARCH": "false", "BACKGROUND_EMBEDDING": "false"}
"""The settings of the servers these tests start."""
SECRET = "mcp-test-secret-key"
TOOLS = {"remember", "recall", "search", "context", "forget", "list_namespaces"}
WRITING = {"remember", "forget"}

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_events = MemoryEvent.__table__  # type: ignore[attr-defined]


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
"""A JSON-RPC initialize request as a client sends it first, for tests that write the
protocol by hand."""


@pytest.fixture(scope="module")
def running_app(
    settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`memory-admin serve` (one worker) on the module's migrated database."""
    log_dir = tmp_path_factory.mktemp("serve")
    with serving(settings.database_url, SECRET, log_dir, workers=1, environment=QUIET) as served:
        yield served


@asynccontextmanager
async def over_http(
    server: Server,
    secret: str | None,
    *,
    user: str | None = None,
    mode: str = "legacy",
) -> AsyncIterator[Client]:
    """An MCP client session with the server's /mcp, sending secret as its bearer token
    (none if None), for user= if given; mode 'legacy' starts with `initialize`."""
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    url = server.url + "/mcp" + (f"?user={user}" if user is not None else "")
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, raise_exceptions=True) as client:
            yield client


def stdio_parameters(
    database_url: str, *arguments: str, environment: dict[str, str] | None = None
) -> StdioServerParameters:
    """`memory-admin mcp ARGUMENTS` on database_url, as a desktop client starts it, with
    the settings of environment if given."""
    env = {key: value for key, value in os.environ.items() if key != "MEMORY_ADMIN_DEBUG"}
    env.update(QUIET, DATABASE_URL=database_url, SECRET_KEY=SECRET, **(environment or {}))
    return StdioServerParameters(
        command=sys.executable, args=["-m", "webapp.cli", "mcp", *arguments], env=env
    )


@asynccontextmanager
async def over_stdio(
    database_url: str, *arguments: str, environment: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """An MCP client session with `memory-admin mcp ARGUMENTS`, started with `initialize`."""
    parameters = stdio_parameters(database_url, *arguments, environment=environment)
    async with Client(parameters, mode="legacy") as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call tool; it must succeed. Its structured result, which the text repeats as JSON."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, _text(result))
    assert result.structured_content is not None, tool
    assert json.loads(_text(result)) == result.structured_content
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    """Call tool; it must fail as a tool error (the session goes on). Its message."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, result.structured_content)
    return _text(result)


def _text(result: CallToolResult) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text", result.content
    return result.content[0].text


async def listed_tools(client: Client) -> dict[str, Any]:
    """The tools the server lists, by name."""
    return {tool.name: tool for tool in (await client.list_tools()).tools}


async def memory_row(engine: AsyncEngine, memory_id: int) -> Any:
    """The memory as the database holds it."""
    async with engine.connect() as conn:
        return (await conn.execute(select(_memories).where(_memories.c.id == memory_id))).one()


async def events_of(engine: AsyncEngine, memory_id: int) -> list[tuple[str, str]]:
    """The memory's trail, oldest first: (action, actor) each."""
    query = (
        select(_events.c.action, _events.c.actor)
        .where(_events.c.memory_id == memory_id)
        .order_by(_events.c.id)
    )
    async with engine.connect() as conn:
        return [(str(action), str(actor)) for action, actor in (await conn.execute(query)).all()]
