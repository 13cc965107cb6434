"""The world the hostile-input tables (tests/test_hostile_input*.py) attack, and the
fingerprint of the database that proves a refused request wrote nothing.

Each case is a name, how to send it (a function of the World) and what must come back.
The World holds three people with memories and API tokens (ann and bob ordinary users,
root an admin) and logs them in to the admin pages only when a case asks for that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from bs4 import BeautifulSoup
from fastapi import FastAPI
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_token, make_user
from tests.web_support import Visitor, asgi_clients
from webapp.models import metadata

# Every table a request could write. Left out, or in part, and why:
# - login_throttle: a refused login is counted there on purpose (that is the throttle);
# - api_token.last_used_at and web_session.last_seen_at: touched by any authenticated
#   request, refused or not (at most once a minute), which is bookkeeping, not data;
# - the vector side tables (embedding_queue, memory_embedding, duplicates): a cache of
#   the content, which any search may fill in (it embeds what is queued first, even for
#   a query it then refuses); a write to a memory shows in long_term_memory anyway.
FINGERPRINTED: dict[str, tuple[str, ...]] = {
    "users": (),
    "long_term_memory": (),
    "memory_event": (),
    "api_token": ("last_used_at",),
    "web_session": ("last_seen_at",),
    "admin_event": (),
    "namespace_summary": (),
}

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(1)">'
RAW_PAYLOADS = (SCRIPT, "<img src=x onerror", "<script>alert")
"""What must never come back raw in an HTML response (escaped is fine)."""


async def fingerprint(engine: AsyncEngine) -> dict[str, tuple[int, str]]:
    """Per table: the number of rows and a hash of all of them (in primary key order)."""
    prints: dict[str, tuple[int, str]] = {}
    async with engine.connect() as conn:
        for name, ignored in FINGERPRINTED.items():
            table: Table = metadata.tables[name]
            columns = [column for column in table.columns if column.name not in ignored]
            order = list(table.primary_key.columns) or columns
            rows = (await conn.execute(select(*columns).order_by(*order))).all()
            digest = hashlib.sha256(repr([tuple(row) for row in rows]).encode()).hexdigest()
            prints[name] = (len(rows), digest[:16])
    return prints


@dataclass
class World:
    """ann, bob and root with memories and tokens; clients on the API and the pages."""

    app: FastAPI
    engine: AsyncEngine
    open_client: Callable[..., httpx.AsyncClient]
    secrets: dict[str, str]
    ids: dict[str, int]
    user_ids: dict[str, int]
    visitors: dict[str, Visitor] = field(default_factory=dict)
    log_in_first: tuple[str, ...] = ()
    """Who logs in to the pages before a case's fingerprint (a login writes a session)."""

    def api(self, who: str = "ann", **headers: str | bytes) -> httpx.AsyncClient:
        """A client on /api/v1 sending who's bearer token (and headers)."""
        sent = {"Authorization": f"Bearer {self.secrets[who]}", **headers}
        return self.open_client(base_url="http://testserver/api/v1", **sent)

    def anonymous(self) -> Visitor:
        """A browser that has not logged in."""
        return Visitor(self.open_client(base_url="http://testserver"))

    async def web(self, who: str = "ann") -> Visitor:
        """who, logged in to the admin pages (once per test), with a CSRF token in hand."""
        if who not in self.visitors:
            visitor = self.anonymous()
            response = await visitor.log_in(who)
            assert response.status_code == 303, response.text
            await visitor.get("/memories")
            self.visitors[who] = visitor
        return self.visitors[who]

    def fill(self, text: str) -> str:
        """text with {tea}, {bob_secret}, {user_bob}... replaced by the world's ids (other
        braces are left alone: payloads have them)."""
        names = {**self.ids, **{f"user_{k}": v for k, v in self.user_ids.items()}}
        for name, value in names.items():
            text = text.replace("{" + name + "}", str(value))
        return text


Send = Callable[[World], Awaitable[httpx.Response]]
Check = Callable[[httpx.Response, World], Awaitable[None] | None]


@dataclass(frozen=True)
class Case:
    """One hostile input: how it is sent, the status expected, and what else must hold.

    `writes` marks input that is legitimately accepted and stored (its check says what
    was stored); every other case must leave the database's fingerprint as it was.
    """

    name: str
    send: Send
    status: int | tuple[int, ...]
    check: Check | None = None
    writes: bool = False


async def make_world(
    app: FastAPI, engine: AsyncEngine, session: AsyncSession
) -> AsyncIterator[World]:
    """The World on the app, its clients closed afterwards."""
    ann = await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    root = await make_user(session, username="root", is_admin=True)
    ids = {
        "tea": (await make_memory(session, user=ann, key="tea", content="green tea")).id,
        "pct": (
            await make_memory(
                session, user=ann, namespace="facts/odd", key="pct", content="100% sure_thing"
            )
        ).id,
        "gone": (
            await make_memory(session, user=ann, key="gone", is_deleted=True, deleted_at=None)
        ).id,
        "bob_secret": (
            await make_memory(session, user=bob, key="secret", content="bob's diary")
        ).id,
    }
    secrets = {}
    for user in (ann, bob, root):
        _token, secrets[user.username] = await make_token(session, user=user, name="agent")
    user_ids = {user.username: user.id for user in (ann, bob, root)}
    async with asgi_clients(app, address="203.0.113.5", base_url="http://testserver") as opener:

        def open_client(*, base_url: str, **headers: str) -> httpx.AsyncClient:
            client = opener(**headers)
            client.base_url = httpx.URL(base_url)
            return client

        yield World(
            app=app,
            engine=engine,
            open_client=open_client,
            secrets=secrets,
            ids={k: v for k, v in ids.items() if v is not None},
            user_ids={k: v for k, v in user_ids.items() if v is not None},
        )


async def run_case(world: World, case: Case) -> None:
    """Send the case and check its outcome; for a refused one, that nothing was written."""
    # Warm up: the first authenticated requests touch last_used_at / last_seen_at.
    for who in ("ann", "bob", "root"):
        await world.api(who).get("/namespaces")
    for who in world.log_in_first:
        await world.web(who)
    before = await fingerprint(world.engine)
    response = await case.send(world)
    expected = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code < 500, (response.status_code, summary(response))
    assert response.status_code in expected, (response.status_code, summary(response))
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/html"):
        for raw in RAW_PAYLOADS:
            assert raw not in response.text, f"{raw!r} echoed unescaped"
    elif response.request.url.path.startswith("/api/") and response.status_code >= 400:
        assert content_type.startswith("application/json"), content_type
        assert set(response.json()) == {"detail"}, response.text
    if case.check is not None:
        outcome = case.check(response, world)
        if outcome is not None:
            await outcome
    if not case.writes:
        after = await fingerprint(world.engine)
        changed = sorted(name for name in before if before[name] != after[name])
        assert not changed, f"a refused request wrote to {changed}"


def summary(response: httpx.Response) -> str:
    """What a response says, in short: an HTML page's messages, else its start."""
    if response.headers.get("content-type", "").startswith("text/html"):
        found = BeautifulSoup(response.text, "html.parser").select(
            ".alert, .error-page, .field-error, [role=alert], .error"
        )
        if found:
            return " | ".join(" ".join(tag.get_text().split()) for tag in found)[:500]
    return response.text[:300]


# --- ways of sending ----------------------------------------------------------------------


def api_json(method: str, path: str, body: Any, who: str = "ann") -> Send:
    """A JSON body (Python's json writes NaN and Infinity as such)."""
    return api_raw(method, path, json.dumps(body), who=who)


def api_raw(
    method: str,
    path: str,
    body: str | bytes,
    who: str = "ann",
    content_type: str = "application/json",
    **headers: str,
) -> Send:
    """A body sent exactly as given."""

    async def send(world: World) -> httpx.Response:
        content = world.fill(body) if isinstance(body, str) else body
        return await world.api(who).request(
            method,
            world.fill(path),
            content=content.encode("utf-8", "surrogatepass")
            if isinstance(content, str)
            else content,
            headers={"content-type": content_type, **headers},
        )

    return send


def api_get(path: str, who: str = "ann", **headers: str | bytes) -> Send:
    """A GET on /api/v1 (path may name {tea}, {bob_secret}...)."""

    async def send(world: World) -> httpx.Response:
        return await world.api(who, **headers).get(world.fill(path))

    return send


def page(path: str, who: str | None = "ann", *, htmx: bool = False, **headers: str) -> Send:
    """A GET of an admin page, logged in as who (None: not logged in)."""

    async def send(world: World) -> httpx.Response:
        visitor = world.anonymous() if who is None else await world.web(who)
        return await visitor.get(world.fill(path), htmx=htmx, **headers)

    return send


def form(
    path: str,
    data: dict[str, Any],
    who: str = "ann",
    *,
    htmx: bool = False,
    csrf: bool = True,
    **headers: str,
) -> Send:
    """A form POSTed by who, with their CSRF token unless csrf=False."""

    async def send(world: World) -> httpx.Response:
        visitor = await world.web(who)
        filled = {
            name: world.fill(value) if isinstance(value, str) else value
            for name, value in data.items()
        }
        return await visitor.post(world.fill(path), filled, htmx=htmx, csrf=csrf, **headers)

    return send
