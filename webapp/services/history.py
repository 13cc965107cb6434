"""A memory's history (its events as field diffs, newest first) and revert to a version.

The trail is append-only: each event of a change holds every changed field's old and new
value, so the state after any event is the current state with the newer events undone.
A revert is an ordinary edit (checked version, one new `update` event); it never
rewrites or deletes an event.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from webapp.db import Database
from webapp.errors import Conflict, NotFound
from webapp.formats import format_time
from webapp.models import ApiToken, EventAction, LongTermMemory, MemoryEvent, User
from webapp.services.memories import change_memory, get_memory
from webapp.services.principal import Principal

REVERTIBLE_FIELDS = ("content", "tags", "importance", "expires_at")
"""What a revert restores; namespace and key are the memory's identity and stay."""

PAGE_SIZE = 50
LONG_CONTENT = 160
"""Content longer than this (or on several lines) is shown as a line diff."""

_e = MemoryEvent.__table__.c  # type: ignore[attr-defined]
_u = User.__table__.c  # type: ignore[attr-defined]
_person = User.__table__.alias("person")  # type: ignore[attr-defined]
_token = ApiToken.__table__.alias("token")  # type: ignore[attr-defined]

State = dict[str, Any]


@dataclass(frozen=True)
class DiffLine:
    """One line of a content diff: marker "+" (added), "-" (removed), " " (kept) or "…"
    (unchanged lines left out)."""

    marker: str
    text: str


@dataclass(frozen=True)
class FieldChange:
    """A field as one event changed it; `lines` is set for a long content's line diff."""

    name: str
    old: Any
    new: Any
    lines: tuple[DiffLine, ...] | None = None


@dataclass(frozen=True)
class Actor:
    """Who wrote an event: a person, an agent (one of a user's API tokens) or the CLI."""

    kind: Literal["person", "agent", "operator"]
    name: str
    owner: str | None = None
    """For an agent: the user whose token it is."""


@dataclass(frozen=True)
class HistoryEntry:
    """One event as the history shows it, with the revertible fields as they were after it."""

    event: MemoryEvent
    actor: Actor
    changes: tuple[FieldChange, ...]
    state: State
    is_current: bool
    """The state after this event equals the memory's current state (nothing to revert)."""


@dataclass(frozen=True)
class History:
    """One page of a memory's history, newest first; `older` is the `before` of the next."""

    entries: tuple[HistoryEntry, ...]
    older: int | None
    owner: str | None = None
    """The memory owner's current name (None if the user is gone)."""


@dataclass(frozen=True)
class RevertResult:
    memory: LongTermMemory
    changed: bool


def _plain(value: Any) -> Any:
    return format_time(value) if isinstance(value, datetime) else value


def current_state(memory: LongTermMemory) -> State:
    """The revertible fields of a memory as the trail stores them (times as text)."""
    return {name: _plain(getattr(memory, name)) for name in REVERTIBLE_FIELDS}


def undo(state: State, changes: dict[str, Any] | None) -> State:
    """The state before an event, given the state after it."""
    before = dict(state)
    for name, change in (changes or {}).items():
        if name in before and isinstance(change, dict) and "old" in change:
            before[name] = change["old"]
    return before


def states_after(current: State, newest_first: Sequence[dict[str, Any] | None]) -> list[State]:
    """The state after each event, given the events' changes newest first."""
    states, state = [], current
    for changes in newest_first:
        states.append(state)
        state = undo(state, changes)
    return states


def line_diff(old: str, new: str) -> tuple[DiffLine, ...]:
    """old -> new as changed lines with two lines of context; gaps shown as "…"."""
    lines: list[DiffLine] = []
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=2)
    for line in diff:
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            if lines:
                lines.append(DiffLine("…", ""))
            continue
        lines.append(DiffLine(line[:1], line[1:]))
    return tuple(lines)


def _is_long(*texts: Any) -> bool:
    return any(isinstance(t, str) and (len(t) > LONG_CONTENT or "\n" in t) for t in texts)


def field_changes(event: MemoryEvent, state: State) -> tuple[FieldChange, ...]:
    """What an event did to the revertible fields; a create shows the initial values."""
    if event.action == EventAction.create:
        return tuple(
            FieldChange(name, None, state[name]) for name in REVERTIBLE_FIELDS if name in state
        )
    shown = []
    for name in REVERTIBLE_FIELDS:
        change = (event.changes or {}).get(name)
        if not isinstance(change, dict):
            continue
        old, new = change.get("old"), change.get("new")
        lines = None
        if name == "content" and _is_long(old, new):
            lines = line_diff(str(old or ""), str(new or ""))
        shown.append(FieldChange(name, old, new, lines))
    return tuple(shown)


def _names(rows: Sequence[Any]) -> dict[str, str]:
    """The current names of the page's people and tokens, read with its events:
    {"u1": .., "t3": ..}."""
    names: dict[str, str] = {}
    for row in rows:
        event = row.MemoryEvent
        if event.actor_user_id is not None and row.person is not None:
            names[f"u{event.actor_user_id}"] = row.person
        if event.actor_token_id is not None and row.token is not None:
            names[f"t{event.actor_token_id}"] = row.token
    return names


def _actor(event: MemoryEvent, names: dict[str, str]) -> Actor:
    """The event's actor by current name, else as the trail recorded it."""
    kind, _, rest = event.actor.partition(":")
    if kind == "token":
        token_id, _, owner = rest.partition(":")
        name = names.get(f"t{event.actor_token_id}") or f"token {token_id}"
        return Actor("agent", name, owner=names.get(f"u{event.actor_user_id}") or owner)
    if kind == "operator":
        return Actor("operator", rest or "cli")
    if not rest and " as " in kind:  # a local agent: `mcp stdio as NAME` (Principal.actor)
        return Actor("operator", event.actor)
    return Actor("person", names.get(f"u{event.actor_user_id}") or rest or event.actor)


async def memory_history(
    db: Database,
    *,
    principal: Principal,
    memory: LongTermMemory,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> History:
    """A page of the events of a memory the principal may see, newest first (those older
    than event `before`, if given), with the owner's name. One query for the page and
    the names, and on older pages one for the newer events' changes (to rebuild their
    states)."""
    assert memory.id is not None
    mine = (_e.memory_id == memory.id, principal.visible(_e.user_id))
    owner_name = select(_u.username).where(_u.id == memory.user_id).scalar_subquery()
    # The actors' and the owner's current names come with the events: one statement
    # where the detail page made three (events, actors, owner).
    query = (
        select(
            MemoryEvent,
            _person.c.username.label("person"),
            _token.c.name.label("token"),
            owner_name.label("owner"),
        )
        .outerjoin(_person, _person.c.id == _e.actor_user_id)
        .outerjoin(_token, _token.c.id == _e.actor_token_id)
        .where(*mine)
    )
    if before is not None:
        query = query.where(_e.id < before)
    async with db.read() as session:
        page = (await session.execute(query.order_by(_e.id.desc()).limit(limit + 1))).all()
        newer: list[dict[str, Any] | None] = []
        if before is not None:
            rows = await session.execute(
                select(_e.changes).where(*mine, _e.id >= before).order_by(_e.id.desc())
            )
            newer = [changes for (changes,) in rows.all()]
        owner = page[0].owner if page else (await session.execute(select(owner_name))).scalar()
    events, more = [row.MemoryEvent for row in page[:limit]], len(page) > limit
    names = _names(page[:limit])
    current = start = current_state(memory)
    for changes in newer:
        start = undo(start, changes)
    states = states_after(start, [e.changes for e in events])
    entries = tuple(
        HistoryEntry(
            event=event,
            actor=_actor(event, names),
            changes=field_changes(event, state),
            state=state,
            is_current=state == current,
        )
        for event, state in zip(events, states, strict=True)
    )
    return History(entries=entries, older=events[-1].id if more else None, owner=owner)


def _restored(name: str, value: Any) -> Any:
    if name == "expires_at" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if name == "tags":
        return list(value or [])
    return value


async def revert_memory(
    db: Database, *, principal: Principal, memory_id: int, event_id: int, expected_version: int
) -> RevertResult:
    """Set a live memory's revertible fields back to how they were after event_id, as a
    new `update` event (version bumped). The memory changed since expected_version:
    VersionConflict; in Trash: Conflict (restore it first); already equal: no change.
    An event of another memory, or a memory the principal may not see: NotFound."""
    mine = (_e.memory_id == memory_id, principal.visible(_e.user_id))
    async with db.read() as session:
        newer = (
            await session.execute(
                select(_e.id, _e.changes).where(*mine, _e.id >= event_id).order_by(_e.id.desc())
            )
        ).all()
    if not newer or newer[-1].id != event_id:
        raise NotFound(f"memory {memory_id} has no version {event_id}")

    def restore(memory: LongTermMemory) -> None:
        # Only reached when memory.version == expected_version: no event has been
        # written since `newer` was read (every change bumps the version).
        state = current_state(memory)
        for _id, changes in newer[:-1]:
            state = undo(state, changes)
        for name in REVERTIBLE_FIELDS:
            setattr(memory, name, _restored(name, state[name]))

    try:
        memory = await change_memory(
            db,
            principal=principal,
            memory_id=memory_id,
            expected_version=expected_version,
            change=restore,
        )
    except NotFound:
        deleted = await get_memory(
            db, principal=principal, memory_id=memory_id, include_deleted=True
        )
        raise Conflict(f"“{deleted.key}” is in Trash: restore it first, then revert") from None
    return RevertResult(memory=memory, changed=memory.version != expected_version)
