"""The namespace tree in a real browser: its counts equal GET /api/v1/namespaces, it works
without JavaScript, and it fits a 390 px phone, light and dark."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from tests.browser_support import AppData, Browsing, ColorScheme, expect, screenshot
from tests.browser_support import set_color_scheme as set_scheme
from tests.test_browser import PASSWORD, logged_in
from webapp.services.memories import delete_memory
from webapp.services.principal import Principal
from webapp.services.tokens import create_token
from webapp.services.users import get_user_by_username
from webapp.types import utcnow

if TYPE_CHECKING:
    from playwright.async_api import Page


async def _seed(app_data: AppData) -> None:
    alice = await app_data.create_user("alice", PASSWORD)
    bob = await app_data.create_user("bob", PASSWORD)
    past = utcnow() - timedelta(days=2)
    await app_data.remember(alice, namespace="projects", key="plan", importance=0.9)
    await app_data.remember(alice, namespace="projects/apollo", key="launch", importance=0.3)
    await app_data.remember(alice, namespace="projects/apollo", key="crew", importance=0.5)
    await app_data.remember(alice, namespace="projects/apollo", key="old", expires_at=past)
    gone = await app_data.remember(alice, namespace="projects/zeus/x", key="gone")
    await app_data.remember(alice, namespace="preferences", key="tea")
    await app_data.remember(bob, namespace="bobs", key="secret")
    assert gone.id is not None
    await delete_memory(app_data.db, principal=Principal.of_user(alice), memory_id=gone.id)


async def _own_counts(page: Page) -> dict[str, tuple[int, int, int]]:
    """namespace -> (active, expired, deleted) as the page shows each namespace's own."""
    found: dict[str, tuple[int, int, int]] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('li.ns-item')]
            .map(li => [li.dataset.namespace, li.querySelector(':scope > .ns-node .ns-own')])
            .filter(([, own]) => own)
            .map(([ns, own]) => [ns, ['Active', 'Expired', 'Deleted'].map(label =>
                Number([...own.querySelectorAll('dt')].find(dt => dt.textContent === label)
                    .nextElementSibling.textContent.replace(/,/g, '')))]))"""
    )
    return {name: tuple(counts) for name, counts in found.items()}  # type: ignore[misc]


async def test_tree_counts_equal_the_api(web: Browsing, app_data: AppData) -> None:
    await _seed(app_data)
    owner = await get_user_by_username(app_data.db, username="alice")
    _, secret = await create_token(app_data.db, user=owner, name="browser-test")
    async with httpx.AsyncClient(base_url=web.server.url) as api:
        answer = await api.get("/api/v1/namespaces", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    expected = {n["namespace"]: (n["active"], n["expired"], n["deleted"]) for n in answer.json()}
    assert expected["projects/apollo"] == (2, 1, 0)

    page = await logged_in(web, owner)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Namespaces").click()
    await expect(page.locator("main h1")).to_have_text("Your namespaces")
    assert await _own_counts(page) == expected
    await page.locator('li[data-namespace="projects"] > .ns-node .ns-subtree').click()
    await expect(page).to_have_url(f"{web.server.url}/memories?namespace=projects%2F")
    await expect(page.locator(".count").first).to_contain_text("3")
    web.assert_no_errors()


async def test_admin_picks_a_user_without_javascript_and_on_a_phone(
    web: Browsing, app_data: AppData
) -> None:
    await _seed(app_data)
    root = await app_data.create_user("root", PASSWORD, is_admin=True)
    page = await logged_in(web, root, java_script_enabled=False)
    await page.goto("/namespaces")
    await page.get_by_label("User", exact=True).fill("alice")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("main h1")).to_have_text("alice’s namespaces")
    assert "bobs" not in await _own_counts(page)

    phone = await logged_in(web, root, viewport="phone")
    shots = {"/namespaces": "namespaces-chooser", "/namespaces?user=alice": "namespaces"}
    for path, name in shots.items():
        await phone.goto(path)
        await expect(phone.locator("main h1")).to_be_visible()
        schemes: tuple[ColorScheme, ...] = ("light", "dark")
        for scheme in schemes:
            await set_scheme(phone, scheme)
            await screenshot(phone, f"{name}-{scheme}-phone")
        assert await phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
    desktop = await logged_in(web, root)
    await desktop.goto("/namespaces?user=alice")
    await screenshot(desktop, "namespaces-light-desktop")
    await desktop.goto("/namespaces")
    await screenshot(desktop, "namespaces-chooser-light-desktop")
    alice = await app_data.create_user("carol", PASSWORD)
    empty = await logged_in(web, alice)
    await empty.goto("/namespaces")
    await expect(empty.locator(".empty")).to_contain_text("No namespaces yet")
    await screenshot(empty, "namespaces-empty-light-desktop")
    web.assert_no_errors()
