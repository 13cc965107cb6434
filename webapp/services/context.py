"""A prompt-ready block of what an agent remembers about a query, within a size budget.

The block lists the best-ranked active memories (search.rank), most relevant first, one
to a line: `[id] namespace/key: content`, with the content's whitespace folded into
single spaces, so that the model reading it can cite or update a memory by its id.
Memories are added whole while they fit; when the next one does not, and the block
still has room for a useful part of it (MIN_PART characters), that part ends the block,
cut at a word where one is near and marked with an ellipsis. Only the memories that
made it into the block count as accessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from webapp.db import Database
from webapp.models import ContextRequest, LongTermMemory, SearchRequest
from webapp.services.memories import count_access
from webapp.services.principal import Principal
from webapp.services.search import rank

CANDIDATES = 50
"""How many of the best-ranked memories are considered for a block."""
MIN_PART = 80
"""Below this many characters, a cut memory would say too little to be worth its line."""
ELLIPSIS = "…"

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


@dataclass
class Context:
    """The block, the ids of the memories in it (in its order), and whether matches were
    left out or cut to keep within the budget."""

    text: str
    ids: list[int]
    truncated: bool


def memory_line(memory_id: int, namespace: str, key: str, content: str) -> str:
    """One memory as a line of the block."""
    return f"[{memory_id}] {namespace}/{key}: {' '.join(content.split())}"


def _cut(line: str, room: int) -> str:
    """line shortened to room characters, ellipsis included, at a word boundary if one
    is within the last fifth."""
    if len(line) <= room:
        return line
    head = line[: room - len(ELLIPSIS)]
    space = head.rfind(" ")
    if space >= len(head) * 4 // 5:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


async def build_context(db: Database, *, principal: Principal, request: ContextRequest) -> Context:
    """The best-ranked memories for request as one block of at most max_chars characters."""
    search = SearchRequest(
        query=request.query, namespace=request.namespace, tags=request.tags, limit=CANDIDATES
    )
    ranked = await rank(db, principal=principal, request=search)
    wanted = [entry.memory_id for entry in ranked]
    async with db.read() as session:
        found = await session.execute(
            select(_c.id, _c.namespace, _c.key, _c.content).where(_c.id.in_(wanted))
        )
        memories = {row.id: row for row in found}
    lines: list[str] = []
    ids: list[int] = []
    used = 0
    truncated = False
    for entry in ranked:
        memory = memories.get(entry.memory_id)
        if memory is None:  # purged since it was ranked
            continue
        line = memory_line(entry.memory_id, memory.namespace, memory.key, memory.content)
        room = request.max_chars - used - (1 if lines else 0)
        if len(line) > room:
            truncated = True
            # A cut line must still name its memory: `[id] ` and the ellipsis at least.
            least = max(min(MIN_PART, request.max_chars), len(f"[{entry.memory_id}] …"))
            if room >= least:
                lines.append(_cut(line, room))
                ids.append(entry.memory_id)
            break
        lines.append(line)
        ids.append(entry.memory_id)
        used += len(line) + (1 if len(lines) > 1 else 0)
    counted = await count_access(db, ids=ids)
    if len(counted) < len(ids):  # some were deleted or expired meanwhile: leave them out
        kept = [index for index, memory_id in enumerate(ids) if memory_id in counted]
        lines, ids = [lines[index] for index in kept], [ids[index] for index in kept]
    return Context(text="\n".join(lines), ids=ids, truncated=truncated)
