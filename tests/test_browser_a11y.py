"""Accessibility of every page (issue 14 point 9): axe-core in light and dark, and 390 px wide.

axe-core comes from the npm registry at a pinned version, checked against npm's integrity of
its tarball, and is injected into pages of a context that bypasses the app's CSP (the app
itself allows no inline script). A page fails on any violation of impact serious or critical.
To cover a new page, add one line to SCREENS.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser_support import (
    PASSWORD,
    REPO_ROOT,
    AppData,
    Browsing,
    ColorScheme,
    expect,
    log_in,
    npm_pack,
    screenshot,
    set_color_scheme,
    wait_for_htmx,
)
from webapp.services.memories import delete_memory
from webapp.services.principal import Principal
from webapp.types import utcnow

if TYPE_CHECKING:
    from playwright.async_api import Page

AXE_VERSION = "4.14.1"
AXE_INTEGRITY = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPj"
    "CKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
"""npm's integrity of axe-core-AXE_VERSION.tgz (`npm view axe-core@VERSION dist.integrity`)."""
FAILING_IMPACTS = frozenset({"serious", "critical"})
SCHEMES: tuple[ColorScheme, ...] = ("light", "dark")
PHONE_WIDTH = 390


@dataclass(frozen=True)
class Screen:
    """A page to check: its name (screenshots, test ids), path ({detail}: a memory's id),
    keys pressed once it has loaded, and what to wait for after them."""

    name: str
    path: str
    logged_in: bool = True
    press: tuple[str, ...] = ()
    wait_for: str = ""


SCREENS = (
    Screen("login", "/login", logged_in=False),
    Screen("dashboard", "/"),
    Screen("memories", "/memories?state=all"),
    Screen("memories-editing", "/memories?edit={detail}"),
    Screen("detail", "/memories/{detail}"),
    Screen("trash", "/trash"),
    Screen("trash-purge", "/trash/purge"),
    Screen("users", "/users"),
    Screen("user", "/users/dana"),
    Screen("erase-user", "/users/dana/erase"),
    Screen("namespaces", "/namespaces"),
    Screen("namespaces-user", "/namespaces?user=dana"),
    Screen("duplicates", "/duplicates"),
    Screen("duplicates-user", "/duplicates?user=dana"),
    Screen("tokens", "/tokens"),
    Screen("import", "/import"),
    Screen(
        "bulk-preview", "/memories/bulk/preview?action=add_tag&value=later&scope=filter&user=dana"
    ),
    Screen("trash-bulk-preview", "/trash/bulk/preview?action=restore&scope=filter"),
    Screen("row-deleted", "/memories", press=("j", "d"), wait_for="#status .flash"),
    Screen("shortcuts", "/memories", press=("?",), wait_for="dialog[open]"),
)


# --- axe-core from npm -----------------------------------------------------------------------


def integrity_of(body: bytes) -> str:
    """npm's integrity string (sha512) of a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(body).digest()).decode()


def fetch_axe(cache_dir: Path) -> str:
    """axe.min.js of the pinned axe-core, from `npm pack` (tarball cached, integrity checked)."""
    tarball = cache_dir / f"axe-core-{AXE_VERSION}.tgz"
    if not (tarball.is_file() and integrity_of(tarball.read_bytes()) == AXE_INTEGRITY):
        body = npm_pack(f"axe-core@{AXE_VERSION}", "axe-core")
        if integrity_of(body) != AXE_INTEGRITY:
            pytest.fail(
                f"axe-core@{AXE_VERSION} from npm has integrity {integrity_of(body)}, "
                f"expected {AXE_INTEGRITY}",
                pytrace=False,
            )
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        partial.write_bytes(body)
        partial.replace(tarball)
    with tarfile.open(fileobj=io.BytesIO(tarball.read_bytes())) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None, f"{tarball.name} has no package/axe.min.js"
        return member.read().decode()


@pytest.fixture(scope="session")
def axe_js(request: pytest.FixtureRequest) -> str:
    """The axe-core script (cached between runs like htmx)."""
    cache = getattr(request.config, "cache", None)
    cache_dir = cache.mkdir("axe-core") if cache else REPO_ROOT / "test-artifacts" / "cache"
    return fetch_axe(Path(cache_dir))


AXE_RUN = """async () => {
  const result = await axe.run(document);
  return {
    passed: result.passes.map((rule) => rule.id),
    violations: result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
    })),
  };
}"""


async def serious_violations(page: Page, axe_js: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on page as it is now."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.add_script_tag(content=axe_js)
    result: dict[str, Any] = await page.evaluate(AXE_RUN)
    # A run that checked nothing (axe broken, page blank) must not pass for a clean one.
    assert "color-contrast" in result["passed"] or any(
        v["id"] == "color-contrast" for v in result["violations"]
    ), f"axe-core did not check contrast on {page.url}: passed {result['passed']}"
    return [v for v in result["violations"] if v["impact"] in FAILING_IMPACTS]


def describe(violations: list[dict[str, Any]]) -> str:
    """The violations, one line per element, for a failure message."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['impact']} {violation['id']}: {violation['help']}")
        for node in violation["nodes"]:
            summary = " ".join(node["summary"].split())
            lines.append(f"    {node['target']}: {summary}")
    return "\n".join(lines)


# --- data and pages --------------------------------------------------------------------------


async def seed(app_data: AppData) -> dict[str, Any]:
    """An admin, two users' memories (tagged, expiring, expired, deleted); the path values."""
    await app_data.create_user("root", PASSWORD, is_admin=True)
    dana = await app_data.create_user("dana", PASSWORD)
    now = utcnow()
    detail = await app_data.remember(
        dana,
        namespace="projects/alpha",
        key="deploy-checklist",
        content="Run the migrations first.\nThen restart the workers.",
        tags=["work", "ops"],
        importance=0.8,
        expires_at=now + timedelta(days=3),
    )
    await app_data.remember(dana, key="tea", tags=["drinks"], expires_at=now - timedelta(days=1))
    await app_data.remember(dana, namespace="people", key="sister-birthday", importance=0.95)
    gone = await app_data.remember(dana, key="old-address", content="Lived on Elm Street.")
    assert gone.id is not None
    await delete_memory(app_data.db, principal=Principal.of_user(dana), memory_id=gone.id)
    return {"detail": detail.id}


async def open_screen(web: Browsing, app_data: AppData, screen: Screen, **context: Any) -> Page:
    """A new page (context options as Browsing.new_context) showing screen, as the admin."""
    values = await seed(app_data)
    page = await web.new_page(bypass_csp=True, **context)
    if screen.logged_in:
        await log_in(page, web.server, "root", PASSWORD)
    response = await page.goto(screen.path.format(**values))
    assert response is not None and response.ok, f"{screen.path}: {response and response.status}"
    await expect(page.locator("main h1")).to_be_visible()
    await wait_for_htmx(page)
    for key in screen.press:
        await page.keyboard.press(key)
    if screen.wait_for:
        await expect(page.locator(screen.wait_for)).to_be_visible()
    return page


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("screen", SCREENS, ids=[screen.name for screen in SCREENS])
async def test_no_serious_axe_violations(
    web: Browsing, app_data: AppData, axe_js: str, screen: Screen
) -> None:
    """axe-core finds nothing serious or critical on the page, in light and dark."""
    page = await open_screen(web, app_data, screen)
    found: dict[str, list[dict[str, Any]]] = {}
    for scheme in SCHEMES:
        await set_color_scheme(page, scheme)
        found[scheme] = await serious_violations(page, axe_js)
        await screenshot(page, f"a11y-{screen.name}-{scheme}")
    report = "\n".join(f"[{scheme}]\n{describe(v)}" for scheme, v in found.items() if v)
    assert not report, f"axe-core on {screen.path} ({web.backend}):\n{report}"
    web.assert_no_errors()


@pytest.mark.parametrize("screen", SCREENS, ids=[screen.name for screen in SCREENS])
async def test_no_horizontal_scroll_on_a_phone(
    web: Browsing, app_data: AppData, screen: Screen
) -> None:
    """At 390 px wide the page fits: nothing scrolls sideways."""
    page = await open_screen(web, app_data, screen, viewport="phone")
    for scheme in SCHEMES:
        await set_color_scheme(page, scheme)
        await screenshot(page, f"a11y-{screen.name}-{scheme}-phone")
    assert await page.evaluate("innerWidth") == PHONE_WIDTH
    wide = await page.evaluate(
        """(width) => [...document.querySelectorAll("body *")]
            .filter((e) => e.getBoundingClientRect().right > width + 0.5)
            .slice(0, 5).map((e) => e.outerHTML.slice(0, 120))""",
        PHONE_WIDTH,
    )
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= PHONE_WIDTH, f"{screen.path} is {scroll_width} px wide: {wide}"
    web.assert_no_errors()
