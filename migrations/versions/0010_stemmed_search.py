"""Search matches word forms: the full-text index is rebuilt for SEARCH_LANGUAGE.

Agents ask in sentences: "what does the user drink" did not find "Drinks coffee black",
and "the" and "in" made a memory about tacos rank first. With the default
SEARCH_LANGUAGE=english the index stems words and leaves English stop words out
(SQLite: FTS5's porter tokenizer; PostgreSQL: the english configuration); `simple`
keeps words as written. The index is built again from the rows already there
(services/fulltext_language.rebuild_statements): SQLite refills FTS5 in one pass with
the bulk load's hash size; PostgreSQL adds the generated column again, which rewrites
the table, then builds the GIN index once. Downgrade goes back to words as written.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

from webapp.migrate import SEARCH_LANGUAGE_ATTRIBUTE
from webapp.services.fulltext_language import rebuild_statements
from webapp.settings import SearchLanguage, get_settings

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(language: SearchLanguage) -> None:
    for statement in rebuild_statements(op.get_context().dialect.name, language):
        op.execute(statement)


def upgrade() -> None:
    language = op.get_context().config.attributes.get(SEARCH_LANGUAGE_ATTRIBUTE)  # type: ignore[union-attr]
    _rebuild(language or get_settings().search_language)


def downgrade() -> None:
    _rebuild("simple")
