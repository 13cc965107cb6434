"""Search's reads besides the text index and the vectors: the candidates' rows, and each
leading candidate's neighbours, the memories written just before and after it in the
same namespace (by id), for the `context` component (webapp.services.search).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, literal, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from webapp.db import Database
from webapp.models import LongTermMemory

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]
_BATCH = 500


def _ranking_columns() -> tuple[ColumnElement[Any], ...]:
    """What ranking needs of each candidate (owner, namespace, importance, last write,
    reads)."""
    return (_c.id, _c.user_id, _c.namespace, _c.importance, _c.updated_at, _c.access_count)


async def read_candidates(
    db: Database, ids: Iterable[int], conditions: Sequence[ColumnElement[bool]]
) -> dict[int, Row[Any]]:
    """Those of ids that satisfy conditions (active, the owner's, filters), by id, with
    the columns ranking needs."""
    wanted = sorted(ids)
    found: dict[int, Row[Any]] = {}
    async with db.read() as session:
        for start in range(0, len(wanted), _BATCH):
            query = select(*_ranking_columns()).where(
                _c.id.in_(wanted[start : start + _BATCH]), *conditions
            )
            found.update({row.id: row for row in await session.execute(query)})
    return found


@dataclass
class Neighbourhood:
    """The memories next to some leaders: who is next to whom, and their rows."""

    adjacent: dict[int, tuple[int, ...]]
    """Each leader's neighbours, and each neighbour's leaders."""
    rows: dict[int, Row[Any]]
    """Each neighbour's row (the ranking columns), by id."""


async def neighbours(
    db: Database,
    leaders: Sequence[Row[Any]],
    conditions: Sequence[ColumnElement[bool]],
) -> Neighbourhood:
    """For each leader (a candidate row), the memories next to it: the last one before it
    and the first one after it in its namespace that satisfy conditions too, read with
    the ranking columns. One statement, each part a walk of the (user_id, namespace, id)
    index from the leader."""
    parts = []
    for leader in leaders:
        same_place = (_c.user_id == leader.user_id, _c.namespace == leader.namespace)
        for before in (True, False):
            step = _c.id < leader.id if before else _c.id > leader.id
            parts.append(
                select(*_ranking_columns(), literal(leader.id).label("leader"))
                .where(*same_place, step, *conditions)
                .order_by(_c.id.desc() if before else _c.id.asc())
                .limit(1)
                .subquery()
                .select()
            )
    if not parts:
        return Neighbourhood({}, {})
    async with db.read() as session:
        rows = (await session.execute(union_all(*parts))).all()
    found: dict[int, list[int]] = {}
    for row in rows:
        found.setdefault(row.leader, []).append(row.id)
        found.setdefault(row.id, []).append(row.leader)
    return Neighbourhood(
        adjacent={memory_id: tuple(ids) for memory_id, ids in found.items()},
        rows={row.id: row for row in rows},
    )


def best_neighbour(adjacent: dict[int, tuple[int, ...]], match: dict[int, float]) -> dict[int, int]:
    """Each memory's best-matching known neighbour that matches at all."""
    best: dict[int, int] = {}
    for memory_id, others in adjacent.items():
        matching = [other for other in others if other in match]
        if matching:
            best[memory_id] = max(matching, key=lambda other: (match[other], other))
    return best
