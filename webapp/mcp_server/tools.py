"""The agent tools that MCP serves: their arguments, results and what each one calls.

Each tool validates its arguments with the rules of the JSON API (the same field types
and schemas, webapp.api.schemas and webapp.models) and calls the same service function as
the matching /api/v1 route, so validation, isolation, access counting and the audit trail
are the API's. Results are the API's response bodies. Nothing here knows about MCP's
transports: webapp.mcp_server.server turns these into an MCP server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import StrictInt, ValidationError, model_validator
from sqlmodel import Field, SQLModel

from webapp.api.schemas import (
    TTL_SECONDS_MAX,
    ContextBlock,
    MemoryPublic,
    MemoryPut,
    NamespaceCounts,
    SearchRequestBody,
    SearchResults,
)
from webapp.db import Database
from webapp.ids import INT4_MAX
from webapp.models import (
    Content,
    ContextRequest,
    Importance,
    MemoryKey,
    Namespace,
    Tags,
)
from webapp.services.context import build_context
from webapp.services.memories import delete_memory, delete_memory_at, recall, remember
from webapp.services.namespaces import namespace_health
from webapp.services.principal import Principal
from webapp.services.search import search
from webapp.types import utcnow

# --- arguments -----------------------------------------------------------------------------


class RememberArguments(SQLModel):
    """remember's arguments: PUT /api/v1/memories's body without expires_at and version."""

    model_config = {"extra": "forbid"}

    namespace: Namespace = Field(max_length=200)
    key: MemoryKey = Field(max_length=255)
    content: Content
    tags: Tags = Field(default_factory=list)
    importance: Importance = 0.5
    ttl_seconds: StrictInt | None = Field(default=None, ge=1, le=TTL_SECONDS_MAX)


class RecallArguments(SQLModel):
    """recall's arguments: GET /api/v1/recall's query."""

    model_config = {"extra": "forbid"}

    namespace: Namespace = Field(max_length=200)
    key: MemoryKey = Field(max_length=255)


class ForgetArguments(SQLModel):
    """forget's arguments: the memory's namespace and key, or its id (not both)."""

    model_config = {"extra": "forbid"}

    namespace: Namespace | None = Field(default=None, max_length=200)
    key: MemoryKey | None = Field(default=None, max_length=255)
    id: StrictInt | None = Field(default=None, ge=1, le=INT4_MAX)

    @model_validator(mode="after")
    def _one_way(self) -> ForgetArguments:
        by_key = self.namespace is not None or self.key is not None
        if by_key and self.id is not None:
            raise ValueError("give namespace and key, or id, not both")
        if self.id is None and (self.namespace is None or self.key is None):
            raise ValueError("give namespace and key, or id")
        return self


class NoArguments(SQLModel):
    """A tool that takes nothing."""

    model_config = {"extra": "forbid"}


# --- results ---------------------------------------------------------------------------


class Remembered(SQLModel):
    """remember's result: whether the key was created or updated, and the memory now."""

    result: Literal["created", "updated"]
    memory: MemoryPublic


class NamespaceList(SQLModel):
    """list_namespaces's result: every namespace with its memories per state, by name."""

    namespaces: list[NamespaceCounts]


# --- what each tool does ----------------------------------------------------------------


async def _remember(db: Database, principal: Principal, arguments: RememberArguments) -> Remembered:
    body = MemoryPut.model_validate(arguments.model_dump())
    done = await remember(db, principal=principal, data=body.as_create(utcnow()))
    return Remembered(
        result="created" if done.created else "updated",
        memory=MemoryPublic.model_validate(done.memory, from_attributes=True),
    )


async def _recall(db: Database, principal: Principal, arguments: RecallArguments) -> MemoryPublic:
    memory = await recall(db, principal=principal, namespace=arguments.namespace, key=arguments.key)
    return MemoryPublic.model_validate(memory, from_attributes=True)


async def _search(
    db: Database, principal: Principal, arguments: SearchRequestBody
) -> SearchResults:
    return SearchResults.of(await search(db, principal=principal, request=arguments))


async def _context(db: Database, principal: Principal, arguments: ContextRequest) -> ContextBlock:
    return ContextBlock.of(await build_context(db, principal=principal, request=arguments))


async def _forget(db: Database, principal: Principal, arguments: ForgetArguments) -> MemoryPublic:
    if arguments.id is not None:
        memory = await delete_memory(db, principal=principal, memory_id=arguments.id)
    else:
        assert arguments.namespace is not None and arguments.key is not None
        memory = await delete_memory_at(
            db, principal=principal, namespace=arguments.namespace, key=arguments.key
        )
    return MemoryPublic.model_validate(memory, from_attributes=True)


async def _list_namespaces(
    db: Database, principal: Principal, _arguments: NoArguments
) -> NamespaceList:
    health = await namespace_health(db, principal=principal)
    return NamespaceList(namespaces=[NamespaceCounts.of(one) for one in health])


# --- the tools -----------------------------------------------------------------------------

NAMESPACE = (
    "Where the memory lives: segments of letters, digits, '_', '.', '-' joined by '/' "
    "(e.g. 'people/ann')"
)
KEY = "The memory's name within its namespace (e.g. 'favourite-drink')"


@dataclass(frozen=True)
class AgentTool:
    """One tool: its name, a one-line description for the model, its arguments and result
    (pydantic models: the JSON schemas and the validation), and what it does."""

    name: str
    description: str
    arguments: type[SQLModel]
    result: type[SQLModel]
    run: Callable[[Database, Principal, Any], Awaitable[SQLModel]]
    writes: bool = False
    hints: dict[str, str] = field(default_factory=dict)
    """A description of each argument, for the model reading the schema."""

    def input_schema(self) -> dict[str, Any]:
        """The arguments' JSON schema, each argument described."""
        schema = self.arguments.model_json_schema()
        for name, text in self.hints.items():
            schema["properties"][name]["description"] = text
        schema.pop("title", None)
        return schema

    def output_schema(self) -> dict[str, Any]:
        """The result's JSON schema."""
        return self.result.model_json_schema()


TOOLS: tuple[AgentTool, ...] = (
    AgentTool(
        name="remember",
        description=(
            "Save a fact under namespace + key (creates it, or replaces the content, tags and "
            "importance of the memory already there); returns whether it was created or updated."
        ),
        arguments=RememberArguments,
        result=Remembered,
        run=_remember,
        writes=True,
        hints={
            "namespace": NAMESPACE,
            "key": KEY,
            "content": "The fact to keep, in plain words",
            "tags": "Labels to filter by later (lowercased; up to 32)",
            "importance": "0.0 (trivia) to 1.0 (essential); ranks search results; default 0.5",
            "ttl_seconds": "Forget it after this many seconds; omit to keep it until forgotten",
        },
    ),
    AgentTool(
        name="recall",
        description=(
            "Read the memory at namespace + key exactly; an error if there is none "
            "(use search when you do not know the key)."
        ),
        arguments=RecallArguments,
        result=MemoryPublic,
        run=_recall,
        hints={"namespace": NAMESPACE, "key": KEY},
    ),
    AgentTool(
        name="search",
        description=(
            "Find the memories that best match a question or keywords, best first, each with "
            "its score and the score's components."
        ),
        arguments=SearchRequestBody,
        result=SearchResults,
        run=_search,
        hints={
            "query": "What to look for, in plain words (a question works)",
            "namespace": "Only this namespace, or those under a prefix ending in '/'",
            "tags": "Only memories with all of these tags",
            "limit": "How many results at most (1 to 100; default 10)",
        },
    ),
    AgentTool(
        name="context",
        description=(
            "Get the memories most relevant to a query as one text block of at most max_chars "
            "characters, ready to put into a prompt ('[id] namespace/key: content' per line)."
        ),
        arguments=ContextRequest,
        result=ContextBlock,
        run=_context,
        hints={
            "query": "What the block should be about, in plain words",
            "max_chars": "The block's size budget in characters (1 to 100,000)",
            "namespace": "Only this namespace, or those under a prefix ending in '/'",
            "tags": "Only memories with all of these tags",
        },
    ),
    AgentTool(
        name="forget",
        description=(
            "Delete a memory, named by namespace + key or by id; a person can restore it "
            "from the admin's trash."
        ),
        arguments=ForgetArguments,
        result=MemoryPublic,
        run=_forget,
        writes=True,
        hints={
            "namespace": NAMESPACE,
            "key": KEY,
            "id": "The memory's id (instead of namespace + key)",
        },
    ),
    AgentTool(
        name="list_namespaces",
        description=(
            "List the namespaces that hold memories, with how many are active, expired and "
            "deleted in each."
        ),
        arguments=NoArguments,
        result=NamespaceList,
        run=_list_namespaces,
    ),
)


def describe_invalid(exc: ValidationError) -> str:
    """A validation failure as one line for the model: each field with the API's message
    for it (the input itself is not echoed back)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "invalid input: " + "; ".join(problems)
