"""Semantic search: memory_embedding, one packed vector per memory of its content, and
embedding_queue, the memories waiting for one, kept by triggers on long_term_memory
(webapp.services.vectors). Every existing memory is queued: the app embeds them in the
background, or `memory-admin embed` does it at once (the model is too slow for a
migration to wait on: 30 to 100 memories a second on two cores). The (user_id,
namespace) index gains id, for search to step from a memory to its neighbours.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from webapp.services import vectors

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACE_INDEX = "ix_long_term_memory_user_id_namespace"


def upgrade() -> None:
    op.create_table(
        vectors.TABLE,
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("memory_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["memory_id"],
            ["long_term_memory.id"],
            name=op.f("fk_memory_embedding_memory_id_long_term_memory"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_memory_embedding_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_memory_embedding")),
        sa.UniqueConstraint("memory_id", name=op.f("uq_memory_embedding_memory_id")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_memory_embedding_user_id_seq", vectors.TABLE, ["user_id", "seq"])
    op.create_table(
        vectors.QUEUE,
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("memory_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["memory_id"],
            ["long_term_memory.id"],
            name=op.f("fk_embedding_queue_memory_id_long_term_memory"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_embedding_queue_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_embedding_queue")),
        sa.UniqueConstraint("memory_id", name=op.f("uq_embedding_queue_memory_id")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_embedding_queue_user_id_seq", vectors.QUEUE, ["user_id", "seq"])
    op.execute(vectors.QUEUE_EVERYTHING)
    for statement in vectors.create_statements(op.get_context().dialect.name):
        op.execute(statement)
    _place_index(["user_id", "namespace", "id"])


def _place_index(columns: list[str]) -> None:
    op.drop_index(PLACE_INDEX, table_name="long_term_memory")
    op.create_index(PLACE_INDEX, "long_term_memory", columns)


def downgrade() -> None:
    _place_index(["user_id", "namespace"])
    for statement in vectors.drop_statements(op.get_context().dialect.name):
        op.execute(statement)
    op.drop_index("ix_embedding_queue_user_id_seq", table_name=vectors.QUEUE)
    op.drop_table(vectors.QUEUE)
    op.drop_index("ix_memory_embedding_user_id_seq", table_name=vectors.TABLE)
    op.drop_table(vectors.TABLE)
