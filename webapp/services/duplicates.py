"""Near-duplicate review: which of a user's active memories say (nearly) the same.

Comparing 50,000 vectors pairwise on every page view is far too slow, and so is keeping
every similar pair (22 million for the heaviest user of a million generated memories).
duplicate_pair keeps each user's maximum spanning forest of the pairs at or above
MIN_THRESHOLD instead (services/duplicate_forest.py): fewer pairs than vectors, whose
components at any threshold are the groups. `refresh` brings it up to date with the
vectors written since the user's watermark (memory_embedding.seq only grows; an edited
memory gets a new row). The page reads the forest's pairs at the threshold whose two
members are active, and their components.

A deleted memory that linked two parts of a group in the forest leaves them as two
groups, though other pairs may still join them, until one of them changes; merging
either part is still right.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, insert, select, tuple_, union
from sqlalchemy.ext.asyncio import AsyncSession

from webapp import embeddings
from webapp.db import Database
from webapp.errors import InvalidInput, MemoryAdminError, NotFound
from webapp.models import (
    DuplicateDismissal,
    DuplicatePair,
    DuplicateWatermark,
    EmbeddingQueue,
    EventAction,
    LongTermMemory,
    MemoryEmbedding,
    VectorCount,
)
from webapp.services import duplicate_forest, events, vector_index, vectors
from webapp.services.bulk import StalePreview, fingerprint
from webapp.services.filters import state_condition
from webapp.services.principal import Principal
from webapp.types import utcnow

log = logging.getLogger("memory_admin")

MIN_THRESHOLD = 0.80
DEFAULT_THRESHOLD = 0.90
MAX_GROUP_SHOWN = 20
MAX_GROUPS = 100
_REWRITE = 1000
"""More stale pairs than this: the user's pairs are rewritten instead of deleted one by one."""

_pairs = DuplicatePair.__table__  # type: ignore[attr-defined]
_vectors = MemoryEmbedding.__table__  # type: ignore[attr-defined]
_queue = EmbeddingQueue.__table__  # type: ignore[attr-defined]
_marks = DuplicateWatermark.__table__  # type: ignore[attr-defined]
_dismissed = DuplicateDismissal.__table__  # type: ignore[attr-defined]
_memories = LongTermMemory.__table__  # type: ignore[attr-defined]


_LOCK_BASE = 0x6475700000000000  # advisory lock keys of refresh: this + user id


class BadThreshold(MemoryAdminError):
    """A threshold outside MIN_THRESHOLD..1.00 or not a number."""


def parse_threshold(raw: str | None) -> float:
    """The threshold a form asked for, DEFAULT_THRESHOLD when it asked for none."""
    if raw is None or raw.strip() == "":
        return DEFAULT_THRESHOLD
    try:
        value = float(raw)
    except ValueError:
        raise BadThreshold(f"The threshold must be a number, not {raw!r}.") from None
    if not MIN_THRESHOLD <= value <= 1.0:
        raise BadThreshold(f"The threshold must be between {MIN_THRESHOLD:.2f} and 1.00.")
    return value


@dataclass
class Member:
    id: int
    namespace: str
    key: str
    content: str
    tags: list[str]
    importance: float
    updated_at: datetime
    version: int
    similarity: float


@dataclass
class Group:
    members: list[Member]
    size: int
    ids: list[int] = field(default_factory=list)

    @property
    def token(self) -> str:
        """The group's member ids, as stored by a dismissal."""
        return ",".join(str(i) for i in sorted(self.ids))


async def users_with_vectors(db: Database) -> list[int]:
    """Every user who has a vector, for a refresh of them all (`memory-admin embed`):
    from the counts the triggers keep, not a pass over every vector."""
    counts = VectorCount.__table__.c  # type: ignore[attr-defined]
    async with db.read() as session:
        found = await session.execute(
            select(counts.user_id).where(counts.added > counts.removed).order_by(counts.user_id)
        )
        return list(found.scalars().all())


@lru_cache(maxsize=1)
def _background_pool() -> ThreadPoolExecutor:
    """One thread at nice 19 for the refreshes in the background: the requests beside
    them take the CPU first."""
    return ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="forest", initializer=embeddings.lowest_priority
    )


_locks: dict[int, asyncio.Lock] = {}
"""One refresh of a user's forest at a time in this process."""


def _lock(user_id: int) -> asyncio.Lock:
    return _locks.setdefault(user_id, asyncio.Lock())


def refreshing(user_id: int) -> bool:
    """Whether this process is bringing the user's forest up to date now."""
    return _lock(user_id).locked()


async def refresh(db: Database, user_id: int) -> int:
    """Bring the user's forest of near-duplicate pairs up to date (_refresh), one refresh
    of a user at a time in this process."""
    async with _lock(user_id):
        return await _refresh(db, user_id, background=False)


async def _refresh(db: Database, user_id: int, background: bool) -> int:
    """Bring the user's forest of near-duplicate pairs (services/duplicate_forest.py) up
    to date with the vectors written since the watermark; the pairs it now holds.

    The vectors come from the process's cache of them (services/vector_index.py), which
    reads only the rows it has not seen: reading all of the heaviest user's 58,000
    vectors took about 0.5 s at each refresh, so at each page view while the user's
    memories were being embedded."""
    async with db.read() as session:
        mark = await session.scalar(select(_marks.c.seq).where(_marks.c.user_id == user_id))
        top = await session.scalar(
            select(func.max(_vectors.c.seq)).where(_vectors.c.user_id == user_id)
        )
        if top is None or (mark is not None and top <= mark):
            return 0
        changed = set(
            (
                await session.execute(
                    select(_vectors.c.memory_id).where(
                        _vectors.c.user_id == user_id, _vectors.c.seq > (mark or 0)
                    )
                )
            ).scalars()
        )
        stored = {
            (a, b): similarity
            for a, b, similarity in await session.execute(
                select(_pairs.c.a, _pairs.c.b, _pairs.c.similarity).where(
                    _pairs.c.user_id == user_id
                )
            )
        }
    # Every vector up to top at least: a later one is compared again at the next refresh.
    ids, matrix = await vector_index.get_index().snapshot(db, user_id)
    # Off the event loop: the first forest of 50,000 vectors takes about a minute, and
    # the sets of 50,000 pairs tens of milliseconds. In the background (many new
    # vectors), at the lowest CPU priority.
    work = partial(_changes, ids, matrix, changed, stored)
    if background:
        wanted, gone, new = await asyncio.get_running_loop().run_in_executor(
            _background_pool(), work
        )
    else:
        wanted, gone, new = await anyio.to_thread.run_sync(work)
    async with db.write() as session:
        if db.dialect == "postgresql":  # one refresh of a user at a time (SQLite: one writer)
            await session.execute(select(func.pg_advisory_xact_lock(_LOCK_BASE + user_id)))
        again = await session.scalar(select(_marks.c.seq).where(_marks.c.user_id == user_id))
        if again != mark:
            return 0  # a concurrent refresh brought them up to date already
        if len(gone) > _REWRITE:
            await session.execute(delete(_pairs).where(_pairs.c.user_id == user_id))
            new = list(wanted)
        for start in range(0, len(gone) if len(gone) <= _REWRITE else 0, 500):
            chunk = gone[start : start + 500]
            await session.execute(delete(_pairs).where(tuple_(_pairs.c.a, _pairs.c.b).in_(chunk)))
        values = [{"a": a, "b": b, "user_id": user_id, "similarity": wanted[a, b]} for a, b in new]
        for start in range(0, len(values), 1000):
            await session.execute(insert(_pairs), values[start : start + 1000])
        await _set_mark(session, user_id, top, mark is not None)
    return len(wanted)


def _changes(
    ids: npt.NDArray[np.int64],
    matrix: npt.NDArray[np.float32],
    changed: set[int],
    stored: dict[tuple[int, int], float],
) -> tuple[dict[tuple[int, int], float], list[tuple[int, int]], list[tuple[int, int]]]:
    """The forest with the changed vectors compared again, and which stored pairs go and
    which come: (every pair of the new forest, pairs to delete, pairs to insert)."""
    fresh = np.isin(ids, np.fromiter(changed, dtype=np.int64, count=len(changed)))
    present = set(ids.tolist())
    kept = [
        (a, b, similarity)
        for (a, b), similarity in stored.items()
        if a in present and b in present and a not in changed and b not in changed
    ]
    forest = duplicate_forest.spanning_forest(ids, matrix, fresh, kept, MIN_THRESHOLD)
    wanted = {(a, b): similarity for a, b, similarity in forest}
    gone = [pair for pair in stored if wanted.get(pair) != stored[pair]]
    new = [pair for pair in wanted if stored.get(pair) != wanted[pair]]
    return wanted, gone, new


async def _set_mark(session: AsyncSession, user_id: int, seq: int, exists: bool) -> None:
    if exists:
        await session.execute(_marks.update().where(_marks.c.user_id == user_id).values(seq=seq))
    else:
        await session.execute(insert(_marks).values(user_id=user_id, seq=seq))


INLINE_REFRESH = 64
"""At most this many new vectors are compared during the page's request (80-150 ms for
the heaviest user); more are compared in the background (`refresh_soon`)."""


async def new_vectors(db: Database, user_id: int) -> int:
    """How many of the user's vectors the forest has not seen, up to INLINE_REFRESH + 1."""
    async with db.read() as session:
        mark = await session.scalar(select(_marks.c.seq).where(_marks.c.user_id == user_id))
        newer = (
            select(_vectors.c.seq)
            .where(_vectors.c.user_id == user_id, _vectors.c.seq > (mark or 0))
            .limit(INLINE_REFRESH + 1)
        )
        found = await session.scalar(select(func.count()).select_from(newer.subquery()))
    return int(found or 0)


_running: set[asyncio.Task[int]] = set()


async def _refresh_soon(db: Database, user_id: int) -> None:
    """Start bringing the user's forest up to date in the background, at the lowest CPU
    priority, unless it is under way already. After a burst of writes, a thousand new
    vectors of the heaviest user take seconds."""
    lock = _lock(user_id)
    if lock.locked():
        return
    await lock.acquire()  # now: the views meanwhile see it under way
    task = asyncio.create_task(_refresh_in_background(db, user_id, lock))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _refresh_in_background(db: Database, user_id: int, lock: asyncio.Lock) -> int:
    try:
        return await _refresh(db, user_id, background=True)
    except Exception:
        log.exception("the near-duplicate forest of user %s could not be refreshed", user_id)
        return 0
    finally:
        lock.release()


@dataclass
class Review:
    """What the duplicates page shows of a user: the groups, and why they may be behind."""

    groups: list[Group]
    waiting: int
    """The user's memories that wait for their vectors (in no group yet)."""
    refreshing: bool
    """Whether many new vectors are being compared in the background meanwhile."""


async def review(db: Database, user_id: int, threshold: float) -> Review:
    """The groups at threshold, with the forest brought up to date when that is quick.

    While some of the user's memories wait for their vectors, the forest is left as it
    is (the background embedder is at work; comparing each new vector at each view cost
    the heaviest user 0.5 s a view). More than INLINE_REFRESH new vectors are compared
    in the background, and the groups shown meanwhile are those of before."""
    waiting = await vectors.pending(db, user_id=user_id)
    if not waiting and await new_vectors(db, user_id) > INLINE_REFRESH:
        await _refresh_soon(db, user_id)
    under_way = refreshing(user_id)
    found = await groups(db, user_id, threshold, refresh_first=not waiting and not under_way)
    return Review(found, waiting, under_way)


async def groups(
    db: Database, user_id: int, threshold: float, *, refresh_first: bool = True
) -> list[Group]:
    """The user's MAX_GROUPS largest groups at threshold, dismissed ones left out; the
    forest brought up to date first unless refresh_first is False."""
    if refresh_first:
        await refresh(db, user_id)
    now = utcnow()
    async with db.read() as session:
        # The pairs, then which of their members must be left out: one join of the four
        # tables made PostgreSQL start from every user's vectors (1.5 s at 0.80 for the
        # heaviest user).
        at_threshold = (_pairs.c.user_id == user_id, _pairs.c.similarity >= threshold - 1e-6)
        every = (
            await session.execute(
                select(_pairs.c.a, _pairs.c.b, _pairs.c.similarity).where(*at_threshold)
            )
        ).all()
        # Who cannot be in a group: the user's deleted and expired memories (few, and
        # indexed), and those whose new vector is not made yet. Checking every member
        # instead read all of the heaviest user's rows (0.3 s on PostgreSQL at 0.80).
        mine = _memories.c.user_id == user_id
        out = union(
            select(_memories.c.id).where(mine, state_condition("deleted", now=now)),
            select(_memories.c.id).where(mine, state_condition("expired", now=now)),
            select(_queue.c.memory_id).where(_queue.c.user_id == user_id),
        )
        dead = set((await session.execute(out)).scalars())
        pairs = [p for p in every if p.a not in dead and p.b not in dead]
        dismissed = [
            {int(x) for x in members.split(",")}
            for members in await session.scalars(
                select(_dismissed.c.members).where(_dismissed.c.user_id == user_id)
            )
        ]
        components = duplicate_forest.components((p.a, p.b, p.similarity) for p in pairs)
        components = [c for c in components if not any(set(c) <= gone for gone in dismissed)]
        components = components[:MAX_GROUPS]
        best: dict[int, float] = {}
        for a, b, s in ((p.a, p.b, p.similarity) for p in pairs):
            best[a] = max(best.get(a, 0.0), s)
            best[b] = max(best.get(b, 0.0), s)
        shown = [i for c in components for i in c[:MAX_GROUP_SHOWN]]
        details = {
            r.id: r
            for start in range(0, len(shown), 500)
            for r in await session.execute(
                select(_memories).where(_memories.c.id.in_(shown[start : start + 500]))
            )
        }
    result = []
    for component in components:
        members = [
            Member(
                id=d.id,
                namespace=d.namespace,
                key=d.key,
                content=d.content,
                tags=list(d.tags or []),
                importance=d.importance,
                updated_at=d.updated_at,
                version=d.version,
                similarity=best[d.id],
            )
            for d in (details[i] for i in component[:MAX_GROUP_SHOWN])
        ]
        result.append(Group(members=members, size=len(component), ids=list(component)))
    return result


async def dismiss(db: Database, user_id: int, ids: Sequence[int]) -> None:
    """Stop showing the group of these memories (until it gains a member)."""
    members = ",".join(str(i) for i in sorted(set(ids)))
    async with db.write() as session:
        if len(await _members(session, user_id, ids)) != len(set(ids)) or len(set(ids)) < 2:
            raise NotFound("This group changed: some of its memories are gone.")
        await session.execute(insert(_dismissed).values(user_id=user_id, members=members))


@dataclass
class MergePreview:
    members: list[LongTermMemory]
    keep: int
    fingerprint: str


def default_keep(members: Sequence[LongTermMemory]) -> int:
    """The one a merge keeps unless told: the most important, then the newest."""
    best = max(members, key=lambda m: (m.importance, m.updated_at, m.id or 0))
    assert best.id is not None
    return best.id


async def _members(session: AsyncSession, user_id: int, ids: Sequence[int]) -> list[Any]:
    query = (
        select(LongTermMemory)
        .where(
            _memories.c.id.in_(sorted(set(ids))),
            _memories.c.user_id == user_id,
            state_condition("active", now=utcnow()),
        )
        .order_by(_memories.c.id)
    )
    return list(await session.scalars(query))


async def merge_preview(db: Database, user_id: int, ids: Sequence[int]) -> MergePreview:
    """What merging these memories would do; NotFound unless at least two are active."""
    async with db.read() as session:
        members = await _members(session, user_id, ids)
    if len(members) < 2 or len(members) != len(set(ids)):
        raise NotFound("This group changed: some of its memories are gone.")
    return MergePreview(
        members=members,
        keep=default_keep(members),
        fingerprint=fingerprint([(m.id, m.version) for m in members]),
    )


async def merge(
    db: Database,
    *,
    principal: Principal,
    user_id: int,
    ids: Sequence[int],
    keep: int,
    expected: str,
) -> int:
    """Keep one memory with the group's tags (union) and highest importance; soft-delete
    the others, each event naming the kept one (`merged_into`). One transaction;
    StalePreview when any member changed since the preview. Returns the kept id."""
    if keep not in ids:
        raise InvalidInput("The memory to keep must be one of the group.")
    now = utcnow()
    async with db.write() as session:
        members = await _members(session, user_id, ids)
        if fingerprint([(m.id, m.version) for m in members]) != expected or len(members) != len(
            set(ids)
        ):
            raise StalePreview(
                "These memories changed since the preview. Nothing was merged: check the "
                "new preview and confirm again."
            )
        kept = next(m for m in members if m.id == keep)
        before = events.snapshot(kept)
        tags = list(dict.fromkeys(t for m in [kept, *members] for t in m.tags))
        kept.tags = tags
        kept.importance = max(m.importance for m in members)
        events.record_change(
            session,
            memory=kept,
            before=before,
            principal=principal,
            action=EventAction.update,
            now=now,
        )
        for member in members:
            if member.id == keep:
                continue
            before = events.snapshot(member)
            member.is_deleted, member.deleted_at = True, now
            events.record_change(
                session,
                memory=member,
                before=before,
                principal=principal,
                action=EventAction.delete,
                now=now,
                noting={"merged_into": keep},
            )
    return keep
