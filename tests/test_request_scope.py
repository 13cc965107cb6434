"""get_async_session: the per-request session dependency of the app, for code built on it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.web_support import asgi_clients
from webapp.models import User
from webapp.request_scope import get_async_session

SessionDep = Annotated[AsyncSession, Depends(get_async_session)]


async def _users(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(User.username).order_by(User.username))).scalars())


async def test_a_request_session_commits_on_success_and_rolls_back_on_error(
    app: FastAPI, db: AsyncEngine
) -> None:
    """What a handler adds is kept when it returns, and gone when it raises."""

    @app.post("/extension/users/{name}")
    async def add_user(name: str, session: SessionDep, fail: bool = False) -> dict[str, int]:
        session.add(User(username=name, password_hash="!"))
        await session.flush()
        if fail:
            raise HTTPException(status_code=409, detail="refused after the write")
        count = (await session.execute(select(func.count()).select_from(User))).scalar_one()
        assert session.sync_session.expire_on_commit is False
        return {"users": int(count)}

    async with asgi_clients(app, address="203.0.113.5", base_url="http://testserver") as open_:
        client = open_()
        kept = await client.post("/extension/users/kept")
        refused = await client.post("/extension/users/dropped", params={"fail": "true"})

    assert kept.status_code == 200 and kept.json() == {"users": 1}
    assert refused.status_code == 409
    assert await _users(db) == ["kept"]
