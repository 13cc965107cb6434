"""The markup the keyboard shortcuts and screen readers rely on (issue 14 points 8-9).

One live region per page (#status), the shortcuts listed without JavaScript, the script
loaded from a file (the CSP allows no inline script), the row checkbox `x` toggles.
"""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.types import utcnow

KEYS = ["/", "j", "k", "x", "e", "d", "?"]
PAGES = [
    "/",
    "/memories",
    "/memories?state=all",
    "/memories/{id}",
    "/trash",
    "/users",
    "/users/ann",
    "/users/ann/erase",
    "/namespaces",
    "/namespaces?user=ann",
    "/duplicates",
    "/duplicates?user=ann",
    "/tokens",
    "/import",
    "/memories/bulk/preview?action=delete&scope=filter",
]


def live_regions(page: BeautifulSoup) -> list[str]:
    """The ids (or tag names) of elements that announce changes politely."""
    found = page.select("[aria-live], [role=status], [role=log]")
    return [str(element.get("id") or element.name) for element in found]


async def seed(session: AsyncSession) -> int:
    """An admin and one live and one deleted memory of ann's; the live one's id."""
    await make_user(session, username="root", is_admin=True)
    ann = await make_user(session, username="ann")
    memory = await make_memory(session, user=ann, key="tea")
    await make_memory(session, user=ann, key="gone", is_deleted=True, deleted_at=utcnow())
    assert memory.id is not None
    return memory.id


@pytest.mark.parametrize("path", PAGES)
async def test_one_live_region_and_the_shortcuts(
    session: AsyncSession, visitor: Visitor, path: str
) -> None:
    memory_id = await seed(session)
    await visitor.log_in("root")
    page = parse(await visitor.get(path.format(id=memory_id)))

    assert live_regions(page) == ["status"]
    help_box = page.select_one("footer details.shortcuts-help")
    assert help_box is not None
    assert [kbd.get_text() for kbd in help_box.select("dt kbd")] == KEYS
    dialog = page.select_one("dialog#shortcuts")
    assert dialog is not None and dialog.get("open") is None
    scripts = [script.get("src", "") for script in page.select("script")]
    assert any(str(src).endswith("/static/keyboard.js") for src in scripts)
    assert all(script.get("src") for script in page.select("script"))


async def test_filtered_results_announce_nothing_themselves(
    session: AsyncSession, visitor: Visitor
) -> None:
    await seed(session)
    await visitor.log_in("root")
    for path in ("/memories?q=tea", "/trash?q=gone"):
        fragment = parse(await visitor.get(path, htmx=True))
        assert fragment.select_one(".count") is not None, path
        assert live_regions(fragment) == [], path


async def test_row_checkbox_for_x(session: AsyncSession, visitor: Visitor) -> None:
    memory_id = await seed(session)
    await visitor.log_in("root")
    page = parse(await visitor.get("/memories"))

    title = page.select_one(f"#memory-{memory_id} .memory-title")
    assert title is not None
    box = title.find(True)
    assert box is not None and box.name == "input"
    assert box.get("class") == ["row-select"] and box.get("type") == "checkbox"
    assert (box.get("value"), box.get("aria-label")) == (str(memory_id), "Select tea")


async def test_no_shortcuts_for_someone_logged_out(visitor: Visitor) -> None:
    page = parse(await visitor.get("/login"))
    assert page.select_one("footer .shortcuts-help") is None
    assert page.select_one("dialog#shortcuts") is None
    assert live_regions(page) == ["status"]
