"""The edits people make most: add and remove tags, set importance; one rule each.

The pages' tag and importance forms call these functions, and bulk actions apply the same
tag rules to each memory they change, so a tag is added or removed one way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webapp.db import Database
from webapp.errors import InvalidInput
from webapp.models import LongTermMemory
from webapp.services.memories import change_memory
from webapp.services.principal import Principal
from webapp.validation import validate_importance, validate_tags


def with_tags(tags: Sequence[str], added: Sequence[str]) -> list[str]:
    """tags with added ones after them (trimmed, lowercased, de-duplicated, at most 32);
    InvalidInput when a tag, or the result, breaks the rules."""
    try:
        validate_tags(list(added))
        return validate_tags([*tags, *added])
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def without_tags(tags: Sequence[str], removed: Sequence[str]) -> list[str]:
    """tags less removed ones (compared as stored: trimmed and lowercased)."""
    gone = {tag.strip().lower() for tag in removed}
    return [tag for tag in tags if tag not in gone]


def checked_importance(value: Any) -> float:
    """value as an importance in [0, 1]; InvalidInput otherwise."""
    try:
        return validate_importance(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


async def add_tags(
    db: Database,
    *,
    principal: Principal,
    memory_id: int,
    tags: Sequence[str],
    expected_version: int | None = None,
) -> LongTermMemory:
    """Add tags to a memory (merged with its current tags in the same transaction)."""
    if not tags:
        raise InvalidInput("enter a tag to add")
    with_tags((), tags)  # refuse a bad tag before taking the write lock

    def add(memory: LongTermMemory) -> None:
        memory.tags = with_tags(memory.tags, tags)

    return await change_memory(
        db, principal=principal, memory_id=memory_id, expected_version=expected_version, change=add
    )


async def remove_tags(
    db: Database,
    *,
    principal: Principal,
    memory_id: int,
    tags: Sequence[str],
    expected_version: int | None = None,
) -> LongTermMemory:
    """Remove tags from a memory; a tag it does not have is no change."""

    def remove(memory: LongTermMemory) -> None:
        memory.tags = without_tags(memory.tags, tags)

    return await change_memory(
        db,
        principal=principal,
        memory_id=memory_id,
        expected_version=expected_version,
        change=remove,
    )


async def set_importance(
    db: Database,
    *,
    principal: Principal,
    memory_id: int,
    importance: Any,
    expected_version: int | None = None,
) -> LongTermMemory:
    """Set a memory's importance (a finite number in [0, 1])."""
    value = checked_importance(importance)

    def assign(memory: LongTermMemory) -> None:
        memory.importance = value

    return await change_memory(
        db,
        principal=principal,
        memory_id=memory_id,
        expected_version=expected_version,
        change=assign,
    )
