"""Private internals of our dependencies that webapp relies on: each is still there and works
as the code uses it.

A new release may drop or change any of them without notice, which pyproject.toml's upper
bounds and constraints.txt guard against; when a bound is raised, this test says by name
which internal went away and which file relies on it. Add an entry here when webapp starts
using another one.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute


@dataclass(frozen=True)
class Internal:
    """One internal: its dotted name, the file that uses it, and a check that it works."""

    name: str
    used_by: str
    check: Callable[[], None]


def _on_open_aiosqlite(check: Callable[[object], object]) -> Callable[[], None]:
    """A check run on an open aiosqlite connection (to an in-memory database)."""

    async def run() -> None:
        import aiosqlite

        async with aiosqlite.connect(":memory:") as connection:
            result = check(connection)
            if inspect.isawaitable(result):
                await result

    return lambda: asyncio.run(run())


def _aiosqlite_constructor() -> None:
    import aiosqlite

    inspect.signature(aiosqlite.Connection).bind(partial(sqlite3.connect, ":memory:"), 64)


def _aiosqlite_thread() -> None:
    import aiosqlite

    connection = aiosqlite.connect(":memory:")  # not started: the daemon flag is set first
    thread = connection._thread
    assert isinstance(thread, threading.Thread) and not thread.is_alive(), thread


def _aiosqlite_iter_chunk_size() -> None:
    import aiosqlite

    assert aiosqlite.connect(":memory:", iter_chunk_size=7)._iter_chunk_size == 7


def _aiosqlite_conn(connection: object) -> None:
    assert isinstance(connection._conn, sqlite3.Connection)  # type: ignore[attr-defined]


async def _aiosqlite_execute(connection: object) -> None:
    run = connection._execute  # type: ignore[attr-defined]
    assert await run(threading.get_ident) != threading.get_ident(), "not on its own thread"


def _markupsafe_escape_inner() -> None:
    from markupsafe import _escape_inner, escape

    text = "<a href='x'>&\"</a>"
    assert _escape_inner(text) == str(escape(text))
    assert type(_escape_inner(text)) is str


def _jinja_output_child(method: str) -> Callable[[], None]:
    def check() -> None:
        from jinja2.compiler import CodeGenerator

        parameters = list(inspect.signature(getattr(CodeGenerator, method)).parameters)
        assert parameters == ["self", "node", "frame", "finalize"], parameters

    return check


def _jinja_finalize_info() -> None:
    from jinja2.compiler import CodeGenerator

    assert "src" in CodeGenerator._FinalizeInfo._fields


def _jinja_frame_eval_context() -> None:
    from jinja2 import Environment
    from jinja2.compiler import Frame
    from jinja2.nodes import EvalContext

    eval_ctx = Frame(EvalContext(Environment(autoescape=True))).eval_ctx
    assert (eval_ctx.volatile, eval_ctx.autoescape) == (False, True)


def _jinja_code_generator_class() -> None:
    from webapp.web.templating import AppEnvironment

    source = AppEnvironment(autoescape=True).compile("{{ x }}", raw=True)
    assert "environment.escape_to_str(" in source, source


def _sqlalchemy_unary_expression() -> None:
    from sqlalchemy import Column, Integer, MetaData, Table
    from sqlalchemy.sql.elements import UnaryExpression
    from sqlalchemy.sql.operators import custom_op

    column = Table("t", MetaData(), Column("x", Integer)).c.x
    expression = UnaryExpression(column, operator=custom_op("+"), type_=column.type)
    assert "+ t.x" in str(expression > 1), str(expression > 1)


def _sqlalchemy_returning_update() -> None:
    from sqlalchemy.sql.dml import ReturningUpdate

    assert inspect.isclass(ReturningUpdate)


def _sqlalchemy_ddl_if() -> None:
    from sqlalchemy import Column, Index, Integer, MetaData, Table

    column = Table("t", MetaData(), Column("x", Integer)).c.x
    index = Index("t_x", column).ddl_if(dialect="postgresql")
    assert index._ddl_if is not None and index._ddl_if.dialect == "postgresql"


def _sqlalchemy_sessionmaker_kw() -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")  # connects to nothing
    assert async_sessionmaker(engine).kw["bind"] is engine


def _fastapi_scope_route() -> None:
    router = APIRouter()

    @router.get("/things/{thing}")
    def route_path(request: Request, thing: int) -> str:
        route = request.scope["route"]
        assert isinstance(route, APIRoute), route
        return str(route.path)

    app = FastAPI()
    app.include_router(router, prefix="/api")

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/api/things/1")

    response = asyncio.run(get())
    assert response.status_code == 200, response.text
    assert response.json().endswith("/things/{thing}"), response.json()


INTERNALS = [
    Internal(
        "aiosqlite.Connection(connector, iter_chunk_size)",
        "webapp/sqlite_connection.py",
        _aiosqlite_constructor,
    ),
    Internal("aiosqlite.Connection._thread", "webapp/sqlite_connection.py", _aiosqlite_thread),
    Internal(
        "aiosqlite.Connection._iter_chunk_size",
        "webapp/sqlite_connection.py",
        _aiosqlite_iter_chunk_size,
    ),
    Internal(
        "aiosqlite.Connection._conn",
        "webapp/sqlite_connection.py",
        _on_open_aiosqlite(_aiosqlite_conn),
    ),
    Internal(
        "aiosqlite.Connection._execute",
        "webapp/sqlite_connection.py",
        _on_open_aiosqlite(_aiosqlite_execute),
    ),
    Internal("markupsafe._escape_inner", "webapp/web/templating.py", _markupsafe_escape_inner),
    Internal(
        "jinja2.compiler.CodeGenerator._output_child_pre",
        "webapp/web/templating.py",
        _jinja_output_child("_output_child_pre"),
    ),
    Internal(
        "jinja2.compiler.CodeGenerator._output_child_post",
        "webapp/web/templating.py",
        _jinja_output_child("_output_child_post"),
    ),
    Internal(
        "jinja2.compiler.CodeGenerator._FinalizeInfo",
        "webapp/web/templating.py",
        _jinja_finalize_info,
    ),
    Internal(
        "jinja2.compiler.Frame.eval_ctx (volatile, autoescape)",
        "webapp/web/templating.py",
        _jinja_frame_eval_context,
    ),
    Internal(
        "jinja2.Environment.code_generator_class",
        "webapp/web/templating.py",
        _jinja_code_generator_class,
    ),
    Internal(
        "sqlalchemy.sql.elements.UnaryExpression(element, operator=, type_=)",
        "webapp/services/browse.py",
        _sqlalchemy_unary_expression,
    ),
    Internal(
        "sqlalchemy.sql.dml.ReturningUpdate",
        "webapp/services/memories.py",
        _sqlalchemy_returning_update,
    ),
    Internal("sqlalchemy.schema.SchemaItem._ddl_if", "webapp/migrate.py", _sqlalchemy_ddl_if),
    Internal(
        "sqlalchemy.ext.asyncio.async_sessionmaker.kw", "webapp/db.py", _sqlalchemy_sessionmaker_kw
    ),
    Internal('fastapi: request.scope["route"]', "webapp/api/routes.py", _fastapi_scope_route),
]


@pytest.mark.parametrize("internal", INTERNALS, ids=lambda internal: internal.name)
def test_the_private_internals_webapp_relies_on_are_still_there(internal: Internal) -> None:
    try:
        internal.check()
    except Exception as exc:
        pytest.fail(
            f"{internal.name} is gone or changed: {internal.used_by} relies on it "
            f"({type(exc).__name__}: {exc})",
            pytrace=False,
        )
