"""Search's reads besides the text index and the vectors: the candidates' rows, and each
leading candidate's neighbours, the memories written just before and after it in the
same namespace (by id), for the `context` component (webapp.services.search).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, literal, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from webapp.db import Database
from webapp.models import LongTermMemory

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_c = _memories.c
_leader = _memories.alias("leader_row")
_neighbour = _memories.alias("neighbour_row")
_BATCH = 500


def _ranking_columns(table: Any = _memories) -> tuple[ColumnElement[Any], ...]:
    """What ranking needs of each candidate (owner, namespace, importance, last write,
    reads), of the memory table or an alias of it."""
    c = table.c
    return (c.id, c.user_id, c.namespace, c.importance, c.updated_at, c.access_count)


def _candidate_parts(
    ids: Iterable[int], conditions: Sequence[ColumnElement[bool]]
) -> list[Select[Any]]:
    """Those of ids that satisfy conditions, with the ranking columns (leader 0)."""
    wanted = sorted(ids)
    return [
        select(*_ranking_columns(), literal(0).label("leader")).where(
            _c.id.in_(wanted[start : start + _BATCH]), *conditions
        )
        for start in range(0, len(wanted), _BATCH)
    ]


def _neighbour_parts(
    leaders: Collection[int], conditions: Sequence[ColumnElement[bool]]
) -> list[Select[Any]]:
    """The memories next to the leaders (ids), with the ranking columns and their
    leader's id: for each leader, the last memory before it and the first after it in
    its namespace that satisfy conditions, each a walk of the (user_id, namespace, id)
    index from the leader. One part of one shape whatever the number of leaders: the
    statement is built and compiled in a fraction of the time of one part per leader."""
    if not leaders:
        return []

    def beside(before: bool) -> ColumnElement[Any]:
        step = _c.id < _leader.c.id if before else _c.id > _leader.c.id
        return (
            select(_c.id)
            .where(
                _c.user_id == _leader.c.user_id,
                _c.namespace == _leader.c.namespace,
                step,
                *conditions,
            )
            .order_by(_c.id.desc() if before else _c.id.asc())
            .limit(1)
            .correlate(_leader)
            .scalar_subquery()
        )

    pairs = (
        select(
            _leader.c.id.label("leader"),
            beside(True).label("before"),
            beside(False).label("after"),
        )
        .where(_leader.c.id.in_(sorted(leaders)))
        .subquery("pairs")
    )
    return [
        select(*_ranking_columns(_neighbour), pairs.c.leader).join_from(
            pairs, _neighbour, _neighbour.c.id.in_([pairs.c.before, pairs.c.after])
        )
    ]


async def _read(db: Database, parts: list[Select[Any]]) -> list[Row[Any]]:
    if not parts:
        return []
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    async with db.read_connection() as session:
        return list((await session.execute(statement)).all())


@dataclass
class Neighbourhood:
    """The memories next to some leaders: who is next to whom, and their rows."""

    adjacent: dict[int, tuple[int, ...]]
    """Each leader's neighbours, and each neighbour's leaders."""
    rows: dict[int, Row[Any]]
    """Each neighbour's row (the ranking columns), by id."""

    @classmethod
    def of(cls, rows: Iterable[Row[Any]], leaders: Collection[int]) -> Neighbourhood:
        """From neighbour rows (with their leader), those of the given leaders."""
        found: dict[int, list[int]] = {}
        kept = {}
        for row in rows:
            if row.leader in leaders:
                found.setdefault(row.leader, []).append(row.id)
                found.setdefault(row.id, []).append(row.leader)
                kept[row.id] = row
        return cls({memory_id: tuple(ids) for memory_id, ids in found.items()}, kept)


async def read_candidates(
    db: Database,
    ids: Iterable[int],
    conditions: Sequence[ColumnElement[bool]],
    *,
    likely_leaders: Sequence[int] = (),
) -> tuple[dict[int, Row[Any]], list[Row[Any]]]:
    """Those of ids that satisfy conditions (active, the owner's, filters), by id, with
    the columns ranking needs; and in the same statement the neighbours of
    likely_leaders (rows with their leader's id), for `Neighbourhood.of`. A search
    guesses its leaders before it knows which candidates are visible, so it reads
    those of more than it will keep, in one round trip instead of two."""
    rows = await _read(
        db, _candidate_parts(ids, conditions) + _neighbour_parts(likely_leaders, conditions)
    )
    return {row.id: row for row in rows if row.leader == 0}, [row for row in rows if row.leader]


async def neighbours(
    db: Database, leaders: Sequence[int], conditions: Sequence[ColumnElement[bool]]
) -> list[Row[Any]]:
    """The neighbours of leaders (rows with their leader's id), for `Neighbourhood.of`."""
    return await _read(db, _neighbour_parts(leaders, conditions))


def best_neighbour(adjacent: dict[int, tuple[int, ...]], match: dict[int, float]) -> dict[int, int]:
    """Each memory's best-matching known neighbour that matches at all."""
    best: dict[int, int] = {}
    for memory_id, others in adjacent.items():
        matching = [other for other in others if other in match]
        if matching:
            best[memory_id] = max(matching, key=lambda other: (match[other], other))
    return best
