"""The app's Traffic (webapp/traffic.py): background work waits for a pause in the
requests, and never forever."""

from __future__ import annotations

import asyncio
import time

import httpx

from webapp.main import create_app
from webapp.settings import Settings
from webapp.traffic import Traffic


async def test_quiet_waits_for_a_pause_in_the_requests() -> None:
    traffic = Traffic()
    traffic.started()
    started = time.monotonic()
    assert not await traffic.quiet(idle=0.01, most=0.1), "a request is still in flight"
    assert time.monotonic() - started >= 0.1
    traffic.ended()
    assert await traffic.quiet(idle=0.02, most=1.0)
    assert traffic.idle_for() >= 0.02


async def test_quiet_returns_as_soon_as_the_pause_is_long_enough() -> None:
    traffic = Traffic()
    traffic.started()
    traffic.ended()

    async def another_request_soon() -> None:
        await asyncio.sleep(0.02)
        traffic.started()
        await asyncio.sleep(0.05)
        traffic.ended()

    other = asyncio.create_task(another_request_soon())
    started = time.monotonic()
    assert await traffic.quiet(idle=0.1, most=2.0)
    waited = time.monotonic() - started
    await other
    assert 0.15 <= waited < 1.0, waited


async def test_every_request_counts_while_it_runs(database_url: str) -> None:
    """The app's middleware counts a request in flight until its response is sent."""
    app = create_app(Settings(database_url=database_url, secret_key="s" * 32))
    traffic = next(m.kwargs["traffic"] for m in app.user_middleware if "traffic" in m.kwargs)
    seen: list[int] = []

    @app.get("/probe-traffic")
    async def probe() -> dict[str, int]:
        seen.append(traffic.in_flight)
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await asyncio.gather(*(client.get("/probe-traffic") for _ in range(3)))
    assert seen and max(seen) >= 1
    assert traffic.in_flight == 0
