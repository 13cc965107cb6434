"""Schemathesis against the JSON API, on SQLite and on PostgreSQL.

Every operation of /api/v1/openapi.json is called with data generated from the schema,
valid (positive) and invalid (negative), in schemathesis's coverage phase (boundary values
and each field made wrong in turn) and its fuzzing phase (random cases). Each response
must:

- not be a server error: the app never answers 5xx;
- conform to the schema: a status code, content type and body the operation declares;
- be a 4xx for bad input (negative_data_rejection), and a token must be enforced;
- when it is a 4xx, leave the memories and their events exactly as they were: every row
  of long_term_memory (all columns) and memory_event is read before and after the call.

The database holds a few memories before the run, and generated cases are steered to
them (a schemathesis `flatmap_case` hook), so the by-id routes, recall and the upserts
work on real ids, namespaces, keys and versions, not only on 404s; test_run_reached_real_data
checks that they did. The run is seeded and derandomized, so CI repeats it exactly.

The schema object is built at import from the app's own OpenAPI document (the fixture
checks that each backend's app serves the same one), not with
`schemathesis.pytest.from_fixture`: that loader fails on pytest 9.2 (it sets
`request.node._nodeid`, which pytest no longer has), and the coverage phase builds its
cases at collection anyway. Cases go to whichever backend's app the `api` fixture set.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio.from_thread
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase
from schemathesis.python import asgi
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import make_memory, make_user
from webapp.db import create_engine, create_sessionmaker
from webapp.main import create_app
from webapp.models import ApiToken, LongTermMemory, MemoryEvent
from webapp.services.tokens import hash_token
from webapp.settings import Settings
from webapp.types import utcnow

OPENAPI_PATH = "/api/v1/openapi.json"
TOKEN = "mat_schemathesis-" + "0" * 32
"""The API token of the run's admin (stored hashed, as `memory-admin token create` does)."""
SEED = 20_240_501
FUZZ_EXAMPLES = 60
"""Random cases per operation (both modes); with the coverage phase's cases this keeps a
backend's run well under a minute."""

AWKWARD_STRINGS = [
    "\u0000",
    "a\u0000b",
    "%00",
    "\\",
    "' OR '1'='1",
    "%",
    "_",
    "*",
    "..",
    "a/b",
    " ",
    "\u202e",
    "\u00e9",
    "e\u0301",
    "\U0001f642",
    "null",
    "0",
    "-1",
    "9" * 40,
]
"""Strings the random ones rarely hit, mixed into every string the cases carry: NUL
(PostgreSQL refuses it in text and in JSON), SQL and LIKE metacharacters, combining and
astral characters, numbers as text."""

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.ignored_auth,
]
"""What every response is checked for. Not positive_data_acceptance: the schema does not
state every field rule (importance in [0, 1], namespace syntax, non-empty key...),
so valid-looking data is rightly refused with a 422."""

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_events = MemoryEvent.__table__  # type: ignore[attr-defined]


class Inspector:
    """Reads the database from synchronous test code: its own engine on its own event
    loop (a blocking portal's thread), apart from the app's and the module's."""

    def __init__(self, settings: Settings) -> None:
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        self._engine = create_engine(settings)

    def close(self) -> None:
        with self._stack:
            self._portal.call(self._engine.dispose)

    def snapshot(self) -> tuple[list[tuple[Any, ...]], tuple[int, int | None]]:
        """Every memory row, all columns, and the count and last id of memory_event."""
        return self._portal.call(self._snapshot)

    async def _snapshot(self) -> tuple[list[tuple[Any, ...]], tuple[int, int | None]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(_memories).order_by(_memories.c.id))).all()
            events = (await conn.execute(select(func.count(), func.max(_events.c.id)))).one()
        return [tuple(row) for row in rows], (events[0], events[1])

    def version_of(self, memory_id: int) -> int | None:
        """The memory's current version, or None if there is no such row."""
        return self._portal.call(self._version_of, memory_id)

    async def _version_of(self, memory_id: int) -> int | None:
        async with self._engine.connect() as conn:
            query = select(_memories.c.version).where(_memories.c.id == memory_id)
            return (await conn.execute(query)).scalar_one_or_none()


FRESH_KEYS = [("scratch", "one"), ("scratch/deep", "two.2")]
"""Valid keys no memory has at first: a PUT to one creates it (201), later ones update."""


@dataclass
class Seeded:
    """What the database holds before the run, for the hook to steer cases to."""

    admin: str
    other: str
    ids: list[int] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)


async def _seed(engine: AsyncEngine) -> Seeded:
    """An admin (whose token the run uses) and another user, each with a few memories:
    active, expired, soft-deleted, in two namespaces."""
    now = utcnow()
    async with create_sessionmaker(engine)() as session:
        admin = await make_user(session, username="agent", is_admin=True)
        other = await make_user(session, username="other")
        assert admin.id is not None
        session.add(ApiToken(user_id=admin.id, name="schemathesis", token_hash=hash_token(TOKEN)))
        await session.commit()
        seeded = Seeded(admin=admin.username, other=other.username)
        for owner in (admin, other):
            memories = [
                await make_memory(session, user=owner, namespace="facts", key="tea"),
                await make_memory(
                    session, user=owner, namespace="facts", key="coffee", tags=["drink", "am"]
                ),
                await make_memory(session, user=owner, namespace="prefs", key="theme"),
                await make_memory(
                    session,
                    user=owner,
                    namespace="prefs",
                    key="old",
                    expires_at=now - timedelta(days=1),
                ),
                await make_memory(
                    session,
                    user=owner,
                    namespace="facts",
                    key="gone",
                    is_deleted=True,
                    deleted_at=now,
                ),
            ]
            for memory in memories:
                assert memory.id is not None
                seeded.ids.append(memory.id)
                seeded.keys.append((memory.namespace, memory.key))
    return seeded


@dataclass
class Backend:
    """The app on one database, and what the hook and the auth provider need from it."""

    app: Any
    seeded: Seeded
    inspector: Inspector
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """The status codes each operation answered, for test_run_reached_real_data."""
    failed: set[str] = field(default_factory=set)
    """The operations whose run failed (so it stopped early)."""

    def __repr__(self) -> str:
        return f"Backend({self.app.state.settings.database_url!r})"


class _Current:
    """The backend the module's tests run against now (set by the `api` fixture).

    The schema, its hook and its auth provider are built once at import, before any
    database exists, so they look the backend up here."""

    backend: Backend | None = None

    @classmethod
    def get(cls) -> Backend:
        assert cls.backend is not None, "the `api` fixture sets the backend"
        return cls.backend


class _CurrentApp:
    """The ASGI app the schema sends its cases to: the current backend's app.

    Its own lifespan does nothing: the `api` fixture runs each backend app's lifespan."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await _Current.get().app(scope, receive, send)


def _openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, at import: the app connects to nothing to build it."""
    settings = Settings(database_url="postgresql+asyncpg://collect@127.0.0.1/none", secret_key="-")
    return create_app(settings).openapi()


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "dictionaries": {"awkward": {"values": AWKWARD_STRINGS}},
        "generation": {
            "mode": "all",
            "max-examples": FUZZ_EXAMPLES,
            "deterministic": True,
            "dictionaries": {"string": {"dictionary": "awkward", "probability": 0.15}},
        },
        "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
SCHEMA = schemathesis.openapi.from_dict(_openapi_document(), config=CONFIG)
SCHEMA.app = _CurrentApp()


@SCHEMA.auth()
class BearerToken:
    """The seeded admin's API token. Its secret is fixed: the coverage phase's cases are
    built when pytest collects the module, before any database exists."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@SCHEMA.hook
def flatmap_case(context: schemathesis.HookContext, case: schemathesis.Case) -> Any:
    """Point the valid parts of a case at data that exists, sometimes: real memory ids,
    namespace/key pairs, usernames and current versions. Parts generated invalid are
    left alone, so a negative case stays negative."""
    if _Current.backend is None:  # at collection
        return st.just(case)
    seeded = _Current.backend.seeded
    meta = case.meta
    choices: dict[str, st.SearchStrategy[Any]] = {}
    path_ok = meta is None or not meta.is_negative_at(ParameterLocation.PATH)
    query_ok = meta is None or not meta.is_negative_at(ParameterLocation.QUERY)
    body_ok = meta is None or not meta.is_negative_at(ParameterLocation.BODY)
    if path_ok and "memory_id" in (case.path_parameters or {}):
        choices["memory_id"] = st.sampled_from([None, *seeded.ids])
    if query_ok and isinstance(case.query, dict):
        choices["user"] = st.sampled_from([None, "drop", seeded.admin, seeded.other])
        if case.operation.path.endswith("/recall"):
            choices["recall"] = st.sampled_from([None, *seeded.keys])
    if body_ok and isinstance(case.body, dict):
        if case.method.upper() == "PATCH":
            # An edit succeeds only at the current version: always send it when the body
            # is meant to be valid, so that PATCH's 200 does not hang on a coin toss.
            choices["version"] = st.just(True)
        elif "version" in case.body or "memory_id" in (case.path_parameters or {}):
            choices["version"] = st.booleans()
        if case.method.upper() == "PUT":
            choices["put_key"] = st.sampled_from([None, *seeded.keys, *FRESH_KEYS])
            # A generated version is almost never the key's current one (409): leave it
            # out sometimes, so that an update of an existing key (200) happens too.
            choices["unversioned"] = st.booleans()
    if not choices:
        return st.just(case)
    return st.fixed_dictionaries(choices).map(lambda chosen: _apply(case, chosen))


def _apply(case: schemathesis.Case, chosen: dict[str, Any]) -> schemathesis.Case:
    if chosen.get("memory_id") is not None:
        case.path_parameters["memory_id"] = chosen["memory_id"]
    user = chosen.get("user")
    if user == "drop":
        case.query.pop("user", None)
    elif user is not None:
        case.query["user"] = user
    if chosen.get("recall") is not None:
        case.query["namespace"], case.query["key"] = chosen["recall"]
    if chosen.get("put_key") is not None and {"namespace", "key"} <= case.body.keys():
        case.body["namespace"], case.body["key"] = chosen["put_key"]
    if chosen.get("unversioned"):
        case.body.pop("version", None)
    if chosen.get("version"):
        memory_id = (case.path_parameters or {}).get("memory_id")
        if memory_id in _Current.get().seeded.ids:
            version = _Current.get().inspector.version_of(memory_id)
            if version is not None:
                case.body["version"] = version
    return case


def _drop_coverage_user(case: schemathesis.Case) -> None:
    """The coverage phase sends every optional parameter, `user` as 150 zeros: no such
    user, so the app answers 404 before it reads the rest. Drop it from the coverage cases
    that test another part of the request, so that those parts are what gets refused."""
    meta = case.meta
    if (
        meta is not None
        and meta.phase.name == TestPhase.COVERAGE
        and getattr(meta.phase.data, "parameter", None) != "user"
        and isinstance(case.query, dict)
    ):
        case.query.pop("user", None)


@pytest.fixture(scope="module")
async def api(engine: AsyncEngine, settings: Settings) -> AsyncIterator[Backend]:
    """The app on the module's migrated database (each backend), seeded."""
    seeded = await _seed(engine)
    app = create_app(settings)
    # The schema the cases come from is the one this app serves (this also starts the
    # app's lifespan in schemathesis's ASGI client).
    served = schemathesis.openapi.from_asgi(OPENAPI_PATH, app, config=CONFIG)
    assert served.raw_schema == SCHEMA.raw_schema
    inspector = Inspector(settings)
    _Current.backend = Backend(app=app, seeded=seeded, inspector=inspector)
    try:
        yield _Current.backend
    finally:
        _Current.backend = None
        inspector.close()
        # Ends the app's lifespan, which disposes of its engine.
        asgi.shutdown_lifespans()


@SCHEMA.parametrize()
@hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    print_blob=True,
)
def test_api_conforms_to_schema(case: schemathesis.Case, api: Backend) -> None:
    """No 5xx (an exception the app raises fails the test too), responses as the schema
    says, bad input refused, and nothing written by a request refused with a 4xx."""
    _drop_coverage_user(case)
    try:
        before = api.inspector.snapshot()
        response = case.call()
        api.statuses[case.operation.label][response.status_code] += 1
        if 400 <= response.status_code < 500:
            assert api.inspector.snapshot() == before, (
                f"{case.operation.label} answered {response.status_code} but changed the "
                f"memories or their events:\n{case.as_curl_command()}"
            )
        case.validate_response(response, checks=CHECKS)
    except BaseException:
        api.failed.add(case.operation.label)
        raise


MUST_SUCCEED = {
    "PUT /api/v1/memories": {200, 201},
    "GET /api/v1/memories": {200},
    "GET /api/v1/memories/{memory_id}": {200},
    "PATCH /api/v1/memories/{memory_id}": {200},
    "DELETE /api/v1/memories/{memory_id}": {200},
    "POST /api/v1/memories/{memory_id}/restore": {200},
    "GET /api/v1/recall": {200},
    "POST /api/v1/search": {200},
    "POST /api/v1/context": {200},
    "GET /api/v1/namespaces": {200},
}
"""The successes each operation must have had in the run: proof that the cases reached
real data rather than stopping at 404s and 422s."""


def test_run_reached_real_data(api: Backend) -> None:
    """Each operation whose run passed in this session answered each of its successes at
    least once on this backend (the hook steers cases to the seeded data)."""
    assert set(MUST_SUCCEED) == {
        f"{method.upper()} {path}"
        for path, methods in SCHEMA.raw_schema["paths"].items()
        for method in methods
    }, "an operation was added or renamed: list its successes here"
    ran = {
        label: codes for label, codes in api.statuses.items() if codes and label not in api.failed
    }
    if not ran:
        pytest.skip("test_api_conforms_to_schema did not run or pass on this backend")
    missing = {label: sorted(MUST_SUCCEED[label] - set(codes)) for label, codes in ran.items()}
    assert not {label: codes for label, codes in missing.items() if codes}, (
        f"never answered these successes: {missing}; statuses seen: {dict(ran)}"
    )
