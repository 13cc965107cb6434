"""Near-duplicate review: duplicate_pair (precomputed similar pairs per user),
duplicate_watermark (the last memory_embedding.seq compared) and duplicate_dismissal.
The pairs are filled when /duplicates is first opened for a user, not here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _memory_fk(column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        ["long_term_memory.id"],
        name=op.f(f"fk_duplicate_pair_{column}_long_term_memory"),
        ondelete="CASCADE",
    )


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "duplicate_pair",
        sa.Column("a", sa.Integer(), nullable=False),
        sa.Column("b", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        _memory_fk("a"),
        _memory_fk("b"),
        _user_fk("duplicate_pair"),
        sa.PrimaryKeyConstraint("a", "b", name=op.f("pk_duplicate_pair")),
    )
    op.create_index("ix_duplicate_pair_b", "duplicate_pair", ["b"])
    op.create_index(
        "ix_duplicate_pair_user_id_similarity", "duplicate_pair", ["user_id", "similarity"]
    )
    op.create_table(
        "duplicate_watermark",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _user_fk("duplicate_watermark"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_duplicate_watermark")),
    )
    op.create_table(
        "duplicate_dismissal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        _user_fk("duplicate_dismissal"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_dismissal")),
    )
    op.create_index("ix_duplicate_dismissal_user_id", "duplicate_dismissal", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_duplicate_dismissal_user_id", table_name="duplicate_dismissal")
    op.drop_table("duplicate_dismissal")
    op.drop_table("duplicate_watermark")
    op.drop_index("ix_duplicate_pair_user_id_similarity", table_name="duplicate_pair")
    op.drop_index("ix_duplicate_pair_b", table_name="duplicate_pair")
    op.drop_table("duplicate_pair")
