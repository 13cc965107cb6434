"""Erasing a user in a real browser, then looking for anything of theirs: the list, search,
the API with an admin's token and an export (issue 14 points 4 and 10)."""

from __future__ import annotations

from tests.browser_support import AppData, Browsing, expect, screenshot
from tests.test_browser import PASSWORD, assert_no_errors_except, logged_in
from webapp.services.tokens import create_token
from webapp.services.transfer.export import export_jsonl

WORD = "zqxbrowserword"


async def _erase_page(web: Browsing, app_data: AppData, *, java_script_enabled: bool) -> None:
    root = await app_data.create_user("root", PASSWORD, is_admin=True)
    victim = await app_data.create_user("vicbrowser", PASSWORD)
    await app_data.create_user("bob", PASSWORD)
    await app_data.remember(victim, namespace=f"notes/{WORD}", key=f"k-{WORD}", content=WORD)
    await app_data.remember(victim, key="tea", content=f"tea and {WORD}", tags=[WORD])
    page = await logged_in(web, root, java_script_enabled=java_script_enabled)
    await page.goto("/users")
    await page.get_by_role("link", name="Erase vicbrowser").click()
    await expect(page.locator("h1")).to_have_text("Erase vicbrowser?")
    await expect(page.locator("#erase-memories")).to_have_text("2")
    await expect(page.locator("#erase-events")).to_have_text("2")
    if java_script_enabled:
        await screenshot(page, "erase-preview")

    await page.fill("input[name=confirm_username]", "vicbrowse")
    await page.get_by_role("button", name="Erase vicbrowser for good").click()
    await expect(page.locator("#erase-error")).to_contain_text("Type the username 'vicbrowser'")
    confirm = page.locator("input[name=confirm_username]")
    await expect(confirm).to_have_attribute("aria-invalid", "true")
    if java_script_enabled:
        await screenshot(page, "erase-wrong-confirmation")

    await page.fill("input[name=confirm_username]", "vicbrowser")
    await page.get_by_role("button", name="Erase vicbrowser for good").click()
    await page.wait_for_url("**/users")
    await expect(page.locator(".flash")).to_contain_text(
        "Erased user vicbrowser: 2 memories, 2 events, 0 tokens."
    )
    await expect(page.locator(".users-table tbody th > a")).to_have_text(["bob", "root"])

    await page.goto(f"/memories?q={WORD}&state=all")
    await expect(page.locator("li.memory-row")).to_have_count(0)
    await page.goto("/memories?state=all")
    await expect(page.locator("li.memory-row")).to_have_count(0)
    assert WORD not in await page.content()

    _token, secret = await create_token(app_data.db, user=root, name="check")
    api = await page.request.get(
        "/api/v1/memories?state=all", headers={"Authorization": f"Bearer {secret}"}
    )
    assert api.status == 200 and (await api.json())["items"] == []
    exported = b"".join([chunk async for chunk in export_jsonl(app_data.db)])
    assert exported == b""
    assert_no_errors_except(web, 422)


async def test_erase_a_user_then_find_nothing_of_theirs(web: Browsing, app_data: AppData) -> None:
    """With htmx: the wrong name swaps in the error, the right one goes to the users list."""
    await _erase_page(web, app_data, java_script_enabled=True)


async def test_erase_a_user_without_javascript(web: Browsing, app_data: AppData) -> None:
    """The same with plain forms: a 422 page, then Post/Redirect/Get."""
    await _erase_page(web, app_data, java_script_enabled=False)


async def test_erase_page_on_a_phone_in_dark_mode(web: Browsing, app_data: AppData) -> None:
    """390 px wide, dark: no horizontal scroll."""
    root = await app_data.create_user("root", PASSWORD, is_admin=True)
    victim = await app_data.create_user("vicphone", PASSWORD)
    await app_data.remember(victim, key="tea")
    page = await logged_in(web, root, color_scheme="dark", viewport="phone")
    await page.goto("/users/vicphone/erase")
    await expect(page.locator("#erase-memories")).to_have_text("1")
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    await screenshot(page, "erase-preview-phone-dark")
    await page.goto("/users")
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    web.assert_no_errors()
