"""Bulk actions in a real browser: three checked rows, and a filter-wide delete undone from
Trash without JavaScript; screenshots of the preview page (light, dark, 390 px)."""

from __future__ import annotations

from typing import Any

from tests.browser_support import AppData, Browsing, expect, log_in, screenshot, set_viewport
from tests.test_browser import PASSWORD, fetch, row
from webapp.models import LongTermMemory, User


async def _all(app_data: AppData, memories: list[LongTermMemory], owner: User) -> list[Any]:
    return [await fetch(app_data, memory, owner) for memory in memories]


async def test_bulk_add_tag_on_three_selected_rows(web: Browsing, app_data: AppData) -> None:
    alice = await app_data.create_user("alice", PASSWORD)
    made = [await app_data.remember(alice, key=key) for key in ("tea", "coffee", "cake", "soup")]
    page = await web.new_page()
    await log_in(page, web.server, "alice", PASSWORD)
    await page.goto("/memories")
    for key in ("tea", "coffee", "cake"):
        await row(page, key).get_by_role("checkbox", name=f"Select {key}").check()
    await page.get_by_label("Action").select_option("add_tag")
    await page.get_by_label("Value", exact=True).fill("Urgent")
    await page.get_by_role("button", name="Selected rows").click()

    await expect(page.locator(".bulk-count")).to_have_text(
        "3 memories selected; nothing changes until you confirm."
    )
    await expect(page.locator(".bulk-sample tbody tr")).to_have_count(3)
    await screenshot(page, "bulk-preview-light")
    assert [memory.tags for memory in await _all(app_data, made, alice)] == [[], [], [], []]

    await page.get_by_role("button", name="Confirm: add tag 3 memories").click()
    await expect(page.locator("#status")).to_have_text("Added tag “urgent” to 3 memories.")
    assert page.url.endswith("/memories")
    tags = [memory.tags for memory in await _all(app_data, made, alice)]
    assert tags == [["urgent"], ["urgent"], ["urgent"], []]
    web.assert_no_errors()


async def test_filter_wide_delete_then_restore_from_trash(web: Browsing, app_data: AppData) -> None:
    """Without JavaScript: the preview's count is the list's; Trash restores them all."""
    alice = await app_data.create_user("alice", PASSWORD)
    old = [await app_data.remember(alice, key=f"old-{n}", tags=["archive"]) for n in range(7)]
    kept = await app_data.remember(alice, key="keep", tags=["work"])
    page = await web.new_page(java_script_enabled=False, color_scheme="dark")
    await log_in(page, web.server, "alice", PASSWORD)
    await page.goto("/memories?tag=archive")
    listed = await page.locator(".results-head .count").inner_text()
    assert listed == "7 memories"
    await page.get_by_label("Action").select_option("delete")
    await page.get_by_role("button", name="All 7 memories matching").click()

    await expect(page.locator(".bulk-count")).to_contain_text("7 memories selected")
    await expect(page.locator(".bulk-scope")).to_contain_text("tag=archive")
    await screenshot(page, "bulk-preview-dark")
    await set_viewport(page, "phone")
    await screenshot(page, "bulk-preview-390")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await set_viewport(page, "desktop")

    await page.get_by_role("button", name="Confirm: delete 7 memories").click()
    await expect(page.locator("#status .flash")).to_contain_text("Deleted 7 memories.")
    assert all(memory.is_deleted for memory in await _all(app_data, old, alice))
    assert not (await fetch(app_data, kept, alice)).is_deleted

    await page.goto("/trash")
    await expect(page.locator(".trash-table tbody tr")).to_have_count(7)
    await page.get_by_role("button", name="All 7 memories matching").click()
    await expect(page.locator(".bulk-count")).to_contain_text("7 memories selected")
    await page.get_by_role("button", name="Confirm: restore 7 memories").click()
    await expect(page.locator("#status .flash")).to_contain_text("Restored 7 memories.")
    assert not any(memory.is_deleted for memory in await _all(app_data, old, alice))
    web.assert_no_errors()
