"""The maintained per-namespace summary: one row per (user, namespace) with its counts.

Counting a heavy user's namespaces with GROUP BY read every one of their rows (110 ms
median, 1.7 s at worst at a million rows on SQLite). `namespace_summary` holds, per user
and namespace, the rows that are not deleted (with their importance summed) and the
deleted ones; database triggers keep it in step with `long_term_memory` on every write,
whichever code path makes it (the service layer, bulk statements, import, purge, the
cascade of a user's removal). What depends on the time is not stored: the expired rows
among the live ones are counted when read (ix_long_term_memory_expiry), and the
last write is read from the (user_id, namespace, updated_at) index.

The trigger SQL lives here only: the migration creates it, the fast import drops it for
the length of a bulk load and rebuilds the summary after (suspend / resume below).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

TABLE = "namespace_summary"

BACKFILL = (
    f"INSERT INTO {TABLE} (user_id, namespace, live_count, deleted_count, live_importance_sum) "
    "SELECT user_id, namespace, "
    "SUM(CASE WHEN is_deleted THEN 0 ELSE 1 END), "
    "SUM(CASE WHEN is_deleted THEN 1 ELSE 0 END), "
    "COALESCE(SUM(CASE WHEN is_deleted THEN 0 ELSE importance END), 0) "
    "FROM long_term_memory GROUP BY user_id, namespace"
)
"""Fill the (empty) summary from the table, at once."""

_SQLITE_ADD = f"""
    INSERT INTO {TABLE} (user_id, namespace, live_count, deleted_count, live_importance_sum)
    VALUES (NEW.user_id, NEW.namespace, NOT NEW.is_deleted, NEW.is_deleted,
            CASE WHEN NEW.is_deleted THEN 0 ELSE NEW.importance END)
    ON CONFLICT (user_id, namespace) DO UPDATE SET
        live_count = live_count + excluded.live_count,
        deleted_count = deleted_count + excluded.deleted_count,
        live_importance_sum = live_importance_sum + excluded.live_importance_sum;"""
_SQLITE_REMOVE = f"""
    UPDATE {TABLE} SET
        live_count = live_count - (NOT OLD.is_deleted),
        deleted_count = deleted_count - OLD.is_deleted,
        live_importance_sum = CASE WHEN live_count - (NOT OLD.is_deleted) = 0 THEN 0
            ELSE live_importance_sum - CASE WHEN OLD.is_deleted THEN 0 ELSE OLD.importance END
            END
    WHERE user_id = OLD.user_id AND namespace = OLD.namespace;
    DELETE FROM {TABLE} WHERE user_id = OLD.user_id AND namespace = OLD.namespace
        AND live_count = 0 AND deleted_count = 0;"""

SQLITE_TRIGGERS = {
    "long_term_memory_ai_summary": (
        "CREATE TRIGGER long_term_memory_ai_summary AFTER INSERT ON long_term_memory "
        f"BEGIN {_SQLITE_ADD} END"
    ),
    "long_term_memory_ad_summary": (
        "CREATE TRIGGER long_term_memory_ad_summary AFTER DELETE ON long_term_memory "
        f"BEGIN {_SQLITE_REMOVE} END"
    ),
    "long_term_memory_au_summary": (
        "CREATE TRIGGER long_term_memory_au_summary "
        "AFTER UPDATE OF user_id, namespace, is_deleted, importance ON long_term_memory "
        "WHEN OLD.user_id IS NOT NEW.user_id OR OLD.namespace IS NOT NEW.namespace "
        "OR OLD.is_deleted IS NOT NEW.is_deleted OR OLD.importance IS NOT NEW.importance "
        f"BEGIN {_SQLITE_REMOVE} {_SQLITE_ADD} END"
    ),
}
"""Row triggers: remove the old row's share, add the new row's (an update does both)."""

_PG_DELTAS = """
deltas AS (
        SELECT user_id, namespace,
            SUM(sign * CASE WHEN is_deleted THEN 0 ELSE 1 END)::int AS live,
            SUM(sign * CASE WHEN is_deleted THEN 1 ELSE 0 END)::int AS deleted,
            SUM(sign * CASE WHEN is_deleted THEN 0 ELSE importance END) AS importance
        FROM changed GROUP BY user_id, namespace
    )"""
_PG_UPSERT = """
    INSERT INTO namespace_summary AS s
        (user_id, namespace, live_count, deleted_count, live_importance_sum)
    SELECT user_id, namespace, live, deleted, importance FROM deltas
    ORDER BY user_id, namespace
    ON CONFLICT (user_id, namespace) DO UPDATE SET
        live_count = s.live_count + excluded.live_count,
        deleted_count = s.deleted_count + excluded.deleted_count,
        live_importance_sum = CASE WHEN s.live_count + excluded.live_count = 0 THEN 0
            ELSE s.live_importance_sum + excluded.live_importance_sum END;"""
_PG_SUBTRACT = """
    UPDATE namespace_summary AS s SET
        live_count = s.live_count + d.live,
        deleted_count = s.deleted_count + d.deleted,
        live_importance_sum = CASE WHEN s.live_count + d.live = 0 THEN 0
            ELSE s.live_importance_sum + d.importance END
    FROM deltas AS d WHERE s.user_id = d.user_id AND s.namespace = d.namespace;"""
"""Deleted rows only ever lower existing figures; when a user is removed, the cascade may
have removed their summary rows first, and nothing is to be (re)inserted for them."""
_PG_EMPTIED = """
    DELETE FROM namespace_summary AS s
    USING (SELECT DISTINCT user_id, namespace FROM old_rows) AS k
    WHERE s.user_id = k.user_id AND s.namespace = k.namespace
        AND s.live_count = 0 AND s.deleted_count = 0;"""

POSTGRES_FUNCTION = f"""
CREATE FUNCTION namespace_summary_upkeep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM namespace_summary;
    ELSIF TG_OP = 'INSERT' THEN
        WITH changed AS (
            SELECT user_id, namespace, is_deleted, importance, 1 AS sign FROM new_rows
        ), {_PG_DELTAS} {_PG_UPSERT}
    ELSIF TG_OP = 'DELETE' THEN
        WITH changed AS (
            SELECT user_id, namespace, is_deleted, importance, -1 AS sign FROM old_rows
        ), {_PG_DELTAS} {_PG_SUBTRACT} {_PG_EMPTIED}
    ELSE
        WITH moved AS (
            SELECT o.user_id AS old_user, o.namespace AS old_ns, o.is_deleted AS old_deleted,
                o.importance AS old_importance, n.user_id, n.namespace, n.is_deleted,
                n.importance
            FROM old_rows AS o JOIN new_rows AS n USING (id)
            WHERE o.user_id <> n.user_id OR o.namespace <> n.namespace
                OR o.is_deleted <> n.is_deleted OR o.importance <> n.importance
        ), changed AS (
            SELECT user_id, namespace, is_deleted, importance, 1 AS sign FROM moved
            UNION ALL
            SELECT old_user, old_ns, old_deleted, old_importance, -1 FROM moved
        ), {_PG_DELTAS} {_PG_UPSERT} {_PG_EMPTIED}
    END IF;
    RETURN NULL;
END $$"""
"""One statement-level function for every event: the rows a statement changed, from its
transition tables, grouped per (user, namespace) and added in one upsert."""

POSTGRES_TRIGGERS = {
    "long_term_memory_ai_summary": (
        "CREATE TRIGGER long_term_memory_ai_summary AFTER INSERT ON long_term_memory "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION namespace_summary_upkeep()"
    ),
    "long_term_memory_ad_summary": (
        "CREATE TRIGGER long_term_memory_ad_summary AFTER DELETE ON long_term_memory "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION namespace_summary_upkeep()"
    ),
    "long_term_memory_au_summary": (
        "CREATE TRIGGER long_term_memory_au_summary AFTER UPDATE ON long_term_memory "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION namespace_summary_upkeep()"
    ),
    "long_term_memory_at_summary": (
        "CREATE TRIGGER long_term_memory_at_summary AFTER TRUNCATE ON long_term_memory "
        "FOR EACH STATEMENT EXECUTE FUNCTION namespace_summary_upkeep()"
    ),
}


def create_statements(dialect: str) -> list[str]:
    """The function (PostgreSQL) and triggers that keep the summary up to date."""
    if dialect == "postgresql":
        return [POSTGRES_FUNCTION, *POSTGRES_TRIGGERS.values()]
    return list(SQLITE_TRIGGERS.values())


def drop_statements(dialect: str) -> list[str]:
    """Undo create_statements."""
    if dialect == "postgresql":
        return [
            *(f"DROP TRIGGER IF EXISTS {name} ON long_term_memory" for name in POSTGRES_TRIGGERS),
            "DROP FUNCTION IF EXISTS namespace_summary_upkeep()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]


async def suspend_for_bulk_load(conn: AsyncConnection) -> None:
    """Before loading rows in bulk: stop the per-row upkeep (resume_after_bulk_load)."""
    for statement in drop_statements(conn.dialect.name):
        await conn.exec_driver_sql(statement)


async def resume_after_bulk_load(conn: AsyncConnection) -> None:
    """Count the loaded rows at once, then go back to upkeep by the triggers."""
    await conn.exec_driver_sql(f"DELETE FROM {TABLE}")
    await conn.exec_driver_sql(BACKFILL)
    for statement in create_statements(conn.dialect.name):
        await conn.exec_driver_sql(statement)
