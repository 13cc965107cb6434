"""The JSON API: concurrent writes, the OpenAPI document, and bad input writing nothing.

Runs on SQLite and on PostgreSQL; the agents and helpers are in tests/api_support.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api_support import (
    MEMORY_FIELDS,
    Agent,
    OpenClient,
    assert_error,
    events_of,
    everything,
    memory,
    stored_by_key,
)

# --- concurrency -------------------------------------------------------------------------


async def test_concurrent_first_writes_of_one_key(db: AsyncEngine, ann: Agent) -> None:
    """Eight agents writing a new key at once: one 201, seven 200, one row, no lost write."""
    responses = await asyncio.gather(
        *(
            ann.client.put("/memories", json=memory(key="race", content=f"writer {number}"))
            for number in range(8)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 7 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({response.json()["id"] for response in responses}) == 1
    rows = await stored_by_key(db, ann.user_id, "facts", "race")
    assert len(rows) == 1 and rows[0].version == 8
    actions = [event.action for event in await events_of(db, rows[0].id)]
    assert actions == ["create"] + ["update"] * 7


# --- OpenAPI -----------------------------------------------------------------------------

API_OPERATIONS = {
    ("/api/v1/memories", "put"),
    ("/api/v1/memories", "get"),
    ("/api/v1/memories/{memory_id}", "get"),
    ("/api/v1/memories/{memory_id}", "patch"),
    ("/api/v1/memories/{memory_id}", "delete"),
    ("/api/v1/memories/{memory_id}/restore", "post"),
    ("/api/v1/recall", "get"),
    ("/api/v1/search", "post"),
    ("/api/v1/context", "post"),
    ("/api/v1/namespaces", "get"),
}


def _ref(schema: dict[str, Any]) -> str:
    """The component a schema refers to (through an array's items), or ''."""
    if "items" in schema:
        schema = schema["items"]
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]


async def test_openapi_describes_every_operation(open_client: OpenClient) -> None:
    """Agents generate clients from /api/v1/openapi.json: every operation, its models, auth."""
    response = await open_client().get("/openapi.json")
    assert response.status_code == 200, response.text
    spec = response.json()
    operations = {
        (path, method)
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
    }
    assert operations == API_OPERATIONS

    def op(path: str, method: str) -> dict[str, Any]:
        operation: dict[str, Any] = spec["paths"][path][method]
        return operation

    def request_model(path: str, method: str) -> str:
        return _ref(op(path, method)["requestBody"]["content"]["application/json"]["schema"])

    def response_model(path: str, method: str, status: str = "200") -> str:
        return _ref(op(path, method)["responses"][status]["content"]["application/json"]["schema"])

    assert request_model("/api/v1/memories", "put") == "MemoryPut"
    assert request_model("/api/v1/memories/{memory_id}", "patch") == "MemoryPatch"
    assert request_model("/api/v1/search", "post").startswith("SearchRequest")
    assert request_model("/api/v1/context", "post") == "ContextRequest"
    assert response_model("/api/v1/memories", "put") == "MemoryPublic"
    assert response_model("/api/v1/memories", "put", "201") == "MemoryPublic"
    assert response_model("/api/v1/memories", "get") == "MemoryPage"
    for method in ("get", "patch", "delete"):
        assert response_model("/api/v1/memories/{memory_id}", method) == "MemoryPublic"
    assert response_model("/api/v1/memories/{memory_id}/restore", "post") == "MemoryPublic"
    assert response_model("/api/v1/recall", "get") == "MemoryPublic"
    assert response_model("/api/v1/search", "post") == "SearchResults"
    assert response_model("/api/v1/context", "post") == "ContextBlock"
    assert response_model("/api/v1/namespaces", "get") == "NamespaceCounts"
    assert (
        op("/api/v1/namespaces", "get")["responses"]["200"]["content"]["application/json"][
            "schema"
        ]["type"]
        == "array"
    )
    assert "409" in op("/api/v1/memories", "put")["responses"]
    assert "409" in op("/api/v1/memories/{memory_id}", "patch")["responses"]

    schemes = spec["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s.get("scheme", "").lower() == "bearer"]
    assert len(bearer) == 1 and schemes[bearer[0]]["type"] == "http"
    for path, method in API_OPERATIONS:
        assert {bearer[0]: []} in op(path, method).get("security", []), (path, method)
        assert "401" in op(path, method)["responses"], (path, method)
    schemas = spec["components"]["schemas"]
    for name in ("MemoryPut", "MemoryPublic", "MemoryPage", "SearchResults", "ContextBlock"):
        assert name in schemas, name
    assert set(schemas["MemoryPublic"]["properties"]) == MEMORY_FIELDS
    assert not set(schemas["MemoryPut"]["properties"]) & {
        "id",
        "user_id",
        "access_count",
        "created_at",
        "updated_at",
    }


# --- bad input writes nothing ------------------------------------------------------------

BIG = 65_536
BAD_PUT_BODIES: list[tuple[str, Any]] = [
    # JSON's true is not the number 1 (found by schemathesis: it updated the memory).
    ("version-true", memory(version=True)),
    ("ttl-true", memory(ttl_seconds=True)),
    ("namespace-double-slash", memory(namespace="a//b")),
    ("namespace-leading-slash", memory(namespace="/facts")),
    ("namespace-dot-dot", memory(namespace="facts/../secrets")),
    ("namespace-space", memory(namespace="my facts")),
    ("namespace-too-long", memory(namespace="n" * 201)),
    ("key-control-char", memory(key="tea\x07")),
    ("key-newline", memory(key="tea\ntime")),
    ("key-surrounding-space", memory(key=" tea")),
    ("key-empty", memory(key="")),
    ("key-too-long", memory(key="k" * 256)),
    ("content-empty", memory(content="")),
    ("content-nul", memory(content="tea\x00")),
    ("content-over-limit", memory(content="x" * (BIG + 1))),
    ("content-over-limit-in-bytes", memory(content="é" * (BIG // 2 + 1))),
    ("content-over-body-limit", memory(content="x" * (2 * 1024 * 1024))),
    ("importance-above-1", memory(importance=1.5)),
    ("importance-negative", memory(importance=-0.1)),
    ("importance-string", memory(importance="high")),
    ("importance-bool", memory(importance=True)),
    ("tags-33", memory(tags=[f"t{n}" for n in range(33)])),
    ("tag-65-chars", memory(tags=["t" * 65])),
    ("tag-empty", memory(tags=["  "])),
    ("tags-a-string", memory(tags="drinks")),
    ("tags-numbers", memory(tags=[1, 2])),
    ("content-number", memory(content=5)),
    ("namespace-null", memory(namespace=None)),
    ("content-missing", {"namespace": "facts", "key": "tea"}),
    ("expires-at-naive", memory(expires_at="2030-01-01T00:00:00")),
    ("expires-at-garbage", memory(expires_at="next tuesday")),
    ("ttl-zero", memory(ttl_seconds=0)),
    ("ttl-negative", memory(ttl_seconds=-5)),
    ("version-zero", memory(version=0)),
    ("unknown-field", memory(colour="green")),
    ("a-list", [memory()]),
    ("importance-nan", b'{"namespace": "facts", "key": "tea", "content": "x", "importance": NaN}'),
    (
        "importance-infinity",
        b'{"namespace": "facts", "key": "tea", "content": "x", "importance": Infinity}',
    ),
    ("not-json", b"namespace=facts&key=tea&content=x"),
    ("truncated-json", b'{"namespace": "facts", "key": "tea", "content": "x"'),
]


@pytest.mark.parametrize(
    "body", [body for _, body in BAD_PUT_BODIES], ids=[name for name, _ in BAD_PUT_BODIES]
)
async def test_bad_put_bodies_write_nothing(db: AsyncEngine, ann: Agent, body: Any) -> None:
    """A body that breaks a field rule is a 4xx JSON error, on the create and the update
    path alike, and the database is exactly as it was."""
    existing = await ann.client.put("/memories", json=memory(content="original"))
    assert existing.status_code == 201
    before = await everything(db)
    if isinstance(body, bytes):
        response = await ann.client.put(
            "/memories", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = await ann.client.put("/memories", json=body)
    assert_error(response)
    assert await everything(db) == before
    if isinstance(body, dict) and "key" in body:
        other_key = {**body, "key": "fresh"} if body["key"] == "tea" else body
        again = await ann.client.put("/memories", json=other_key)
        assert_error(again)
        assert await everything(db) == before, "the create path refuses it too"


async def test_a_body_over_the_size_limit_is_413(db: AsyncEngine, ann: Agent) -> None:
    """A request body over the limit is a 413 JSON error, refused before it is read."""
    response = await ann.client.put("/memories", json=memory(content="x" * (2 * 1024 * 1024)))
    assert_error(response, 413)
    assert await everything(db) == ([], [])


async def test_content_at_the_limit_is_accepted(ann: Agent) -> None:
    """The positive control for the limit: exactly 65,536 bytes of UTF-8 is fine."""
    body = memory(content="é" * (BIG // 2))
    assert (await ann.client.put("/memories", json=body)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"version": 1, "importance": 1.5},
        {"version": 1, "tags": [f"t{n}" for n in range(33)]},
        {"version": 1, "tags": ["t" * 65]},
        {"version": 1, "content": ""},
        {"version": 1, "content": None},
        {"version": 1, "importance": None},
        {"version": 1, "tags": None},
        {"version": 1, "content": "x" * (BIG + 1)},
        {"version": 1, "expires_at": "2030-01-01T00:00:00"},
        {"version": 1, "namespace": "elsewhere"},
        {"version": 1, "key": "other"},
        {"version": 1, "access_count": 99},
        {"version": 1, "user_id": 1},
        {"version": "one", "content": "x"},
    ],
    ids=[
        "importance-1.5",
        "33-tags",
        "tag-65",
        "empty-content",
        "null-content",
        "null-importance",
        "null-tags",
        "content-over-limit",
        "naive-expiry",
        "namespace",
        "key",
        "access-count",
        "user-id",
        "version-string",
    ],
)
async def test_bad_patch_bodies_write_nothing(
    db: AsyncEngine, ann: Agent, body: dict[str, Any]
) -> None:
    """PATCH refuses bad values and fields it does not edit, and changes nothing."""
    created = (await ann.client.put("/memories", json=memory())).json()
    before = await everything(db)
    assert_error(await ann.client.patch(f"/memories/{created['id']}", json=body))
    assert await everything(db) == before


async def test_found_by_fuzzing_are_4xx_not_5xx(db: AsyncEngine, ann: Agent) -> None:
    """Inputs schemathesis found that crashed the app (500) or were taken for numbers:
    each is now a 4xx JSON error and writes nothing."""
    created = await ann.client.put("/memories", json=memory())
    assert created.status_code == 201
    before = await everything(db)
    assert_error(await ann.client.get(f"/memories/{2**31}"), 422)  # past PostgreSQL's int4
    assert_error(await ann.client.get(f"/memories/{2**63}"), 422)  # past SQLite's int64
    assert_error(await ann.client.get("/namespaces", params={"user": "a\x00b"}), 404)
    assert_error(await ann.client.get("/memories", params={"tag": "\x00"}), 400)
    for path, body in (
        ("/search", {"query": "tea", "tags": ["\x00"]}),
        ("/context", {"query": "tea", "tags": ["\x00"], "max_chars": 500}),
        ("/search", {"query": "tea", "limit": True}),
        ("/context", {"query": "tea", "max_chars": True}),
    ):
        assert_error(await ann.client.post(path, json=body), 422)
    assert_error(
        await ann.client.patch(f"/memories/{created.json()['id']}", json={"version": True}), 422
    )
    assert await everything(db) == before
