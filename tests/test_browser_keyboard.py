"""Keyboard shortcuts and focus after htmx swaps (issue 14 point 8), in a real browser.

`/` search, `j`/`k` rows, `x` select, `e` edit, `d` delete, `?` the list of shortcuts; never
while typing in a field. Each test runs on both backends against the live server.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.browser_support import (
    PASSWORD,
    AppData,
    Browsing,
    expect,
    log_in,
    row,
    wait_for_htmx,
)
from webapp.models import User
from webapp.services.memories import get_memory
from webapp.services.principal import Principal

if TYPE_CHECKING:
    from playwright.async_api import Page


async def memories_page(web: Browsing, user: User, **context: bool) -> Page:
    """A page logged in as user, on /memories with htmx loaded (context: java_script_enabled)."""
    page = await web.new_page(**context)
    await log_in(page, web.server, user.username, PASSWORD)
    await page.goto(web.server.path_for("list_memories"))
    if context.get("java_script_enabled", True):
        await wait_for_htmx(page)
    return page


async def seed(app_data: AppData) -> tuple[User, list[str]]:
    """alice and four memories whose content says "note"; their keys as the list shows them."""
    alice = await app_data.create_user("alice", PASSWORD)
    keys = ["alpha", "bravo", "charlie", "delta"]
    for key in keys:
        await app_data.remember(alice, key=key, content=f"A note about {key}.", tags=["kb"])
    return alice, keys[::-1]  # newest first


async def test_keyboard_flow(web: Browsing, app_data: AppData) -> None:
    """/ searches; j j k picks a row; x selects it; e edits, Esc closes; d deletes; ? lists."""
    alice, shown = await seed(app_data)
    page = await memories_page(web, alice)
    search = page.locator("#q")

    await page.keyboard.press("/")
    await expect(search).to_be_focused()
    await page.keyboard.type("note")
    await expect(page).to_have_url(re.compile(r"[?&]q=note"))
    await expect(page.locator("#status")).to_have_text("4 memories shown.")
    await page.keyboard.press("Escape")
    await expect(search).not_to_be_focused()
    await expect(search).to_have_value("note")
    await expect(search).to_be_visible()

    for key in "jjk":
        await page.keyboard.press(key)
    current = row(page, shown[0])
    await expect(current).to_be_focused()
    await expect(page.locator("li.memory-row.is-current")).to_have_count(1)
    await expect(current).to_have_class(re.compile(r"\bis-current\b"))

    await page.evaluate(
        """() => document.addEventListener("change", (e) => {
            window.changed = (window.changed || []).concat(e.target.value);
        })"""
    )
    await page.keyboard.press("x")
    await expect(current.locator("input.row-select")).to_be_checked()
    memory_id = await current.get_attribute("data-memory-id")
    assert await page.evaluate("window.changed") == [memory_id]

    await page.keyboard.press("e")
    await expect(current.locator(".memory-editor")).to_have_count(1)
    await expect(current.get_by_label("Importance")).to_be_focused()
    await page.keyboard.press("j")  # typed into the field, not a move
    await expect(current.get_by_label("Importance")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(current.locator(".memory-editor")).to_have_count(0)
    await expect(current.locator("a.edit-link")).to_be_focused()

    await page.keyboard.press("d")
    deleted = page.locator(f"#memory-{memory_id}.memory-row-deleted")
    await expect(deleted).to_contain_text(f"Deleted {shown[0]}.")
    await expect(deleted.get_by_role("button", name="Undo")).to_be_visible()
    await expect(page.locator("#status")).to_have_text(f"Deleted “{shown[0]}”.")
    await expect(row(page, shown[1])).to_be_focused()
    assert memory_id is not None
    gone = await get_memory(
        app_data.db,
        principal=Principal.of_user(alice),
        memory_id=int(memory_id),
        include_deleted=True,
    )
    assert gone.is_deleted

    await page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("dt kbd")).to_have_text(["/", "j", "k", "x", "e", "d", "?"])
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(row(page, shown[1])).to_be_focused()
    web.assert_no_errors()


async def test_letters_typed_in_search_stay_there(web: Browsing, app_data: AppData) -> None:
    """j typed in the search box is text: no row becomes current, the list filters by it."""
    alice, _ = await seed(app_data)
    page = await memories_page(web, alice)

    await page.locator("#q").click()
    await page.keyboard.type("jxd?")

    await expect(page.locator("#q")).to_have_value("jxd?")
    await expect(page.locator("#q")).to_be_focused()
    await expect(page.locator("li.memory-row.is-current")).to_have_count(0)
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(page.locator("li.memory-row-deleted")).to_have_count(0)
    web.assert_no_errors()


async def test_j_stops_at_the_last_row_and_ctrl_does_nothing(
    web: Browsing, app_data: AppData
) -> None:
    """j past the end stays on the last row; Ctrl+d is the browser's, not a delete."""
    alice, shown = await seed(app_data)
    page = await memories_page(web, alice)

    for _ in range(len(shown) + 2):
        await page.keyboard.press("j")
    await expect(row(page, shown[-1])).to_be_focused()
    await page.keyboard.press("Control+d")
    await expect(page.locator("li.memory-row-deleted")).to_have_count(0)
    web.assert_no_errors()


async def test_shortcuts_listed_without_javascript(web: Browsing, app_data: AppData) -> None:
    """Without JavaScript the footer still says which keys exist (and the dialog stays shut)."""
    alice, _ = await seed(app_data)
    page = await memories_page(web, alice, java_script_enabled=False)

    help_box = page.locator("footer details.shortcuts-help")
    await help_box.locator("summary").click()
    await expect(help_box.locator("dt kbd")).to_have_text(["/", "j", "k", "x", "e", "d", "?"])
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await page.keyboard.press("j")
    await expect(page.locator("li.memory-row.is-current")).to_have_count(0)


async def test_focus_after_undo_save_and_filter(web: Browsing, app_data: AppData) -> None:
    """Undo focuses the restored row; a save keeps focus in its field; a filter keeps it."""
    alice, shown = await seed(app_data)
    page = await memories_page(web, alice)

    await row(page, shown[1]).get_by_role("button", name=f"Delete {shown[1]}").click()
    placeholder = page.locator("li.memory-row-deleted")
    await expect(row(page, shown[2])).to_be_focused()
    await placeholder.get_by_role("button", name="Undo").click()
    await expect(placeholder).to_have_count(0)
    await expect(row(page, shown[1])).to_be_focused()
    await expect(page.locator("#status")).to_have_text(f"Restored “{shown[1]}”.")

    await page.keyboard.press("e")
    importance = row(page, shown[1]).get_by_label("Importance")
    await expect(importance).to_be_focused()
    await importance.fill("0.9")
    await importance.press("Enter")
    await expect(page.locator("#status")).to_have_text("Importance set to 0.9.")
    await expect(row(page, shown[1]).get_by_label("Importance")).to_be_focused()
    await row(page, shown[1]).get_by_role("button", name="Add").click()  # an empty tag: 422
    await expect(row(page, shown[1]).locator(".alert")).to_be_visible()
    await expect(row(page, shown[1]).get_by_label(f"New tag for {shown[1]}")).to_be_focused()

    await page.get_by_label("Sort by").focus()
    await page.get_by_label("Sort by").select_option("-importance")
    await expect(page).to_have_url(re.compile(r"sort=-importance"))
    await expect(page.locator(".memory-key").first).to_have_text(shown[1])
    await expect(page.get_by_label("Sort by")).to_be_focused()
    unexpected = [error for error in web.errors() if " 422 (Unprocessable" not in error]
    assert not unexpected, unexpected
