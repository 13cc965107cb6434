"""The agent tools (webapp.mcp_server.tools), and each namespace as a resource
(webapp.mcp_server.resources), as an MCP server on any transport.

Built on the SDK's low-level Server rather than its decorator layer (MCPServer): the tools
are the API's pydantic schemas, validated here with the API's rules and messages, and every
failure becomes a tool error (`isError`) the model can read and act on, never a crashed
session or a protocol error. Who is acting comes from `acting`, which the transport
supplies: the bearer token of each HTTP request (webapp.mcp_server.http), or the user the
stdio server was started for (webapp.mcp_server.stdio).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from webapp import __version__
from webapp.db import Database
from webapp.db_errors import is_unavailable, unavailable_message
from webapp.errors import MemoryAdminError
from webapp.mcp_server import resources
from webapp.mcp_server.tools import TOOLS, AgentTool, describe_invalid
from webapp.services.principal import Principal
from webapp.traffic import Traffic
from webapp.validation import content_limit

logger = logging.getLogger("memory_admin.mcp")

SERVER_NAME = "memory-admin"
INSTRUCTIONS = (
    "Long-term memory for you, kept across conversations. Search or ask for context before "
    "answering about the user or past work; remember durable facts (preferences, decisions, "
    "people, project details) under a namespace and key, and forget what became wrong."
)
CRASHED = "Something went wrong on the server; it was logged."
"""What a tool says about a bug (the API's 500): the details stay in the server's log."""

Acting = Callable[[ServerRequestContext[Any, Any]], Principal]
"""Who a tool call acts as, from its request context."""


def _annotations(tool: AgentTool) -> types.ToolAnnotations:
    """Hints for clients: reads change nothing a person would call data (counting an access
    aside); remember is an idempotent upsert; forget deletes, though restorably."""
    if not tool.writes:
        return types.ToolAnnotations(read_only_hint=True, open_world_hint=False)
    return types.ToolAnnotations(
        read_only_hint=False,
        destructive_hint=tool.name == "forget",
        idempotent_hint=tool.name == "remember",
        open_world_hint=False,
    )


def _listed(tool: AgentTool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema(),
        output_schema=tool.output_schema(),
        annotations=_annotations(tool),
    )


def _cancelled() -> bool:
    """Whether this task is being cancelled (the session is closing)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _failed(message: str) -> types.CallToolResult:
    text = types.TextContent(type="text", text=message)
    return types.CallToolResult(content=[text], is_error=True)


def build_server(
    db: Database,
    *,
    acting: Acting,
    read_only: bool = False,
    content_max_bytes: int,
    traffic: Traffic | None = None,
) -> Server[Any]:
    """An MCP server of the agent tools on db; read_only leaves out the tools that write.
    content_max_bytes: the app's CONTENT_MAX_BYTES. traffic, if given, counts each tool
    call as in flight (so the background embedder waits its turn)."""
    tools = {tool.name: tool for tool in TOOLS if not (read_only and tool.writes)}
    listed = types.ListToolsResult(tools=[_listed(tool) for tool in tools.values()])
    schemas = {tool.name: tool.input_schema for tool in listed.tools}

    async def list_tools(
        _ctx: ServerRequestContext[Any, Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listed

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = tools.get(params.name)
        if tool is None:
            return _failed(f"no tool named {params.name!r}; the tools are: {', '.join(tools)}")
        principal = acting(ctx)
        if traffic is not None:
            traffic.started()
        try:
            return await _call(db, tool, principal, params.arguments or {}, content_max_bytes)
        finally:
            if traffic is not None:
                traffic.ended()

    def input_schema(name: str) -> dict[str, Any] | None:
        return schemas.get(name)

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        principal = acting(ctx)
        async with _as_protocol_errors(), db.pinned_reads():
            found = await resources.list_namespaces(db, principal=principal)
        return types.ListResourcesResult(resources=found)

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        principal = acting(ctx)
        async with _as_protocol_errors(), db.pinned_reads():
            content = await resources.read_namespace(db, principal=principal, uri=params.uri)
        text = json.dumps(content.model_dump(mode="json"), ensure_ascii=False)
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri=params.uri, mime_type="application/json", text=text)
            ]
        )

    return Server(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


@asynccontextmanager
async def _as_protocol_errors() -> AsyncIterator[None]:
    """A resource's failure as the protocol's error (resources have no error result): bad
    input is invalid params, an unavailable database an internal error with its message."""
    try:
        yield
    except MemoryAdminError as exc:
        code = INTERNAL_ERROR if exc.status_code >= 500 else INVALID_PARAMS
        raise MCPError(code=code, message=str(exc)) from None
    except (DBAPIError, PoolTimeout, OSError) as exc:
        if not is_unavailable(exc):
            raise
        logger.exception("database unavailable")
        raise MCPError(code=INTERNAL_ERROR, message=unavailable_message(exc)) from None


async def _call(
    db: Database,
    tool: AgentTool,
    principal: Principal,
    arguments: dict[str, Any],
    content_max_bytes: int,
) -> types.CallToolResult:
    """Run tool for principal: its result, or a tool error with the API's message."""
    try:
        # The app's content limit for every validation of the call (remember validates
        # again as it builds the memory), and one pooled connection for its reads and
        # writes: what RequestScope gives an API request.
        with content_limit(content_max_bytes):
            validated = tool.arguments.model_validate(arguments)
            async with db.pinned_reads():
                result = await tool.run(db, principal, validated)
    except ValidationError as exc:
        return _failed(describe_invalid(exc))
    except MemoryAdminError as exc:
        return _failed(str(exc))
    except (DBAPIError, PoolTimeout, OSError) as exc:
        if not is_unavailable(exc):
            logger.exception("tool %s failed", tool.name)
            return _failed(CRASHED)
        logger.exception("database unavailable")
        return _failed(unavailable_message(exc))
    except Exception:
        if _cancelled():
            raise  # the client went away mid-call (an error while unwinding): not a bug
        logger.exception("tool %s failed", tool.name)
        return _failed(CRASHED)
    structured = result.model_dump(mode="json")
    text = json.dumps(structured, ensure_ascii=False)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )
