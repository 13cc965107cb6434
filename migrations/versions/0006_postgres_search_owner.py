"""PostgreSQL: the search vector learns whose memory each row is, as SQLite's index did.

An agent's search found the word's matches among all users through the GIN index,
and the user's memories through the user_id index, then intersected the two bitmaps
(20,000 and 60,000 rows for a word in 2% of a million rows, on the heaviest user):
9 of its 13 ms. The vector gains the owner word `u<user_id>` with weight D (text
queries ask for weights A and B only), so the GIN index intersects the word's matches
with the user's itself. The column is generated: replacing it rewrites the table
(about a minute at a million rows). SQLite: nothing to do (0005 did it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

from webapp.services import fulltext

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _replace_vector(ddl: tuple[str, ...]) -> None:
    op.drop_index(fulltext.SEARCH_VECTOR_INDEX, table_name="long_term_memory")
    op.drop_column("long_term_memory", fulltext.SEARCH_VECTOR)
    for statement in ddl:
        op.execute(statement)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _replace_vector(fulltext.POSTGRES_DDL)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _replace_vector(fulltext.FIRST_POSTGRES_DDL)
