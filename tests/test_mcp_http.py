"""MCP over streamable HTTP at /mcp: an SDK client and a real `memory-admin serve`, on
both databases. The tools act as the bearer token's user, with the API's rules."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest
from mcp import MCPError
from mcp_types import INVALID_PARAMS
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_token, make_user
from tests.mcp_support import (
    INITIALIZE,
    TOOLS,
    call,
    events_of,
    listed_tools,
    memory_row,
    over_http,
    refused,
)
from tests.serve_support import Server
from webapp.db import Database
from webapp.services.tokens import revoke_token

pytestmark = pytest.mark.slow


@dataclass
class Agent:
    """A user's name, id, token id and secret."""

    name: str
    user_id: int
    token_id: int
    secret: str


async def _agent(session: AsyncSession, name: str, *, is_admin: bool = False) -> Agent:
    user = await make_user(session, username=name, is_admin=is_admin)
    token, secret = await make_token(session, user=user, name=f"{name}-desktop")
    assert user.id is not None and token.id is not None
    return Agent(name, user.id, token.id, secret)


@pytest.fixture
async def ann(session: AsyncSession, db: AsyncEngine) -> Agent:
    return await _agent(session, "ann")


@pytest.fixture
async def bob(session: AsyncSession, db: AsyncEngine) -> Agent:
    return await _agent(session, "bob")


async def test_a_session_from_initialize_to_forget(
    running_app: Server, ann: Agent, db: AsyncEngine
) -> None:
    """initialize, list tools, remember, recall, search, context, forget, then recall is
    gone: each as the API does it, access counted and the token named in the trail."""
    async with over_http(running_app, ann.secret) as client:
        assert client.server_info is not None and client.server_info.name == "memory-admin"
        tools = await listed_tools(client)
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and "\n" not in tool.description
            assert tool.input_schema["type"] == "object" and tool.output_schema is not None
        assert set(tools["remember"].input_schema["required"]) == {"namespace", "key", "content"}
        assert tools["recall"].annotations.read_only_hint is True

        first = await call(
            client, "remember", namespace="people/ann", key="drink", content="Ann drinks tea"
        )
        assert first["result"] == "created" and first["memory"]["tags"] == []
        memory_id = first["memory"]["id"]
        again = await call(
            client,
            "remember",
            namespace="people/ann",
            key="drink",
            content="Ann drinks green tea in the afternoon",
            tags=["Drinks"],
            importance=0.9,
            ttl_seconds=3600,
        )
        assert again["result"] == "updated" and again["memory"]["id"] == memory_id
        assert again["memory"]["tags"] == ["drinks"] and again["memory"]["expires_at"]

        recalled = await call(client, "recall", namespace="people/ann", key="drink")
        assert recalled["content"] == "Ann drinks green tea in the afternoon"
        assert recalled["access_count"] == 1
        found = await call(client, "search", query="green tea", namespace="people/")
        assert [item["id"] for item in found["items"]] == [memory_id]
        assert set(found["items"][0]["score_components"]) == {
            "text",
            "semantic",
            "importance",
            "recency",
            "access",
        }
        block = await call(client, "context", query="tea", max_chars=500)
        assert block["ids"] == [memory_id]
        assert block["context"].startswith(f"[{memory_id}] people/ann/drink: Ann drinks")
        listed = await call(client, "list_namespaces")
        assert listed == {
            "namespaces": [{"namespace": "people/ann", "active": 1, "expired": 0, "deleted": 0}]
        }
        assert (await memory_row(db, memory_id)).access_count == 3  # listing is no access

        forgotten = await call(client, "forget", namespace="people/ann", key="drink")
        assert forgotten["is_deleted"] is True and forgotten["id"] == memory_id
        assert await refused(client, "recall", namespace="people/ann", key="drink") == (
            "memory not found"
        )
        assert await refused(client, "forget", id=memory_id) == f"memory {memory_id} not found"

    actor = f"token:{ann.token_id}:ann"
    assert await events_of(db, memory_id) == [
        ("create", actor),
        ("update", actor),
        ("delete", actor),
    ]
    row = await memory_row(db, memory_id)
    assert row.is_deleted and row.deleted_at is not None  # a soft delete: restorable


async def test_the_protocol_of_2026_works_as_well(running_app: Server, ann: Agent) -> None:
    """A client of the newer protocol, which starts without `initialize`, gets the same."""
    async with over_http(running_app, ann.secret, mode="auto") as client:
        assert client.protocol_version >= "2026"
        assert set(await listed_tools(client)) == TOOLS
        made = await call(client, "remember", namespace="notes", key="k", content="kept")
        recalled = await call(client, "recall", namespace="notes", key="k")
        assert recalled["id"] == made["memory"]["id"]


ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "send an API token: Authorization: Bearer <token>"),
        ("Bearer mat_not-a-token", "the API token is unknown or revoked"),
        ("Basic YW5uOnB3", "send an API token: Authorization: Bearer <token>"),
    ],
)
async def test_no_valid_token_no_session(
    running_app: Server, ann: Agent, authorization: str | None, detail: str
) -> None:
    """Refused with the API's 401 before the SDK reads a message."""
    headers = {**ACCEPT, **({"Authorization": authorization} if authorization else {})}
    response = httpx.post(running_app.url + "/mcp", json=INITIALIZE, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": detail}


async def test_a_revoked_token_stops_at_its_next_request(
    running_app: Server, ann: Agent, database: Database
) -> None:
    async with over_http(running_app, ann.secret) as client:
        await call(client, "remember", namespace="notes", key="a", content="before")
        await revoke_token(database, token_id=ann.token_id)
        with pytest.raises(MCPError):  # the SDK's word for the HTTP 401 below
            await client.call_tool("remember", {"namespace": "notes", "key": "b", "content": "x"})
    response = httpx.post(
        running_app.url + "/mcp",
        json=INITIALIZE,
        headers={**ACCEPT, "Authorization": f"Bearer {ann.secret}"},
    )
    assert response.json() == {"detail": "the API token is unknown or revoked"}


async def test_one_users_session_never_reaches_anothers_memories(
    running_app: Server, ann: Agent, bob: Agent, db: AsyncEngine
) -> None:
    async with over_http(running_app, ann.secret) as client:
        made = await call(client, "remember", namespace="diary", key="secret", content="tea")
    memory_id = made["memory"]["id"]
    async with over_http(running_app, bob.secret) as client:
        assert await refused(client, "recall", namespace="diary", key="secret") == (
            "memory not found"
        )
        assert await call(client, "search", query="tea") == {"items": []}
        assert (await call(client, "context", query="tea", max_chars=100))["ids"] == []
        assert await call(client, "list_namespaces") == {"namespaces": []}
        assert await refused(client, "forget", id=memory_id) == f"memory {memory_id} not found"
        assert await refused(client, "forget", namespace="diary", key="secret") == (
            "memory not found"
        )
        # bob's own key of the same name is his own memory
        own = await call(client, "remember", namespace="diary", key="secret", content="coffee")
        assert own["result"] == "created" and own["memory"]["id"] != memory_id
    row = await memory_row(db, memory_id)
    assert (row.content, row.is_deleted, row.access_count) == ("tea", False, 0)
    # An ordinary user's token may not name another user: as if there were none.
    response = httpx.post(
        running_app.url + "/mcp?user=ann",
        json=INITIALIZE,
        headers={**ACCEPT, "Authorization": f"Bearer {bob.secret}"},
    )
    assert (response.status_code, response.json()) == (404, {"detail": "no such user"})


async def test_an_admins_token_may_name_the_user(
    running_app: Server, ann: Agent, session: AsyncSession, db: AsyncEngine
) -> None:
    root = await _agent(session, "root", is_admin=True)
    async with over_http(running_app, ann.secret) as client:
        made = await call(client, "remember", namespace="diary", key="k", content="ann's")
    async with over_http(running_app, root.secret, user="ann") as client:
        assert (await call(client, "recall", namespace="diary", key="k"))["content"] == "ann's"
        await call(client, "remember", namespace="diary", key="k", content="edited by root")
    async with over_http(running_app, root.secret) as client:  # without user=: root's own
        assert await refused(client, "recall", namespace="diary", key="k") == "memory not found"
    actor = f"token:{root.token_id}:root"
    assert (await events_of(db, made["memory"]["id"]))[-1] == ("update", actor)
    response = httpx.post(
        running_app.url + "/mcp?usr=ann",
        json=INITIALIZE,
        headers={**ACCEPT, "Authorization": f"Bearer {root.secret}"},
    )
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "unknown query parameter: usr"},
    )


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("remember", {"namespace": "a//b", "key": "k", "content": "c"}, "namespace: Value error"),
        ("remember", {"namespace": "a", "key": "k", "content": "c", "importance": 2}, "importance"),
        ("remember", {"namespace": "a", "key": "k"}, "content: Field required"),
        ("remember", {"namespace": "a", "key": "k", "content": "c", "user_id": 2}, "user_id"),
        ("remember", {"namespace": "a", "key": "k", "content": "x" * 70_000}, "content"),
        ("recall", {"namespace": "a", "key": " padded "}, "key: Value error"),
        ("search", {"query": ""}, "query: String should have at least 1 character"),
        ("search", {"query": "tea", "limit": 101}, "limit"),
        ("context", {"query": "tea"}, "max_chars: Field required"),
        ("forget", {"namespace": "a"}, "give namespace and key, or id"),
        ("forget", {"namespace": "a", "key": "k", "id": 1}, "not both"),
        ("forget", {"id": 3_000_000_000}, "id"),
        ("nonexistent", {}, "no tool named 'nonexistent'"),
    ],
)
async def test_bad_input_is_a_tool_error_and_the_session_goes_on(
    running_app: Server,
    ann: Agent,
    db: AsyncEngine,
    tool: str,
    arguments: dict[str, object],
    message: str,
) -> None:
    async with over_http(running_app, ann.secret) as client:
        said = await refused(client, tool, **arguments)
        assert said.startswith("invalid input: ") or tool == "nonexistent", said
        assert message in said, said
        assert "x" * 100 not in said  # the input is not echoed back
        await call(client, "list_namespaces")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_no_stream_to_get_and_no_session_to_delete(
    running_app: Server, ann: Agent, method: str
) -> None:
    """Stateless: 405 at once (the protocol's answer), not an event stream held open."""
    headers = {**ACCEPT, "Authorization": f"Bearer {ann.secret}"}
    response = httpx.request(method, running_app.url + "/mcp", headers=headers, timeout=10)
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_each_namespace_is_a_resource_of_its_users_own(
    running_app: Server, ann: Agent, bob: Agent, db: AsyncEngine
) -> None:
    """Browsing lists the namespaces with active memories and reads their newest
    memories, without counting an access; another user sees none of them."""
    async with over_http(running_app, ann.secret) as client:
        made = await call(client, "remember", namespace="people/ann", key="drink", content="tea")
        await call(client, "remember", namespace="work", key="editor", content="vim")
        await call(client, "forget", namespace="work", key="editor")
        listed = (await client.list_resources()).resources
        assert [(found.uri, found.name) for found in listed] == [
            ("memory://namespace/people/ann", "people/ann")
        ]
        read = await client.read_resource("memory://namespace/people/ann")
        content = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert [memory["key"] for memory in content["memories"]] == ["drink"]
        assert (content["count"], content["count_capped"]) == (1, False)
        for uri in ("memory://namespace/a//b", "file:///etc/passwd"):
            with pytest.raises(MCPError) as refusal:
                await client.read_resource(uri)
            assert refusal.value.error.code == INVALID_PARAMS
    assert (await memory_row(db, made["memory"]["id"])).access_count == 0
    async with over_http(running_app, bob.secret) as client:
        assert (await client.list_resources()).resources == []
        read = await client.read_resource("memory://namespace/people/ann")
        assert json.loads(read.contents[0].text)["memories"] == []  # type: ignore[union-attr]
