"""Namespaces with their health: counts per state, mean importance, last write; as a tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlmodel import col

from webapp.db import Database
from webapp.models import LongTermMemory, User
from webapp.services.filters import state_condition
from webapp.services.principal import Principal
from webapp.types import utcnow

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


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
    """Every namespace principal can see (of one user, if given), sorted by name."""
    now = utcnow()

    def counted(state: str) -> Any:
        return func.sum(case((state_condition(state, now=now), 1), else_=0)).cast(Integer)

    query = (
        select(
            _c.namespace,
            counted("active"),
            counted("expired"),
            counted("deleted"),
            func.sum(case((state_condition("active", now=now), _c.importance), else_=0.0)),
            func.max(_c.updated_at),
        )
        .where(principal.visible())
        .group_by(_c.namespace)
        .order_by(_c.namespace)
    )
    if user is not None:
        owner = select(col(User.id)).where(col(User.username) == user).scalar_subquery()
        query = query.where(_c.user_id == owner)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        NamespaceHealth(
            namespace=namespace,
            active=int(active or 0),
            expired=int(expired or 0),
            deleted=int(deleted or 0),
            importance_sum=float(importance or 0.0),
            last_write=last_write,
        )
        for namespace, active, expired, deleted, importance, last_write in rows
    ]


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
