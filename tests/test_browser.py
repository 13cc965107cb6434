"""The admin app in a real browser: what a person sees and does (issue 4 points 6-7).

Each test runs once per backend against the live server; data goes in through `app_data`
and, where it matters, is read back through the service layer after the browser is done.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from tests.browser_support import (
    PASSWORD,
    AppData,
    Browsing,
    ColorScheme,
    Viewport,
    assert_no_errors_except,
    expect,
    log_in,
    logged_in,
    row,
    screenshot,
    set_color_scheme,
)
from webapp.models import LongTermMemory, User
from webapp.services.memories import delete_memory, get_memory
from webapp.services.principal import Principal
from webapp.types import utcnow

if TYPE_CHECKING:
    from playwright.async_api import Page


# --- helpers ---------------------------------------------------------------------------------


def query_of(page: Page) -> dict[str, list[str]]:
    """The page's query string, parsed."""
    return parse_qs(urlsplit(page.url).query)


def path_of(page: Page) -> str:
    """The page's path."""
    return urlsplit(page.url).path


async def open_editor(page: Page, key: str) -> None:
    """Click a row's Edit button and wait for its editor to replace the importance and tags."""
    await row(page, key).get_by_role("link", name=f"Edit importance and tags of {key}").click()
    await expect(row(page, key).locator(".memory-editor")).to_have_count(1)
    # Settled: htmx has wired the editor's forms, and the keyboard script has focused its
    # first field (typing before that can race the settle on a loaded machine).
    first_field = row(page, key).locator(".memory-editor input:not([type=hidden])").first
    await expect(first_field).to_be_focused()


async def keys_shown(page: Page) -> list[str]:
    """The keys of the list rows, in order."""
    return await page.locator("li.memory-row .memory-key").all_inner_texts()


async def fetch(app_data: AppData, memory: LongTermMemory, owner: User) -> LongTermMemory:
    """The memory as the database holds it now (deleted ones included)."""
    assert memory.id is not None
    return await get_memory(
        app_data.db,
        principal=Principal.of_user(owner),
        memory_id=memory.id,
        include_deleted=True,
    )


# --- logging in --------------------------------------------------------------------------------


async def test_login_wrong_then_right_password(web: Browsing, app_data: AppData) -> None:
    """A wrong password shows the error on /login; the right one leads to the dashboard."""
    await app_data.create_user("alice", PASSWORD)
    page = await web.new_page()

    await page.goto("/login")
    await page.fill("#username", "alice")
    await page.fill("#password", "not the password")
    await page.get_by_role("button", name="Log in").click()

    await expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    assert path_of(page) == "/login"
    await expect(page.locator("#username")).to_have_value("alice")
    await expect(page.locator("#password")).to_have_value("")
    await expect(page.locator("form.account")).to_have_count(0)

    await page.fill("#password", PASSWORD)
    await page.get_by_role("button", name="Log in").click()

    await expect(page.locator("main h1")).to_have_text("Your memories")
    assert path_of(page) == "/"
    await expect(page.locator("form.account .who")).to_have_text("alice")
    web.assert_no_errors()


async def test_login_returns_to_next(web: Browsing, app_data: AppData) -> None:
    """A logged-out visit to a page asks to log in, then lands on that page (next=)."""
    alice = await app_data.create_user("alice", PASSWORD)
    await app_data.remember(alice, namespace="work", key="standup")
    await app_data.remember(alice, namespace="home", key="plants")
    page = await web.new_page()

    await page.goto("/memories?namespace=work")
    assert path_of(page) == "/login"
    assert query_of(page)["next"] == ["/memories?namespace=work"]
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    await page.get_by_role("button", name="Log in").click()

    await expect(page.locator("main h1")).to_have_text("Memories")
    assert path_of(page) == "/memories"
    assert query_of(page) == {"namespace": ["work"]}
    assert await keys_shown(page) == ["standup"]
    web.assert_no_errors()


# --- browsing -----------------------------------------------------------------------------------


async def test_admin_browses_user_then_namespace(web: Browsing, app_data: AppData) -> None:
    """Users → a user's memories → a row's namespace: the URL names both, the list only theirs."""
    admin = await app_data.create_user("root", PASSWORD, is_admin=True)
    bob = await app_data.create_user("bob", PASSWORD)
    carol = await app_data.create_user("carol", PASSWORD)
    await app_data.remember(bob, namespace="work", key="bob-standup")
    await app_data.remember(bob, namespace="work", key="bob-deadline")
    await app_data.remember(bob, namespace="home", key="bob-plants")
    await app_data.remember(carol, namespace="work", key="carol-standup")
    page = await logged_in(web, admin)

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    await expect(page.locator(".users-table")).to_be_visible()
    # The name leads to bob's account page; his active count to his memories.
    await page.locator(".users-table").get_by_role("link", name="3 active memories of bob").click()

    await expect(page.locator(".count")).to_have_text("3 memories")
    assert query_of(page) == {"user": ["bob"]}
    assert sorted(await keys_shown(page)) == ["bob-deadline", "bob-plants", "bob-standup"]

    await row(page, "bob-standup").locator(".namespace-link").click()

    await expect(page.locator(".count")).to_have_text("2 memories")
    assert path_of(page) == "/memories"
    assert query_of(page) == {"user": ["bob"], "namespace": ["work"]}
    assert sorted(await keys_shown(page)) == ["bob-deadline", "bob-standup"]
    assert set(await page.locator("li.memory-row .owner-link").all_inner_texts()) == {"bob"}
    assert set(await page.locator("li.memory-row .namespace-link").all_inner_texts()) == {"work"}
    web.assert_no_errors()


async def test_tag_filter_and_search_push_urls_and_back(web: Browsing, app_data: AppData) -> None:
    """Tag filter, then search: the list updates in place, each step pushes a URL, Back undoes."""
    alice = await app_data.create_user("alice", PASSWORD)
    await app_data.remember(alice, key="green-tea", content="Likes green tea.", tags=["drinks"])
    await app_data.remember(alice, key="coffee", content="An espresso at 9.", tags=["drinks"])
    await app_data.remember(alice, key="cat", content="Has a cat named Tea.", tags=["pets"])
    page = await logged_in(web, alice)
    await page.goto("/memories")
    await expect(page.locator(".count")).to_have_text("3 memories")
    await page.evaluate("window.__marker = 1")

    await page.fill("#f-tag", "drinks")
    await page.press("#f-tag", "Enter")

    await expect(page).to_have_url(re.compile(r"/memories\?tag=drinks$"))
    await expect(page.locator(".count")).to_have_text("2 memories")
    assert sorted(await keys_shown(page)) == ["coffee", "green-tea"]
    assert await page.evaluate("window.__marker") == 1

    await page.fill("#q", "espresso")

    await expect(page).to_have_url(re.compile(r"[?&]q=espresso(&|$)"))
    assert query_of(page) == {"tag": ["drinks"], "q": ["espresso"]}
    await expect(page.locator(".count")).to_have_text("1 memory")
    assert await keys_shown(page) == ["coffee"]
    assert await page.evaluate("window.__marker") == 1

    await page.go_back()

    await expect(page).to_have_url(re.compile(r"/memories\?tag=drinks$"))
    await expect(page.locator(".count")).to_have_text("2 memories")
    assert sorted(await keys_shown(page)) == ["coffee", "green-tea"]
    await expect(page.locator("#q")).to_have_value("")
    # Back reloaded the page; htmx handles the next Back once the page has loaded.
    await page.wait_for_load_state("load")

    await page.go_back()

    await expect(page).to_have_url(re.compile(r"/memories$"))
    await expect(page.locator(".count")).to_have_text("3 memories")
    assert sorted(await keys_shown(page)) == ["cat", "coffee", "green-tea"]
    web.assert_no_errors()


# --- inline edits -------------------------------------------------------------------------------


async def test_inline_importance_edit_and_error(web: Browsing, app_data: AppData) -> None:
    """Importance saved on a row persists; 1.5 shows the inline error, keeps 1.5, writes nothing."""
    alice = await app_data.create_user("alice", PASSWORD)
    tea = await app_data.remember(alice, key="tea", importance=0.5)
    await app_data.remember(alice, key="coffee", importance=0.5)
    page = await logged_in(web, alice)
    await page.goto("/memories")
    await page.evaluate("window.__marker = 1")
    importance = row(page, "tea").locator(".importance-form input[name=importance]")

    await open_editor(page, "tea")
    await importance.fill("0.8")
    await row(page, "tea").locator(".importance-form").get_by_role("button", name="Save").click()

    await expect(page.locator("#status")).to_have_text("Importance set to 0.8.")
    await expect(importance).to_have_value("0.80")
    assert await page.evaluate("window.__marker") == 1
    await page.reload()
    await expect(row(page, "tea").locator(".memory-facts .importance")).to_have_text(
        "Importance 0.80"
    )
    stored = await fetch(app_data, tea, alice)
    assert (stored.importance, stored.version) == (0.8, 2)

    await open_editor(page, "tea")
    await importance.fill("1.5")
    await row(page, "tea").locator(".importance-form").get_by_role("button", name="Save").click()

    alert = row(page, "tea").locator(".memory-editor [role=alert]")
    await expect(alert).to_contain_text("between 0 and 1")
    await expect(importance).to_have_value("1.5")
    await expect(importance).to_have_attribute("aria-invalid", "true")
    await expect(row(page, "coffee").locator("[role=alert]")).to_have_count(0)
    stored = await fetch(app_data, tea, alice)
    assert (stored.importance, stored.version) == (0.8, 2)
    assert_no_errors_except(web, 422)


async def test_inline_tag_add_and_remove(web: Browsing, app_data: AppData) -> None:
    """Adding and removing a tag on a row updates its chips in place, and persists."""
    alice = await app_data.create_user("alice", PASSWORD)
    tea = await app_data.remember(alice, key="tea", tags=["drinks"])
    page = await logged_in(web, alice)
    await page.goto("/memories")
    await page.evaluate("window.__marker = 1")
    chips = row(page, "tea").locator(".tag")

    await open_editor(page, "tea")
    await row(page, "tea").locator(".tag-add input[name=tag]").fill("morning")
    await row(page, "tea").locator(".tag-add").get_by_role("button", name="Add").click()

    await expect(chips).to_have_text(["drinks", "morning"])
    await expect(page.locator("#status")).to_have_text("Tag added: morning.")
    await expect(row(page, "tea").locator(".tag-add input[name=tag]")).to_have_value("")

    await row(page, "tea").get_by_role("button", name="Remove tag drinks").click()

    await expect(chips).to_have_text(["morning"])
    await expect(page.locator("#status")).to_have_text("Tag removed: drinks.")
    await row(page, "tea").get_by_role("link", name="Done").click()
    await expect(row(page, "tea").locator(".memory-editor")).to_have_count(0)
    await expect(chips).to_have_text(["morning"])
    assert await page.evaluate("window.__marker") == 1
    await page.reload()
    await expect(chips).to_have_text(["morning"])
    assert (await fetch(app_data, tea, alice)).tags == ["morning"]
    web.assert_no_errors()


async def test_delete_then_undo_on_row(web: Browsing, app_data: AppData) -> None:
    """Delete on a row leaves "Deleted …" with Undo; Undo brings the row back, for good."""
    alice = await app_data.create_user("alice", PASSWORD)
    tea = await app_data.remember(alice, key="tea", tags=["drinks"])
    await app_data.remember(alice, key="coffee")
    page = await logged_in(web, alice)
    await page.goto("/memories")

    await page.get_by_role("button", name="Delete tea").click()

    deleted = page.locator("li.memory-row-deleted")
    await expect(deleted).to_contain_text("Deleted tea.")
    await expect(page.locator("#status")).to_have_text("Deleted “tea”.")
    assert (await fetch(app_data, tea, alice)).is_deleted

    await deleted.get_by_role("button", name="Undo").click()

    await expect(deleted).to_have_count(0)
    await expect(row(page, "tea").locator(".tag")).to_have_text(["drinks"])
    await expect(page.locator("#status")).to_have_text("Restored “tea”.")
    assert not (await fetch(app_data, tea, alice)).is_deleted
    await page.reload()
    assert sorted(await keys_shown(page)) == ["coffee", "tea"]
    web.assert_no_errors()


async def test_delete_then_restore_from_trash(web: Browsing, app_data: AppData) -> None:
    """A deleted memory is in Trash with its days left; restoring the selected one returns it."""
    alice = await app_data.create_user("alice", PASSWORD)
    tea = await app_data.remember(alice, key="tea")
    coffee = await app_data.remember(alice, key="coffee")
    await app_data.remember(alice, key="cake")
    page = await logged_in(web, alice)
    await page.goto("/memories")
    await page.get_by_role("button", name="Delete tea").click()
    await expect(page.locator("li.memory-row-deleted")).to_contain_text("Deleted tea.")
    await page.get_by_role("button", name="Delete coffee").click()
    await expect(page.locator("li.memory-row-deleted")).to_have_count(2)

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Trash").click()

    retention = web.server.settings.trash_retention_days
    trash_rows = page.locator(".trash-table tbody tr")
    await expect(trash_rows).to_have_count(2)
    await expect(page.locator(".count")).to_have_text("2 deleted memories")
    tea_row = trash_rows.filter(has_text="tea")
    await expect(tea_row.locator(".days-left")).to_have_text(f"{retention} days")

    await page.get_by_role("checkbox", name="Select tea").check()
    await page.get_by_role("button", name="Selected rows").click()
    await expect(page.locator(".bulk-count")).to_contain_text("1 memory selected")
    await page.get_by_role("button", name="Confirm: restore 1 memory").click()

    await expect(page.locator("#status")).to_have_text("Restored 1 memory.")
    await expect(trash_rows).to_have_count(1)
    await expect(trash_rows.first).to_contain_text("coffee")
    assert not (await fetch(app_data, tea, alice)).is_deleted
    assert (await fetch(app_data, coffee, alice)).is_deleted

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Memories").click()
    await expect(page.locator(".count")).to_have_text("2 memories")
    assert sorted(await keys_shown(page)) == ["cake", "tea"]
    web.assert_no_errors()


async def test_conflict_between_two_browsers(web: Browsing, app_data: AppData) -> None:
    """A stale save says someone else changed it (0.70), keeps what was typed; saving again wins."""
    alice = await app_data.create_user("alice", PASSWORD)
    tea = await app_data.remember(alice, key="tea", importance=0.5)
    first = await logged_in(web, alice)
    second = await logged_in(web, alice)
    for page in (first, second):
        await page.goto(f"/memories/{tea.id}")
        await expect(page.locator("input[name=importance]")).to_have_value("0.50")

    await first.fill("input[name=importance]", "0.7")
    await first.locator(".importance-form").get_by_role("button", name="Save").click()
    await expect(first.locator("#status")).to_have_text("Importance set to 0.7.")
    assert (await fetch(app_data, tea, alice)).importance == 0.7

    await second.fill("input[name=importance]", "0.2")
    await second.locator(".importance-form").get_by_role("button", name="Save").click()

    conflict = second.locator(".memory-editor .alert.conflict")
    await expect(conflict).to_contain_text("Someone else changed this memory")
    await expect(conflict).to_contain_text("importance 0.70")
    await expect(second.locator("input[name=importance]")).to_have_value("0.2")
    stored = await fetch(app_data, tea, alice)
    assert (stored.importance, stored.version) == (0.7, 2)

    await second.locator(".importance-form").get_by_role("button", name="Save").click()

    await expect(second.locator("#status")).to_have_text("Importance set to 0.2.")
    await expect(conflict).to_have_count(0)
    await expect(second.locator("input[name=importance]")).to_have_value("0.20")
    stored = await fetch(app_data, tea, alice)
    assert (stored.importance, stored.version) == (0.2, 3)
    assert web.log(first).errors == []
    assert_no_errors_except(web, 409)


async def test_trash_on_a_phone_shows_days_left_and_restore(
    web: Browsing, app_data: AppData
) -> None:
    """On a 390 px phone, Trash rows show their days left and Restore, to users and admins."""
    retention = web.server.settings.trash_retention_days
    for name, is_admin in (("alice", False), ("root", True)):
        user = await app_data.create_user(name, PASSWORD, is_admin=is_admin)
        key = f"{name}-tea"
        memory = await app_data.remember(user, key=key)
        assert memory.id is not None
        await delete_memory(app_data.db, principal=Principal.of_user(user), memory_id=memory.id)
        page = await logged_in(web, user, viewport="phone")

        await page.goto(f"/trash?q={key}")

        days_left = page.locator(".trash-table .days-left")
        await expect(days_left).to_have_text(f"{retention} days")
        # The page has loaded with its stylesheet: what is hidden now stays hidden.
        assert await days_left.is_visible(), f"{name}: days left hidden"
        assert await page.get_by_role("button", name=f"Restore {key}").is_visible(), (
            f"{name}: Restore hidden"
        )
    web.assert_no_errors()


# --- access ------------------------------------------------------------------------------------


async def test_other_users_memory_is_not_found(web: Browsing, app_data: AppData) -> None:
    """An ordinary user gets the 404 page for another user's memory, and never sees its key."""
    alice = await app_data.create_user("alice", PASSWORD)
    bob = await app_data.create_user("bob", PASSWORD)
    await app_data.remember(alice, key="alices-tea")
    secret = await app_data.remember(
        bob, key="bobs-secret-key", content="Bob's private note.", tags=["private"]
    )
    deleted = await app_data.remember(bob, key="bobs-deleted-key")
    await delete_memory(app_data.db, principal=Principal.of_user(bob), memory_id=deleted.id or 0)
    page = await logged_in(web, alice)

    for memory in (secret, deleted):
        response = await page.goto(f"/memories/{memory.id}")
        assert response is not None and response.status == 404
        await expect(page.locator("main h1")).to_have_text("404")
        html = await page.content()
        assert "bobs-" not in html and "private note" not in html

    for path in ("/", "/memories?state=all", "/memories?q=bobs", "/memories?tag=private", "/trash"):
        await page.goto(path)
        await expect(page.locator("main h1")).to_be_visible()
        html = await page.content()
        assert "bobs-" not in html and "private note" not in html, path
    await page.goto("/memories?state=all")
    assert await keys_shown(page) == ["alices-tea"]
    web.assert_no_errors()


async def test_logout_then_back_shows_no_data(web: Browsing, app_data: AppData) -> None:
    """After logging out, Back lands on the login page: no memory is shown again."""
    alice = await app_data.create_user("alice", PASSWORD)
    await app_data.remember(alice, key="tea", content="Likes green tea.")
    page = await logged_in(web, alice)
    await page.goto("/memories")
    await expect(row(page, "tea")).to_be_visible()

    await page.locator("form.account").get_by_role("button", name="Log out").click()

    await expect(page.locator("#status")).to_have_text("You are logged out.")
    assert path_of(page) == "/login"

    await page.go_back()

    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fmemories$"))
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(page.locator("li.memory-row")).to_have_count(0)
    assert "Likes green tea." not in await page.content()
    web.assert_no_errors()


# --- without JavaScript --------------------------------------------------------------------------


async def test_delete_undo_and_trash_restore_without_javascript(
    web: Browsing, app_data: AppData
) -> None:
    """With JavaScript off, delete redirects with a flash and Undo; Trash restores too."""
    alice = await app_data.create_user("alice", PASSWORD)
    tea = await app_data.remember(alice, key="tea")
    await app_data.remember(alice, key="coffee")
    page = await logged_in(web, alice, java_script_enabled=False)
    await page.goto("/memories")
    status = page.locator("#status")

    await page.get_by_role("button", name="Delete tea").click()

    await expect(status.locator(".flash")).to_contain_text("Deleted “tea”.")
    assert path_of(page) == "/memories"
    assert await keys_shown(page) == ["coffee"]
    assert (await fetch(app_data, tea, alice)).is_deleted

    await status.get_by_role("button", name="Undo").click()

    await expect(status).to_have_text("Restored “tea”.")
    assert path_of(page) == "/memories"
    assert sorted(await keys_shown(page)) == ["coffee", "tea"]
    assert not (await fetch(app_data, tea, alice)).is_deleted

    await page.get_by_role("button", name="Delete tea").click()
    await expect(status.locator(".flash")).to_contain_text("Deleted “tea”.")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Trash").click()
    await expect(page.locator(".trash-table tbody tr")).to_have_count(1)
    await expect(status).to_have_text("")

    await page.get_by_role("button", name="Restore tea").click()

    await expect(status).to_have_text("Restored 1 memory.")
    assert path_of(page) == "/trash"
    await expect(page.locator(".empty")).to_have_text("Trash is empty.")
    assert not (await fetch(app_data, tea, alice)).is_deleted
    await page.goto("/memories")
    assert sorted(await keys_shown(page)) == ["coffee", "tea"]
    web.assert_no_errors()


# --- untrusted text ------------------------------------------------------------------------------

XSS_KEY = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"
XSS_CONTENT = "Note: <script>window.__xss=1</script> and <img src=x onerror=window.__xss=2> here"


async def test_stored_script_is_shown_as_text(web: Browsing, app_data: AppData) -> None:
    """Markup in a key and content is shown literally on the list, detail and dashboard pages."""
    alice = await app_data.create_user("alice", PASSWORD)
    memory = await app_data.remember(alice, key=XSS_KEY, content=XSS_CONTENT, tags=["<b>bold</b>"])
    page = await logged_in(web, alice)

    await expect(page.locator("main").get_by_text(XSS_KEY, exact=True)).to_have_count(1)

    await page.goto("/memories")
    shown = page.locator("li.memory-row")
    await expect(shown.locator(".memory-key")).to_have_text(XSS_KEY)
    await expect(shown.locator(".memory-content")).to_have_text(XSS_CONTENT)
    await expect(shown.locator(".tag")).to_have_text(["<b>bold</b>"])
    await expect(shown.locator("img, script, b")).to_have_count(0)
    assert await page.evaluate("typeof window.__xss") == "undefined"

    await page.goto(f"/memories/{memory.id}")
    await expect(page.locator("h1.memory-heading")).to_contain_text(XSS_KEY)
    await expect(page.locator("dd.break")).to_have_text(XSS_KEY)
    await expect(page.locator("textarea[name=content]")).to_have_value(XSS_CONTENT)
    await expect(page.locator("main img, main script, main b")).to_have_count(0)
    assert await page.title() == f"{XSS_KEY} · memory-admin"
    assert await page.evaluate("typeof window.__xss") == "undefined"
    web.assert_no_errors()
    assert web.log(page).blocked_requests == []


# --- screenshots ---------------------------------------------------------------------------------


async def seed_for_screenshots(app_data: AppData) -> tuple[User, LongTermMemory]:
    """An admin and two users with 30 memories: tags, some expiring, some expired, two deleted.

    Returns the admin and a memory worth showing on the detail page.
    """
    admin = await app_data.create_user("root", PASSWORD, is_admin=True)
    dana = await app_data.create_user("dana", PASSWORD)
    eli = await app_data.create_user("eli-the-long-named-agent-user", PASSWORD)
    now = utcnow()
    topics = ["drinks", "work", "family", "health", "travel", "music"]
    memories: list[tuple[User, LongTermMemory]] = []
    for n in range(30):
        owner = dana if n % 3 else eli
        expires = None
        if n % 7 == 3:
            expires = now - timedelta(days=n)
        elif n % 5 == 1:
            expires = now + timedelta(days=n % 10 + 1)
        long_key = "-with-a-rather-long-key-that-needs-to-wrap" if n % 4 == 0 else ""
        memory = await app_data.remember(
            owner,
            namespace=["preferences", "projects/alpha", "people"][n % 3],
            key=f"memory-{n:02d}-{topics[n % 6]}{long_key}",
            content=f"Memory {n}: the user mentioned something about {topics[n % 6]}. "
            + "It came up again in a later conversation and was confirmed. " * (n % 4),
            tags=topics[n % 6 : n % 6 + 1 + n % 3],
            importance=round((n % 10) / 10 + 0.05, 2),
            expires_at=expires,
        )
        memories.append((owner, memory))
    for owner, memory in (memories[5], memories[10]):
        assert memory.id is not None
        await delete_memory(app_data.db, principal=Principal.of_user(owner), memory_id=memory.id)
    return admin, memories[8][1]


async def test_screenshots_of_every_page(web: Browsing, app_data: AppData) -> None:
    """Login, dashboard, browser, detail and Trash, light and dark, desktop and phone."""
    admin, detail = await seed_for_screenshots(app_data)
    paths = {
        "dashboard": "/",
        "memories": "/memories",
        "memories-all": "/memories?state=all",
        "detail": f"/memories/{detail.id}",
        "trash": "/trash",
    }
    viewports: tuple[Viewport, ...] = ("desktop", "phone")
    for viewport in viewports:
        page = await web.new_page(viewport=viewport)

        async def shoot(name: str, page: Page = page, viewport: Viewport = viewport) -> None:
            """Save the page in both color schemes."""
            schemes: tuple[ColorScheme, ...] = ("light", "dark")
            for scheme in schemes:
                await set_color_scheme(page, scheme)
                path = await screenshot(page, f"{name}-{scheme}-{viewport}")
                assert path.stat().st_size > 0

        await page.goto("/login")
        await shoot("login")
        await log_in(page, web.server, admin.username, PASSWORD)
        for name, path in paths.items():
            await page.goto(path)
            await expect(page.locator("main h1")).to_be_visible()
            await shoot(name)
        assert await page.evaluate("innerWidth") == (1280 if viewport == "desktop" else 390)
    web.assert_no_errors()
