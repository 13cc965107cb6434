"""The API tokens page in a real browser: create a token, copy its secret, use it on the
API, revoke it after confirming, and see the API refuse it (issue 14 points 6 and 10)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from tests.browser_support import (
    PASSWORD,
    AppData,
    Browsing,
    expect,
    log_in,
    screenshot,
)
from webapp.models import User
from webapp.services.principal import Principal
from webapp.services.tokens import list_tokens

if TYPE_CHECKING:
    from playwright.async_api import Page

SELECTED_TEXT = "(e => e.value.substring(e.selectionStart, e.selectionEnd))(document.activeElement)"


async def api_status(web: Browsing, secret: str) -> int:
    """The status of GET /api/v1/memories with this bearer secret."""
    async with httpx.AsyncClient(base_url=web.server.url) as client:
        response = await client.get(
            "/api/v1/memories", headers={"Authorization": f"Bearer {secret}"}
        )
    return response.status_code


async def token_count(app_data: AppData, user: User) -> int:
    """How many tokens user has, revoked ones included."""
    return len(await list_tokens(app_data.db, principal=Principal.of_user(user)))


async def no_horizontal_scroll(page: Page) -> bool:
    """Whether the page fits its viewport's width."""
    return bool(
        await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


async def test_create_copy_use_revoke_a_token(web: Browsing, app_data: AppData) -> None:
    """With JavaScript: the secret appears once, selected; Copy copies it; the API takes it;
    revoking (confirmed in a dialog) makes the API answer 401."""
    alice = await app_data.create_user("alice", PASSWORD)
    context = await web.new_context()
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    await log_in(page, web.server, "alice", PASSWORD)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Tokens").click()
    await expect(page.locator("main h1")).to_have_text("API tokens")
    await expect(page.locator(".empty")).to_contain_text("No API tokens yet")
    await screenshot(page, "tokens-empty-light-desktop")

    await page.get_by_label("Name (what the token is for)").fill("laptop agent")
    await page.get_by_role("button", name="Create token").click()

    secret_field = page.get_by_label("Select and copy the secret")
    await expect(secret_field).to_be_focused()
    secret = await secret_field.input_value()
    assert secret.startswith("mat_")
    # Autofocus comes first; app.js selects the secret once the page has loaded.
    selected = await page.wait_for_function(
        f"(secret) => {SELECTED_TEXT} === secret", arg=secret, timeout=5000
    )
    assert await selected.json_value(), "selected, ready to copy by hand"
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("#status")).to_contain_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await expect(page.locator(".tokens-table tbody tr")).to_have_count(1)
    await screenshot(page, "tokens-secret-light-desktop")
    assert await api_status(web, secret) == 200

    await page.reload()
    await expect(page.locator("#token-secret")).to_have_count(0)
    assert await token_count(app_data, alice) == 1, "a reload creates nothing"
    await expect(page.locator(".last-used")).not_to_have_text("never")

    await page.get_by_role("link", name="Revoke laptop agent").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Revoke the token “laptop agent”?")
    assert page.url.endswith("/tokens"), "the dialog opens in the page"
    await screenshot(page, "tokens-revoke-dialog-light-desktop")
    await dialog.get_by_role("button", name="Revoke token").click()

    await expect(page.locator("#status")).to_contain_text("Revoked the token “laptop agent”")
    await expect(page.locator(".token-state")).to_contain_text("revoked")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    assert await api_status(web, secret) == 401
    web.assert_no_errors()


async def test_tokens_without_javascript_on_a_dark_phone(web: Browsing, app_data: AppData) -> None:
    """JavaScript off: the POST answer shows the secret (the Copy button stays hidden);
    sending it again is refused; revoke goes through a confirmation page and a redirect."""
    alice = await app_data.create_user("alice", PASSWORD)
    page = await web.new_page(java_script_enabled=False, color_scheme="dark", viewport="phone")
    await log_in(page, web.server, "alice", PASSWORD)
    await page.goto("/tokens")
    await page.get_by_label("Name (what the token is for)").fill("phone agent")
    await page.get_by_role("button", name="Create token").click()

    secret_field = page.get_by_label("Select and copy the secret")
    await expect(secret_field).to_be_visible()
    await expect(page.get_by_role("button", name="Copy")).to_be_hidden()
    secret = await secret_field.input_value()
    assert await no_horizontal_scroll(page)
    await screenshot(page, "tokens-secret-dark-phone")
    assert await api_status(web, secret) == 200

    await page.reload()  # sends the form again

    await expect(page.get_by_role("alert")).to_contain_text("the form was sent again")
    await expect(page.locator("#token-secret")).to_have_count(0)
    assert await token_count(app_data, alice) == 1

    await page.get_by_role("link", name="Revoke phone agent").click()
    await expect(page.locator("main h1")).to_have_text("Revoke the token “phone agent”?")
    assert page.url.endswith("/revoke")
    assert await no_horizontal_scroll(page)
    await screenshot(page, "tokens-revoke-dark-phone")
    await page.get_by_role("button", name="Revoke token").click()

    await expect(page.locator("#status")).to_contain_text("Revoked the token “phone agent”")
    assert page.url.endswith("/tokens")
    await expect(page.locator(".token-state")).to_contain_text("revoked")
    assert await no_horizontal_scroll(page)
    await screenshot(page, "tokens-list-dark-phone")
    assert await api_status(web, secret) == 401
    web.assert_no_errors()


async def test_an_admin_makes_a_token_for_another_user_on_a_phone(
    web: Browsing, app_data: AppData
) -> None:
    """An admin names the owner; the list shows every user's tokens with their owners, and
    fits a 390 px screen."""
    await app_data.create_user("root", PASSWORD, is_admin=True)
    bob = await app_data.create_user("bob", PASSWORD)
    page = await web.new_page(viewport="phone")
    await log_in(page, web.server, "root", PASSWORD)
    await page.goto("/tokens")
    long_name = "bob's long-running research agent"
    await page.get_by_label("Name (what the token is for)").fill(long_name)
    await page.get_by_label("Owner (username)").fill("bob")
    await page.get_by_role("button", name="Create token").click()
    await expect(page.get_by_label("Select and copy the secret")).to_be_focused()
    await page.reload()
    await page.get_by_label("Name (what the token is for)").fill("root's own")
    await page.get_by_role("button", name="Create token").click()
    await expect(page.locator(".tokens-table tbody tr")).to_have_count(2)

    owners = await page.locator(".tokens-table tbody td:nth-child(2)").all_inner_texts()
    assert sorted(owners) == ["bob", "root"]
    assert await token_count(app_data, bob) == 1
    await page.get_by_role("link", name=f"Revoke {long_name}").click()
    await page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    await expect(page.locator("#status")).to_contain_text("Revoked the token")
    assert await no_horizontal_scroll(page)
    await screenshot(page, "tokens-admin-light-phone")
    web.assert_no_errors()
