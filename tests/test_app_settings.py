"""The settings an app is built with are the ones it applies: Trash's "days left" agrees with
what `purge` removes, and the content limit is the app's own, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.cli_support import invoke_cli
from tests.factories import make_memory, make_user
from tests.web_support import Visitor, asgi_clients, parse
from webapp.db import Database
from webapp.main import create_app
from webapp.models import LongTermMemory
from webapp.services.tokens import create_token
from webapp.settings import Settings
from webapp.types import utcnow

RETENTION_DAYS = 90
GRACE_DAYS = 3
CONTENT_MAX_BYTES = 100


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    """Non-default retention, grace period and content limit for this module's app."""
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key",
        trash_retention_days=RETENTION_DAYS,
        expired_grace_days=GRACE_DAYS,
        content_max_bytes=CONTENT_MAX_BYTES,
    )


@pytest.fixture
def purge(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., str]:
    """Runs `memory-admin purge FLAGS` with the module's settings in the environment, as an
    operator's shell has them; returns what it printed."""
    monkeypatch.setenv("TRASH_RETENTION_DAYS", str(RETENTION_DAYS))
    monkeypatch.setenv("EXPIRED_GRACE_DAYS", str(GRACE_DAYS))

    def run(*flags: str) -> str:
        result = invoke_cli("purge", *flags, database_url=settings.database_url, cwd=tmp_path)
        assert result.code == 0, result
        return result.out

    return run


async def _keys(session: AsyncSession) -> set[str]:
    await session.commit()
    return set((await session.execute(select(LongTermMemory.key))).scalars())


async def test_trash_and_purge_agree_on_a_non_default_retention(
    session: AsyncSession, visitor: Visitor, purge: Callable[..., str]
) -> None:
    """With 90 days, a memory deleted 10 days ago has 80 days left and purge keeps it; one
    deleted 91 days ago is due now and purge removes it; likewise the 3-day grace period."""
    ann = await make_user(session, username="ann")
    now = utcnow()
    for key, days_ago in (("recent", 10), ("old", RETENTION_DAYS + 1)):
        await make_memory(
            session,
            user=ann,
            key=key,
            is_deleted=True,
            deleted_at=now - timedelta(days=days_ago, minutes=1),
        )
    await make_memory(session, user=ann, key="lapsed", expires_at=now - timedelta(days=2))
    await make_memory(session, user=ann, key="long-lapsed", expires_at=now - timedelta(days=4))
    await visitor.log_in("ann")

    page = parse(await visitor.get("/trash"))

    rows = {
        row.select_one("a").get_text(): row.select_one(".days-left").get_text(strip=True)
        for row in page.select(".trash-table tbody tr")
    }
    assert rows == {"recent": "80 days", "old": "due now"}
    dry_run = purge("--dry-run")
    assert "would purge 1 soft-deleted (deleted over 90 days ago)" in dry_run
    assert "1 expired (over 3 days ago)" in dry_run
    assert await _keys(session) == {"recent", "old", "lapsed", "long-lapsed"}
    purge()
    assert await _keys(session) == {"recent", "lapsed"}


async def test_the_retention_flag_overrides_the_setting_for_one_run(
    session: AsyncSession, purge: Callable[..., str]
) -> None:
    """--retention-days decides for that run only; the next run goes back to the setting."""
    ann = await make_user(session, username="ann")
    deleted_at = utcnow() - timedelta(days=40)
    await make_memory(session, user=ann, key="forty", is_deleted=True, deleted_at=deleted_at)

    assert "would purge 0 soft-deleted" in purge("--dry-run")
    assert "would purge 1 soft-deleted (deleted over 30 days ago)" in purge(
        "--dry-run", "--retention-days", "30"
    )
    assert "would purge 0 soft-deleted (deleted over 90 days ago)" in purge("--dry-run")


async def test_the_api_applies_the_apps_content_limit(
    app: FastAPI, db: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    """CONTENT_MAX_BYTES given to create_app is the API's limit, while another app in the
    same process keeps the default one."""
    ann = await make_user(session, username="ann")
    _token, secret = await create_token(Database(db), user=ann, name="agent")
    default_app = create_app(settings.model_copy(update={"content_max_bytes": 65_536}))
    try:
        for built, refused in ((app, True), (default_app, False)):
            async with asgi_clients(
                built, address="203.0.113.7", base_url="http://testserver/api/v1"
            ) as open_client:
                client = open_client(Authorization=f"Bearer {secret}")
                body = {"namespace": "n", "key": f"k{refused}", "content": "x" * 101}
                response = await client.put("/memories", json=body)
                assert response.status_code == (422 if refused else 201), response.text
                if refused:
                    assert "the limit is 100 bytes" in response.text
                fits = await client.put("/memories", json={**body, "content": "x" * 100})
                assert fits.status_code in (200, 201)
    finally:
        await default_app.state.engine.dispose()
    assert await _keys(session) == {"kTrue", "kFalse"}
