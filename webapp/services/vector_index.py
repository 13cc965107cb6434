"""Each user's memory vectors held in process memory, for semantic search.

Comparing a query with every vector of a user is one matrix-vector product: 50,000
vectors take a few milliseconds in numpy, where reading them from the database for each
search would take ten times that. So each process keeps the vectors of the users it
searched lately (least recently used first out, at most SEARCH_VECTOR_CACHE_ROWS
vectors in all, 1.5 kB each) and, before each search, asks the database whether the
user's vectors changed: their count (kept by triggers, services/vector_counts.py) and
highest `seq`, two index probes.

- Nothing changed: the cached matrix is used as it is.
- New rows (a higher `seq`): only those are read and applied; a memory whose content
  changed gets a new row, which replaces its old vector.
- Anything else (a vector removed by a purge or an edit, or rows committed out of `seq`
  order by concurrent PostgreSQL transactions): the count no longer adds up, and the
  user's vectors are read again in full.

Vectors of memories that are deleted, expired or filtered out stay in the matrix; the
search reads its candidates back from the table with the visibility conditions, so they
never reach a result.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from webapp import embeddings
from webapp.db import Database
from webapp.models import MemoryEmbedding, VectorCount
from webapp.settings import get_settings

_e = MemoryEmbedding.__table__.c  # type: ignore[attr-defined]
_count = VectorCount.__table__  # type: ignore[attr-defined]


@dataclass
class _UserVectors:
    ids: npt.NDArray[np.int64]
    matrix: embeddings.Vectors
    count: int
    max_seq: int
    row_of: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: list[tuple[int, int, bytes]]) -> _UserVectors:
        """From all of a user's rows, in seq order."""
        ids = np.array([memory_id for memory_id, _, _ in rows], dtype=np.int64)
        matrix = embeddings.unpack_many([vector for _, _, vector in rows])
        max_seq = rows[-1][1] if rows else 0
        return cls(ids, matrix, len(rows), max_seq, {int(m): i for i, m in enumerate(ids)})

    def apply(self, rows: list[tuple[int, int, bytes]]) -> None:
        """Newer rows (in seq order): replace a memory's vector or append a new one."""
        fresh = embeddings.unpack_many([vector for _, _, vector in rows])
        appended_ids: list[int] = []
        appended: list[embeddings.Vectors] = []
        for (memory_id, seq, _), vector in zip(rows, fresh, strict=True):
            row = self.row_of.get(memory_id)
            if row is None:
                self.row_of[memory_id] = len(self.ids) + len(appended_ids)
                appended_ids.append(memory_id)
                appended.append(vector)
            else:
                self.matrix[row] = vector
            self.max_seq = max(self.max_seq, seq)
        if appended_ids:
            self.ids = np.concatenate([self.ids, np.array(appended_ids, dtype=np.int64)])
            self.matrix = np.vstack([self.matrix, np.array(appended, dtype=np.float32)])


@dataclass
class Similarities:
    """One search's cosine similarities to its query, of all of a user's vectors."""

    ids: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    row_of: dict[int, int]

    def of(self, ids: set[int]) -> dict[int, float]:
        """Those of ids that have a vector, with their similarity. (Rows appended to the
        cache by a later search lie past `values` and are left out.)"""
        rows = ((i, self.row_of.get(i)) for i in ids)
        return {
            i: float(self.values[row])
            for i, row in rows
            if row is not None and row < len(self.values)
        }


class VectorIndex:
    """The process's cache of user vectors; one per process (`get_index`)."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._users: OrderedDict[int, _UserVectors] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}

    async def _current(self, db: Database, user_id: int) -> _UserVectors:
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock, db.read() as session:
            # Every vector is of embeddings.MODEL_ID (a new model comes with a migration
            # that queues every memory again).
            mine = (_e.user_id == user_id,)
            counted = select(_count.c.vectors).where(_count.c.user_id == user_id)
            highest = select(func.max(_e.seq)).where(*mine)
            count, max_seq = (
                await session.execute(select(counted.scalar_subquery(), highest.scalar_subquery()))
            ).one()
            count, max_seq = count or 0, max_seq or 0
            cached = self._users.get(user_id)
            if cached is not None and (cached.count, cached.max_seq) != (count, max_seq):
                if max_seq > cached.max_seq:
                    newer = select(_e.memory_id, _e.seq, _e.vector).where(
                        *mine, _e.seq > cached.max_seq
                    )
                    rows = (await session.execute(newer.order_by(_e.seq))).all()
                    cached.apply(list(rows))
                cached.count = count
                if len(cached.row_of) != count or cached.max_seq != max_seq:
                    cached = None
            if cached is None:
                everything = select(_e.memory_id, _e.seq, _e.vector).where(*mine)
                rows = (await session.execute(everything.order_by(_e.seq))).all()
                cached = _UserVectors.build(list(rows))
        self._keep(user_id, cached)
        return cached

    def _keep(self, user_id: int, vectors: _UserVectors) -> None:
        self._users[user_id] = vectors
        self._users.move_to_end(user_id)
        total = sum(len(v.ids) for v in self._users.values())
        while total > self._max_rows and len(self._users) > 1:
            _, dropped = self._users.popitem(last=False)
            total -= len(dropped.ids)

    async def similarities(
        self, db: Database, user_id: int, query: embeddings.Vectors
    ) -> Similarities:
        """Every vector of user_id's memories compared with query, once per search."""
        vectors = await self._current(db, user_id)
        return Similarities(vectors.ids, vectors.matrix @ query, vectors.row_of)

    def forget(self) -> None:
        """Drop every cached vector (tests, and after a bulk load in this process)."""
        self._users.clear()


_index: VectorIndex | None = None


def get_index() -> VectorIndex:
    """The process's VectorIndex, sized by SEARCH_VECTOR_CACHE_ROWS."""
    global _index
    if _index is None:
        _index = VectorIndex(get_settings().search_vector_cache_rows)
    return _index
