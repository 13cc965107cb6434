"""Full-text and tag search, and the indexes keyset pages walk.

SQLite: an FTS5 index over key and content and a memory_tag side table, kept by
triggers. PostgreSQL: a generated tsvector column with a GIN index (tags already have
theirs). Both: (updated_at, id), (user_id, updated_at, id), (user_id, namespace,
updated_at, id), (user_id, importance, id) and a partial index of the soft-deleted rows for Trash.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from webapp.services import fulltext

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BROWSE_INDEXES = {
    "ix_long_term_memory_updated_at_id": ["updated_at", "id"],
    "ix_long_term_memory_user_id_updated_at_id": ["user_id", "updated_at", "id"],
    "ix_long_term_memory_user_id_namespace_updated_at_id": [
        "user_id",
        "namespace",
        "updated_at",
        "id",
    ],
    "ix_long_term_memory_user_id_importance_id": ["user_id", "importance", "id"],
}


def upgrade() -> None:
    for name, columns in BROWSE_INDEXES.items():
        op.create_index(name, "long_term_memory", columns)
    op.create_index(
        "ix_long_term_memory_trash",
        "long_term_memory",
        ["user_id", "updated_at", "id"],
        sqlite_where=sa.text("is_deleted IS 1"),
        postgresql_where=sa.text("is_deleted IS true"),
    )
    if op.get_context().dialect.name == "postgresql":
        for statement in fulltext.FIRST_POSTGRES_DDL:
            op.execute(statement)
        return
    for statement in fulltext.FIRST_SQLITE_TABLES.values():
        op.execute(statement)
    for statement in fulltext.FIRST_SQLITE_TRIGGERS.values():
        op.execute(statement)
    # Index the rows already there (the triggers only see later writes).
    op.execute(f"INSERT INTO {fulltext.FTS_TABLE}({fulltext.FTS_TABLE}) VALUES ('rebuild')")
    op.execute(
        f"INSERT OR IGNORE INTO {fulltext.TAG_TABLE}(tag, memory_id) "
        "SELECT each.value, m.id FROM long_term_memory AS m, json_each(m.tags) AS each"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_index(fulltext.SEARCH_VECTOR_INDEX, table_name="long_term_memory")
        op.drop_column("long_term_memory", fulltext.SEARCH_VECTOR)
    else:
        for name in fulltext.FIRST_SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
        for name in fulltext.FIRST_SQLITE_TABLES:
            op.execute(f"DROP TABLE {name}")
    op.drop_index("ix_long_term_memory_trash", table_name="long_term_memory")
    for name in BROWSE_INDEXES:
        op.drop_index(name, table_name="long_term_memory")
