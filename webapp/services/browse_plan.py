"""How browse finds a page: every choice of plan it makes, once per call (BrowsePlan).

Both planners misjudge some of the browse filters: neither has statistics for full
text or single tags, SQLite has none for ranges, and PostgreSQL's guesses for ranges
were 50 times off. So browse counts for itself and chooses, then writes SQL that holds
the planner to the choice (plan.no_index wherever an index must not be used):

- a word or tag (SQLite, on a sort with an index): walk the sort index testing each
  row when the matches are common, start from them and sort them when they are rare
  (walk_sorted_index);
- a filter that may match a few rows or a great many (_narrows): count first, then
  sort the few, or walk the sort index past the many (on SQLite, for all users,
  testing each row: tested_per_row);
- the count with a word or tag (SQLite): start from the match list (counting);
- a page past a cursor on a NOT NULL sort (SQLite): seek the rows tied with the
  cursor's value and the rows past it in two walks (browse._sqlite_after).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.visitors import ExternallyTraversible, replacement_traverse

from webapp.models import BrowseQuery, LongTermMemory
from webapp.services import fulltext
from webapp.services.filters import normal_tags, text_filter
from webapp.services.plan import Plan, no_index
from webapp.services.principal import Principal
from webapp.settings import SearchLanguage

NULLABLE_SORTS = frozenset({"last_accessed_at"})
INDEXED_SORTS = frozenset({"updated_at", "importance"})
"""Sorts with an index to walk in order (see walk_sorted_index); the others sort their matches."""
WALK_THRESHOLD = 5_000
"""From this many matches on, walking a sorted index beats sorting the matches."""

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BrowsePlan:
    """How one browse call finds its page and counts the matches."""

    filters: Plan
    """How the page's conditions are written: the dialect, and whether to walk."""
    count_first: bool
    """Count the matches before finding the page (_narrows): up to the count's cap,
    the page sorts exactly those rows; past it, the page walks its sort index."""
    test_each_row: bool
    """SQLite, for all users, when count_first found more than the cap: write the
    conditions so that the walk tests each row (tested_per_row)."""
    two_walks: bool
    """SQLite, past a cursor on a NOT NULL sort: seek the rows tied with the cursor's
    value and the rows past it apart (browse._sqlite_after)."""

    def counting(self, query: BrowseQuery) -> tuple[Select[tuple[int]] | None, BrowseQuery | None]:
        """The match list the count starts from (SQLite), and what is left of query for
        the count to test on each row, written without walking (None: the count tests
        the page's own conditions).

        Written as `id IN (matches)`, a full-text or tag filter makes SQLite collect every
        match before counting (20,000 for a word in 2% of a million rows: 4 ms); joined
        from the match list, the count reads matches in id order and stops at the cap
        (0.5 ms).
        """
        start, rest = None, query
        if self.filters.dialect == "sqlite":
            text = text_filter(query)
            tags = normal_tags(query.tag)
            if text is not None:
                start, rest = (
                    fulltext.match_ids(text, self.filters.language),
                    query.model_copy(update={"q": None}),
                )
            elif len(tags) == 1 or (tags and query.tags_mode == "all"):
                start, rest = fulltext.tag_ids(tags[0]), query.model_copy(update={"tag": tags[1:]})
        if self.filters.walk or start is not None:
            return start, rest
        return None, None

    @property
    def count_filters(self) -> Plan:
        """How the count's own conditions are written: never walking, it has no sort."""
        return Plan(self.filters.dialect, self.filters.language)

    def tested_per_row(self, conditions: list[ColumnElement[bool]]) -> list[ColumnElement[bool]]:
        """conditions with every memory column out of the indexes (no_index): the page
        then walks its sort index and tests each row. (SQLite's statistics hold no
        ranges: it took `last_accessed_at IS NULL` for a rare value, and sorted the 30%
        of a million rows never read.)"""

        def unindexed(element: ExternallyTraversible, **_kw: Any) -> ExternallyTraversible | None:
            if isinstance(element, Column) and element.table is _memories:
                return no_index(element, self.filters.dialect)
            return None

        return [replacement_traverse(condition, {}, unindexed) for condition in conditions]


async def plan_browse(
    session: AsyncSession,
    *,
    dialect: str,
    language: SearchLanguage,
    principal: Principal,
    query: BrowseQuery,
    past_cursor: bool,
) -> BrowsePlan:
    """The plan for one page of query as principal sees it (counting matches on SQLite)."""
    sqlite = dialect == "sqlite"
    field = query.sort.lstrip("-")
    walk = (
        sqlite
        and field in INDEXED_SORTS
        and await walk_sorted_index(
            session,
            q=text_filter(query),
            language=language,
            tags=normal_tags(query.tag),
            every_tag=query.tags_mode == "all",
        )
    )
    return BrowsePlan(
        filters=Plan(dialect, language, walk=walk),
        count_first=_narrows(query),
        test_each_row=sqlite and principal.sees_everyone and query.user is None,
        two_walks=sqlite and past_cursor and field not in NULLABLE_SORTS,
    )


def _narrows(query: BrowseQuery) -> bool:
    """Whether query has a filter that may match a few rows or a great many, which the
    planners misjudge (full text and tags have their own choice, walk_sorted_index).

    Walking the sort index and testing each row finds a page at once among many
    matches, but reads the whole index for a few: `min_importance=0.9` matched 54 rows
    of a million and took a second on both databases. Starting from the filter's index
    and sorting the matches is the reverse. browse counts the matches first (capped, and
    shown anyway) and chooses.
    """
    if text_filter(query) is not None or query.tag:
        return False
    return (
        query.min_importance is not None
        or query.max_importance is not None
        or query.expiring_within is not None
        or query.accessed is not None
        or query.state == "expired"
        or (query.namespace is not None and query.user is None)
    )


async def walk_sorted_index(
    session: AsyncSession,
    *,
    q: str | None,
    language: SearchLanguage,
    tags: Sequence[str],
    every_tag: bool,
) -> bool:
    """Whether a sorted SQLite page should walk its sort index, testing each row.

    SQLite's planner starts from the list of full-text or tag matches, fetches every
    matching row and sorts them: right for a rare word, slow for a common one (a word in
    2% of a million rows: 26 ms). Walking the sort index and testing each row against
    the matches stops after one page instead (3 ms), but would read the whole index for
    a rare word. The planner has no statistics for FTS5 or for single tags, so count the
    matches up to WALK_THRESHOLD and choose: walk when the text is common and the tags
    are (every tag, or with every_tag=False at least one of them).
    """
    if q is None and not tags:
        return False
    if q is not None and not await _common(session, fulltext.match_ids(q, language)):
        return False
    if not tags:
        return True
    common = [await _common(session, fulltext.tag_ids(tag)) for tag in tags]
    return all(common) if every_tag else any(common)


async def _common(session: AsyncSession, matches: Select[tuple[int]]) -> bool:
    capped = select(func.count()).select_from(matches.limit(WALK_THRESHOLD).subquery())
    return int((await session.execute(capped)).scalar_one()) >= WALK_THRESHOLD
