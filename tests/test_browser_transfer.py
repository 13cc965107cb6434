"""Export then import in a real browser (issue 14, point 5): a round trip that restores
edited and deleted memories, the import page with JavaScript off, and its screenshots."""

from __future__ import annotations

from pathlib import Path

from tests.browser_support import (
    PASSWORD,
    AppData,
    Browsing,
    expect,
    log_in,
    screenshot,
)
from webapp.models import User
from webapp.services.memories import delete_memory, get_memory
from webapp.services.principal import Principal


async def _no_horizontal_scroll(page) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


async def test_export_then_import_restores_rows(
    web: Browsing, app_data: AppData, tmp_path: Path
) -> None:
    """Download the browser's JSON Lines export, change and delete rows, import it back."""
    root: User = await app_data.create_user("root", PASSWORD, is_admin=True)
    kept = [
        await app_data.remember(root, namespace="trip", key=f"k{n}", content=f"original {n}")
        for n in range(3)
    ]
    page = await web.new_page(accept_downloads=True)
    await log_in(page, web.server, "root", PASSWORD)
    await page.goto("/memories?namespace=trip")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="JSON Lines").click()
    download = await download_info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert saved.suffix == ".jsonl"
    assert len(saved.read_bytes().splitlines()) == 3

    admin = Principal.of_user(root)
    await app_data.remember(root, namespace="trip", key="k1", content="overwritten")
    await delete_memory(app_data.db, principal=admin, memory_id=kept[2].id or 0)

    await page.goto("/import")
    await screenshot(page, "import-empty-light")
    await page.get_by_label("JSON Lines file").set_input_files(saved)
    await page.get_by_role("button", name="Upload and check").click()
    await expect(page.locator("#count-updated")).to_have_text("2")
    await expect(page.locator("#count-unchanged")).to_have_text("1")
    await expect(page.locator("#count-rejected")).to_have_text("0")
    assert "/import/" in page.url, "the report has its own URL"
    await screenshot(page, "import-dry-run-light")
    await page.emulate_media(color_scheme="dark")
    await screenshot(page, "import-dry-run-dark")
    await page.emulate_media(color_scheme="light")

    await page.get_by_role("button", name="Import 2 changes").click()
    await expect(page.locator("#status")).to_contain_text("Created 0, updated 2.")
    await expect(page.get_by_label("JSON Lines file")).to_be_visible()
    for number, memory in enumerate(kept):
        current = await get_memory(
            app_data.db, principal=admin, memory_id=memory.id or 0, include_deleted=True
        )
        assert current.content == f"original {number}"
        assert not current.is_deleted
    web.assert_no_errors()


async def test_import_without_javascript_on_a_phone(
    web: Browsing, app_data: AppData, tmp_path: Path
) -> None:
    """Plain forms (PRG) at 390 px: upload a file with a bad line, see it listed, discard."""
    await app_data.create_user("root", PASSWORD, is_admin=True)
    source = tmp_path / "bad.jsonl"
    source.write_text(
        '{"user": "root", "namespace": "n", "key": "fine", "content": "ok"}\n'
        '{"user": "root", "namespace": "n", "key": "no content"}\n'
    )
    page = await web.new_page(java_script_enabled=False, viewport="phone")
    await log_in(page, web.server, "root", PASSWORD)
    await page.goto("/import")
    await screenshot(page, "import-empty-phone")
    assert await _no_horizontal_scroll(page)
    await page.get_by_label("JSON Lines file").set_input_files(source)
    await page.get_by_role("button", name="Upload and check").click()
    await expect(page.locator(".rejected-table tbody tr")).to_have_count(1)
    await expect(page.locator(".rejected-table tbody td").first).to_have_text("2")
    await expect(page.get_by_role("button", name="Import", exact=False)).to_have_count(0)
    await screenshot(page, "import-rejected-phone")
    assert await _no_horizontal_scroll(page)
    await page.get_by_role("button", name="Discard").click()
    await expect(page.locator("#status")).to_contain_text("nothing was imported")
