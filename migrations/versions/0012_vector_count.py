"""vector_count: how many vectors each user gained and lost, kept by triggers on
memory_embedding, so that a search checks its cached vectors without counting them.
duplicate_pair now holds a spanning forest of the similar pairs, not all of them: the
pairs and watermarks of 0011 are dropped, and each user's forest is made at the next
refresh (`memory-admin embed`, or the first visit of /duplicates).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from webapp.services import vector_counts

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        vector_counts.TABLE,
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added", sa.BigInteger(), nullable=False),
        sa.Column("removed", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_vector_count_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_vector_count")),
    )
    op.execute(vector_counts.COUNT_EVERYTHING)
    for statement in vector_counts.create_statements(op.get_context().dialect.name):
        op.execute(statement)
    # TRUNCATE gives PostgreSQL its space back (millions of pairs); SQLite's DELETE
    # without a WHERE does the same.
    verb = "TRUNCATE" if op.get_context().dialect.name == "postgresql" else "DELETE FROM"
    op.execute(f"{verb} duplicate_pair")
    op.execute(f"{verb} duplicate_watermark")


def downgrade() -> None:
    for statement in vector_counts.drop_statements(op.get_context().dialect.name):
        op.execute(statement)
    op.drop_table(vector_counts.TABLE)
