"""Which database errors mean "unavailable": a lost connection, a refused or timed-out one.

Those are answered with a 503 and a clear message (webapp.main), and the pool must never
hand a broken connection out again. Anything else (a constraint, a bad statement) is a bug
or a conflict, and keeps its own handling.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

_LOST = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08; "closed in the middle of operation"
    asyncpg.AdminShutdownError,  # pg_terminate_backend, a fast shutdown
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # starting up, or in recovery
    asyncpg.TooManyConnectionsError,  # a new connection refused: max_connections reached
    asyncpg.InternalClientError,  # the protocol was left mid-operation by one of the above
    OSError,  # the socket: reset, broken pipe, timed out
)
"""asyncpg's errors that leave its connection unusable (or give none). SQLAlchemy only
counts a connection as lost once asyncpg has marked it closed, which it has not always done
yet when the error reaches us: the next statement on it then failed with 'cannot switch to
state 12; another operation (2) is in progress', and a pre-ping that failed that way was
raised instead of replacing the connection."""


_TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
"""PostgreSQL ended the transaction to let another go on: nothing was written, and the
same request may well succeed at once. A 503 says so; a 500 said it was a bug."""


def discard_lost_connections(engine: AsyncEngine) -> None:
    """Make the pool invalidate (close and replace) a PostgreSQL connection whose error
    means it is lost, pre-pings included, and mark the error `connection_invalidated`.

    Only that connection: SQLAlchemy would also retire every other pooled connection at
    their next checkout, as if the server had restarted, but one backend can be ended on
    its own (pg_terminate_backend, an idle timeout), and the pre-ping at checkout finds
    the others if it did restart.
    """

    @event.listens_for(engine.sync_engine, "handle_error")
    def _lost_connection(context: ExceptionContext) -> None:
        if any(isinstance(cause, _LOST) for cause in _causes(context.original_exception)):
            context.is_disconnect = True
        if context.is_disconnect:
            context.invalidate_pool_on_disconnect = False


def _causes(error: BaseException) -> Iterator[BaseException]:
    """error and the errors it was raised from (the driver's, wrapped by the adapter)."""
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__


def is_unavailable(error: BaseException) -> bool:
    """True when error means the database cannot serve now (a 503: retry later):
    unreachable, locked (SQLite), out of pooled connections, or the connection was lost."""
    if isinstance(error, OperationalError | PoolTimeout | OSError):
        return True
    if any(isinstance(cause, _TRANSIENT) for cause in _causes(error)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


_REASONS = (
    ("database or disk is full", "its disk is full, so nothing was written; free some space"),
    ("readonly database", "its file is read-only, so nothing was written"),
    ("database is locked", "another program holds its lock; try again shortly"),
    (
        "unable to open database file",
        "its file cannot be opened; check that it is there, and that the app may write to "
        "it and to its folder",
    ),
)
"""SQLite's words for a fault of the file or the disk, and what to tell the person."""


def unavailable_message(error: BaseException) -> str:
    """What a 503 says: the reason when it is one a person can act on (SQLite's file or
    disk), else to try again shortly."""
    said = " ".join(str(cause) for cause in _causes(error))
    for words, reason in _REASONS:
        if words in said:
            return f"The database is unavailable: {reason}."
    return "The database is unavailable; try again shortly."
