"""Planner hints: the one way to keep an index out of a plan, and the Plan filters follow.

The databases' planners choose from statistics that some filters defeat (full text,
single tags and ranges have none worth the name), so a few statements tell them which
index not to use. They all say it with no_index; browse's choices of when to say it
live in browse_plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, Numeric
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from webapp.settings import SearchLanguage


def no_index(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """column as an expression no index holds: the row is found some other way, then tested.

    Both planners look a condition up in an index only when one side is the indexed
    column itself (or an expression indexed as written, which these are not).
    SQLite: `+column`, SQLite's documented way to disqualify a term from index use; it
    keeps the value of any type as it is (`column + 0` would make text a number), and
    `+id` is not the rowid, so SQLite cannot start from an id list with it either.
    PostgreSQL: `column + 0`, for numbers only (it has no unary plus for text or times,
    and SQLAlchemy would write `+` on a string column as concatenation).
    """
    if dialect == "sqlite":
        return UnaryExpression(column, operator=custom_op("+"), type_=column.type)
    if not isinstance(column.type, Integer | Numeric):
        raise TypeError(f"no_index on {dialect} needs a number column, not {column.type}")
    return column + 0


@dataclass(frozen=True)
class Plan:
    """How the filter builders write their conditions: built once per statement's caller."""

    dialect: str
    language: SearchLanguage
    """How the full-text index reads words (the SEARCH_LANGUAGE it was built for)."""
    walk: bool = False
    """SQLite: test each row against the tag and full-text matches instead of starting
    from them, so a page can walk its sort index (browse_plan.walk_sorted_index)."""
