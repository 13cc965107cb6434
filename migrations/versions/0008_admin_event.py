"""The admin audit trail: admin_event, one row per erasure of a user (no content in it);
indexes on the authors of memory events, which an erasure scrubs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "admin_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("subject_user_id", sa.Integer(), nullable=True),
        sa.Column("details", JSON_TYPE, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_event")),
    )
    op.create_index("ix_admin_event_created_at", "admin_event", ["created_at"])
    op.create_index("ix_memory_event_actor_user_id", "memory_event", ["actor_user_id"])
    op.create_index("ix_memory_event_actor_token_id", "memory_event", ["actor_token_id"])


def downgrade() -> None:
    op.drop_index("ix_memory_event_actor_token_id", table_name="memory_event")
    op.drop_index("ix_memory_event_actor_user_id", table_name="memory_event")
    op.drop_index("ix_admin_event_created_at", table_name="admin_event")
    op.drop_table("admin_event")
