"""Initial schema: users, long_term_memory, memory_event, api_token.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _utc(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        _utc("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _utc("created_at", nullable=False),
        _utc("last_used_at", nullable=True),
        _utc("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_token_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_index(op.f("ix_api_token_user_id"), "api_token", ["user_id"])

    op.create_table(
        "long_term_memory",
        sa.Column("namespace", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tags", JSON_TYPE, nullable=False),
        sa.Column("importance", sa.Float(), nullable=False),
        _utc("expires_at", nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("access_count", sa.Integer(), nullable=False),
        _utc("last_accessed_at", nullable=True),
        sa.Column("is_deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _utc("deleted_at", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _utc("created_at", nullable=False),
        _utc("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_long_term_memory_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_long_term_memory")),
        sa.UniqueConstraint(
            "user_id", "namespace", "key", name=op.f("uq_long_term_memory_user_id_namespace_key")
        ),
        sqlite_autoincrement=True,  # ids are never reused: events outlive purged rows
    )
    op.create_index(op.f("ix_long_term_memory_importance"), "long_term_memory", ["importance"])
    op.create_index(op.f("ix_long_term_memory_namespace"), "long_term_memory", ["namespace"])
    op.create_index(op.f("ix_long_term_memory_user_id"), "long_term_memory", ["user_id"])
    op.create_index(
        "ix_long_term_memory_user_id_namespace", "long_term_memory", ["user_id", "namespace"]
    )
    if op.get_context().dialect.name == "postgresql":
        op.create_index(
            "ix_long_term_memory_tags_gin", "long_term_memory", ["tags"], postgresql_using="gin"
        )

    op.create_table(
        "memory_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("memory_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor_token_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("changes", JSON_TYPE, nullable=True),
        _utc("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_token_id"],
            ["api_token.id"],
            name=op.f("fk_memory_event_actor_token_id_api_token"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["users.id"],
            name=op.f("fk_memory_event_actor_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_memory_event_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_event")),
    )
    op.create_index("ix_memory_event_memory_id_id", "memory_event", ["memory_id", "id"])
    op.create_index(op.f("ix_memory_event_user_id"), "memory_event", ["user_id"])


def downgrade() -> None:
    op.drop_table("memory_event")
    op.drop_table("long_term_memory")
    op.drop_table("api_token")
    op.drop_table("users")
