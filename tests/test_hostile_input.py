"""Hostile input on the agent API and the import command (issue 16, point 6): every case
gets its 4xx (or, for input that is fine, a correct and harmless 200), never a 5xx, and a
refused one writes nothing (a fingerprint of every table, before and after). The admin
pages' cases are in test_hostile_input_web.py; the World and the fingerprint in
hostile_support.py. Each case runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.cli_support import assert_one_line_error, invoke_cli
from tests.factories import make_memory, make_user
from tests.hostile_support import (
    SCRIPT,
    Case,
    World,
    api_get,
    api_json,
    api_raw,
    fingerprint,
    make_world,
    run_case,
)
from webapp.services.cursors import Cursor, CursorSigner

BIG = 2 * 1024 * 1024  # past the default 1 MiB body limit


def put(**fields: object) -> dict[str, object]:
    """A PUT /memories body with fields changed (None-valued fields left out)."""
    body = {"namespace": "facts", "key": "new", "content": "hello", **fields}
    return {name: value for name, value in body.items() if value is not None}


def put_text(fragment: str) -> str:
    """A PUT body as JSON text, with fragment (JSON that Python would not write) added."""
    return '{"namespace": "facts", "key": "new", "content": "hello", ' + fragment + "}"


def nested(depth: int) -> str:
    """Tags nested depth lists deep, as JSON text."""
    return put_text('"tags": ' + "[" * depth + "]" * depth)


async def chunked_put(world: World) -> httpx.Response:
    """A body without a length, streamed past the limit in 64 KiB chunks."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"namespace": "facts", "key": "new", "content": "'
        for _ in range(BIG // 65536):
            yield b"x" * 65536
        yield b'"}'

    return await world.api().put(
        "/memories", content=chunks(), headers={"content-type": "application/json"}
    )


def cursor_of(signer: CursorSigner, sort: str = "-updated_at") -> str:
    return signer.dump(Cursor(sort=sort, value="2026-01-01T00:00:00+00:00", id=1, forward=True))


async def own_key_cursor(world: World) -> httpx.Response:
    """A cursor this server signed, with one character of its payload changed."""
    good = cursor_of(world.app.state.cursor_signer)
    tampered = ("A" if good[0] != "A" else "B") + good[1:]
    return await world.api().get("/memories", params={"cursor": tampered})


async def foreign_cursor(world: World) -> httpx.Response:
    """A well-formed cursor signed by another server's key."""
    return await world.api().get("/memories", params={"cursor": cursor_of(CursorSigner("other"))})


async def other_sort_cursor(world: World) -> httpx.Response:
    """This server's cursor, made for another sort order."""
    token = cursor_of(world.app.state.cursor_signer, sort="importance")
    return await world.api().get("/memories", params={"cursor": token})


def keys_are(*expected: str):  # type: ignore[no-untyped-def]
    """Check: a page or search result holds exactly these keys."""

    def check(response: httpx.Response, world: World) -> None:
        assert sorted(item["key"] for item in response.json()["items"]) == sorted(expected)

    return check


def stored_content(expected: str):  # type: ignore[no-untyped-def]
    """Check: the write stored the content exactly and answered with it as JSON data."""

    def check(response: httpx.Response, world: World) -> None:
        assert response.json()["content"] == expected

    return check


def tea_not_deleted(response: httpx.Response, world: World) -> None:
    """Check: a GET with an override header read the memory and deleted nothing."""
    assert response.json()["is_deleted"] is False


PUT = "/memories"
ANN_TEA = "/memories/{tea}"
BOB = "/memories/{bob_secret}"
FTS = '" * NEAR ( ) : ^ - OR AND NOT tea*'

API_CASES = [
    # numbers: non-finite, out of range, wrong types
    Case("importance-NaN", api_json("PUT", PUT, put(importance=float("nan"))), 422),
    Case("importance-Infinity", api_json("PUT", PUT, put(importance=float("inf"))), 422),
    Case("importance--Infinity", api_json("PUT", PUT, put(importance=float("-inf"))), 422),
    Case("importance-1e309", api_raw("PUT", PUT, put_text('"importance": 1e309')), 422),
    Case("importance-1.5", api_json("PUT", PUT, put(importance=1.5)), 422),
    Case("importance--0.1", api_json("PUT", PUT, put(importance=-0.1)), 422),
    Case("importance-string", api_json("PUT", PUT, put(importance="0.5")), 422),
    Case("importance-true", api_json("PUT", PUT, put(importance=True)), 422),
    Case("ttl-huge", api_json("PUT", PUT, put(ttl_seconds=10**30)), 422),
    Case("ttl-1e309", api_raw("PUT", PUT, put_text('"ttl_seconds": 1e309')), 422),
    Case("ttl-negative", api_json("PUT", PUT, put(ttl_seconds=-1)), 422),
    Case("ttl-float", api_json("PUT", PUT, put(ttl_seconds=1.5)), 422),
    Case("expiry-year-10000", api_json("PUT", PUT, put(expires_at="10000-01-01T00:00:00Z")), 422),
    Case(
        "expiry-past-year-9999-in-utc",
        api_json("PUT", PUT, put(expires_at="9999-12-31T23:59:59-05:00")),
        422,
    ),
    Case(
        "expiry-before-year-1-in-utc",
        api_json("PUT", PUT, put(expires_at="0001-01-01T00:00:00+05:00")),
        422,
    ),
    Case("expiry-naive", api_json("PUT", PUT, put(expires_at="2030-01-01T00:00:00")), 422),
    Case("expiry-number", api_json("PUT", PUT, put(expires_at=1e20)), 422),
    Case("content-number", api_json("PUT", PUT, put(content=5)), 422),
    Case("content-list", api_json("PUT", PUT, put(content=["a"])), 422),
    Case("tags-dict", api_json("PUT", PUT, put(tags={"a": 1})), 422),
    Case("body-array", api_json("PUT", PUT, [put()]), 422),
    Case("body-not-json", api_raw("PUT", PUT, '{"namespace": "facts",'), (400, 422)),
    Case("body-deeply-nested", api_raw("PUT", PUT, nested(100_000)), (400, 422)),
    Case("body-nested-tags", api_raw("PUT", PUT, nested(50)), 422),
    Case("body-text-plain", api_raw("PUT", PUT, json.dumps(put()), content_type="text/plain"), 422),
    Case("body-oversized", api_json("PUT", PUT, put(content="x" * BIG)), 413),
    Case("body-chunked-past-limit", chunked_put, 413),
    Case("server-owned-id", api_json("PUT", PUT, put(id=1)), 422),
    Case("server-owned-user-id", api_json("PUT", PUT, put(user_id=1)), 422),
    Case("server-owned-access-count", api_json("PUT", PUT, put(access_count=10**9)), 422),
    # text: NUL, invalid UTF-8, lone surrogates, control and bidi characters, markup, SQL
    Case("content-NUL", api_json("PUT", PUT, put(content="a\x00b")), 422),
    Case("key-NUL", api_json("PUT", PUT, put(key="a\x00b")), 422),
    Case(
        "body-invalid-utf8",
        api_raw("PUT", PUT, put_text('"x": 1').encode()[:-1] + b'\xff"}'),
        (400, 422),
    ),
    Case(
        "content-invalid-utf8",
        api_raw("PUT", PUT, b'{"namespace":"n","key":"k","content":"\xc3\x28"}'),
        (400, 422),
    ),
    Case("content-lone-surrogate", api_raw("PUT", PUT, put_text('"tags": ["\\udfff"]')), 422),
    Case("key-escape-char", api_json("PUT", PUT, put(key="a\x1b[31mred")), 422),
    Case("key-right-to-left-override", api_json("PUT", PUT, put(key="invoice\u202egnp.exe")), 422),
    Case("tag-bell-char", api_json("PUT", PUT, put(tags=["a\x07"])), 422),
    Case("namespace-traversal", api_json("PUT", PUT, put(namespace="../etc")), 422),
    Case("namespace-sql", api_json("PUT", PUT, put(namespace="x'; DROP TABLE users; --")), 422),
    Case("namespace-like", api_json("PUT", PUT, put(namespace="facts/%")), 422),
    Case(
        "content-markup-kept-as-data",
        api_json("PUT", PUT, put(content=SCRIPT + "\u202e")),
        201,
        stored_content(SCRIPT + "\u202e"),
        writes=True,
    ),
    # ids: another user's, past the database's integers
    Case("get-bobs-memory", api_get(BOB), 404),
    Case("patch-bobs-memory", api_json("PATCH", BOB, {"version": 1, "content": "mine"}), 404),
    Case("delete-bobs-memory", api_raw("DELETE", BOB, b""), 404),
    Case("restore-bobs-memory", api_raw("POST", BOB + "/restore", b""), 404),
    Case("act-as-bob-without-admin", api_get("/memories?user=bob"), 404),
    Case("id-past-64-bits", api_get("/memories/99999999999999999999"), 422),
    Case(
        "patch-version-past-64-bits",
        api_json("PATCH", ANN_TEA, {"version": 2**70, "importance": 0.9}),
        (409, 422),
    ),
    Case(
        "patch-version-past-32-bits",
        api_json("PATCH", ANN_TEA, {"version": 2**31, "importance": 0.9}),
        (409, 422),
    ),
    Case(
        "patch-version-string", api_json("PATCH", ANN_TEA, {"version": "1", "importance": 0.9}), 422
    ),
    Case(
        "put-version-past-64-bits", api_json("PUT", PUT, put(key="tea", version=2**64)), (409, 422)
    ),
    # query strings: metacharacters, bad numbers, sorts, cursors
    Case("q-only-percent", api_get("/memories?q=%25"), 400),
    Case("q-percent-in-word", api_get("/memories?q=100%25"), 200, keys_are("pct")),
    Case("q-underscore", api_get("/memories?q=sure_thing"), 200, keys_are("pct")),
    Case("q-double-quote", api_get('/memories?q="tea'), 200, keys_are("tea")),
    Case("q-fts-operators", api_get("/memories?q=" + quote(FTS)), 200),
    Case("q-sql", api_get("/memories?q=%27+OR+1%3D1+--"), 200, keys_are()),
    Case("q-NUL", api_get("/memories?q=tea%00"), (200, 422)),
    Case("namespace-like-percent", api_get("/memories?namespace=%25/"), 400),
    Case("namespace-like-underscore", api_get("/memories?namespace=f_cts/"), 200, keys_are()),
    Case("namespace-NUL", api_get("/memories?namespace=facts%00"), 400),
    Case("tag-percent", api_get("/memories?tag=%25"), 200, keys_are()),
    Case("tag-NUL", api_get("/memories?tag=a%00"), 400),
    Case("min-importance-NaN", api_get("/memories?min_importance=NaN"), 422),
    Case("max-importance-Infinity", api_get("/memories?max_importance=Infinity"), 422),
    Case("limit-1e309", api_get("/memories?limit=1e309"), 422),
    Case("expiring-within-huge", api_get("/memories?expiring_within=99999999999999999999"), 422),
    Case("sort-sql", api_get("/memories?sort=id%3B+DROP+TABLE+users"), 400),
    Case("unknown-parameter", api_get("/memories?usr=bob"), 400),
    Case("cursor-tampered", own_key_cursor, 400),
    Case("cursor-foreign-key", foreign_cursor, 400),
    Case("cursor-other-sort", other_sort_cursor, 400),
    Case("cursor-garbage", api_get("/memories?cursor=" + "%FF" * 100), 400),
    Case("recall-key-NUL", api_get("/recall?namespace=facts&key=tea%00"), 422),
    Case("recall-key-too-long", api_get("/recall?namespace=facts&key=" + "k" * 300), 422),
    # A search that finds memories counts an access to them: a write by design.
    Case("search-fts-operators", api_json("POST", "/search", {"query": FTS}), 200, writes=True),
    Case("search-only-percent", api_json("POST", "/search", {"query": "%"}), 422),
    Case("search-NUL", api_json("POST", "/search", {"query": "tea\x00"}), (200, 422), writes=True),
    Case("search-limit-string", api_json("POST", "/search", {"query": "tea", "limit": "10"}), 422),
    Case(
        "context-max-chars-1e309",
        api_raw("POST", "/context", '{"query": "tea", "max_chars": 1e309}'),
        422,
    ),
    # headers and cookies
    Case("bearer-garbage", api_get("/memories", Authorization=b"Bearer \xc3\xa9\x00" * 2000), 401),
    Case("bearer-other-scheme", api_get("/memories", Authorization="Basic YW5uOnB3"), 401),
    Case("long-header", api_get("/namespaces", **{"X-Filler": "a" * 100_000}), 200),
    Case("long-url", api_get("/memories?q=" + "a" * 60_000), 422),
    Case(
        "method-override-header",
        api_get(ANN_TEA, **{"X-HTTP-Method-Override": "DELETE"}),
        200,
        tea_not_deleted,
    ),
    Case("method-override-param", api_get(ANN_TEA + "?_method=DELETE"), 400),
]


@pytest.fixture
async def world(app: FastAPI, db: AsyncEngine, session: AsyncSession) -> AsyncIterator[World]:
    """ann, bob and root, their memories and tokens (tables emptied afterwards)."""
    async for built in make_world(app, db, session):
        yield built


@pytest.mark.parametrize("case", API_CASES, ids=[case.name for case in API_CASES])
async def test_hostile_api_input(world: World, case: Case) -> None:
    await run_case(world, case)


def test_the_tables_have_their_sixty_cases() -> None:
    """The issue asks for at least 60 hostile inputs across the product's doors."""
    from tests.test_hostile_input_web import WEB_CASES

    assert len(API_CASES) + len(WEB_CASES) + len(IMPORT_LINES) >= 60
    for table in (API_CASES, WEB_CASES):
        names = [case.name for case in table]
        assert len(names) == len(set(names)), "each case's name is its test id"


# --- the import command ------------------------------------------------------------------

LINE = {"user": "ann", "namespace": "facts", "key": "imported", "content": "hello"}


def line(**fields: object) -> bytes:
    return json.dumps({**LINE, **fields}).encode()


IMPORT_LINES: dict[str, bytes] = {
    "import-importance-NaN": line(importance=float("nan")),
    "import-importance-Infinity": line(importance=float("inf")),
    "import-importance-1e309": line()[:-1] + b', "importance": 1e309}',
    "import-importance-1.5": line(importance=1.5),
    "import-expiry-year-10000": line(expires_at="10000-01-01T00:00:00Z"),
    "import-expiry-past-year-9999": line(expires_at="9999-12-31T23:59:59-05:00"),
    "import-created-year-10000": line(created_at="10000-01-01T00:00:00Z"),
    "import-access-count-past-64-bits": line(access_count=2**63),
    "import-access-count-past-32-bits": line(access_count=2**31),
    "import-access-count-negative": line(access_count=-1),
    "import-content-NUL": line(content="a\x00b"),
    "import-invalid-utf8": line()[:-2] + b'\xff"}',
    "import-lone-surrogate": line()[:-2] + b'\\ud800"}',
    "import-key-right-to-left": line(key="a\u202eb"),
    "import-user-markup": line(user=SCRIPT),
    "import-deeply-nested": line()[:-1] + b', "tags": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "import-array-line": b"[1, 2]",
    "import-deleted-string": line(is_deleted="yes"),
}


@pytest.mark.parametrize("bad", list(IMPORT_LINES.values()), ids=list(IMPORT_LINES))
async def test_a_hostile_import_line_is_one_error_line_and_writes_nothing(
    db: AsyncEngine, session: AsyncSession, database_url: str, tmp_path: Path, bad: bytes
) -> None:
    """The second line is bad: the command names it on one line of stderr and exits
    non-zero; the first line, valid, is not written either."""
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, key="tea")
    before = await fingerprint(db)
    data = tmp_path / "hostile.jsonl"
    data.write_bytes(line(key="fine") + b"\n" + bad + b"\n")

    result = invoke_cli("import", str(data), database_url=database_url, cwd=tmp_path)

    assert_one_line_error(result, "line 2")
    assert await fingerprint(db) == before
