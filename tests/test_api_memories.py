"""The JSON API: remember with PUT, then get, patch, delete and restore by id.

Runs on SQLite and on PostgreSQL; the agents and helpers are in tests/api_support.py.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api_support import (
    MEMORY_FIELDS,
    Agent,
    assert_error,
    events_of,
    everything,
    keys,
    memory,
    stored,
    stored_by_key,
    when,
)
from webapp.types import utcnow

# --- PUT /memories ---------------------------------------------------------------------


async def test_put_creates_with_201_then_updates_with_200(db: AsyncEngine, ann: Agent) -> None:
    """Remember is an upsert by namespace + key: 201 the first time, 200 after."""
    created = await ann.client.put(
        "/memories", json=memory(tags=["Drinks", " drinks ", "Morning"], importance=0.8)
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == MEMORY_FIELDS
    assert (body["namespace"], body["key"], body["content"]) == ("facts", "tea", "green tea")
    assert body["tags"] == ["drinks", "morning"]
    assert (body["importance"], body["version"], body["access_count"]) == (0.8, 1, 0)
    assert body["user_id"] == ann.user_id and body["is_deleted"] is False
    assert body["expires_at"] is None and body["last_accessed_at"] is None
    assert when(body["created_at"]) <= when(body["updated_at"]) <= utcnow()

    updated = await ann.client.put("/memories", json=memory(content="black tea"))
    assert updated.status_code == 200, updated.text
    again = updated.json()
    assert again["id"] == body["id"]
    assert (again["content"], again["version"]) == ("black tea", 2)
    row = await stored(db, body["id"])
    assert (row.content, row.version, row.user_id) == ("black tea", 2, ann.user_id)
    assert len(await stored_by_key(db, ann.user_id, "facts", "tea")) == 1


async def test_put_of_the_same_memory_again_changes_nothing(db: AsyncEngine, ann: Agent) -> None:
    """An agent retrying a write gets 200 and leaves version and the audit trail alone."""
    created = (await ann.client.put("/memories", json=memory(tags=["a"]))).json()
    before = await everything(db)
    again = await ann.client.put("/memories", json=memory(tags=["A "]))
    assert again.status_code == 200, again.text
    assert again.json()["version"] == created["version"] == 1
    assert await everything(db) == before


async def test_keys_are_nfc_normalised(db: AsyncEngine, ann: Agent) -> None:
    """`café` typed as e + combining accent is the same key as the composed one."""
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    created = await ann.client.put("/memories", json=memory(key=decomposed))
    assert created.status_code == 201 and created.json()["key"] == composed
    assert (await ann.client.put("/memories", json=memory(key=composed))).status_code == 200
    for key in (composed, decomposed):
        recalled = await ann.client.get("/recall", params={"namespace": "facts", "key": key})
        assert recalled.status_code == 200 and recalled.json()["id"] == created.json()["id"]
    assert len(await stored_by_key(db, ann.user_id, "facts", composed)) == 1


async def test_put_revives_a_soft_deleted_key(db: AsyncEngine, ann: Agent) -> None:
    """Writing a key that is in the trash brings it back (200, same id, a restore event)."""
    first = (await ann.client.put("/memories", json=memory())).json()
    assert (await ann.client.delete(f"/memories/{first['id']}")).status_code == 200
    revived = await ann.client.put("/memories", json=memory(content="oolong"))
    assert revived.status_code == 200, revived.text
    body = revived.json()
    assert body["id"] == first["id"]
    assert (body["is_deleted"], body["deleted_at"], body["content"]) == (False, None, "oolong")
    row = await stored(db, first["id"])
    assert (row.is_deleted, row.deleted_at, row.content) == (False, None, "oolong")
    assert [event.action for event in await events_of(db, first["id"])] == [
        "create",
        "delete",
        "restore",
    ]
    assert (await ann.client.get(f"/memories/{first['id']}")).status_code == 200


async def test_put_ttl_seconds_sets_the_expiry_from_now(db: AsyncEngine, ann: Agent) -> None:
    """ttl_seconds is turned into expires_at = now + ttl, and stored so."""
    before = utcnow()
    response = await ann.client.put("/memories", json=memory(ttl_seconds=3600))
    after = utcnow()
    assert response.status_code == 201, response.text
    expires_at = when(response.json()["expires_at"])
    assert before + timedelta(seconds=3600) <= expires_at <= after + timedelta(seconds=3600)
    assert (await stored(db, response.json()["id"])).expires_at == expires_at
    assert "ttl_seconds" not in response.json()


async def test_put_with_both_expires_at_and_ttl_is_422(db: AsyncEngine, ann: Agent) -> None:
    """An expiry given twice is ambiguous: refused, nothing written."""
    expires_at = (utcnow() + timedelta(days=1)).isoformat()
    response = await ann.client.put("/memories", json=memory(expires_at=expires_at, ttl_seconds=60))
    assert_error(response, 422)
    assert await everything(db) == ([], [])


async def test_put_with_a_stale_version_is_409_and_writes_nothing(
    db: AsyncEngine, ann: Agent
) -> None:
    """Optimistic locking: a write based on a version that moved on is refused."""
    created = (await ann.client.put("/memories", json=memory())).json()
    current = await ann.client.put("/memories", json=memory(content="v2", version=1))
    assert current.status_code == 200 and current.json()["version"] == 2, current.text
    before = await everything(db)
    stale = await ann.client.put("/memories", json=memory(content="lost", version=1))
    assert_error(stale, 409)
    assert await everything(db) == before
    assert (await stored(db, created["id"])).content == "v2"
    absent = await ann.client.put("/memories", json=memory(key="new", version=3))
    assert_error(absent, 409)
    assert await everything(db) == before


SERVER_OWNED = {
    "id": 999_999,
    "user_id": 1,
    "user": "bob",
    "access_count": 50,
    "last_accessed_at": "2024-01-01T00:00:00Z",
    "is_deleted": True,
    "deleted_at": "2024-01-01T00:00:00Z",
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
}


async def test_put_refuses_server_owned_fields(db: AsyncEngine, ann: Agent, bob: Agent) -> None:
    """An agent cannot set ids, owners, access counts or timestamps: 4xx, nothing written."""
    await ann.client.put("/memories", json=memory())
    before = await everything(db)
    for name, value in SERVER_OWNED.items():
        for key in ("tea", "new"):  # the update path and the create path
            body = memory(key=key, content="changed", **{name: value})
            if name == "user_id":
                body[name] = bob.user_id
            response = await ann.client.put("/memories", json=body)
            assert_error(response)
            assert await everything(db) == before, f"{name} on {key}"


# --- GET, PATCH, DELETE /memories/{id} and restore -------------------------------------


async def test_get_by_id_hides_deleted_unless_asked(ann: Agent) -> None:
    """A soft-deleted memory is 404 by id, unless include_deleted=true; unknown ids are 404."""
    created = (await ann.client.put("/memories", json=memory())).json()
    got = await ann.client.get(f"/memories/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    await ann.client.delete(f"/memories/{created['id']}")
    assert_error(await ann.client.get(f"/memories/{created['id']}"), 404)
    shown = await ann.client.get(f"/memories/{created['id']}", params={"include_deleted": "true"})
    assert shown.status_code == 200, shown.text
    assert shown.json()["is_deleted"] is True and shown.json()["deleted_at"] is not None
    assert_error(await ann.client.get("/memories/987654"), 404)


async def test_patch_changes_the_given_fields_and_bumps_version(
    db: AsyncEngine, ann: Agent
) -> None:
    """PATCH edits content, tags, importance, expiry; the others stay as they were."""
    created = (await ann.client.put("/memories", json=memory(tags=["a"], importance=0.3))).json()
    expires_at = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    response = await ann.client.patch(
        f"/memories/{created['id']}",
        json={
            "version": 1,
            "tags": ["Work ", "work", "Home"],
            "expires_at": expires_at.isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["tags"], body["importance"]) == (2, ["work", "home"], 0.3)
    assert body["content"] == "green tea" and when(body["expires_at"]) == expires_at
    row = await stored(db, created["id"])
    assert (row.version, row.tags, row.expires_at) == (2, ["work", "home"], expires_at)
    again = await ann.client.patch(
        f"/memories/{created['id']}", json={"version": 2, "content": "matcha", "importance": 1}
    )
    assert again.status_code == 200, again.text
    assert (again.json()["content"], again.json()["importance"]) == ("matcha", 1.0)


async def test_patch_needs_a_current_version(db: AsyncEngine, ann: Agent) -> None:
    """Without version, 422; with a stale one, 409; in both cases nothing changes."""
    created = (await ann.client.put("/memories", json=memory())).json()
    url = f"/memories/{created['id']}"
    assert (await ann.client.patch(url, json={"version": 1, "content": "v2"})).status_code == 200
    before = await everything(db)
    assert_error(await ann.client.patch(url, json={"content": "no version"}), 422)
    detail = assert_error(await ann.client.patch(url, json={"version": 1, "content": "stale"}), 409)
    assert "version" in str(detail)
    assert await everything(db) == before
    assert (await stored(db, created["id"])).content == "v2"


async def test_patch_expires_at_null_clears_the_expiry(db: AsyncEngine, ann: Agent) -> None:
    """`expires_at: null` makes a memory permanent again (absent leaves it alone)."""
    created = (await ann.client.put("/memories", json=memory(ttl_seconds=600))).json()
    url = f"/memories/{created['id']}"
    kept = await ann.client.patch(url, json={"version": 1, "importance": 0.9})
    assert kept.status_code == 200 and kept.json()["expires_at"] == created["expires_at"]
    cleared = await ann.client.patch(url, json={"version": 2, "expires_at": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["expires_at"] is None
    assert (await stored(db, created["id"])).expires_at is None


async def test_patch_of_a_deleted_memory_is_404(db: AsyncEngine, ann: Agent) -> None:
    """A memory in the trash cannot be edited until it is restored."""
    created = (await ann.client.put("/memories", json=memory())).json()
    deleted = (await ann.client.delete(f"/memories/{created['id']}")).json()
    before = await everything(db)
    response = await ann.client.patch(
        f"/memories/{created['id']}", json={"version": deleted["version"], "content": "x"}
    )
    assert_error(response, 404)
    assert await everything(db) == before


async def test_delete_is_soft_and_a_second_delete_is_404(db: AsyncEngine, ann: Agent) -> None:
    """DELETE keeps the row (is_deleted, deleted_at) for restore; deleting again is 404."""
    created = (await ann.client.put("/memories", json=memory())).json()
    response = await ann.client.delete(f"/memories/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["is_deleted"] is True
    row = await stored(db, created["id"])
    assert row.is_deleted is True and row.deleted_at is not None
    assert_error(await ann.client.delete(f"/memories/{created['id']}"), 404)
    assert_error(await ann.client.delete("/memories/987654"), 404)
    assert keys(await ann.client.get("/memories")) == []


async def test_restore_undoes_a_delete(db: AsyncEngine, ann: Agent) -> None:
    """restore brings a deleted memory back; restoring one that is not deleted is 404."""
    created = (await ann.client.put("/memories", json=memory())).json()
    url = f"/memories/{created['id']}"
    assert_error(await ann.client.post(url + "/restore"), 404)
    await ann.client.delete(url)
    restored = await ann.client.post(url + "/restore")
    assert restored.status_code == 200, restored.text
    assert (restored.json()["is_deleted"], restored.json()["deleted_at"]) == (False, None)
    row = await stored(db, created["id"])
    assert (row.is_deleted, row.deleted_at) == (False, None)
    assert (await ann.client.get(url)).status_code == 200
    assert_error(await ann.client.post("/memories/987654/restore"), 404)
