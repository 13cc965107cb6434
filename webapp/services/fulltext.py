"""Full-text and tag indexes: their DDL, the SQL that uses them, and bulk-load hooks.

SQLite: an FTS5 table over key, content and owner (external content: it stores only
the index, the text stays in long_term_memory, read through a view that adds the owner
word) and a `memory_tag` side table, both kept
in step by triggers on long_term_memory, so every write path (the service functions,
bulk actions, purge, import, even a DBA's hand-written UPDATE) keeps them consistent.
PostgreSQL: a stored generated tsvector column with a GIN index for the text, and the
GIN index on the JSONB tags; the database keeps both current by itself.

How words are read is the SEARCH_LANGUAGE setting (settings.SearchLanguage):
- `english` (the default): words are stemmed, so "drink", "drinks" and "drinking"
  match one another, and English stop words ("the", "in", "what") do not count.
  SQLite: FTS5's `porter` tokenizer over `unicode61`; FTS5 has no stop word list, so
  they are dropped from the query's words instead (parse_terms; a query made only of
  stop words keeps them). PostgreSQL: the `english` configuration, which stems and
  leaves stop words out of the index itself (a query made only of them finds nothing).
- `simple`: words of letters and digits as written, lowercased, in any language.
Both sides split words alike (letters and digits); SQLite also folds accents
(`remove_diacritics`). The key's words weigh twice the content's in text relevance.

The index is built for one language (services/fulltext_language.py reads back which,
and rebuilds it for another).

The migrations that create these objects import the DDL from here; changing it needs
a new migration that drops and recreates them, and the old DDL kept for the migrations
that made it (FIRST_SQLITE_TABLES, SQLITE_TABLES, POSTGRES_DDL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Select,
    Table,
    Text,
    false,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from webapp.errors import InvalidInput
from webapp.models import LongTermMemory
from webapp.services.plan import Plan, no_index
from webapp.settings import SearchLanguage

FTS_TABLE = "long_term_memory_fts"
TAG_TABLE = "memory_tag"
SEARCH_VECTOR = "search_vector"
SEARCH_VECTOR_INDEX = "ix_long_term_memory_search_vector"
MAX_TERMS = 32

SOURCE_VIEW = "long_term_memory_fts_source"
OWNER_PREFIX = "u"
"""The owner column holds one word, `u<user_id>`, so a search within one user's memories
asks the index for that word too instead of ranking every user's matches."""

TOKENIZERS: dict[SearchLanguage, str] = {
    "english": "porter unicode61 remove_diacritics 2",
    "simple": "unicode61 remove_diacritics 2",
}
_TOKENIZE = f"tokenize='{TOKENIZERS['simple']}'"
SQLITE_VIEWS = {
    SOURCE_VIEW: f"""
        CREATE VIEW {SOURCE_VIEW} AS
        SELECT id, key, content, '{OWNER_PREFIX}' || user_id AS owner FROM long_term_memory""",
}


def sqlite_fts_table(language: SearchLanguage) -> str:
    """The FTS5 table, its words read as language says."""
    return f"""
        CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
            key, content, owner, content='{SOURCE_VIEW}', content_rowid='id',
            tokenize='{TOKENIZERS[language]}'
        )"""


SQLITE_TABLES = {
    FTS_TABLE: sqlite_fts_table("simple"),
    TAG_TABLE: f"""
        CREATE TABLE {TAG_TABLE} (
            tag TEXT NOT NULL,
            memory_id INTEGER NOT NULL,
            PRIMARY KEY (tag, memory_id)
        ) WITHOUT ROWID""",
}

_FTS_ADD = (
    f"INSERT INTO {FTS_TABLE}(rowid, key, content, owner) "
    f"VALUES (new.id, new.key, new.content, '{OWNER_PREFIX}' || new.user_id);"
)
_FTS_REMOVE = (
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, key, content, owner) "
    f"VALUES ('delete', old.id, old.key, old.content, '{OWNER_PREFIX}' || old.user_id);"
)
_TAGS_ADD = (
    f"INSERT OR IGNORE INTO {TAG_TABLE}(tag, memory_id) "
    "SELECT value, new.id FROM json_each(new.tags);"
)
# By (tag, memory_id) pairs, so the delete uses the primary key and needs no second index.
_TAGS_REMOVE = (
    f"DELETE FROM {TAG_TABLE} WHERE memory_id = old.id "
    "AND tag IN (SELECT value FROM json_each(old.tags));"
)

INSERT_TRIGGER = "long_term_memory_ai_search"


def _triggers(fts_add: str, fts_remove: str, text_columns: str) -> dict[str, str]:
    return {
        INSERT_TRIGGER: f"""
        CREATE TRIGGER {INSERT_TRIGGER} AFTER INSERT ON long_term_memory BEGIN
            {fts_add}
            {_TAGS_ADD}
        END""",
        "long_term_memory_ad_search": f"""
        CREATE TRIGGER long_term_memory_ad_search AFTER DELETE ON long_term_memory BEGIN
            {fts_remove}
            {_TAGS_REMOVE}
        END""",
        "long_term_memory_au_text": f"""
        CREATE TRIGGER long_term_memory_au_text AFTER UPDATE OF {text_columns}
        ON long_term_memory BEGIN
            {fts_remove}
            {fts_add}
        END""",
        "long_term_memory_au_tags": f"""
        CREATE TRIGGER long_term_memory_au_tags AFTER UPDATE OF tags ON long_term_memory BEGIN
            {_TAGS_REMOVE}
            {_TAGS_ADD}
        END""",
    }


SQLITE_TRIGGERS = _triggers(_FTS_ADD, _FTS_REMOVE, "key, content, user_id")

FIRST_SQLITE_TABLES = {
    **SQLITE_TABLES,
    FTS_TABLE: f"""
        CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
            key, content, content='long_term_memory', content_rowid='id', {_TOKENIZE}
        )""",
}
FIRST_SQLITE_TRIGGERS = _triggers(
    f"INSERT INTO {FTS_TABLE}(rowid, key, content) VALUES (new.id, new.key, new.content);",
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, key, content) "
    "VALUES ('delete', old.id, old.key, old.content);",
    "key, content",
)
"""The index as migration 0002 made it (key and content only), for that migration and
for going back to it: migrations replay the schema of their time, not today's.
SQLITE_TABLES is the index as 0005 made it (words as written)."""


def _postgres_text_vector(language: SearchLanguage) -> str:
    return (
        f"setweight(to_tsvector('{language}'::regconfig, key), 'A') || "
        f"setweight(to_tsvector('{language}'::regconfig, content), 'B')"
    )


def postgres_vector(language: SearchLanguage) -> str:
    """The generated column's expression: key and content read as language says, and
    the owner word (as on SQLite) as written, with weight D: text queries ask for
    weights A and B only."""
    return (
        f"{_postgres_text_vector(language)} || setweight(to_tsvector('simple'::regconfig, "
        f"'{OWNER_PREFIX}' || user_id::text), 'D')"
    )


POSTGRES_INDEX = (
    f"CREATE INDEX {SEARCH_VECTOR_INDEX} ON long_term_memory USING gin ({SEARCH_VECTOR})"
)


def _postgres_ddl(vector: str) -> tuple[str, str]:
    return (
        f"ALTER TABLE long_term_memory ADD COLUMN {SEARCH_VECTOR} tsvector "
        f"GENERATED ALWAYS AS ({vector}) STORED",
        POSTGRES_INDEX,
    )


def postgres_search_ddl(language: SearchLanguage) -> tuple[str, str]:
    """The search vector column and its GIN index, words read as language says."""
    return _postgres_ddl(postgres_vector(language))


POSTGRES_DDL = postgres_search_ddl("simple")
"""The search vector as migration 0006 made it (words as written)."""
FIRST_POSTGRES_DDL = _postgres_ddl(_postgres_text_vector("simple"))
"""The search vector as migration 0002 made it (key and content only)."""


# Objects the models do not describe, for Alembic's comparison to leave alone.
UNMODELLED_TABLES = frozenset(
    {
        TAG_TABLE,
        SOURCE_VIEW,
        FTS_TABLE,
        *(f"{FTS_TABLE}_{part}" for part in ("data", "idx", "docsize", "config")),
    }
)
UNMODELLED_COLUMNS = frozenset({SEARCH_VECTOR})
UNMODELLED_INDEXES = frozenset({SEARCH_VECTOR_INDEX})

STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what which
    who whom this that these those am is are was were be been being have has had having do
    does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on
    off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will
    just don should now""".split()
)
"""English stop words: PostgreSQL's list (tsearch_data/english.stop), which its
`english` configuration leaves out of the index, so both databases ignore the same words."""

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]
# Core handles on the SQLite side objects, in their own metadata: the models' metadata
# (and so Alembic's comparison) never sees them.
_side = MetaData()
fts_table = Table(FTS_TABLE, _side, Column("rowid", Integer))
memory_tag = Table(TAG_TABLE, _side, Column("tag", Text), Column("memory_id", Integer))
_WORD = re.compile(r"[^\W_]+\*?")


@dataclass(frozen=True)
class Term:
    """One word of a search; `prefix` matches every word that starts with it."""

    word: str
    prefix: bool = False


def parse_terms(query: str, language: SearchLanguage) -> list[Term]:
    """The words of a search as the indexes see them; a trailing `*` asks for a prefix.

    Everything but letters and digits separates words, so no input can reach the
    databases' own query syntax (quotes, operators, column filters). In English, stop
    words are dropped unless the query has nothing else (only_stop_words).
    """
    terms: dict[Term, None] = {}
    for match in _WORD.finditer(query.lower()):
        token = match.group()
        terms[Term(token.rstrip("*"), prefix=token.endswith("*"))] = None
    if not terms:
        raise InvalidInput("the search has no words in it (letters or digits)")
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"a search may have at most {MAX_TERMS} words")
    if language == "english":
        return [term for term in terms if not _stop_word(term)] or list(terms)
    return list(terms)


def only_stop_words(terms: list[Term], language: SearchLanguage) -> bool:
    """Whether PostgreSQL's english configuration drops every one of terms (a stop word
    even as a prefix, `the*`): such a query finds nothing there, as its index leaves
    stop words out, instead of every row of the owner."""
    return language == "english" and all(term.word in STOP_WORDS for term in terms)


def _stop_word(term: Term) -> bool:
    return not term.prefix and term.word in STOP_WORDS


def fts5_query_text(terms: list[Term], *, every: bool, owner: int | None = None) -> str:
    """An FTS5 query: each word quoted (never syntax), joined by AND or OR, looked for in
    key and content only; with owner, among that user's memories only. FTS5 reads each
    quoted word with the table's tokenizer, so porter stems it as it stemmed the rows."""
    joined = [f'"{term.word}"' + ("*" if term.prefix else "") for term in terms]
    text = "{key content} : (" + (" AND " if every else " OR ").join(joined) + ")"
    if owner is None:
        return text
    return f'{{owner}} : "{OWNER_PREFIX}{int(owner)}" AND {text}'


def tsquery_text(terms: list[Term], *, every: bool, owner: int | None = None) -> str:
    """A to_tsquery() text: each word quoted, `:*` for a prefix, looked for in key and
    content only (weights A and B), joined by & or |; with owner, among that user's
    memories only."""
    joined = [f"'{term.word}':" + ("*" if term.prefix else "") + "AB" for term in terms]
    text = "(" + (" & " if every else " | ").join(joined) + ")"
    if owner is None:
        return text
    return f"'{OWNER_PREFIX}{int(owner)}' & {text}"


def tsquery(
    terms: list[Term], language: SearchLanguage, *, every: bool, owner: int | None = None
) -> ColumnElement[Any]:
    """to_tsquery() of terms in language's configuration, which stems them as the
    search vector's words were."""
    config: ColumnElement[Any] = literal_column(f"'{language}'::regconfig")
    return func.to_tsquery(config, tsquery_text(terms, every=every, owner=owner))


def postgres_match(
    terms: list[Term], language: SearchLanguage, *, every: bool, owner: int | None = None
) -> ColumnElement[bool]:
    """PostgreSQL: rows whose search vector holds the terms (false for stop words alone:
    the configuration would drop them and leave the owner word to match every row)."""
    if only_stop_words(terms, language):
        return false()
    return literal_column(SEARCH_VECTOR).op("@@")(
        tsquery(terms, language, every=every, owner=owner)
    )


def match_condition(query: str, *, plan: Plan, every: bool = True) -> ColumnElement[bool]:
    """Rows whose key or content hold every word of query (or any, with every=False),
    as plan writes them (on SQLite, plan.walk tests each row against the matches)."""
    terms = parse_terms(query, plan.language)
    if plan.dialect == "postgresql":
        return postgres_match(terms, plan.language, every=every)
    return _member(_fts_matches(terms, every=every), plan)


def tag_condition_sqlite(tag: str, *, plan: Plan) -> ColumnElement[bool]:
    """Rows carrying tag, through the memory_tag side table's (tag, memory_id) key."""
    return _member(_tagged(tag), plan)


def match_ids(query: str, language: SearchLanguage) -> Select[tuple[int]]:
    """SQLite: the ids of the rows holding every word of query, in id order."""
    return _fts_matches(parse_terms(query, language), every=True)


def tag_ids(tag: str) -> Select[tuple[int]]:
    """SQLite: the ids of the rows carrying tag, in id order."""
    return _tagged(tag)


def fts5_match(terms: list[Term], *, every: bool, owner: int | None = None) -> ColumnElement[bool]:
    """SQLite: the full-text index's rows holding the terms (fts5_query_text)."""
    return literal_column(FTS_TABLE).op("MATCH")(fts5_query_text(terms, every=every, owner=owner))


def _fts_matches(terms: list[Term], *, every: bool) -> Select[tuple[int]]:
    return select(fts_table.c.rowid).where(fts5_match(terms, every=every))


def _tagged(tag: str) -> Select[tuple[int]]:
    return select(memory_tag.c.memory_id).where(memory_tag.c.tag == tag)


def _member(ids: Select[tuple[int]], plan: Plan) -> ColumnElement[bool]:
    # Walking, the id is kept out of the rowid lookup: SQLite cannot start from the list.
    return (no_index(_c.id, plan.dialect) if plan.walk else _c.id).in_(ids)


BULK_HASH_SIZE = 32 * 1024 * 1024
DEFAULT_HASH_SIZE = 1024 * 1024


async def _fts_config(conn: AsyncConnection, option: str, value: int) -> None:
    await conn.exec_driver_sql(
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES (?, ?)", (option, value)
    )


async def suspend_for_bulk_load(conn: AsyncConnection) -> None:
    """Before loading an empty table: stop per-row index upkeep (resume_after_bulk_load)."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(f"DROP INDEX IF EXISTS {SEARCH_VECTOR_INDEX}")
        return
    for name in SQLITE_TRIGGERS:
        await conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


async def resume_after_bulk_load(conn: AsyncConnection) -> None:
    """Rebuild the indexes from the loaded rows at once, then go back to per-row upkeep."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(POSTGRES_INDEX)
        return
    # FTS5 writes its index in segments of at most `hashsize` bytes of pending terms: the
    # default 1 MB makes a million rows into hundreds of segments to merge (11 s instead of
    # about 6). The pending terms are held in memory: the import's peak grows by up to this.
    await _fts_config(conn, "hashsize", BULK_HASH_SIZE)
    await conn.exec_driver_sql(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    await _fts_config(conn, "hashsize", DEFAULT_HASH_SIZE)
    await conn.exec_driver_sql(f"DELETE FROM {TAG_TABLE}")
    await conn.exec_driver_sql(
        f"INSERT OR IGNORE INTO {TAG_TABLE}(tag, memory_id) "
        "SELECT each.value, m.id FROM long_term_memory AS m, json_each(m.tags) AS each "
        "ORDER BY 1, 2"
    )
    for ddl in SQLITE_TRIGGERS.values():
        await conn.exec_driver_sql(ddl)


INDEX_ROWS_AFTER = (
    f"INSERT INTO {FTS_TABLE}(rowid, key, content, owner) "
    f"SELECT id, key, content, owner FROM {SOURCE_VIEW} WHERE id > ?",
    f"INSERT OR IGNORE INTO {TAG_TABLE}(tag, memory_id) "
    "SELECT each.value, m.id FROM long_term_memory AS m, json_each(m.tags) AS each "
    "WHERE m.id > ?",
)
"""What the insert trigger does, for every row with an id above the parameter at once.

Inside a trigger each row's FTS5 insert is a statement of its own, and FTS5 writes its
pending terms out at every statement boundary: an import adding rows one by one through
the trigger managed 6,000 rows/s. The import drops the insert trigger for the length of
its transaction (detach_insert_upkeep) and indexes each batch with these statements.
"""


async def detach_insert_upkeep(conn: AsyncConnection) -> None:
    """SQLite: stop indexing inserted rows in the trigger, in this transaction only."""
    await conn.exec_driver_sql(f"DROP TRIGGER {INSERT_TRIGGER}")


async def reattach_insert_upkeep(conn: AsyncConnection) -> None:
    """SQLite: the insert trigger back, before the transaction that dropped it commits."""
    await conn.exec_driver_sql(SQLITE_TRIGGERS[INSERT_TRIGGER])
