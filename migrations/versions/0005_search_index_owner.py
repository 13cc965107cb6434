"""SQLite: the full-text index learns whose memory each row is.

An agent's search ranks its own user's memories only, but the index knew words, not
owners: a word in 2% of a million rows made SQLite score all 20,000 matches and then
drop the 19,000 of other users (19 ms of the ranking's 24 on the heaviest user). The
index gains an `owner` column holding one word, `u<user_id>`, read through a view over
long_term_memory, so a search asks for that word as well and scores only the user's
matches (5 ms). PostgreSQL: nothing to do (its search filters by user before ranking).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

from webapp.services import fulltext

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = fulltext.FTS_TABLE


def _replace_index(tables: dict[str, str], triggers: dict[str, str], views: dict[str, str]) -> None:
    """Drop the full-text index and its triggers; build them again from tables,
    triggers and views (the tag side table is left as it is)."""
    for name in fulltext.SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute(f"DROP TABLE {FTS}")
    for name in fulltext.SQLITE_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for statement in views.values():
        op.execute(statement)
    op.execute(tables[FTS])
    # Index the rows already there at once (see fulltext.resume_after_bulk_load).
    op.execute(f"INSERT INTO {FTS}({FTS}, rank) VALUES ('hashsize', {fulltext.BULK_HASH_SIZE})")
    op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")
    op.execute(f"INSERT INTO {FTS}({FTS}, rank) VALUES ('hashsize', {fulltext.DEFAULT_HASH_SIZE})")
    for statement in triggers.values():
        op.execute(statement)


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    _replace_index(fulltext.SQLITE_TABLES, fulltext.SQLITE_TRIGGERS, fulltext.SQLITE_VIEWS)


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    _replace_index(fulltext.FIRST_SQLITE_TABLES, fulltext.FIRST_SQLITE_TRIGGERS, {})
