"""Each user's number of vectors, kept in `vector_count` by triggers on memory_embedding.

The search's cache of a user's vectors (services/vector_index.py) is current when its
count and highest `seq` are the database's; the highest seq is one index probe, but
counting a heavy user's 50,000 vectors cost 3 to 5 ms on every search. So the database
keeps the count itself, whatever adds or removes a vector: the embedder, a content
change (its trigger deletes the old vector), purge and erase (cascades), a DBA's DELETE
or TRUNCATE. SQLite counts per row; PostgreSQL per statement, from transition tables.
"""

from __future__ import annotations

TABLE = "vector_count"
_VECTORS = "memory_embedding"

SQLITE_TRIGGERS = {
    # No UPSERT: a conflict clause inside a trigger takes the policy of the statement
    # that fired it.
    "memory_embedding_ai_count": f"""
        CREATE TRIGGER memory_embedding_ai_count AFTER INSERT ON {_VECTORS} BEGIN
            INSERT INTO {TABLE}(user_id, vectors) SELECT new.user_id, 0
            WHERE NOT EXISTS (SELECT 1 FROM {TABLE} WHERE user_id = new.user_id);
            UPDATE {TABLE} SET vectors = vectors + 1 WHERE user_id = new.user_id;
        END""",
    "memory_embedding_ad_count": f"""
        CREATE TRIGGER memory_embedding_ad_count AFTER DELETE ON {_VECTORS} BEGIN
            UPDATE {TABLE} SET vectors = vectors - 1 WHERE user_id = old.user_id;
        END""",
}
POSTGRES_DDL = (
    f"""
    CREATE FUNCTION count_added_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {TABLE}(user_id, vectors)
        SELECT user_id, count(*) FROM added GROUP BY user_id
        ON CONFLICT (user_id) DO UPDATE SET vectors = {TABLE}.vectors + excluded.vectors;
        RETURN NULL;
    END $$""",
    f"""
    CREATE TRIGGER memory_embedding_ai_count AFTER INSERT ON {_VECTORS}
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION count_added_vectors()""",
    f"""
    CREATE FUNCTION count_removed_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE {TABLE} AS c SET vectors = c.vectors - r.n
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
    f"INSERT INTO {TABLE}(user_id, vectors) "
    f"SELECT user_id, count(*) FROM {_VECTORS} GROUP BY user_id"
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
