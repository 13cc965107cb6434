"""Namespaces with their health: counts per state, mean importance, last write; as a tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, or_, select
from sqlmodel import col

from webapp.db import Database
from webapp.models import LongTermMemory, NamespaceSummary, User
from webapp.services.principal import Principal
from webapp.types import utcnow

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]
_s = NamespaceSummary.__table__.c  # type: ignore[attr-defined]


@dataclass
class NamespaceHealth:
    """One namespace (or a prefix of several): what it holds and when it last changed.

    For a prefix that is not itself a namespace, the counts are its descendants'.
    """

    namespace: str
    active: int = 0
    expired: int = 0
    deleted: int = 0
    importance_sum: float = 0.0
    last_write: datetime | None = None
    is_namespace: bool = True

    @property
    def mean_importance(self) -> float | None:
        """Mean importance of the active memories, or None when there are none."""
        return self.importance_sum / self.active if self.active else None

    @property
    def depth(self) -> int:
        """0 for a top-level segment, 1 below it, and so on."""
        return self.namespace.count("/")

    def add(self, other: NamespaceHealth) -> None:
        """Count other's memories in this one (a namespace below this prefix)."""
        self.active += other.active
        self.expired += other.expired
        self.deleted += other.deleted
        self.importance_sum += other.importance_sum
        if other.last_write is not None and (
            self.last_write is None or other.last_write > self.last_write
        ):
            self.last_write = other.last_write


async def namespace_health(
    db: Database, *, principal: Principal, user: str | None = None
) -> list[NamespaceHealth]:
    """Every namespace principal can see (of one user, if given), sorted by name.

    The counts come from the maintained summary (webapp.services.namespace_summary); the
    expired rows among the live ones are counted now, from their partial index, and the
    last write is each namespace's newest updated_at, from the (user, namespace) index.
    Over several users a namespace's figures are the sum of theirs.
    """
    now = utcnow()
    owners: list[Any] = []
    if user is not None:
        owners.append(select(col(User.id)).where(col(User.username) == user).scalar_subquery())
    if not principal.sees_everyone:
        owners.append(principal.own_user_id)
    last_write = (
        select(func.max(_c.updated_at))
        .where(_c.user_id == _s.user_id, _c.namespace == _s.namespace)
        .scalar_subquery()
    )
    summary = select(
        _s.namespace, _s.live_count, _s.deleted_count, _s.live_importance_sum, last_write
    ).where(or_(_s.live_count > 0, _s.deleted_count > 0))
    expired = (
        select(_c.namespace, func.count(), func.sum(_c.importance))
        .where(
            _c.is_deleted.is_(false()),
            _c.expires_at.is_not(None),
            _c.expires_at <= now,
        )
        .group_by(_c.namespace)
    )
    for owner in owners:
        summary = summary.where(_s.user_id == owner)
        expired = expired.where(_c.user_id == owner)
    async with db.read() as session:
        rows = (await session.execute(summary)).all()
        expired_rows = (await session.execute(expired)).all()
    found: dict[str, NamespaceHealth] = {}
    for namespace, live, deleted, importance, written in rows:
        node = found.setdefault(namespace, NamespaceHealth(namespace=namespace))
        node.add(
            NamespaceHealth(
                namespace=namespace,
                active=int(live),
                deleted=int(deleted),
                importance_sum=float(importance),
                last_write=written,
            )
        )
    for namespace, count, importance in expired_rows:
        node = found.setdefault(namespace, NamespaceHealth(namespace=namespace))
        node.active -= int(count)
        node.expired += int(count)
        node.importance_sum -= float(importance or 0.0)
    for node in found.values():
        if node.active <= 0:
            node.importance_sum = 0.0
    return [found[name] for name in sorted(found)]


def as_tree(namespaces: list[NamespaceHealth]) -> list[NamespaceHealth]:
    """Namespaces with every prefix above them, each prefix counting what is below it.

    `projects/apollo` and `projects/zeus` give `projects` (their sum), then both, in
    name order; a prefix that is also a namespace adds its own memories.
    """
    tree: dict[str, NamespaceHealth] = {}
    for health in namespaces:
        segments = health.namespace.split("/")
        for depth in range(1, len(segments) + 1):
            name = "/".join(segments[:depth])
            node = tree.get(name)
            if node is None:
                node = tree[name] = NamespaceHealth(namespace=name, is_namespace=False)
            node.add(health)
            if name == health.namespace:
                node.is_namespace = True
    return [tree[name] for name in sorted(tree, key=lambda name: name.split("/"))]


@dataclass
class NamespaceNode:
    """One node of the namespace tree: a `/` segment, its own memories (when it is a
    namespace itself) and its subtree's totals (its own and every namespace below it)."""

    path: str
    own: NamespaceHealth | None
    total: NamespaceHealth
    children: list[NamespaceNode]

    @property
    def segment(self) -> str:
        """The last segment of the path, the name shown under its parent."""
        return self.path.rsplit("/", 1)[-1]


def namespace_tree(namespaces: list[NamespaceHealth]) -> list[NamespaceNode]:
    """The top-level nodes of namespaces' tree, every level in name order."""
    own = {health.namespace: health for health in namespaces}
    totals = as_tree(namespaces)
    nodes = {
        total.namespace: NamespaceNode(
            path=total.namespace, own=own.get(total.namespace), total=total, children=[]
        )
        for total in totals
    }
    roots: list[NamespaceNode] = []
    for total in totals:  # parents come before their children
        node = nodes[total.namespace]
        parent, _, _ = total.namespace.rpartition("/")
        (nodes[parent].children if parent in nodes else roots).append(node)
    return roots


@dataclass
class NamespaceOwner:
    """A user with memories, for the admin's choice of whose namespaces to see."""

    username: str
    namespaces: int
    live: int
    deleted: int


async def namespace_owners(db: Database, *, principal: Principal) -> list[NamespaceOwner]:
    """Every user principal may see who has memories, by name, from the summary."""
    query = (
        select(
            col(User.username),
            func.count(),
            func.sum(_s.live_count),
            func.sum(_s.deleted_count),
        )
        .join(User, col(User.id) == _s.user_id)
        .where(or_(_s.live_count > 0, _s.deleted_count > 0))
        .group_by(col(User.username))
        .order_by(col(User.username))
    )
    if not principal.sees_everyone:
        query = query.where(_s.user_id == principal.own_user_id)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        NamespaceOwner(username=name, namespaces=int(count), live=int(live), deleted=int(gone))
        for name, count, live, gone in rows
    ]
