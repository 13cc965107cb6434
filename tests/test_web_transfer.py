"""Export of the browser's filter (JSON Lines, CSV) and the admins' import page (issue 14, 5)."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.db import Database
from webapp.models import LongTermMemory
from webapp.services.transfer import export_jsonl
from webapp.services.transfer.uploads import clean_stale_uploads
from webapp.settings import Settings

UPLOAD_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The module's settings with its own upload folder and a small upload limit."""
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key",
        import_dir=tmp_path_factory.mktemp("imports"),
        import_max_bytes=UPLOAD_LIMIT,
    )


def _lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line]


async def test_export_jsonl_equals_the_service_export(
    session: AsyncSession, visitor: Visitor, db: AsyncEngine, settings: Settings
) -> None:
    ann = await make_user(session, username="ann", is_admin=True)
    for n in range(5):
        await make_memory(session, user=ann, key=f"k{n}", namespace="a/b", tags=["x", "y"])
    await visitor.log_in("ann")
    response = await visitor.get("/memories/export?state=all&format=jsonl")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    database = Database(db)
    expected = b"".join([chunk async for chunk in export_jsonl(database)])
    assert response.content == expected
    assert len(_lines(response.text)) == 5


async def test_export_respects_filters_and_default_state(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, key="keep", namespace="work", tags=["t"])
    await make_memory(session, user=ann, key="other-ns", namespace="home", tags=["t"])
    await make_memory(session, user=ann, key="untagged", namespace="work")
    await make_memory(session, user=ann, key="gone", namespace="work", tags=["t"], is_deleted=True)
    await visitor.log_in("ann")
    filtered = await visitor.get("/memories/export?namespace=work&tag=t")
    assert [line["key"] for line in _lines(filtered.text)] == ["keep"]
    everything = await visitor.get("/memories/export?namespace=work&tag=t&state=all")
    assert sorted(line["key"] for line in _lines(everything.text)) == ["gone", "keep"]


async def test_export_of_chosen_ids_and_only_own_rows(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    mine = [await make_memory(session, user=ann, key=f"a{n}") for n in range(3)]
    theirs = await make_memory(session, user=bob, key="secret")
    await visitor.log_in("ann")
    everything = await visitor.get("/memories/export?state=all")
    assert {line["user"] for line in _lines(everything.text)} == {"ann"}
    as_bob = await visitor.get("/memories/export?user=bob")
    assert _lines(as_bob.text) == []
    chosen = await visitor.get(f"/memories/export?id={mine[0].id}&id={mine[2].id}&id={theirs.id}")
    assert [line["key"] for line in _lines(chosen.text)] == ["a0", "a2"]


async def test_export_csv_escapes_formulas_and_keeps_tags(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    await make_memory(
        session, user=ann, key="=cmd()", content='+1, "quoted"\nsecond line', tags=["a", "b"]
    )
    await make_memory(session, user=ann, key="plain", content="@home")
    await visitor.log_in("ann")
    response = await visitor.get("/memories/export?format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="memories-' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    by_key = {row["key"]: row for row in rows}
    assert set(by_key) == {"'=cmd()", "plain"}
    assert by_key["'=cmd()"]["content"] == '\'+1, "quoted"\nsecond line'
    assert orjson.loads(by_key["'=cmd()"]["tags"]) == ["a", "b"]
    assert by_key["plain"]["content"] == "'@home"
    assert by_key["plain"]["user"] == "ann"


async def test_browser_export_links_carry_the_filter(
    session: AsyncSession, visitor: Visitor
) -> None:
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, key="k", namespace="work")
    await visitor.log_in("ann")
    page = parse(await visitor.get("/memories?namespace=work&state=all"))
    links = [a["href"] for a in page.select(".export-links a")]
    assert links == [
        "/memories/export?namespace=work&state=all&format=jsonl",
        "/memories/export?namespace=work&state=all&format=csv",
    ]


def _files_of(settings: Settings, report_url: str) -> list[Path]:
    upload_id = report_url.rsplit("/", 1)[1]
    return list(Path(settings.import_dir or "").glob(f"{upload_id}.*"))


def _jsonl(*records: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


async def _upload(visitor: Visitor, body: bytes, *, htmx: bool = False, csrf: bool = True):  # type: ignore[no-untyped-def]
    headers = {"accept": "text/html"}
    data = {}
    if htmx:
        headers |= {"HX-Request": "true", "X-CSRF-Token": visitor.csrf_token}
    elif csrf:
        data["csrf_token"] = visitor.csrf_token
    return await visitor.client.post(
        "/import", data=data, files={"file": ("m.jsonl", body)}, headers=headers
    )


async def test_import_dry_run_then_import(
    session: AsyncSession, visitor: Visitor, settings: Settings
) -> None:
    admin = await make_user(session, username="root", is_admin=True)
    await make_memory(session, user=admin, namespace="n", key="old", content="before")
    await visitor.log_in("root")
    await visitor.get("/import")
    body = _jsonl(
        {"user": "root", "namespace": "n", "key": "old", "content": "after"},
        {"user": "carl", "namespace": "n", "key": "new", "content": "hello"},
    )
    response = await _upload(visitor, body)
    assert response.status_code == 303
    report_url = response.headers["location"]
    page = parse(await visitor.get(report_url))
    counts = {dd["id"]: dd.get_text() for dd in page.select(".import-counts dd")}
    assert counts == {
        "count-created": "1",
        "count-updated": "1",
        "count-unchanged": "0",
        "count-users": "1",
        "count-rejected": "0",
    }
    await session.commit()
    assert (await session.execute(select(LongTermMemory.key))).scalars().all() == ["old"]
    run = page.select_one("form[action$='/run']")
    assert run is not None
    done = await visitor.post(run["action"])
    assert done.status_code == 303
    assert "Created 1, updated 1." in (await visitor.get(done.headers["location"])).text
    await session.commit()
    rows = await session.execute(select(LongTermMemory.key, LongTermMemory.content))
    assert dict(rows.tuples().all()) == {"old": "after", "new": "hello"}
    assert _files_of(settings, report_url) == []
    assert (await visitor.get(report_url)).status_code == 404


async def test_rejected_lines_are_listed_and_block_the_import(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="root", is_admin=True)
    await visitor.log_in("root")
    await visitor.get("/import")
    body = (
        _jsonl({"user": "root", "namespace": "n", "key": "good", "content": "c"})
        + b"not json\n\n"
        + _jsonl({"user": "root", "namespace": "n", "key": "k2"})
    )
    response = await _upload(visitor, body, htmx=True)
    assert response.status_code == 200
    page = parse(response)
    rejected = [
        [cell.get_text() for cell in row.select("td")]
        for row in page.select(".rejected-table tbody tr")
    ]
    assert [line for line, _ in rejected] == ["2", "4"]
    assert "not valid JSON" in rejected[0][1]
    assert "'content' is required" in rejected[1][1]
    assert page.select_one("#count-created").get_text() == "1"
    assert page.select_one("form[action$='/run']") is None
    upload_id = response.headers["HX-Push-Url"].rsplit("/", 1)[1]
    refused = await visitor.post(f"/import/{upload_id}/run")
    assert refused.status_code == 422
    assert "rejected" in parse(refused).select_one(".alert").get_text()
    await session.commit()
    assert (await session.execute(select(LongTermMemory.id))).first() is None


async def test_discard_deletes_the_upload(
    session: AsyncSession, visitor: Visitor, settings: Settings
) -> None:
    await make_user(session, username="root", is_admin=True)
    await visitor.log_in("root")
    await visitor.get("/import")
    response = await _upload(
        visitor, _jsonl({"user": "root", "namespace": "n", "key": "k", "content": "c"})
    )
    report_url = response.headers["location"]
    discarded = await visitor.post(f"{report_url}/discard")
    assert discarded.status_code == 303
    assert "nothing was imported" in (await visitor.get(discarded.headers["location"])).text
    assert (await visitor.get(report_url)).status_code == 404
    assert _files_of(settings, report_url) == []
    await session.commit()
    assert (await session.execute(select(LongTermMemory.id))).first() is None


async def test_upload_over_its_limit_is_413_while_other_bodies_keep_theirs(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="root", is_admin=True)
    await visitor.log_in("root")
    await visitor.get("/import")
    big = _jsonl({"user": "root", "namespace": "n", "key": "k", "content": "x" * 1000}) * 70
    assert len(big) > UPLOAD_LIMIT
    response = await _upload(visitor, big)
    assert response.status_code == 413
    within = _jsonl({"user": "root", "namespace": "n", "key": "k", "content": "x" * 40_000})
    assert (await _upload(visitor, within)).status_code == 303


async def test_import_is_admins_only_and_needs_csrf(
    session: AsyncSession, visitor: Visitor, open_visitor
) -> None:  # type: ignore[no-untyped-def]
    await make_user(session, username="ann")
    await make_user(session, username="root", is_admin=True)
    await visitor.log_in("ann")
    assert (await visitor.get("/import")).status_code == 403
    body = _jsonl({"user": "ann", "namespace": "n", "key": "k", "content": "c"})
    assert (await _upload(visitor, body)).status_code == 403
    assert "Import" not in [a.get_text() for a in parse(await visitor.get("/")).select("nav a")]
    admin = open_visitor()
    await admin.log_in("root")
    assert "Import" in [a.get_text() for a in parse(await admin.get("/")).select("nav a")]
    assert (await _upload(admin, body, csrf=False)).status_code == 403
    response = await _upload(admin, body)
    report_url = response.headers["location"]
    other = open_visitor()
    await other.log_in("root")
    assert (await other.get(report_url)).status_code == 404, "an upload is its session's"
    await session.commit()
    assert (await session.execute(select(LongTermMemory.id))).first() is None


async def test_bad_export_filter_is_a_4xx_before_streaming(
    session: AsyncSession, visitor: Visitor
) -> None:
    await make_user(session, username="ann")
    await visitor.log_in("ann")
    bad_namespace = await visitor.get("/memories/export?namespace=%2Fbad%2F%2F")
    assert bad_namespace.status_code in (400, 422)
    assert "namespace" in parse(bad_namespace).get_text().lower()
    assert (await visitor.get("/memories/export?format=xml")).status_code == 422


def test_stale_uploads_are_cleaned(settings: Settings) -> None:
    folder = Path(settings.import_dir or "")
    old, new = folder / ("o" * 22 + ".jsonl"), folder / ("n" * 22 + ".jsonl")
    for path in (old, new):
        path.write_bytes(b"{}\n")
    hours_ago = time.time() - (settings.import_stale_hours + 1) * 3600
    os.utime(old, (hours_ago, hours_ago))
    assert clean_stale_uploads(settings) == 1
    assert not old.exists() and new.exists()
    new.unlink()
