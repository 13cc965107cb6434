"""Each user's memory vectors held in process memory, for semantic search.

Comparing a query with every vector of a user is one matrix-vector product: 50,000
vectors take a few milliseconds in numpy, where reading them from the database for each
search would take ten times that. So each process keeps the vectors of the users it
searched lately (least recently used first out, at most SEARCH_VECTOR_CACHE_ROWS
vectors in all, 1.5 kB each) and, before each search, asks the database in one
statement how many vectors the user ever gained and lost (`vector_count`, kept by
triggers: services/vector_counts.py) and their highest `seq`:

- Rows past the highest seq it holds are read and applied: a new memory's vector is
  appended, a changed memory's new vector replaces its old one.
- If it then gained fewer than the database did (rows committed out of `seq` order by
  concurrent PostgreSQL transactions), the user's vectors are read again in full.
- A removed vector (a purge, or an edit whose new vector is not made yet) stays until
  the new one replaces it, or until more than STALE_SHARE of the user's rows may be
  stale: then they are read again in full. A stale row costs a place among the nearest
  at most: the search reads its candidates back from the table with the visibility
  conditions, so a purged, deleted, expired or filtered-out memory never reaches a
  result. (An edit replaced 50,000 vectors at the next search before.) A memory has
  one vector at a time, so each replaced one accounts for one removal: rows that
  account for every removal are exactly the user's vectors (`snapshot`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from threadpoolctl import threadpool_limits

from webapp import embeddings
from webapp.db import Database
from webapp.models import MemoryEmbedding, VectorCount
from webapp.services import vectors
from webapp.settings import get_settings

_e = MemoryEmbedding.__table__.c  # type: ignore[attr-defined]
_count = VectorCount.__table__  # type: ignore[attr-defined]


STALE_SHARE = 0.02

PRODUCT_SLICE = 4096
"""Vectors compared with a query between two turns of the event loop (half a
millisecond here)."""


@dataclass
class _State:
    """A user's vectors as the database has them, and how many memories wait for one."""

    added: int
    removed: int
    max_seq: int
    queued: int
    """At most catch_up + 1."""


async def _state(db: Database, user_id: int, catch_up: int) -> _State:
    """One statement: the user's vector counts, highest seq and queued memories."""
    tally = _count.c.user_id == user_id
    query = select(
        select(_count.c.added).where(tally).scalar_subquery(),
        select(_count.c.removed).where(tally).scalar_subquery(),
        select(func.max(_e.seq)).where(_e.user_id == user_id).scalar_subquery(),
        vectors.waiting(user_id, catch_up + 1),
    )
    async with db.read_connection() as session:
        added, removed, max_seq, queued = (await session.execute(query)).one()
    return _State(added or 0, removed or 0, max_seq or 0, queued or 0)


GROWTH = 1.25
"""How much room a user's matrix makes when it is full: appending a vector to a full
50,000-row matrix copied all 77 MB of it, on the event loop, at each search after a
write (30-50 ms); with room, an append is one row."""


@dataclass
class _UserVectors:
    _ids: npt.NDArray[np.int64]
    _matrix: embeddings.Vectors
    size: int
    """Rows in use; the arrays have room for more."""
    added: int
    """Vectors the user had gained in the database when these were last brought up to date."""
    removed: int
    """Vectors the user had lost that these rows account for: those lost when they were
    last read in full, and one for each memory whose vector was replaced since (a
    memory has one vector at a time, so its new one means its old one was removed)."""
    max_seq: int
    row_of: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: list[tuple[int, int, bytes]], added: int, removed: int) -> _UserVectors:
        """From all of a user's rows up to a seq, in seq order, and the counts then."""
        ids = np.array([memory_id for memory_id, _, _ in rows], dtype=np.int64)
        matrix = embeddings.unpack_many([vector for _, _, vector in rows])
        max_seq = rows[-1][1] if rows else 0
        row_of = {int(m): i for i, m in enumerate(ids)}
        return cls(ids, matrix, len(rows), added, removed, max_seq, row_of)

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        return self._ids[: self.size]

    @property
    def matrix(self) -> embeddings.Vectors:
        return self._matrix[: self.size]

    def apply(self, rows: list[tuple[int, int, bytes]]) -> None:
        """Newer rows (in seq order): replace a memory's vector or append a new one."""
        fresh = embeddings.unpack_many([vector for _, _, vector in rows])
        new = {memory_id for memory_id, _, _ in rows} - self.row_of.keys()
        self._make_room(len(new))
        for (memory_id, seq, _), vector in zip(rows, fresh, strict=True):
            row = self.row_of.get(memory_id)
            if row is None:
                row = self.row_of[memory_id] = self.size
                self._ids[row] = memory_id
                self.size += 1
            else:
                self.removed += 1
            self._matrix[row] = vector
            self.max_seq = max(self.max_seq, seq)
        self.added += len(rows)

    def _make_room(self, more: int) -> None:
        if self.size + more <= len(self._ids):
            return
        capacity = max(16, int((self.size + more) * GROWTH))
        ids = np.zeros(capacity, dtype=np.int64)
        matrix = np.zeros((capacity, embeddings.DIMENSIONS), dtype=np.float32)
        ids[: self.size] = self.ids
        matrix[: self.size] = self.matrix
        self._ids, self._matrix = ids, matrix

    def too_stale(self, removed: int, *, share: float | None = None) -> bool:
        """Whether more than share (STALE_SHARE) of these rows may be of removed vectors."""
        return removed - self.removed > (STALE_SHARE if share is None else share) * self.size


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

    async def _current(
        self, db: Database, user_id: int, catch_up: int, *, stale_share: float | None = None
    ) -> _UserVectors:
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            state = await _state(db, user_id, catch_up)
            if 0 < state.queued <= catch_up:
                await vectors.drain(db, batch=catch_up, user_id=user_id)
                state = await _state(db, user_id, catch_up)
            async with db.read_connection() as session:
                rows = select(_e.memory_id, _e.seq, _e.vector).where(
                    _e.user_id == user_id, _e.seq <= state.max_seq
                )
                cached = self._users.get(user_id)
                if cached is not None and state.max_seq > cached.max_seq:
                    newer = rows.where(_e.seq > cached.max_seq).order_by(_e.seq)
                    cached.apply(list((await session.execute(newer)).all()))
                if (
                    cached is None
                    or cached.added != state.added
                    or cached.too_stale(state.removed, share=stale_share)
                ):
                    everything = (await session.execute(rows.order_by(_e.seq))).all()
                    cached = _UserVectors.build(list(everything), state.added, state.removed)
        self._keep(user_id, cached)
        return cached

    def _keep(self, user_id: int, vectors: _UserVectors) -> None:
        self._users[user_id] = vectors
        self._users.move_to_end(user_id)
        total = sum(v.size for v in self._users.values())
        while total > self._max_rows and len(self._users) > 1:
            _, dropped = self._users.popitem(last=False)
            total -= dropped.size

    async def similarities(
        self, db: Database, user_id: int, query: embeddings.Vectors, *, catch_up: int = 0
    ) -> Similarities:
        """Every vector of user_id's memories compared with query, once per search.

        catch_up: first embed the user's memories that wait for their vectors, if there
        are at most this many (an agent's last few writes, so that it finds them); a
        bigger backlog is left to the background."""
        vectors = await self._current(db, user_id, catch_up)
        ids, matrix = vectors.ids, vectors.matrix
        values = np.empty(len(ids), dtype=np.float32)
        # On the event loop, a slice at a time: the text part's statements run in
        # aiosqlite's thread meanwhile, and each one's next step waits for the loop. In one
        # piece, the 6.6 ms product of 52,000 vectors held that up (SQLite, a million rows:
        # 26.5 against 20.8 ms median a search, alternating in one process; PostgreSQL
        # unchanged). A worker thread for the product took turns with the database and the
        # loop on two cores, and made searches with little text work 2 to 4 ms slower.
        for start in range(0, len(ids), PRODUCT_SLICE):
            end = start + PRODUCT_SLICE
            np.matmul(matrix[start:end], query, out=values[start:end])
            if end < len(ids):
                await asyncio.sleep(0)
        return Similarities(ids, values, vectors.row_of)

    async def snapshot(
        self, db: Database, user_id: int
    ) -> tuple[npt.NDArray[np.int64], embeddings.Vectors]:
        """A copy of every vector the user has now, none of a removed one among them, by
        memory id: for the near-duplicate forest (services/duplicates.py), which read
        them all from the database at each refresh (about 0.5 s for 58,000 vectors)."""
        vectors = await self._current(db, user_id, catch_up=0, stale_share=0.0)
        return vectors.ids.copy(), vectors.matrix.copy()

    def forget(self) -> None:
        """Drop every cached vector (tests, and after a bulk load in this process)."""
        self._users.clear()


def use_one_blas_thread() -> None:
    """Let numpy's BLAS use one thread in this process (the app's). The product of a query
    with 50,000 vectors is bound by memory, and OpenBLAS's second thread spins after it:
    at a million rows a search cost 43-62 ms of CPU for 23-27 ms of time, and 22-34 ms
    with one thread, no slower. (`memory-admin embed` keeps both threads for the
    near-duplicate comparison, which they do speed up.)"""
    threadpool_limits(limits=1, user_api="blas")


_index: VectorIndex | None = None


def get_index() -> VectorIndex:
    """The process's VectorIndex, sized by SEARCH_VECTOR_CACHE_ROWS."""
    global _index
    if _index is None:
        _index = VectorIndex(get_settings().search_vector_cache_rows)
    return _index
