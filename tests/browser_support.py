"""Browser-test support: a live server, Debian's Chromium via Playwright, htmx served offline.

The fixtures in conftest.py use these pieces; tests use the helpers at the bottom. Playwright
is imported only when a browser test needs it, so the rest of the suite runs without it.
Outside CI a missing Chromium, Playwright or npm skips the browser tests; under CI=true it
fails them (CI must never pass by skipping).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI

from tests.factories import password_hash
from webapp import migrate
from webapp.db import Database, create_engine, write_connection
from webapp.main import create_app
from webapp.models import LongTermMemory, MemoryCreate, User, UserCreate, metadata
from webapp.services.memories import remember
from webapp.services.principal import Principal
from webapp.services.users import create_user
from webapp.settings import HTMX_INTEGRITY, HTMX_URL, Settings

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Locator,
        Page,
        Route,
        WebError,
    )

IN_CI = os.environ.get("CI", "").lower() == "true"
REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
SCREENSHOTS_DIR = ARTIFACTS_DIR / "screenshots"
FAILURES_DIR = ARTIFACTS_DIR / "failures"
PASSWORD = "correct horse battery"
"""The password the browser tests give the users they create."""
HTTP_STATUS_ERROR = "Failed to load resource: the server responded with a status of"

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
TIMEOUT_MS = 10_000
"""Playwright's default timeout for actions and waits on a local server."""

Viewport = Literal["desktop", "phone"]
ColorScheme = Literal["light", "dark"]
VIEWPORTS: dict[str, dict[str, int]] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}


def unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing tool, or fail it under CI=true."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: browser tests are required)", pytrace=False)
    pytest.skip(reason)


def __getattr__(name: str) -> Any:
    """`from tests.browser_support import expect`: Playwright's expect, loaded on first use.

    Without Playwright the importing test module is skipped (failed under CI=true).
    """
    if name != "expect":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from playwright.async_api import expect
    except ImportError as exc:
        message = f"playwright is not installed ({exc}); pip install -e '.[test]'"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: browser tests are required)", pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return expect


# --- htmx, served by the tests at its CDN address ------------------------------------------


def htmx_package() -> tuple[str, str, str]:
    """(package, version, path in the package) of HTMX_URL, a jsDelivr npm address."""
    match = re.search(r"/npm/(?P<name>[^@/]+)@(?P<version>[^/]+)/(?P<path>.+)$", HTMX_URL)
    if match is None:
        raise AssertionError(f"HTMX_URL is not a jsDelivr npm address: {HTMX_URL}")
    return match["name"], match["version"], match["path"]


def sri_digest(body: bytes) -> str:
    """The `integrity` value (sha384) of body."""
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


def npm_pack(package: str, what: str) -> bytes:
    """The tarball of package ("name@version") from `npm pack`; unavailable() if npm fails."""
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as tmp:
        command = ["npm", "pack", package, "--json", "--pack-destination", tmp]
        try:
            result = subprocess.run(
                command, cwd=tmp, capture_output=True, text=True, timeout=180, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            unavailable(f"cannot fetch {what} for the browser tests: {' '.join(command)}: {exc}")
        if result.returncode != 0:
            unavailable(
                f"cannot fetch {what} for the browser tests: {' '.join(command)} exited "
                f"{result.returncode}: {result.stderr.strip()[-500:]}"
            )
        return (Path(tmp) / json.loads(result.stdout)[0]["filename"]).read_bytes()


def fetch_htmx(cache_dir: Path) -> bytes:
    """The file behind HTMX_URL, from `npm pack` (cached in cache_dir, checked against SRI)."""
    name, version, path = htmx_package()
    cached = cache_dir / f"{name}-{version}" / path
    if cached.is_file() and sri_digest(cached.read_bytes()) == HTMX_INTEGRITY:
        return cached.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(npm_pack(f"{name}@{version}", "htmx"))) as archive:
        member = archive.extractfile(f"package/{path}")
        if member is None:
            raise AssertionError(f"{name}@{version} has no package/{path}")
        body = member.read()
    if sri_digest(body) != HTMX_INTEGRITY:
        pytest.fail(
            f"{name}@{version} {path} from npm has integrity {sri_digest(body)}, but "
            f"webapp/settings.py says HTMX_INTEGRITY = {HTMX_INTEGRITY}",
            pytrace=False,
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(body)
    partial.replace(cached)
    return body


# --- the live server -----------------------------------------------------------------------


class LiveServer:
    """The real app under uvicorn on a free 127.0.0.1 port, in a background thread.

    The database is migrated to head in the server's thread before it starts serving.
    """

    def __init__(self, settings: Settings, *, backend: str) -> None:
        self.settings = settings
        self.backend = backend
        self.app: FastAPI = create_app(settings)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            log_config=None,  # leave the test run's logging alone
            log_level="warning",
            access_log=False,
            loop="asyncio",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"live-server-{backend}", daemon=True
        )
        self._error: BaseException | None = None

    def _run(self) -> None:
        """The thread's body: migrate, then serve until stop()."""
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() or stop()
            self._error = exc

    async def _serve(self) -> None:
        """Migrate the database to head, then serve on the bound socket."""
        engine = create_engine(self.settings)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        await self._server.serve(sockets=[self._socket])

    def start(self, timeout: float = 60) -> None:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                error = self._error
                self._socket.close()
                raise RuntimeError(f"the live server did not start: {error!r}") from error
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the live server did not start within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut down cleanly (force after 10 s) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=10)
        self._socket.close()
        if self._error is not None and not isinstance(self._error, SystemExit):
            raise RuntimeError(f"the live server failed: {self._error!r}") from self._error

    def __enter__(self) -> LiveServer:
        """Start the server for a with block."""
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop the server at the end of the with block."""
        self.stop()

    def path_for(self, name: str, /, **params: Any) -> str:
        """The path of the named route (what templates' path_for gives)."""
        return str(self.app.url_path_for(name, **params))

    def url_for(self, name: str, /, **params: Any) -> str:
        """The absolute URL of the named route."""
        return self.url + self.path_for(name, **params)


# --- test data, written beside the server --------------------------------------------------


class AppData:
    """Writes test data into the live server's database: memories through the service layer,
    users directly (with a password hash made once a run)."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.db = Database(self.engine)

    async def reset(self) -> None:
        """Empty every table (users, memories, events, tokens, sessions...)."""
        async with write_connection(self.engine) as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())

    async def create_user(
        self,
        username: str = "alice",
        password: str = "correct horse battery",
        *,
        is_admin: bool = False,
    ) -> User:
        """A saved user who can log in with password (its argon2 hash made once a run)."""
        data = UserCreate(username=username, password=password, is_admin=is_admin)
        return await create_user(self.db, data=data, password_hash=password_hash(password))

    async def remember(
        self,
        user: User,
        *,
        namespace: str = "facts",
        key: str = "favourite-tea",
        content: str = "The user likes green tea.",
        **fields: Any,
    ) -> LongTermMemory:
        """A memory of user's, written as that user would (fields: tags, importance...)."""
        data = MemoryCreate(namespace=namespace, key=key, content=content, **fields)
        result = await remember(self.db, principal=Principal.of_user(user), data=data)
        return result.memory

    async def close(self) -> None:
        """Close the engine's connections."""
        await self.engine.dispose()


# --- the browser -----------------------------------------------------------------------------


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium under Playwright (never a downloaded browser)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        unavailable(f"playwright is not installed ({exc}); pip install -e '.[test]'")
    if not os.access(CHROMIUM_PATH, os.X_OK):
        unavailable(f"{CHROMIUM_PATH} not found; apt-get install chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class BrowserLog:
    """What one browser context reported: console errors, uncaught errors, blocked requests."""

    backend: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Console errors and uncaught page errors (CSP and SRI failures are console errors)."""
        return [*self.console_errors, *self.page_errors]

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.console_errors.clear()
        self.page_errors.clear()
        self.blocked_requests.clear()


_LOGS: dict[BrowserContext, BrowserLog] = {}
_HTTP_STATUS_ERROR = "Failed to load resource: the server responded with a status of"


def browser_log(target: BrowserContext | Page) -> BrowserLog:
    """The log of a context made by Browsing.new_context (or of a page's context)."""
    if target in _LOGS:
        return _LOGS[target]  # type: ignore[index]
    return _LOGS[target.context]  # type: ignore[union-attr]


def _record_console(log: BrowserLog, message: ConsoleMessage) -> None:
    """Keep console errors, with where they came from.

    A page's own HTTP error status (a 404 page the test asked for) is the test's to check
    on the response, not a browser error; a failed subresource still is one.
    """
    if message.type != "error":
        return
    where = message.location.get("url") or ""
    page_url = message.page.url if message.page else ""
    if where == page_url and message.text.startswith(_HTTP_STATUS_ERROR):
        return
    log.console_errors.append(f"{message.text} [{where or page_url}]")


def _record_page_error(log: BrowserLog, error: WebError) -> None:
    """Keep uncaught exceptions of the pages' scripts."""
    where = error.page.url if error.page else ""
    log.page_errors.append(f"{error.error} [{where}]")


class Browsing:
    """One test's view of the browser: its contexts, their logs, the live server."""

    def __init__(self, browser: Browser, server: LiveServer, htmx_js: bytes) -> None:
        self.browser = browser
        self.server = server
        self.htmx_js = htmx_js
        self.contexts: list[BrowserContext] = []

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql': the live server's database."""
        return self.server.backend

    async def new_context(
        self,
        *,
        java_script_enabled: bool = True,
        color_scheme: ColorScheme = "light",
        viewport: Viewport = "desktop",
        htmx_body: bytes | None = None,
        **options: Any,
    ) -> BrowserContext:
        """A fresh context (own cookies) on the live server, with htmx served offline.

        A phone viewport is also a touch, mobile browser. htmx_body replaces the served
        htmx file (to prove SRI is checked); options go to Browser.new_context.
        """
        if viewport == "phone":
            options.setdefault("is_mobile", True)
            options.setdefault("has_touch", True)
        context = await self.browser.new_context(
            base_url=self.server.url,
            java_script_enabled=java_script_enabled,
            color_scheme=color_scheme,
            viewport=VIEWPORTS[viewport],  # type: ignore[arg-type]
            **options,
        )
        context.set_default_timeout(TIMEOUT_MS)
        log = BrowserLog(backend=self.backend)
        _LOGS[context] = log
        self.contexts.append(context)
        context.on("console", lambda message: _record_console(log, message))
        context.on("weberror", lambda error: _record_page_error(log, error))
        body = self.htmx_js if htmx_body is None else htmx_body

        async def local_only(route: Route) -> None:
            """Let requests to this machine through; abort the rest at once."""
            if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
                await route.continue_()
            else:
                log.blocked_requests.append(route.request.url)
                await route.abort("blockedbyclient")

        async def serve_htmx(route: Route) -> None:
            """Answer the CDN address of htmx with the npm file, as jsDelivr would."""
            await route.fulfill(
                status=200,
                body=body,
                headers={
                    "content-type": "application/javascript",
                    "access-control-allow-origin": "*",
                },
            )

        # The route registered last is tried first: htmx, then everything else.
        await context.route("**/*", local_only)
        await context.route(HTMX_URL, serve_htmx)
        return context

    async def new_page(self, **options: Any) -> Page:
        """A page in a new context (new_context's options); e.g. the second tab of a test."""
        context = await self.new_context(**options)
        return await context.new_page()

    def log(self, target: BrowserContext | Page) -> BrowserLog:
        """The log of one of this test's contexts (or of a page's context)."""
        return browser_log(target)

    def errors(self) -> list[str]:
        """Console and page errors of all this test's contexts."""
        return [error for context in self.contexts for error in _LOGS[context].errors]

    def assert_no_errors(self) -> None:
        """Fail when any context logged a console error or an uncaught page error."""
        errors = self.errors()
        assert not errors, "browser errors:\n" + "\n".join(errors)

    async def save_failure_artifacts(self, test_id: str) -> list[Path]:
        """Screenshot, HTML and browser log of every open page, under test-artifacts/failures."""
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_id).strip("_")
        FAILURES_DIR.mkdir(parents=True, exist_ok=True)
        saved: list[Path] = []
        for c, context in enumerate(self.contexts, start=1):
            for p, page in enumerate(context.pages, start=1):
                base = FAILURES_DIR / f"{stem}.context{c}.page{p}"
                log_path, png, html = (Path(f"{base}.{ext}") for ext in ("log", "png", "html"))
                log = _LOGS[context]
                lines = [f"url: {page.url}", *log.errors]
                lines += [f"blocked: {url}" for url in log.blocked_requests]
                try:
                    await page.screenshot(path=png, full_page=True)
                    saved.append(png)
                    html.write_text(await page.content())
                    saved.append(html)
                except Exception as exc:  # a crashed or closed page: keep what we have
                    lines.append(f"could not capture the page: {exc}")
                log_path.write_text("\n".join(lines) + "\n")
                saved.append(log_path)
        return saved

    async def close(self) -> None:
        """Close this test's contexts."""
        for context in self.contexts:
            await context.close()
            _LOGS.pop(context, None)
        self.contexts.clear()


# --- helpers for tests -----------------------------------------------------------------------


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG to test-artifacts/screenshots/<backend>/<name>.png; returns its path.

    caret="initial": hiding the caret leaves `style=""` on every input, which htmx's settle
    then copies onto the swapped-in inputs, and the CSP (style-src 'self') refuses that.
    """
    path = SCREENSHOTS_DIR / browser_log(page).backend / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path, full_page=full_page, caret="initial")
    return path


async def set_color_scheme(page: Page, scheme: ColorScheme) -> None:
    """Switch prefers-color-scheme of page to light or dark."""
    await page.emulate_media(color_scheme=scheme)


async def set_viewport(page: Page, viewport: Viewport) -> None:
    """Resize page to the desktop (1280x800) or phone (390x844) viewport."""
    await page.set_viewport_size(VIEWPORTS[viewport])  # type: ignore[arg-type]


async def wait_for_htmx(page: Page) -> None:
    """Wait until htmx has loaded on page (it passed SRI and CSP)."""
    await page.wait_for_function("typeof window.htmx === 'object'")


async def log_in(page: Page, server: LiveServer, username: str, password: str) -> None:
    """Log in through the login form and wait for the page it leads to."""
    await page.goto(server.path_for("login_form"))
    await page.fill("#username", username)
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("form button[type=submit]")


async def logged_in(
    web: Browsing,
    user: User,
    *,
    java_script_enabled: bool = True,
    color_scheme: ColorScheme = "light",
    viewport: Viewport = "desktop",
) -> Page:
    """A page in a new context, logged in as user (with PASSWORD; it ends on the dashboard)."""
    page = await web.new_page(
        java_script_enabled=java_script_enabled, color_scheme=color_scheme, viewport=viewport
    )
    await log_in(page, web.server, user.username, PASSWORD)
    return page


def row(page: Page, key: str) -> Locator:
    """The list row of the memory with this key."""
    return page.locator("li.memory-row").filter(
        has=page.locator(".memory-key", has_text=re.compile(f"^{re.escape(key)}$"))
    )


def assert_no_errors_except(web: Browsing, *statuses: int) -> None:
    """No browser errors but the "Failed to load resource" of the 4xx statuses provoked."""
    allowed = tuple(f"{HTTP_STATUS_ERROR} {status} " for status in statuses)
    errors = [error for error in web.errors() if not error.startswith(allowed)]
    assert not errors, "browser errors:\n" + "\n".join(errors)
