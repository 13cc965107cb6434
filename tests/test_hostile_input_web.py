"""Hostile input on the admin pages (issue 16, point 6): forms, query strings, cookies,
headers and uploads. Each case gets its 4xx (or a harmless 200 or redirect), never a
5xx; markup comes back escaped; a refused case writes nothing (hostile_support's
fingerprint). The API's and the import command's cases are in test_hostile_input.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.hostile_support import (
    IMG,
    SCRIPT,
    Case,
    Send,
    World,
    form,
    make_world,
    page,
    run_case,
)
from tests.web_support import parse
from webapp.settings import Settings

EVIL = "evil.example"


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The module's settings, with an upload folder of its own."""
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key",
        import_dir=tmp_path_factory.mktemp("imports"),
    )


@pytest.fixture
async def world(app: FastAPI, db: AsyncEngine, session: AsyncSession) -> AsyncIterator[World]:
    """ann, bob and root, their memories and tokens (tables emptied afterwards)."""
    async for built in make_world(app, db, session):
        built.log_in_first = ("ann", "bob", "root")
        yield built


# --- ways of sending peculiar to the pages -----------------------------------------------


def log_in(username: str = "ann", password: str = "correct horse", **fields: str) -> Send:
    """The login form, filled in by someone who loaded it first (its CSRF cookie and field)."""

    async def send(world: World) -> httpx.Response:
        visitor = world.anonymous()
        token = parse(await visitor.get("/login")).select_one("input[name=csrf_token]")
        assert token is not None
        data = {"username": username, "password": password, "csrf_token": token["value"]}
        return await visitor.client.post("/login", data={**data, **fields})

    return send


def with_cookie(method: str, path: str, cookie: str, **data: str) -> Send:
    """ann's request, with her session cookie replaced by cookie."""

    async def send(world: World) -> httpx.Response:
        visitor = await world.web("ann")
        fields = {"csrf_token": visitor.csrf_token, **data}
        client = world.open_client(base_url="http://testserver", Cookie=f"ma_session={cookie}")
        path_ = world.fill(path)
        if method == "GET":
            return await client.get(path_, headers={"accept": "text/html"})
        return await client.post(path_, data=fields, headers={"accept": "text/html"})

    return send


async def tampered_session(world: World) -> httpx.Response:
    """ann's own session cookie with its signature's last character changed."""
    visitor = await world.web("ann")
    cookie = visitor.client.cookies["ma_session"]
    forged = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
    return await with_cookie("POST", "/memories/{tea}/delete", forged)(world)


def with_token_of(other: str, path: str, data: dict[str, str]) -> Send:
    """ann's form, sent with another logged-in session's CSRF token."""

    async def send(world: World) -> httpx.Response:
        foreign = (await world.web(other)).csrf_token
        visitor = await world.web("ann")
        return await visitor.client.post(
            world.fill(path), data={**data, "csrf_token": foreign}, headers={"accept": "text/html"}
        )

    return send


def post_raw(path: str, body: bytes, who: str = "ann") -> Send:
    """A urlencoded form body sent byte for byte (with who's CSRF token in the header)."""

    async def send(world: World) -> httpx.Response:
        visitor = await world.web(who)
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "X-CSRF-Token": visitor.csrf_token,
            "accept": "text/html",
        }
        return await visitor.client.post(world.fill(path), content=body, headers=headers)

    return send


def upload(body: bytes, filename: str = "m.jsonl") -> Send:
    """root uploads a JSON Lines file on the import page (a dry run: nothing imported)."""

    async def send(world: World) -> httpx.Response:
        visitor = await world.web("root")
        headers = {"accept": "text/html", "HX-Request": "true", "X-CSRF-Token": visitor.csrf_token}
        return await visitor.client.post(
            "/import", files={"file": (filename, body)}, headers=headers
        )

    return send


def hostile_then_run(body: bytes) -> Send:
    """Upload a file with rejected lines, then ask to import it anyway."""

    async def send(world: World) -> httpx.Response:
        report = await upload(body)(world)
        assert report.status_code == 200, report.text
        upload_id = report.headers["HX-Push-Url"].rsplit("/", 1)[1]
        return await (await world.web("root")).post(f"/import/{upload_id}/run")

    return send


# --- checks --------------------------------------------------------------------------------


def goes_to(expected: str):  # type: ignore[no-untyped-def]
    """Check: the redirect stays in this app, at expected."""

    def check(response: httpx.Response, world: World) -> None:
        assert response.headers["location"] == expected

    return check


def hidden_next_is(expected: str):  # type: ignore[no-untyped-def]
    def check(response: httpx.Response, world: World) -> None:
        field = parse(response).select_one("input[name=next]")
        assert field is not None and field["value"] == expected

    return check


def search_box_holds(expected: str):  # type: ignore[no-untyped-def]
    """Check: the page echoes the search as the search box's value (escaped in the HTML)."""

    def check(response: httpx.Response, world: World) -> None:
        box = parse(response).select_one("input[name=q]")
        assert box is not None and box["value"] == expected

    return check


def rows_are(*keys: str):  # type: ignore[no-untyped-def]
    """Check: the browser lists exactly the memories with these keys."""

    def check(response: httpx.Response, world: World) -> None:
        shown = [link.get_text(strip=True) for link in parse(response).select(".memory-key")]
        assert sorted(shown) == sorted(keys), shown

    return check


def users_are(*names: str):  # type: ignore[no-untyped-def]
    """Check: the people page lists exactly these users."""

    def check(response: httpx.Response, world: World) -> None:
        shown = [link.get_text(strip=True) for link in parse(response).select("tbody th a")]
        assert sorted(shown) == sorted(names), shown

    return check


def tea_content_is(expected: str):  # type: ignore[no-untyped-def]
    """Check: ann's tea now holds expected (read back through the page)."""

    async def check(response: httpx.Response, world: World) -> None:
        shown = await (await world.web("ann")).get(world.fill("/memories/{tea}"))
        assert expected in parse(shown).select_one("textarea[name=content]").get_text()

    return check


def shows_text(text: str):  # type: ignore[no-untyped-def]
    """Check: the response shows text to the reader (so it was escaped, not parsed)."""

    def check(response: httpx.Response, world: World) -> None:
        assert text in parse(response).get_text()

    return check


async def tea_page_shows_the_tag(response: httpx.Response, world: World) -> None:
    """Check: the stored tag is shown as text on the memory's page, never as markup."""
    shown = await (await world.web("ann")).get(world.fill("/memories/{tea}"))
    assert SCRIPT not in shown.text
    assert SCRIPT in parse(shown).get_text()


def rejected_lines(count: int):  # type: ignore[no-untyped-def]
    """Check: the dry run lists count rejected lines and offers no import."""

    def check(response: httpx.Response, world: World) -> None:
        report = parse(response)
        assert report.select_one("#count-rejected").get_text() == str(count)
        assert len(report.select(".rejected-table tbody tr")) == count
        assert report.select_one("form[action$='/run']") is None

    return check


def jsonl(*records: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


LINE = {"user": "ann", "namespace": "facts", "key": "up", "content": "c"}
HOSTILE_UPLOAD = (
    jsonl(
        {**LINE, "key": SCRIPT},
        {**LINE, "content": "a\x00b"},
        {**LINE, "importance": 1.5},
        {**LINE, "expires_at": "10000-01-01T00:00:00Z"},
        {**LINE, "user": IMG},
    )
    + b'{"user": "ann", "namespace": "facts", "key": "k", "content": "\xff"}\n'
    + b'{"user": "ann", "importance": NaN}\n'
)
TEA = "/memories/{tea}"
PASSWORDS = {"password": "p" * 10, "password_again": "p" * 10}
GO_HOME = goes_to("/")
SET = TEA + "/importance"
EDIT = TEA + "/edit"
PREVIEW = "/memories/bulk/preview?scope=selected&ids={tea}&action="
APPLY = "/memories/bulk/apply"
FTS = '" * NEAR ( ) : ^ - tea*'

WEB_CASES = [
    # login: open redirects, odd text, CSRF
    Case("login-next-//host", log_in(next=f"//{EVIL}"), 303, GO_HOME, writes=True),
    Case("login-next-https", log_in(next=f"https://{EVIL}/"), 303, GO_HOME, writes=True),
    Case("login-next-backslash", log_in(next=f"/\\{EVIL}"), 303, GO_HOME, writes=True),
    Case("login-next-javascript", log_in(next="javascript:alert(1)"), 303, GO_HOME, writes=True),
    Case("login-next-tab", log_in(next=f"/\t/{EVIL}"), 303, GO_HOME, writes=True),
    Case("login-form-next", page(f"/login?next=//{EVIL}", who=None), 200, hidden_next_is("/")),
    Case("login-username-NUL", log_in(username="ann\x00"), 400, shows_text("Wrong username")),
    Case("login-username-markup", log_in(username=SCRIPT), 400, shows_text("Wrong username")),
    Case("login-password-huge", log_in(password="p" * 5000), 422),
    Case("login-no-csrf", log_in(csrf_token=""), 403),
    # edits: numbers, text, dates, ids
    Case("importance-NaN", form(SET, {"importance": "NaN"}), 422),
    Case("importance-Infinity", form(SET, {"importance": "Infinity"}), 422),
    Case("importance-1e309", form(SET, {"importance": "1e309"}), 422),
    Case("importance-1.5", form(SET, {"importance": "1.5"}), 422),
    Case("importance--0.1", form(SET, {"importance": "-0.1"}), 422),
    Case("importance-markup", form(SET, {"importance": SCRIPT}, htmx=True), 422),
    Case("importance-bobs", form("/memories/{bob_secret}/importance", {"importance": "1"}), 404),
    Case("tag-NUL", form(TEA + "/tags/add", {"tag": "a\x00"}), 422),
    Case(
        "tag-markup",
        form(TEA + "/tags/add", {"tag": SCRIPT}),
        303,
        tea_page_shows_the_tag,
        writes=True,
    ),
    Case("content-NUL", form(EDIT, {"content": "a\x00b", "expires_at": ""}), 422),
    # Forms decode percent-escapes that are not UTF-8 as U+FFFD (Starlette): valid text.
    Case(
        "content-invalid-utf8",
        post_raw(EDIT, b"content=%FF%FEok&expires_at="),
        303,
        tea_content_is("\ufffd\ufffdok"),
        writes=True,
    ),
    Case("content-too-big", form(EDIT, {"content": "x" * 70_000, "expires_at": ""}), 422),
    Case("expiry-year-10000", form(EDIT, {"content": "x", "expires_at": "10000-01-01T00:00"}), 422),
    Case(
        "expiry-past-9999-utc",
        form(EDIT, {"content": "x", "expires_at": "9999-12-31T23:59-05:00"}),
        422,
    ),
    Case(
        "revert-no-such-event", form(TEA + "/revert", {"event": "2147483647", "version": "1"}), 404
    ),
    Case("form-over-body-limit", form(EDIT, {"content": "x" * (2 * 1024 * 1024)}), 413),
    # CSRF, HX-Request, method overrides, cookies
    Case("csrf-of-another-session", with_token_of("bob", SET, {"importance": "1"}), 403),
    Case("hx-request-without-token", form(SET, {"importance": "1"}, htmx=True, csrf=False), 403),
    Case(
        "override-header-no-token",
        form(TEA + "/delete", {}, csrf=False, **{"X-HTTP-Method-Override": "GET"}),
        403,
    ),
    Case("override-param", form(TEA + "?_method=DELETE", {}), 405),
    Case("delete-by-get", page(TEA + "/delete"), 405),
    Case("session-tampered", tampered_session, 303, goes_to("/login")),
    Case(
        "session-garbage",
        with_cookie("GET", "/memories", '%00.x\\"' * 500),
        303,
        goes_to("/login?next=%2Fmemories"),
    ),
    Case("hx-request-anonymous", page("/memories", who=None, htmx=True), 401),
    # query strings of the browser and the lists
    Case("q-markup", page("/memories?q=" + quote(SCRIPT)), 200, search_box_holds(SCRIPT)),
    # Operators are no syntax: NEAR is a word that no memory holds; the rest is punctuation.
    Case("q-fts-operators", page("/memories?q=" + quote(FTS)), 200, rows_are()),
    Case(
        "q-fts-punctuation",
        page("/memories?q=" + quote('"tea" ( ) : ^ - + *')),
        200,
        rows_are("tea"),
    ),
    Case("q-percent-in-word", page("/memories?q=100%25"), 200, rows_are("pct")),
    Case("q-only-punctuation", page("/memories?q=%25"), (200, 400)),
    Case("q-NUL", page("/memories?q=tea%00"), (200, 400)),
    Case("namespace-like-underscore", page("/memories?namespace=f_cts/"), 200, rows_are()),
    Case("min-importance-NaN", page("/memories?min_importance=NaN"), (200, 400, 422)),
    Case("expiring-within-1e309", page("/memories?expiring_within=1e309"), (200, 400, 422)),
    Case("sort-markup", page("/memories?sort=" + quote(SCRIPT)), (200, 400, 422)),
    Case("cursor-garbage", page("/memories?cursor=" + "A" * 300), 400),
    Case("user-of-someone-else", page("/memories?user=bob"), 200, rows_are()),
    Case("trash-user-markup", page("/trash?user=" + quote(SCRIPT), who="root"), (200, 404)),
    Case("users-q-percent", page("/users?q=%25", who="root"), 200, users_are()),
    Case("users-q-underscore", page("/users?q=a_n", who="root"), 200, users_are()),
    Case("users-q-plain", page("/users?q=an", who="root"), 200, users_are("ann")),
    Case("users-q-NUL", page("/users?q=a%00", who="root"), 200, users_are()),
    Case(
        "users-cursor-NUL",
        page("/users?after=%00", who="root"),
        200,
        users_are("ann", "bob", "root"),
    ),
    Case("user-page-NUL", page("/users/ann%00", who="root"), 404),
    Case("user-password-NUL", form("/users/ann%00/password", PASSWORDS, "root"), 404),
    Case("user-erase-NUL", page("/users/ann%00/erase", who="root"), 404),
    Case("tokens-user-NUL", page("/tokens?user=ann%00", who="root"), (200, 404)),
    Case("namespaces-user-NUL", page("/namespaces?user=ann%00", who="root"), (200, 404)),
    Case("duplicates-user-NUL", page("/duplicates?user=ann%00", who="root"), (200, 404)),
    Case("long-url", page("/memories?q=" + "a" * 60_000), (200, 400, 414, 422)),
    Case("long-header", page("/memories", **{"X-Filler": "a" * 100_000}), 200),
    # tokens, people, bulk, trash
    Case(
        "token-name-markup",
        form("/tokens", {"name": SCRIPT, "owner": "ann"}),
        200,
        shows_text(SCRIPT),
        writes=True,
    ),
    Case("token-name-NUL", form("/tokens", {"name": "a\x00", "owner": "ann"}), 422),
    Case("token-for-bob", form("/tokens", {"name": "mine", "owner": "bob"}), 404),
    Case(
        "user-name-markup",
        form("/users", {"username": IMG, **PASSWORDS}, "root"),
        422,
        shows_text(IMG),
    ),
    Case("user-name-NUL", form("/users", {"username": "a\x00", **PASSWORDS}, "root"), 422),
    Case(
        "user-email-NUL",
        form("/users", {"username": "eve", "email": "e\x00@x", **PASSWORDS}, "root"),
        422,
    ),
    Case("user-by-non-admin", form("/users", {"username": "eve", **PASSWORDS}), 403),
    Case("bulk-importance-NaN", page(PREVIEW + "set_importance&value=NaN"), 422),
    Case(
        "bulk-expiry-year-10000",
        form(APPLY, {"action": "set_expiry", "value": "10000-01-01T00:00", "ids": "{tea}"}),
        422,
    ),
    Case(
        "bulk-expiry-past-9999-utc",
        form(APPLY, {"action": "set_expiry", "value": "9999-12-31T23:59-05:00", "ids": "{tea}"}),
        422,
    ),
    Case("bulk-bobs-id", form(APPLY, {"action": "delete", "ids": "{bob_secret}"}), (404, 409)),
    Case(
        "bulk-undo-forged", form("/memories/bulk/undo", {"token": "bulk-delete:1:2026-01-01"}), 404
    ),
    Case("trash-restore-bobs", form("/trash/restore", {"id": "{bob_secret}"}), 404),
    # the import page
    Case("import-hostile-lines", upload(HOSTILE_UPLOAD), 200, rejected_lines(6)),
    Case("import-hostile-then-run", hostile_then_run(HOSTILE_UPLOAD), 422),
    Case("import-filename-traversal", upload(jsonl(LINE), filename="../../etc/passwd"), 200),
    Case("import-report-traversal", page("/import/..%2F..%2Fetc%2Fpasswd", who="root"), 404),
    Case("import-report-markup", page("/import/" + quote(SCRIPT, safe=""), who="root"), 404),
]


@pytest.mark.parametrize("case", WEB_CASES, ids=[case.name for case in WEB_CASES])
async def test_hostile_page_input(world: World, case: Case) -> None:
    await run_case(world, case)
