"""Near-duplicate review in a real browser: merge a group keeping a chosen memory, dismiss
another; screenshots of the page and the merge preview (light, dark, 390 px)."""

from __future__ import annotations

import pytest

from tests.browser_support import AppData, Browsing, expect, log_in, screenshot, set_viewport
from tests.test_browser import PASSWORD, fetch
from tests.test_duplicates import PARIS, TEA, TEA_2, TEA_3
from webapp.models import LongTermMemory
from webapp.services import vectors

pytestmark = pytest.mark.skipif(not vectors.enabled(), reason="the embedding model is missing")


async def _embed(app_data: AppData, memories: list[LongTermMemory]) -> None:
    """Give the queued memories their vectors (the live server's embedder may be first)."""
    while await vectors.drain(app_data.db):
        pass


async def test_merge_choosing_the_kept_one_then_dismiss(web: Browsing, app_data: AppData) -> None:
    alice = await app_data.create_user("alice", PASSWORD)
    tea = await app_data.remember(alice, key="tea", content=TEA, tags=["drinks"])
    tea2 = await app_data.remember(alice, key="tea2", content=TEA_2, importance=0.9)
    tea3 = await app_data.remember(alice, key="tea3", content=TEA_3, tags=["likes"])
    paris = await app_data.remember(alice, key="paris", content=PARIS)
    paris2 = await app_data.remember(alice, key="paris2", content=PARIS + " ")
    await _embed(app_data, [tea, tea2, tea3, paris, paris2])
    page = await web.new_page()
    await log_in(page, web.server, "alice", PASSWORD)
    await page.goto("/")
    await page.get_by_role("link", name="Duplicates").click()
    groups = page.locator(".dup-group")
    await expect(groups).to_have_count(2)
    await expect(groups.first.locator("tbody tr")).to_have_count(3)
    await screenshot(page, "duplicates-light")

    await groups.first.get_by_role("button", name="Merge…").click()
    await expect(page.get_by_label("facts / tea2", exact=False)).to_be_checked()
    await screenshot(page, "duplicates-merge-light")
    await page.get_by_label("facts / tea (", exact=False).check()
    await page.get_by_role("button", name="Confirm: merge 3 memories").click()
    await expect(page.locator(".flash")).to_contain_text(f"kept #{tea.id}")
    kept = await fetch(app_data, tea, alice)
    assert sorted(kept.tags) == ["drinks", "likes"] and kept.importance == 0.9
    assert (await fetch(app_data, tea2, alice)).is_deleted
    await expect(groups).to_have_count(1)

    await groups.first.get_by_role("button", name="Dismiss").click()
    await expect(page.locator(".flash")).to_contain_text("Group dismissed.")
    await expect(groups).to_have_count(0)
    web.assert_no_errors()


async def test_screens_dark_and_phone(web: Browsing, app_data: AppData) -> None:
    alice = await app_data.create_user("alice", PASSWORD)
    made = [
        await app_data.remember(alice, key=f"tea-{n}", content=text, tags=["drinks", "home"])
        for n, text in enumerate([TEA, TEA_2, TEA_3])
    ]
    await _embed(app_data, made)
    page = await web.new_page(color_scheme="dark")
    await log_in(page, web.server, "alice", PASSWORD)
    await page.goto("/duplicates")
    await expect(page.locator(".dup-group")).to_have_count(1)
    await screenshot(page, "duplicates-dark")
    await set_viewport(page, "phone")
    await screenshot(page, "duplicates-390")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    web.assert_no_errors()
