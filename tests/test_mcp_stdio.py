"""`memory-admin mcp --user USERNAME [--read-only]`: MCP over stdio, as a desktop client
starts it, on both databases. Standard output carries only the protocol."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from tests.mcp_support import (
    INITIALIZE,
    TOOLS,
    WRITING,
    call,
    events_of,
    listed_tools,
    memory_row,
    over_stdio,
    refused,
    stdio_parameters,
)
from webapp.db import Database
from webapp.services.history import memory_history
from webapp.services.memories import get_memory
from webapp.services.principal import Principal

pytestmark = pytest.mark.slow

ACTOR = "mcp stdio as ann"


async def test_a_session_from_initialize_to_forget(
    database_url: str, session: AsyncSession, db: AsyncEngine
) -> None:
    ann = await make_user(session, username="ann")
    async with over_stdio(database_url, "--user", "ann") as client:
        assert client.server_info is not None and client.server_info.name == "memory-admin"
        assert set(await listed_tools(client)) == TOOLS
        made = await call(
            client, "remember", namespace="work", key="editor", content="Ann edits in vim"
        )
        assert made["result"] == "created" and made["memory"]["user_id"] == ann.id
        memory_id = made["memory"]["id"]
        assert (await call(client, "recall", namespace="work", key="editor"))["access_count"] == 1
        found = await call(client, "search", query="vim")
        assert [item["id"] for item in found["items"]] == [memory_id]
        block = await call(client, "context", query="editor vim", max_chars=200)
        assert block["context"] == f"[{memory_id}] work/editor: Ann edits in vim"
        assert (await call(client, "forget", id=memory_id))["is_deleted"] is True
        assert await refused(client, "recall", namespace="work", key="editor") == (
            "memory not found"
        )
    assert (await memory_row(db, memory_id)).access_count == 3
    assert await events_of(db, memory_id) == [("create", ACTOR), ("delete", ACTOR)]
    database, principal = Database(db), Principal.of_user(ann)
    memory = await get_memory(
        database, principal=principal, memory_id=memory_id, include_deleted=True
    )
    history = await memory_history(database, principal=principal, memory=memory)
    assert {(entry.actor.kind, entry.actor.name) for entry in history.entries} == {
        ("operator", ACTOR)
    }


async def test_read_only_lists_no_writing_tool(
    database_url: str, session: AsyncSession, db: AsyncEngine
) -> None:
    ann = await make_user(session, username="ann")
    kept = await make_memory(session, user=ann, namespace="work", key="k", content="kept")
    async with over_stdio(database_url, "--user", "ann", "--read-only") as client:
        assert set(await listed_tools(client)) == TOOLS - WRITING
        assert (await call(client, "recall", namespace="work", key="k"))["content"] == "kept"
        said = await refused(client, "forget", id=kept.id)
        assert said.startswith("no tool named 'forget'"), said
        said = await refused(client, "remember", namespace="work", key="k", content="changed")
        assert said.startswith("no tool named 'remember'"), said
    assert kept.id is not None
    row = await memory_row(db, kept.id)
    assert (row.content, row.is_deleted) == ("kept", False)


async def test_one_user_never_reaches_anothers_memories(
    database_url: str, session: AsyncSession, db: AsyncEngine
) -> None:
    """Even an admin's stdio server acts for that admin alone."""
    ann = await make_user(session, username="ann")
    await make_user(session, username="root", is_admin=True)
    theirs = await make_memory(session, user=ann, namespace="diary", key="k", content="tea")
    async with over_stdio(database_url, "--user", "root") as client:
        assert await refused(client, "recall", namespace="diary", key="k") == "memory not found"
        assert await call(client, "search", query="tea") == {"items": []}
        assert await call(client, "list_namespaces") == {"namespaces": []}
        assert await refused(client, "forget", id=theirs.id) == f"memory {theirs.id} not found"
    assert theirs.id is not None
    assert (await memory_row(db, theirs.id)).access_count == 0


async def test_standard_output_carries_only_the_protocol(
    database_url: str, session: AsyncSession, db: AsyncEngine
) -> None:
    """Every line on standard output is a JSON-RPC message; the rest goes to stderr."""
    await make_user(session, username="ann")
    parameters = stdio_parameters(database_url, "--user", "ann")
    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "recall", "arguments": {"namespace": "a", "key": "b"}},
        },
    ]
    # As a client does: a message a line, and standard input kept open until the answers
    # are in (at end of input the server stops, abandoning what is in flight).
    process = subprocess.Popen(
        [parameters.command, *parameters.args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=parameters.env,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        lines = []
        for message in messages:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
            if "id" in message:
                lines.append(process.stdout.readline())
        process.stdin.close()
        lines += process.stdout.readlines()  # nothing more: stdout is the protocol's alone
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    replies = [json.loads(line) for line in lines]
    assert [reply["id"] for reply in replies] == [1, 2], lines
    assert replies[0]["result"]["serverInfo"]["name"] == "memory-admin"
    assert replies[1]["result"]["isError"] is True
    assert replies[1]["result"]["content"][0]["text"] == "memory not found"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--user", "nobody"], "no user named 'nobody'"),
        (["--user", "gone"], "user 'gone' is deactivated"),
        ([], "Missing option '--user'"),
    ],
)
async def test_a_bad_start_is_one_line_on_stderr(
    database_url: str, session: AsyncSession, arguments: list[str], message: str
) -> None:
    gone = await make_user(session, username="gone")
    gone.is_active = False
    await session.commit()
    parameters = stdio_parameters(database_url, *arguments)
    completed = subprocess.run(
        [parameters.command, *parameters.args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=parameters.env,
        timeout=120,
    )
    assert completed.returncode != 0 and completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and message in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


async def test_the_configured_content_limit_holds(
    database_url: str, session: AsyncSession, db: AsyncEngine
) -> None:
    """CONTENT_MAX_BYTES, not the default 65,536, as in the app."""
    await make_user(session, username="ann")
    limit = {"CONTENT_MAX_BYTES": "100000"}
    async with over_stdio(database_url, "--user", "ann", environment=limit) as client:
        made = await call(client, "remember", namespace="n", key="big", content="x" * 70_000)
        assert made["result"] == "created"
        said = await refused(client, "remember", namespace="n", key="huge", content="x" * 100_001)
        assert said.startswith("invalid input: content: "), said[:200]
