"""Browser smoke tests: the live server, Chromium, and htmx loaded offline through SRI and CSP."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser_support import (
    AppData,
    Browsing,
    ColorScheme,
    Viewport,
    expect,
    screenshot,
    set_color_scheme,
    set_viewport,
    wait_for_htmx,
)
from webapp.services.users import list_users
from webapp.settings import HTMX_URL

if TYPE_CHECKING:
    from playwright.async_api import Page

MISSING = "/no-such-page"


async def test_error_page_loads_htmx(web: Browsing, page: Page) -> None:
    """The 404 page renders and htmx, served at its CDN address, passes SRI and CSP."""
    response = await page.goto(MISSING)

    assert response is not None and response.status == 404
    await expect(page.locator("main h1")).to_have_text("404")
    await wait_for_htmx(page)
    assert await page.evaluate("typeof window.htmx") == "object"
    web.assert_no_errors()
    assert web.log(page).blocked_requests == []


async def test_tampered_htmx_is_refused(web: Browsing, htmx_js: bytes) -> None:
    """A changed htmx body fails the integrity check: the browser refuses to run it."""
    page = await web.new_page(htmx_body=htmx_js + b"\n/* tampered */\n")

    async with page.expect_console_message(lambda m: "integrity" in m.text) as message:
        await page.goto(MISSING)
    await page.wait_for_load_state("load")

    assert HTMX_URL in (await message.value).text
    assert await page.evaluate("typeof window.htmx") == "undefined"


async def test_page_renders_without_javascript(web: Browsing) -> None:
    """With JavaScript off the page still renders, and no script runs."""
    page = await web.new_page(java_script_enabled=False)

    await page.goto(MISSING)

    await expect(page.locator("main h1")).to_have_text("404")
    assert await page.evaluate("typeof window.htmx") == "undefined"
    web.assert_no_errors()


async def test_other_hosts_are_blocked(web: Browsing, page: Page) -> None:
    """Requests off this machine are aborted at once, never left to hang."""
    with pytest.raises(Exception, match="ERR_BLOCKED_BY_CLIENT"):
        await page.goto("https://example.com/")

    assert web.log(page).blocked_requests == ["https://example.com/"]


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_screenshots(
    web: Browsing, page: Page, scheme: ColorScheme, viewport: Viewport
) -> None:
    """The error page in both color schemes and both viewports, saved for review."""
    await set_color_scheme(page, scheme)
    await set_viewport(page, viewport)
    await page.goto(MISSING)

    path = await screenshot(page, f"error-404-{viewport}-{scheme}")

    assert path.stat().st_size > 0
    assert path.parent.name == web.backend
    dark = await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark == (scheme == "dark")
    assert await page.evaluate("innerWidth") == (1280 if viewport == "desktop" else 390)


async def test_app_data_writes_to_the_live_database(app_data: AppData) -> None:
    """app_data creates users and memories on the server's database, and reset empties it."""
    alice = await app_data.create_user("alice", is_admin=True)
    await app_data.remember(alice, key="tea", content="Likes green tea.", tags=["drinks"])

    [summary] = await list_users(app_data.db)
    assert (summary.user.username, summary.user.is_admin, summary.active) == ("alice", True, 1)

    await app_data.reset()
    assert await list_users(app_data.db) == []
