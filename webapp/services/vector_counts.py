"""How many vectors each user ever gained and lost, kept in `vector_count` by triggers
on memory_embedding.

The search's cache of a user's vectors (services/vector_index.py) reads the rows past
the highest `seq` it holds, and knows it missed none when it gained as many as the
database did; it knows how many of its rows may be stale (a purge, an edit whose new
vector is not made yet) from the losses. Counting a heavy user's 50,000 vectors cost 3
to 5 ms a search; these are one row. The triggers count whatever adds or removes a
vector: the embedder, a content change (its trigger deletes the old vector), purge and
erase (cascades), a DBA's DELETE or TRUNCATE. SQLite counts per row; PostgreSQL per
statement, from transition tables.
"""

from __future__ import annotations

TABLE = "vector_count"
_VECTORS = "memory_embedding"

SQLITE_TRIGGERS = {
    # No UPSERT: a conflict clause inside a trigger takes the policy of the statement
    # that fired it.
    "memory_embedding_ai_count": f"""
        CREATE TRIGGER memory_embedding_ai_count AFTER INSERT ON {_VECTORS} BEGIN
            INSERT INTO {TABLE}(user_id, added, removed) SELECT new.user_id, 0, 0
            WHERE NOT EXISTS (SELECT 1 FROM {TABLE} WHERE user_id = new.user_id);
            UPDATE {TABLE} SET added = added + 1 WHERE user_id = new.user_id;
        END""",
    "memory_embedding_ad_count": f"""
        CREATE TRIGGER memory_embedding_ad_count AFTER DELETE ON {_VECTORS} BEGIN
            UPDATE {TABLE} SET removed = removed + 1 WHERE user_id = old.user_id;
        END""",
}
POSTGRES_DDL = (
    f"""
    CREATE FUNCTION count_added_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {TABLE}(user_id, added, removed)
        SELECT user_id, count(*), 0 FROM added GROUP BY user_id
        ON CONFLICT (user_id) DO UPDATE SET added = {TABLE}.added + excluded.added;
        RETURN NULL;
    END $$""",
    f"""
    CREATE TRIGGER memory_embedding_ai_count AFTER INSERT ON {_VECTORS}
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION count_added_vectors()""",
    f"""
    CREATE FUNCTION count_removed_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE {TABLE} AS c SET removed = c.removed + r.n
        FROM (SELECT user_id, count(*) AS n FROM removed GROUP BY user_id) AS r
        WHERE c.user_id = r.user_id;
        RETURN NULL;
    END $$""",
    f"""
    CREATE TRIGGER memory_embedding_ad_count AFTER DELETE ON {_VECTORS}
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
    EXECUTE FUNCTION count_removed_vectors()""",
    f"""
    CREATE FUNCTION forget_vector_counts() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {TABLE};
        RETURN NULL;
    END $$""",
    f"""
    CREATE TRIGGER memory_embedding_truncate_count AFTER TRUNCATE ON {_VECTORS}
    FOR EACH STATEMENT EXECUTE FUNCTION forget_vector_counts()""",
)
COUNT_EVERYTHING = (
    f"INSERT INTO {TABLE}(user_id, added, removed) "
    f"SELECT user_id, count(*), 0 FROM {_VECTORS} GROUP BY user_id"
)


def create_statements(dialect: str) -> list[str]:
    """The counting triggers' DDL for dialect (migration 0012)."""
    return list(POSTGRES_DDL) if dialect == "postgresql" else list(SQLITE_TRIGGERS.values())


def drop_statements(dialect: str) -> list[str]:
    """Undo create_statements."""
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS memory_embedding_ai_count ON {_VECTORS}",
            f"DROP TRIGGER IF EXISTS memory_embedding_ad_count ON {_VECTORS}",
            f"DROP TRIGGER IF EXISTS memory_embedding_truncate_count ON {_VECTORS}",
            "DROP FUNCTION IF EXISTS count_added_vectors()",
            "DROP FUNCTION IF EXISTS count_removed_vectors()",
            "DROP FUNCTION IF EXISTS forget_vector_counts()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]
