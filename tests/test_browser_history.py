"""History and revert on the detail page, in a real browser (issue 14 point 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser_support import AppData, Browsing, expect, screenshot, set_color_scheme
from tests.test_browser import fetch, logged_in

if TYPE_CHECKING:
    from playwright.async_api import Page


async def _save_content(page: Page, content: str, events: int) -> None:
    """Type new content in the detail page's editor, save, and wait for the history."""
    await page.get_by_role("textbox", name="Content").fill(content)
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.locator("#history .history-event")).to_have_count(events)


async def test_edit_twice_then_revert_to_the_first_version(
    web: Browsing, app_data: AppData
) -> None:
    """Edit a memory twice, open its history, revert to the first version: the content is
    restored and a new event is at the top; the old events are all still there."""
    await app_data.reset()
    alice = await app_data.create_user("alice")
    tea = await app_data.remember(alice, key="tea", content="Likes green tea.", tags=["drinks"])
    page = await logged_in(web, alice)
    await page.goto(f"/memories/{tea.id}")
    await expect(page.locator("#history .history-event")).to_have_count(1)
    await _save_content(page, "Likes oolong.", 2)
    await _save_content(page, "Line one.\nLine two.\nLikes black tea now.\nLine four.", 3)
    events = page.locator("#history .history-event")
    await expect(events.first.locator(".diff-add").nth(2)).to_have_text(
        "added: + Likes black tea now."
    )

    await events.last.get_by_role("button", name="Revert to this version").click()
    await expect(page.locator("#status")).to_contain_text("Reverted")
    await expect(page.get_by_role("textbox", name="Content")).to_have_value("Likes green tea.")
    await expect(events).to_have_count(4)
    top = events.first
    await expect(top.locator(".history-action")).to_have_text("Edited")
    await expect(top.locator(".badge")).to_have_text("current")
    await expect(top.locator(".diff-add").first).to_have_text("added: + Likes green tea.")
    stored = await fetch(app_data, tea, alice)
    assert (stored.content, stored.version) == ("Likes green tea.", 4)

    # Screenshots only after the htmx swaps: taking one leaves style="" on the inputs,
    # which htmx's settle would then copy onto the new ones (a CSP report).
    await screenshot(page, "history-light-desktop")
    await set_color_scheme(page, "dark")
    await screenshot(page, "history-dark-desktop")
    phone = await logged_in(web, alice, viewport="phone")
    await phone.goto(f"/memories/{tea.id}#history")
    await expect(phone.locator("#history .history-event")).to_have_count(4)
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
    await screenshot(phone, "history-light-phone")
    web.assert_no_errors()


async def test_revert_without_javascript(web: Browsing, app_data: AppData) -> None:
    """With JavaScript off, revert is a plain form that leads back to the page."""
    await app_data.reset()
    alice = await app_data.create_user("alice")
    tea = await app_data.remember(alice, key="tea", content="first")
    page = await logged_in(web, alice, java_script_enabled=False)
    await page.goto(f"/memories/{tea.id}")
    await page.get_by_role("textbox", name="Content").fill("second")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.locator("#history .history-event")).to_have_count(2)
    await (
        page.locator("#history .history-event")
        .last.get_by_role("button", name="Revert to this version")
        .click()
    )
    await expect(page.get_by_role("textbox", name="Content")).to_have_value("first")
    await expect(page.locator("#history .history-event")).to_have_count(3)
    assert (await fetch(app_data, tea, alice)).content == "first"
