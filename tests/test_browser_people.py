"""Managing people in a real browser: creating users, deactivating one who is logged in
elsewhere (their page and their API token stop working at once), and screenshots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from tests.browser_support import (
    PASSWORD,
    AppData,
    Browsing,
    Viewport,
    assert_no_errors_except,
    expect,
    log_in,
    logged_in,
    screenshot,
    set_color_scheme,
)
from webapp.services.tokens import create_token

if TYPE_CHECKING:
    pass

NEW_PASSWORD = "a brand new password"


async def api_status(web: Browsing, secret: str) -> int:
    """The status the live server's API gives this bearer token."""
    async with httpx.AsyncClient(base_url=web.server.url) as client:
        response = await client.get(
            "/api/v1/memories", headers={"Authorization": f"Bearer {secret}"}
        )
    return response.status_code


async def test_deactivated_user_is_logged_out_and_their_token_refused(
    web: Browsing, app_data: AppData
) -> None:
    """An admin deactivates alice while she is logged in elsewhere: her next page load goes
    to the login page and her agent's token gets 401; reactivated, the token works again."""
    root = await app_data.create_user("root", PASSWORD, is_admin=True)
    alice = await app_data.create_user("alice", PASSWORD)
    await app_data.remember(alice, key="tea")
    _token, secret = await create_token(app_data.db, user=alice, name="alice-agent")
    hers = await logged_in(web, alice)
    await hers.goto("/memories")
    await expect(hers.locator("li.memory-row")).to_have_count(1)
    assert await api_status(web, secret) == 200
    admin = await logged_in(web, root)
    await admin.goto("/users")
    await admin.get_by_role("link", name="alice", exact=True).click()
    await expect(admin.locator("main h1")).to_have_text("alice")

    await admin.get_by_role("button", name="Deactivate").click()

    await expect(admin.locator("#status")).to_contain_text("alice is deactivated")
    await expect(admin.get_by_role("button", name="Reactivate")).to_be_visible()
    await hers.reload()
    await expect(hers).to_have_url(f"{web.server.url}/login?next=%2Fmemories")
    await expect(hers.get_by_role("button", name="Log in")).to_be_visible()
    assert await api_status(web, secret) == 401
    await hers.fill("#username", "alice")
    await hers.fill("#password", PASSWORD)
    await hers.click("form button[type=submit]")
    await expect(hers.locator("#login-error")).to_have_text("Wrong username or password.")

    await admin.get_by_role("button", name="Reactivate").click()

    await expect(admin.locator("#status")).to_contain_text("alice is active again")
    assert await api_status(web, secret) == 200
    await log_in(hers, web.server, "alice", PASSWORD)
    await hers.goto("/memories")
    await expect(hers.locator("li.memory-row")).to_have_count(1)
    assert_no_errors_except(web, 400)


async def test_create_a_user_then_set_their_password(web: Browsing, app_data: AppData) -> None:
    """With htmx: a mismatch is shown inline, the fixed form goes to the new user's page,
    and the password set there is the one that logs them in."""
    root = await app_data.create_user("root", PASSWORD, is_admin=True)
    page = await logged_in(web, root)
    await page.goto("/users")
    await page.get_by_text("Add a user").click()
    await page.get_by_label("Username").fill("carol")
    await page.get_by_label("Password (at least 8 characters)").fill(NEW_PASSWORD)
    await page.get_by_label("Password again").fill("something else")

    await page.get_by_role("button", name="Create user").click()

    await expect(page.locator("#new-password-again-error")).to_have_text(
        "The two passwords do not match."
    )
    await expect(page.get_by_label("Username")).to_have_value("carol")
    await page.get_by_label("Password (at least 8 characters)").fill(NEW_PASSWORD)
    await page.get_by_label("Password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Create user").click()

    await expect(page.locator("main h1")).to_have_text("carol")
    await expect(page.locator("#status")).to_have_text("Created user carol.")
    await page.get_by_label("New password (at least 8 characters)").fill(PASSWORD)
    await page.get_by_label("New password again").fill(PASSWORD)
    await page.get_by_role("button", name="Set password").click()
    await expect(page.locator("#status")).to_have_text("New password set for carol.")

    other = await web.new_page()
    await log_in(other, web.server, "carol", PASSWORD)
    await expect(other.locator("main h1")).to_be_visible()
    assert "/login" not in other.url
    assert_no_errors_except(web, 422)


async def test_people_without_javascript(web: Browsing, app_data: AppData) -> None:
    """Plain forms: make an admin, deactivate and reactivate, each a redirect with a flash."""
    root = await app_data.create_user("root", PASSWORD, is_admin=True)
    await app_data.create_user("bob", PASSWORD)
    page = await logged_in(web, root, java_script_enabled=False)
    await page.goto("/users/bob")

    await page.get_by_role("button", name="Make an admin").click()
    await expect(page.locator("#status")).to_have_text("bob is now an admin.")
    await page.get_by_role("button", name="Deactivate").click()
    await expect(page.locator("#status")).to_contain_text("bob is deactivated")
    await page.goto("/users")
    row = page.locator(".users-table tbody tr", has=page.get_by_role("link", name="bob"))
    await expect(row.locator(".badge")).to_have_text(["admin", "inactive"])
    await page.goto("/users/root")
    response = await page.get_by_role("button", name="Make an ordinary user").is_disabled()
    assert response, "one's own admin rights are not offered for removal"
    web.assert_no_errors()


async def test_screenshots_of_the_people_pages(web: Browsing, app_data: AppData) -> None:
    """/users and /users/{name}: light and dark, desktop and a 390 px phone, no sideways
    scroll on the phone."""
    root = await app_data.create_user("root", PASSWORD, is_admin=True)
    dana = await app_data.create_user("dana", PASSWORD)
    await app_data.create_user("eli-the-long-named-agent-user", PASSWORD)
    for n in range(6):
        await app_data.remember(dana, key=f"note-{n}")
    viewports: tuple[Viewport, ...] = ("desktop", "phone")
    for viewport in viewports:
        page = await logged_in(web, root, viewport=viewport)
        for name, path in (("users", "/users"), ("user", "/users/dana")):
            await page.goto(path)
            await expect(page.locator("main h1")).to_be_visible()
            if name == "users":
                await page.get_by_text("Add a user").click()
            for scheme in ("light", "dark"):
                await set_color_scheme(page, scheme)  # type: ignore[arg-type]
                path_saved = await screenshot(page, f"{name}-{scheme}-{viewport}")
                assert path_saved.stat().st_size > 0
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways at {viewport}"
    web.assert_no_errors()
