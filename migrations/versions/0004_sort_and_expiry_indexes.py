"""Indexes for the browser's other sorts and for expiry.

Without them, at a million rows, a page sorted by created_at, access_count or
last_accessed_at sorted every match (0.3 s), and an expiring_within page, the
dashboard's "expiring soon" and its count of expired memories read the whole table.
(created_at, id), (access_count, id) and (last_accessed_at, id) let those pages walk an
index as the updated_at sort does; a partial index of the rows that expire and are not
deleted, (user_id, expires_at), finds what expires soon and counts the expired ones.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_long_term_memory_created_at_id": ["created_at", "id"],
    "ix_long_term_memory_access_count_id": ["access_count", "id"],
}
LAST_ACCESSED = "ix_long_term_memory_last_accessed_at_id"
EXPIRY = "ix_long_term_memory_expiry"


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for name, columns in INDEXES.items():
        op.create_index(name, "long_term_memory", columns)
    # Pages sort NULL (never read) first on the way up: SQLite's own order; PostgreSQL's
    # only when the index names it.
    last_accessed = sa.text("last_accessed_at NULLS FIRST") if postgresql else "last_accessed_at"
    op.create_index(LAST_ACCESSED, "long_term_memory", [last_accessed, "id"])
    op.create_index(
        EXPIRY,
        "long_term_memory",
        ["user_id", "expires_at"],
        sqlite_where=sa.text("is_deleted IS 0 AND expires_at IS NOT NULL"),
        postgresql_where=sa.text("is_deleted IS false AND expires_at IS NOT NULL"),
    )
    if not postgresql:
        # SQLite's planner knows an index's shape only from ANALYZE (PostgreSQL's
        # statistics are per column and already there).
        op.execute("ANALYZE long_term_memory")


def downgrade() -> None:
    op.drop_index(EXPIRY, table_name="long_term_memory")
    op.drop_index(LAST_ACCESSED, table_name="long_term_memory")
    for name in INDEXES:
        op.drop_index(name, table_name="long_term_memory")
