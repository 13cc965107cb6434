"""Namespace health (services/namespaces.py), flat and as a tree, on both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from webapp.db import Database
from webapp.models import LongTermMemory
from webapp.services.namespaces import NamespaceHealth, as_tree, namespace_health
from webapp.services.principal import Principal
from webapp.types import utcnow


async def test_counts_per_state_mean_importance_and_last_write(
    db: AsyncEngine, session: AsyncSession
) -> None:
    alice = await make_user(session, username="alice")
    bob = await make_user(session, username="bob")
    past = utcnow() - timedelta(days=1)
    await make_memory(session, user=alice, namespace="projects/apollo", importance=0.2)
    await make_memory(session, user=alice, namespace="projects/apollo", importance=0.6)
    await make_memory(session, user=alice, namespace="projects/apollo", expires_at=past)
    gone = await make_memory(session, user=alice, namespace="projects/zeus", importance=1.0)
    await make_memory(session, user=alice, namespace="projects", importance=0.4)
    await make_memory(session, user=bob, namespace="facts")
    await session.execute(
        update(LongTermMemory)
        .where(LongTermMemory.id == gone.id)  # type: ignore[arg-type]
        .values(is_deleted=True, deleted_at=utcnow())
    )
    await session.commit()
    database = Database(db)

    flat = await namespace_health(database, principal=Principal.operator(), user="alice")
    by_name = {health.namespace: health for health in flat}
    assert list(by_name) == ["projects", "projects/apollo", "projects/zeus"]
    apollo = by_name["projects/apollo"]
    assert (apollo.active, apollo.expired, apollo.deleted) == (2, 1, 0)
    assert apollo.mean_importance == 0.4
    assert apollo.last_write is not None and apollo.last_write.utcoffset() == timedelta(0)
    zeus = by_name["projects/zeus"]
    assert (zeus.active, zeus.expired, zeus.deleted, zeus.mean_importance) == (0, 0, 1, None)

    tree = {health.namespace: health for health in as_tree(flat)}
    top = tree["projects"]
    assert (top.active, top.expired, top.deleted, top.is_namespace) == (3, 1, 1, True)
    assert top.mean_importance == (0.2 + 0.6 + 0.4) / 3

    everyone = await namespace_health(database, principal=Principal.operator())
    assert [health.namespace for health in everyone] == [
        "facts",
        "projects",
        "projects/apollo",
        "projects/zeus",
    ]
    only_bob = await namespace_health(database, principal=Principal.of_user(bob))
    assert [health.namespace for health in only_bob] == ["facts"]
    bob_asks_for_alice = await namespace_health(
        database, principal=Principal.of_user(bob), user="alice"
    )
    assert bob_asks_for_alice == []


def test_tree_adds_prefixes_in_segment_order() -> None:
    flat = [
        NamespaceHealth(namespace="a-x", active=1),
        NamespaceHealth(namespace="a/b/c", active=2),
        NamespaceHealth(namespace="a/d", active=3, deleted=1),
    ]
    tree = as_tree(flat)
    assert [(node.namespace, node.depth, node.active, node.is_namespace) for node in tree] == [
        ("a", 0, 5, False),
        ("a/b", 1, 2, False),
        ("a/b/c", 2, 2, True),
        ("a/d", 1, 3, True),
        ("a-x", 0, 1, True),
    ]
    assert tree[0].deleted == 1
