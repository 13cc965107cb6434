"""The access-control matrix: every route of the app, as ordinary user Ann, against Bob's data.

The cases are generated from `create_app().routes` (included routers walked through), not
listed by hand: each path parameter is filled with one of Bob's real ids, keys or names,
and a route whose parameter no filler knows fails test_every_route_can_be_filled, so a new
route is covered the day it is added. Each route and method is sent by Ann twice: with her
API bearer token alone, and with her logged-in browser session (cookie and CSRF token)
alone. Neither may return any of Bob's memories (content, keys, namespaces, ids), tokens,
events or account data, nor change any of his rows; a token never opens a page and a
session cookie never authenticates the API (SPEC sections 1, 4 and 5). Runs on both
databases.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.routing import BaseRoute, Mount

from tests.api_support import Agent, NewAgent
from tests.factories import make_token
from tests.web_support import Visitor, parse
from webapp.main import create_app
from webapp.mcp_server.http import MCP_PATH
from webapp.models import ApiToken, LongTermMemory, MemoryEvent, User, WebSession
from webapp.settings import Settings
from webapp.types import utcnow

_users = User.__table__  # type: ignore[attr-defined]
_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_events = MemoryEvent.__table__  # type: ignore[attr-defined]
_tokens = ApiToken.__table__  # type: ignore[attr-defined]
_sessions = WebSession.__table__  # type: ignore[attr-defined]

# Bob's secrets: each one unique, so finding it in a response to Ann is a leak.
BOB_CONTENT = "c0ntent-b0b-91f3 drinks oolong every afternoon"
BOB_KEY = "k3y-b0b-91f3"
BOB_NAMESPACE = "n4mespace-b0b-91f3/private"
BOB_TAG = "t4g-b0b-91f3"
BOB_TOKEN_NAME = "t0ken-b0b-91f3"
BOB_EMAIL = "e-b0b-91f3@example.test"
BOB_DELETED_CONTENT = "d3leted-b0b-91f3 oolong notes"
BOB_SECRETS = (
    BOB_CONTENT.split()[0],
    BOB_KEY,
    BOB_NAMESPACE,
    BOB_TAG,
    BOB_TOKEN_NAME,
    BOB_EMAIL,
    BOB_DELETED_CONTENT.split()[0],
)

PUBLIC_ROUTES = {"login_form", "log_in", "healthz", "openapi"}
"""Routes anyone may call: no session, no token (nothing of a user's is behind them)."""
PUBLIC_MOUNTS = {"static"}
"""Mounted apps that serve the package's static files, the same for everyone."""
API_PREFIX = "/api/v1"


# --- the route table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One method of one route, as the app declares it."""

    method: str
    path: str
    name: str
    query_names: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        """Under /api/v1, or MCP's /mcp (bearer tokens), not an admin page (sessions)."""
        return self.path.startswith(API_PREFIX + "/") or self.path == MCP_PATH

    @property
    def parameters(self) -> list[str]:
        """The names of the path's {parameters}."""
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """Each route with the prefix it is served under; included routers are walked through
    (FastAPI 0.16x keeps them as one entry each in app.routes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = route.include_context  # type: ignore[attr-defined]
            yield from _walk(included.routes, prefix + context.prefix)
        else:
            yield prefix, route


def route_table(app: FastAPI) -> tuple[list[Endpoint], list[str]]:
    """Every (method, path) the app answers, and a problem for each route it cannot test."""
    openapi_paths = app.openapi()["paths"]
    endpoints: list[Endpoint] = []
    problems: list[str] = []
    for prefix, route in _walk(app.routes):
        if isinstance(route, Mount):
            if route.name not in PUBLIC_MOUNTS:
                problems.append(f"mounted app {route.path!r} ({route.name}) is not covered")
            continue
        methods = getattr(route, "methods", None)
        path = prefix + getattr(route, "path", "")
        if not methods:
            problems.append(f"route {path!r} of type {type(route).__name__} has no methods")
            continue
        for method in sorted(methods - {"HEAD"}):
            declared: set[str] = set()
            if isinstance(route, APIRoute):
                declared |= {param.name for param in route.dependant.query_params}
            operation = openapi_paths.get(path, {}).get(method.lower(), {})
            declared |= {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            endpoint = Endpoint(method, path, route.name, tuple(sorted(declared)))
            unknown = [name for name in endpoint.parameters if name not in PATH_FILLERS]
            if unknown:
                problems.append(f"{endpoint}: no filler for path parameter(s) {unknown}")
            if endpoint.is_api and method in ("PUT", "PATCH", "POST") and name_of(endpoint) is None:
                problems.append(f"{endpoint}: no request body in API_BODIES")
            endpoints.append(endpoint)
    return endpoints, problems


def _route_app() -> FastAPI:
    """An app built only to read its route table (its engine never connects)."""
    never_opened = Path(tempfile.gettempdir()) / "memory-admin-route-table-never-opened.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{never_opened}", secret_key="x" * 64)
    return create_app(settings)


# --- Bob's world, and what Ann sends --------------------------------------------------------


@dataclass
class World:
    """Ann (an agent and a logged-in browser) and Bob, with his memories, tokens and events."""

    ann: Agent
    ann_browser: Visitor
    bob: Agent
    bob_memory_id: int
    bob_deleted_id: int
    bob_event_id: int
    bob_token_id: int
    bob_memory_ids: tuple[int, ...]

    @property
    def bob_name(self) -> str:
        """Bob's username."""
        return self.bob.user.username


PATH_FILLERS: dict[str, Callable[[World, Endpoint], str]] = {
    # A restore acts on a deleted memory; every other route on a live one.
    "memory_id": lambda world, endpoint: str(
        world.bob_deleted_id if endpoint.path.endswith("/restore") else world.bob_memory_id
    ),
    "token_id": lambda world, _endpoint: str(world.bob_token_id),
    "username": lambda world, _endpoint: world.bob_name,
    # Uploads are files an admin's session owns (services/transfer/uploads.py), not rows of
    # Bob's; a well-formed id shows the route refuses a non-admin before looking.
    "upload_id": lambda _world, _endpoint: "AAAAAAAAAAAAAAAAAAAAAA",
}


def name_of(endpoint: Endpoint) -> str | None:
    """The key of endpoint's body in API_BODIES, if it has one."""
    key = f"{endpoint.method} {endpoint.path}"
    for pattern in API_BODIES:
        if re.fullmatch(pattern, key):
            return pattern
    return None


API_BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    r"PUT /api/v1/memories": lambda world: {
        "namespace": BOB_NAMESPACE,
        "key": BOB_KEY,
        "content": "ann overwrites",
        "user_id": world.bob.user_id,
    },
    r"PATCH /api/v1/memories/{memory_id}": lambda _world: {
        "content": "ann overwrites",
        "version": 1,
    },
    r"POST /api/v1/memories/{memory_id}/restore": lambda _world: {},
    r"POST /api/v1/search": lambda _world: {"query": "oolong afternoon", "limit": 50},
    r"POST /api/v1/context": lambda _world: {"query": "oolong afternoon", "max_chars": 4000},
    # One MCP tool call a request: forget, by Bob's namespace and key, would both change
    # his rows and answer with his memory if isolation failed.
    r"POST /mcp": lambda _world: {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "forget", "arguments": {"namespace": BOB_NAMESPACE, "key": BOB_KEY}},
    },
}


def form_fields(world: World) -> dict[str, Any]:
    """A form for any page's POST, every field aimed at Bob: his ids, his name, his event."""
    ids = [str(world.bob_memory_id), str(world.bob_deleted_id)]
    return {
        "ids": ids,
        "id": ids,
        "keep": str(world.bob_memory_id),
        "user": world.bob_name,
        "owner": world.bob_name,
        "username": world.bob_name,
        "confirm_username": world.bob_name,
        "password": "a wrong password",
        "password_again": "a wrong password",
        "action": "delete",
        "scope": "filter",
        "state": "all",
        "value": "ann-was-here",
        "tag": BOB_TAG,
        "importance": "0.99",
        "content": "ann overwrites",
        "expires_at": "",
        "version": "1",
        "event": str(world.bob_event_id),
        "view": "detail",
        "confirm": "yes",
        "admin": "1",
        "active": "0",
        "name": "ann-was-here",
        "next": "/",
    }


def query_variants(world: World, endpoint: Endpoint) -> list[dict[str, str]]:
    """The query strings to send: none, `user=` Bob, and the route's own parameters aimed
    at Bob's namespace and key (only names the route declares: the API refuses others)."""
    values = {
        "user": world.bob_name,
        "namespace": BOB_NAMESPACE,
        "key": BOB_KEY,
        "include_deleted": "true",
        "q": "oolong",
        "format": "jsonl",
    }
    own = {name: values[name] for name in endpoint.query_names if name in values}
    variants: list[dict[str, str]] = [{}, {"user": world.bob_name}, own]
    if not endpoint.is_api:  # pages read their filters from the query string themselves
        variants.append({"user": world.bob_name, "state": "all", "namespace": BOB_NAMESPACE})
    unique: list[dict[str, str]] = []
    for variant in variants:
        if variant not in unique:
            unique.append(variant)
    return unique


# --- what Bob has, and what Ann got ---------------------------------------------------------


async def bobs_rows(db: AsyncEngine, world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of Bob's: account, memories, their events, tokens and sessions."""
    bob_id = world.bob.user_id
    queries = {
        "user": select(_users).where(_users.c.id == bob_id),
        "memories": select(_memories)
        .where((_memories.c.user_id == bob_id) | _memories.c.id.in_(world.bob_memory_ids))
        .order_by(_memories.c.id),
        "events": select(_events)
        .where(_events.c.memory_id.in_(world.bob_memory_ids))
        .order_by(_events.c.id),
        "tokens": select(_tokens).where(_tokens.c.user_id == bob_id).order_by(_tokens.c.id),
        "sessions": select(_sessions).where(_sessions.c.user_id == bob_id),
    }
    async with db.connect() as conn:
        return {
            name: [tuple(row) for row in (await conn.execute(query)).all()]
            for name, query in queries.items()
        }


def _json_leaks(value: Any, world: World) -> list[str]:
    """Where a JSON document names one of Bob's memories or Bob himself."""
    found: list[str] = []
    if isinstance(value, dict):
        if value.get("user_id") == world.bob.user_id:
            found.append(f"an object of Bob's: {value}")
        if "namespace" in value and value.get("id") in world.bob_memory_ids:
            found.append(f"Bob's memory {value.get('id')}")
        for name, item in value.items():
            if name.endswith("ids") and isinstance(item, list):
                found += [f"Bob's memory id in {name}" for i in item if i in world.bob_memory_ids]
            found += _json_leaks(item, world)
    elif isinstance(value, list):
        for item in value:
            found += _json_leaks(item, world)
    return found


def _html_leaks(response: httpx.Response, world: World) -> list[str]:
    """Links or forms of a page that point at one of Bob's memories or tokens."""
    targets = [f"/memories/{i}" for i in world.bob_memory_ids] + [f"/tokens/{world.bob_token_id}/"]
    found = []
    for element in parse(response).select("[href], [action], [hx-get], [hx-post]"):
        for attribute in ("href", "action", "hx-get", "hx-post"):
            link = str(element.get(attribute) or "").split("?")[0]
            if any(link == t or link.startswith(t.rstrip("/") + "/") for t in targets):
                found.append(f"{attribute}={link}")
    return found


def leaks(response: httpx.Response, sent: str, world: World) -> list[str]:
    """Each of Bob's secrets the response shows that the request did not carry itself."""
    text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    found = [secret for secret in BOB_SECRETS if secret in text and secret not in sent]
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json") and response.content:
        found += _json_leaks(response.json(), world)
    elif content_type.startswith("text/html"):
        found += _html_leaks(response, world)
    return found


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def world(
    db: AsyncEngine, session: AsyncSession, new_agent: NewAgent, open_visitor: Any
) -> World:
    """Ann and Bob; Bob has a live and a deleted memory with events, two tokens and a
    browser session of his own; Ann has a memory, a token and a logged-in browser."""
    ann = await new_agent("ann")
    bob = await new_agent("bob")
    await session.execute(update(User).where(User.id == bob.user_id).values(email=BOB_EMAIL))
    await session.commit()
    token, _secret = await make_token(session, user=bob.user, name=BOB_TOKEN_NAME)
    assert token.id is not None

    live = await bob.client.put(
        "/memories",
        json={"namespace": BOB_NAMESPACE, "key": BOB_KEY, "content": BOB_CONTENT,
              "tags": [BOB_TAG], "importance": 0.4},
    )  # fmt: skip
    assert live.status_code == 201, live.text
    gone = await bob.client.put(
        "/memories",
        json={"namespace": BOB_NAMESPACE, "key": BOB_KEY + "-old", "content": BOB_DELETED_CONTENT},
    )
    assert gone.status_code == 201, gone.text
    assert (await bob.client.delete(f"/memories/{gone.json()['id']}")).status_code == 200
    own = await ann.client.put(
        "/memories", json={"namespace": "ann/notes", "key": "tea", "content": "ann likes tea"}
    )
    assert own.status_code == 201, own.text

    session.add(
        WebSession(
            id=hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest(),
            user_id=bob.user_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=utcnow(),
            last_seen_at=utcnow(),
            expires_at=utcnow() + timedelta(hours=1),
        )
    )
    await session.commit()
    browser = open_visitor()
    assert (await browser.log_in("ann")).status_code == 303
    assert browser.csrf_token

    memory_ids = (live.json()["id"], gone.json()["id"])
    async with db.connect() as conn:
        event_id = (
            await conn.execute(select(_events.c.id).where(_events.c.memory_id == memory_ids[0]))
        ).scalar_one()
    world = World(
        ann=ann,
        ann_browser=browser,
        bob=bob,
        bob_memory_id=memory_ids[0],
        bob_deleted_id=memory_ids[1],
        bob_event_id=event_id,
        bob_token_id=token.id,
        bob_memory_ids=memory_ids,
    )
    # A positive control: the fillers are real, so a 404 to Ann means "not yours".
    mine = await bob.client.get(f"/memories/{world.bob_memory_id}")
    assert mine.status_code == 200 and mine.json()["content"] == BOB_CONTENT
    return world


# --- the matrix -----------------------------------------------------------------------------

ENDPOINTS, PROBLEMS = route_table(_route_app())
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
ALLOWED_REFUSALS = {400, 401, 403, 404, 405, 409, 413, 422, 429}


def test_every_route_can_be_filled() -> None:
    """Every route of the app is in the matrix: a path parameter or an API body that the
    generator does not know fails here, so that a new route gets a filler, not a pass."""
    assert ENDPOINTS, "no route found in create_app().routes"
    assert {e.name for e in ENDPOINTS} >= {"show_memory", "read_memory", "revoke_token"}
    assert not PROBLEMS, PROBLEMS


def _fill(endpoint: Endpoint, world: World) -> str:
    path = endpoint.path
    for name in endpoint.parameters:
        path = re.sub(r"{" + name + r"(?::\w+)?}", PATH_FILLERS[name](world, endpoint), path)
    return path


def _check_status(
    endpoint: Endpoint, credential: str, response: httpx.Response, followed: bool
) -> None:
    """The status the credential should get on this route (followed: after a redirect)."""
    status, label = response.status_code, f"{endpoint} as Ann's {credential}"
    assert status < 500, (label, status, response.text[:500])
    if endpoint.name in PUBLIC_ROUTES:
        return
    if credential == "session" and endpoint.is_api:
        # SPEC 5: session cookies never authenticate the API.
        assert status == 401, (label, status, response.text[:300])
    elif credential == "token" and not endpoint.is_api:
        # A bearer token is not a session: the login page, never the page.
        assert status == 303, (label, status, response.text[:300])
        assert response.headers["location"].startswith("/login"), (label, response.headers)
    elif endpoint.parameters and endpoint.name not in {"show_import_report", "run_import",
                                                       "discard_import"}:  # fmt: skip
        # A route named by one of Bob's ids or names: absent (404) or admins only (403). An
        # htmx-only fragment, asked for without htmx, redirects to its page without looking
        # the id up (the same for any id): that page, followed, is a 404 or Ann's own list.
        allowed = (200, 403, 404) if followed else (403, 404)
        assert status in allowed, (label, status, response.text[:300])
    else:
        assert status < 400 or status in ALLOWED_REFUSALS, (label, status, response.text[:300])


async def _send(
    world: World, endpoint: Endpoint, credential: str, query: dict[str, str], htmx: bool
) -> tuple[httpx.Response, str, bool]:
    """Ann's request to endpoint with one credential only; returns it with what was sent.
    A page's 303 to another page of Bob's id (not to /login) is followed, once."""
    url = "http://testserver" + _fill(endpoint, world)
    if query:
        url += "?" + urlencode(query)
    kwargs: dict[str, Any] = {}
    if endpoint.method in UNSAFE:
        if endpoint.is_api:
            pattern = name_of(endpoint)
            kwargs["json"] = API_BODIES[pattern](world) if pattern is not None else {}
        else:
            kwargs["data"] = form_fields(world)
    if credential == "token":
        client = world.ann.client  # the bearer header, no cookie
        headers = {"accept": "application/json" if endpoint.is_api else "text/html"}
    else:
        client = world.ann_browser.client  # the session cookie, no bearer header
        headers = {"accept": "text/html", "X-CSRF-Token": world.ann_browser.csrf_token}
        if htmx:
            headers["HX-Request"] = "true"
        if "data" in kwargs:
            kwargs["data"] = {**kwargs["data"], "csrf_token": world.ann_browser.csrf_token}
    response = await client.request(
        endpoint.method, url, headers=headers, follow_redirects=False, **kwargs
    )
    location = response.headers.get("location", "")
    sent = unquote(url) + repr(kwargs)
    if response.status_code == 303 and endpoint.parameters and location.startswith("/"):
        if not location.startswith("/login"):
            response = await client.get(
                "http://testserver" + location, headers=headers, follow_redirects=False
            )
            return response, sent, True
    return response, sent, False


@pytest.mark.parametrize("credential", ["token", "session"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
async def test_ann_never_sees_or_changes_bobs_data(
    db: AsyncEngine, world: World, endpoint: Endpoint, credential: str
) -> None:
    """Every route and method, as Ann's token and as Ann's session: the right 4xx, or a
    page or document with none of Bob's data; and Bob's rows are as they were."""
    before = await bobs_rows(db, world)
    assert before["memories"] and before["events"] and before["tokens"] and before["sessions"]
    # A browser sends each request plain and as htmx (HX-Request proves nothing, and
    # fragments take the other branch of a page).
    for htmx in (False, True) if credential == "session" else (False,):
        for query in query_variants(world, endpoint):
            response, sent, followed = await _send(world, endpoint, credential, query, htmx)
            case = (str(endpoint), query, credential, f"htmx={htmx}")
            _check_status(endpoint, credential, response, followed)
            assert not leaks(response, sent, world), (*case, response.text)
            assert await bobs_rows(db, world) == before, case


# --- a token is not a session, a session is not a token -------------------------------------


async def test_a_session_secret_is_not_a_bearer_token(app: FastAPI, world: World) -> None:
    """The secret inside Ann's session cookie, sent as a bearer token, is a 401."""
    cookie = world.ann_browser.client.cookies["ma_session"]
    secret = app.state.cookie_signer.unsign(cookie).decode()
    for authorization in (f"Bearer {secret}", f"Bearer {cookie}"):
        response = await world.ann.client.get("/memories", headers={"Authorization": authorization})
        assert response.status_code == 401, response.text
    # the control: Ann's own token works on the same client
    assert (await world.ann.client.get("/memories")).status_code == 200


async def test_an_api_token_is_not_a_session(
    app: FastAPI, world: World, open_visitor: Callable[[], Visitor]
) -> None:
    """Ann's token secret as the session cookie, even signed with the app's key, opens no
    page; a bearer header on a page does not either."""
    signed = app.state.cookie_signer.sign(world.ann.secret.encode()).decode()
    for cookie in (signed, world.ann.secret):
        browser = open_visitor()
        browser.client.cookies.set("ma_session", cookie)
        response = await browser.client.get("/memories", headers={"accept": "text/html"})
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/login")
    # the control: Ann's real session opens the page
    page = await world.ann_browser.client.get("/memories", headers={"accept": "text/html"})
    assert page.status_code == 200
