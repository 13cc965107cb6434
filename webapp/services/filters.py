"""SQL conditions for the browse filters (BrowseQuery), built once for every caller."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, case, false, or_, true
from sqlalchemy.dialects.postgresql import JSONB

from webapp.errors import InvalidInput
from webapp.models import BrowseQuery, LongTermMemory, MemoryState
from webapp.services import fulltext
from webapp.services.plan import Plan
from webapp.types import UTCDateTime, utcnow
from webapp.validation import validate_namespace

STATES = ("active", "expired", "deleted", "all")

_memory = LongTermMemory.__table__.c  # type: ignore[attr-defined]


def namespace_condition(namespace: str) -> ColumnElement[bool]:
    """Exact namespace, or with a trailing '/' the prefix and everything below it."""
    if namespace.endswith("/"):
        prefix = namespace.rstrip("/")
        _check_namespace(prefix)
        # A range on the namespace index instead of LIKE: '0' is the character after '/'.
        return or_(
            _memory.namespace == prefix,
            and_(_memory.namespace >= prefix + "/", _memory.namespace < prefix + "0"),
        )
    _check_namespace(namespace)
    return _memory.namespace == namespace


def _check_namespace(namespace: str) -> None:
    try:
        validate_namespace(namespace)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


AT_EXECUTION: BindParameter[datetime] = bindparam(
    "memory_admin_now", callable_=utcnow, type_=UTCDateTime()
)
"""The time a statement runs, as a parameter: conditions built with it can be reused."""


def state_condition(state: str, *, now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """The memory states: deleted wins over expired; `all` is every row."""
    not_expired = or_(_memory.expires_at.is_(None), _memory.expires_at > now)
    if state == MemoryState.active:
        return and_(_memory.is_deleted.is_(false()), not_expired)
    if state == MemoryState.expired:
        return and_(_memory.is_deleted.is_(false()), _memory.expires_at <= now)
    if state == MemoryState.deleted:
        return _memory.is_deleted.is_(true())
    if state == "all":
        return true()
    raise InvalidInput(f"state must be one of {', '.join(STATES)} (got {state!r})")


@cache
def state_condition_now(state: str) -> ColumnElement[bool]:
    """state_condition at the time the statement runs; built once per state, as a list
    page builds it on every request."""
    return state_condition(state, now=AT_EXECUTION)


@cache
def state_expression_now() -> ColumnElement[str]:
    """Each row's state as state_condition decides it ('active', 'expired', 'deleted')
    when the statement runs, for lists that read plain rows instead of ORM objects."""
    return case(
        (_memory.is_deleted.is_(true()), MemoryState.deleted.value),
        (_memory.expires_at <= AT_EXECUTION, MemoryState.expired.value),
        else_=MemoryState.active.value,
    ).label("state")


def tags_condition(tags: Sequence[str], *, mode: str, plan: Plan) -> ColumnElement[bool]:
    """Rows carrying all (or any) of tags, as plan writes them; tags are compared
    lowercased as stored."""
    if mode not in ("any", "all"):
        raise InvalidInput(f"tags_mode must be 'any' or 'all' (got {mode!r})")
    wanted = normal_tags(tags)
    if not wanted:
        return true()
    for tag in wanted:
        if not tag.isprintable():  # as for stored tags (and PostgreSQL's JSON refuses NUL)
            raise InvalidInput(f"tag {tag!r} contains control or non-printable characters")
    if plan.dialect == "postgresql":
        tags_col = _memory.tags.cast(JSONB)
        if mode == "all":
            return tags_col.contains(wanted)
        return or_(*(tags_col.contains([tag]) for tag in wanted))
    conditions = [fulltext.tag_condition_sqlite(tag, plan=plan) for tag in wanted]
    return and_(*conditions) if mode == "all" else or_(*conditions)


def normal_tags(tags: Sequence[str]) -> list[str]:
    """Tags as stored: trimmed, lowercased, each once, blanks dropped."""
    return list(dict.fromkeys(tag.strip().lower() for tag in tags if tag.strip()))


def text_condition(query: str, *, plan: Plan) -> ColumnElement[bool]:
    """Rows whose key or content hold every word of query (the `q` filter)."""
    return fulltext.match_condition(query, plan=plan, every=True)


def text_filter(query: BrowseQuery) -> str | None:
    """The `q` filter's text, or None when it has no text (blank is no filter)."""
    return query.q if query.q is not None and query.q.strip() else None
