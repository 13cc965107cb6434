"""The JSON API: bearer tokens, user isolation and acting for another user.

Runs on SQLite and on PostgreSQL; the agents and helpers are in tests/api_support.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.api_support import (
    Agent,
    OpenClient,
    assert_error,
    events_of,
    everything,
    keys,
    memory,
    stored,
)
from tests.factories import make_memory, make_token, make_user
from tests.web_support import Visitor
from webapp.db import Database
from webapp.models import ApiToken, User
from webapp.services import tokens
from webapp.services.tokens import revoke_token
from webapp.types import utcnow

_tokens = ApiToken.__table__  # type: ignore[attr-defined]


# --- authentication ----------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PUT", "/memories", memory()),
    ("GET", "/memories", None),
    ("GET", "/memories/1", None),
    ("PATCH", "/memories/1", {"version": 1, "content": "x"}),
    ("DELETE", "/memories/1", None),
    ("POST", "/memories/1/restore", None),
    ("GET", "/recall?namespace=facts&key=tea", None),
    ("POST", "/search", {"query": "tea"}),
    ("POST", "/context", {"query": "tea", "max_chars": 100}),
    ("GET", "/namespaces", None),
]


def assert_unauthorized(response: httpx.Response) -> None:
    """401 as JSON, with the challenge that says a bearer token is wanted."""
    assert_error(response, 401)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_needs_a_token(
    db: AsyncEngine,
    open_client: OpenClient,
    session: AsyncSession,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """No token: 401 with WWW-Authenticate: Bearer, and nothing is read or written."""
    ann = await make_user(session, username="ann")
    existing = await make_memory(session, user=ann, key="tea")
    path = path.replace("/1", f"/{existing.id}")
    before = await everything(db)
    response = await open_client().request(method, path, json=body)
    assert_unauthorized(response)
    assert "green tea" not in response.text
    assert await everything(db) == before


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Basic YW5uOmNvcnJlY3QgaG9yc2U=",
        "Token {secret}",
        "{secret}",
        "Bearer mat_not-a-real-token",
        "Bearer {secret}x",
    ],
    ids=["no-secret", "blank-secret", "basic", "other-scheme", "no-scheme", "unknown", "altered"],
)
async def test_malformed_or_unknown_tokens_are_401(
    db: AsyncEngine, open_client: OpenClient, ann: Agent, authorization: str
) -> None:
    """Anything but `Bearer <a live token>` is a 401, and writes nothing."""
    client = open_client(Authorization=authorization.format(secret=ann.secret))
    assert_unauthorized(await client.get("/memories"))
    assert_unauthorized(await client.put("/memories", json=memory()))
    assert await everything(db) == ([], [])


async def test_the_scheme_name_is_case_insensitive(open_client: OpenClient, ann: Agent) -> None:
    """RFC 7235: `bearer` is as good as `Bearer` (a positive control for the 401 tests)."""
    client = open_client(Authorization=f"bearer {ann.secret}")
    assert (await client.get("/memories")).status_code == 200


async def test_a_revoked_token_is_401(db: AsyncEngine, session: AsyncSession, ann: Agent) -> None:
    """Revoking a token stops it at once; the user's other tokens keep working."""
    assert (await ann.client.get("/memories")).status_code == 200
    other, other_secret = await make_token(session, user=ann.user, name="second")
    assert ann.token.id is not None
    await revoke_token(Database(db), token_id=ann.token.id)
    assert_unauthorized(await ann.client.get("/memories"))
    assert_unauthorized(await ann.client.put("/memories", json=memory()))
    assert await everything(db) == ([], [])
    still = await ann.client.get("/memories", headers={"Authorization": f"Bearer {other_secret}"})
    assert still.status_code == 200


async def test_an_inactive_users_token_is_401(
    db: AsyncEngine, session: AsyncSession, ann: Agent
) -> None:
    """Deactivating a user stops their agents too."""
    await session.execute(update(User).where(User.id == ann.user_id).values(is_active=False))  # type: ignore[arg-type]
    await session.commit()
    assert_unauthorized(await ann.client.get("/memories"))
    assert_unauthorized(await ann.client.put("/memories", json=memory()))
    assert await everything(db) == ([], [])


async def test_a_session_cookie_never_authenticates_the_api(
    db: AsyncEngine, session: AsyncSession, open_visitor: Callable[[], Visitor]
) -> None:
    """A logged-in browser's cookie (even with its CSRF token) is not an API credential."""
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, key="tea")
    visitor = open_visitor()
    assert (await visitor.log_in("ann")).status_code == 303
    assert visitor.client.cookies, "the visitor is logged in"
    before = await everything(db)
    headers = {"X-CSRF-Token": visitor.csrf_token, "accept": "application/json"}
    listing = await visitor.client.get("/api/v1/memories", headers=headers)
    assert_unauthorized(listing)
    assert "green tea" not in listing.text
    assert_unauthorized(
        await visitor.client.put("/api/v1/memories", json=memory(), headers=headers)
    )
    assert await everything(db) == before


async def test_token_last_used_at_is_written_at_most_once_a_minute(
    db: AsyncEngine, ann: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token shows when it was last used, without a write on every request."""

    async def last_used() -> datetime | None:
        async with db.connect() as conn:
            query = select(_tokens.c.last_used_at).where(_tokens.c.id == ann.token.id)
            value: datetime | None = (await conn.execute(query)).scalar_one()
            return value

    assert await last_used() is None
    before = utcnow()
    assert (await ann.client.get("/memories")).status_code == 200
    first = await last_used()
    assert first is not None and before <= first <= utcnow()
    assert (await ann.client.get("/namespaces")).status_code == 200
    assert await last_used() == first, "not rewritten within a minute"

    later = utcnow() + timedelta(minutes=1, seconds=5)
    monkeypatch.setattr(tokens, "utcnow", lambda: later)
    assert (await ann.client.get("/memories")).status_code == 200
    assert await last_used() == later, "written again once a minute has passed"


# --- user isolation and acting for another user ------------------------------------------


async def test_another_users_memory_is_404_and_invisible(
    db: AsyncEngine, session: AsyncSession, ann: Agent, bob: Agent
) -> None:
    """A token sees only its user's memories: Bob's are absent to Ann everywhere."""
    theirs = await make_memory(
        session, user=bob.user, namespace="secrets", key="tea", content="bob's tea"
    )
    trashed = await make_memory(
        session, user=bob.user, key="old", content="bob's tea", is_deleted=True, deleted_at=utcnow()
    )
    before = await everything(db)
    url = f"/memories/{theirs.id}"
    assert_error(await ann.client.get(url), 404)
    assert_error(await ann.client.get(url, params={"include_deleted": "true"}), 404)
    assert_error(await ann.client.get(f"/memories/{trashed.id}?include_deleted=true"), 404)
    assert_error(await ann.client.patch(url, json={"version": 1, "content": "mine"}), 404)
    assert_error(await ann.client.delete(url), 404)
    assert_error(await ann.client.post(f"/memories/{trashed.id}/restore"), 404)
    recall = await ann.client.get("/recall", params={"namespace": "secrets", "key": "tea"})
    assert_error(recall, 404)
    assert keys(await ann.client.get("/memories", params={"state": "all"})) == []
    assert keys(await ann.client.get("/memories", params={"namespace": "secrets"})) == []
    assert (await ann.client.post("/search", json={"query": "tea"})).json()["items"] == []
    context = (await ann.client.post("/context", json={"query": "tea", "max_chars": 500})).json()
    assert context["ids"] == [] and "bob" not in context["context"]
    assert (await ann.client.get("/namespaces")).json() == []
    assert await everything(db) == before, "nothing read counted, nothing written"


async def test_same_key_for_two_users_is_two_memories(
    db: AsyncEngine, ann: Agent, bob: Agent
) -> None:
    """Keys are per user: Bob writing Ann's key creates his own memory, hers is unchanged."""
    mine = await ann.client.put("/memories", json=memory(content="ann's"))
    theirs = await bob.client.put("/memories", json=memory(content="bob's"))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    recalled = await ann.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    assert recalled.json()["content"] == "ann's"


async def test_an_admin_token_acts_for_the_named_user(
    db: AsyncEngine, session: AsyncSession, ann: Agent, root: Agent
) -> None:
    """With user=<name>, an admin's token reads and writes that user's memories."""
    as_ann = {"user": "ann"}
    put = await root.client.put("/memories", params=as_ann, json=memory(content="for ann"))
    assert put.status_code == 201, put.text
    written = put.json()
    assert written["user_id"] == ann.user_id
    assert (await stored(db, written["id"])).user_id == ann.user_id
    event = (await events_of(db, written["id"]))[0]
    assert event.actor == f"token:{root.token.id}:root" and event.user_id == ann.user_id

    assert keys(await ann.client.get("/memories")) == ["tea"], "it is Ann's memory"
    assert keys(await root.client.get("/memories", params=as_ann)) == ["tea"]
    url = f"/memories/{written['id']}"
    assert (await root.client.get(url, params=as_ann)).status_code == 200
    patched = await root.client.patch(url, params=as_ann, json={"version": 1, "importance": 0.9})
    assert patched.status_code == 200, patched.text
    recall = await root.client.get("/recall", params={**as_ann, "namespace": "facts", "key": "tea"})
    assert recall.status_code == 200 and recall.json()["id"] == written["id"]
    found = await root.client.post("/search", params=as_ann, json={"query": "ann"})
    assert [item["id"] for item in found.json()["items"]] == [written["id"]]
    block = await root.client.post(
        "/context", params=as_ann, json={"query": "ann", "max_chars": 500}
    )
    assert block.json()["ids"] == [written["id"]]
    assert (await root.client.delete(url, params=as_ann)).status_code == 200
    assert (await root.client.post(url + "/restore", params=as_ann)).status_code == 200


async def test_an_admin_token_without_user_acts_as_itself(
    db: AsyncEngine, session: AsyncSession, ann: Agent, root: Agent
) -> None:
    """Without user=, an admin's token writes its own memories and reads only those."""
    anns = await make_memory(session, user=ann.user, key="tea", content="ann's tea")
    put = await root.client.put("/memories", json=memory(content="root's tea"))
    assert put.status_code == 201, "a new memory, not Ann's"
    assert put.json()["user_id"] == root.user_id
    assert (await stored(db, anns.id)).content == "ann's tea"  # type: ignore[arg-type]
    assert [item["content"] for item in (await root.client.get("/memories")).json()["items"]] == [
        "root's tea"
    ]
    recall = await root.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    assert recall.json()["content"] == "root's tea"
    found = (await root.client.post("/search", json={"query": "tea"})).json()["items"]
    assert [item["content"] for item in found] == ["root's tea"]


@pytest.mark.parametrize("name", ["bob", "nobody"])
async def test_an_ordinary_token_cannot_name_another_user(
    db: AsyncEngine, session: AsyncSession, ann: Agent, bob: Agent, name: str
) -> None:
    """user=<someone else> on an ordinary token is 404, whether or not they exist."""
    await make_memory(session, user=bob.user, key="tea")
    before = await everything(db)
    as_other = {"user": name}
    assert_error(await ann.client.put("/memories", params=as_other, json=memory()), 404)
    assert_error(await ann.client.get("/memories", params=as_other), 404)
    assert_error(
        await ann.client.get("/recall", params={**as_other, "namespace": "facts", "key": "tea"}),
        404,
    )
    assert_error(await ann.client.post("/search", params=as_other, json={"query": "tea"}), 404)
    assert_error(await ann.client.get("/namespaces", params=as_other), 404)
    assert await everything(db) == before
    own = await ann.client.get("/memories", params={"user": "ann"})
    assert own.status_code == 200, "naming oneself is fine"


async def test_an_admin_naming_an_unknown_user_is_404(db: AsyncEngine, root: Agent) -> None:
    """An admin's typo in user= writes nothing anywhere."""
    response = await root.client.put("/memories", params={"user": "nobody"}, json=memory())
    assert_error(response, 404)
    assert_error(await root.client.get("/memories", params={"user": "nobody"}), 404)
    assert await everything(db) == ([], [])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/memories?usr=ann", memory()),
        ("GET", "/recall?namespace=facts&key=tea&usr=ann", None),
        ("POST", "/search?usr=ann", {"query": "tea"}),
        ("GET", "/namespaces?usr=ann", None),
    ],
)
async def test_unknown_query_parameters_are_400_on_every_route(
    db: AsyncEngine,
    ann: Agent,
    root: Agent,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """A misspelt `user` must not silently act as the admin itself (api/__init__.py: a
    query parameter the route does not know is a 400)."""
    await ann.client.put("/memories", json=memory())
    before = await everything(db)
    assert_error(await root.client.request(method, path, json=body), 400)
    assert await everything(db) == before


async def test_the_audit_trail_names_the_token(db: AsyncEngine, ann: Agent) -> None:
    """Every write through the API records an event whose actor is the token."""
    created = (await ann.client.put("/memories", json=memory())).json()
    url = f"/memories/{created['id']}"
    await ann.client.put("/memories", json=memory(content="v2"))
    await ann.client.patch(url, json={"version": 2, "importance": 0.9})
    await ann.client.delete(url)
    await ann.client.post(url + "/restore")
    await ann.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    events = await events_of(db, created["id"])
    assert [event.action for event in events] == ["create", "update", "update", "delete", "restore"]
    for event in events:
        assert event.actor.startswith("token:") and event.actor == f"token:{ann.token.id}:ann"
        assert (event.actor_token_id, event.user_id) == (ann.token.id, ann.user_id)
    assert events[1].changes == {"content": {"old": "green tea", "new": "v2"}}
