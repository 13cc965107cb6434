"""Contention: clients writing, editing, deleting and restoring the same memories at once
through the API and the admin forms, and the checks that nothing was lost on the way.

Used by tests/test_concurrency.py for a few seconds on each database and by
bench/bench_concurrency.py for a minute. Every answer is noted; afterwards the database
must hold every acknowledged write, and each memory's event trail must lead, edit by
edit, to its row: an edit bumps the version by one and writes one event, so the k-th
event after the create is the edit that made version k + 1, and its new values are the
ones that write was acknowledged with.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_token, make_user
from tests.web_support import Visitor
from webapp.db import create_sessionmaker
from webapp.models import LongTermMemory, MemoryEvent

SHARED = 4
"""Memories of each user that every client of that user writes to."""
API = "/api/v1"


@dataclass
class Cast:
    """Two users with a token each, their shared memories, and an admin who edits them."""

    secrets: list[str]
    shared: list[list[int]]
    admin: str


async def prepare(session: AsyncSession) -> Cast:
    secrets, shared = [], []
    for name in ("ann", "ben"):
        user = await make_user(session, username=f"{name}-{random.randrange(10**9)}")
        secrets.append((await make_token(session, user=user, name="contention"))[1])
        memories = [
            await make_memory(session, user=user, namespace="shared", key=f"k{n}")
            for n in range(SHARED)
        ]
        shared.append([m.id for m in memories if m.id is not None])
    admin = await make_user(session, username=f"root-{random.randrange(10**9)}", is_admin=True)
    return Cast(secrets=secrets, shared=shared, admin=admin.username)


@dataclass(frozen=True)
class Ack:
    """A write the server acknowledged: the memory, the version it made and its state."""

    memory_id: int
    version: int
    content: str
    is_deleted: bool


@dataclass
class Report:
    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    """5xx answers, "database is locked" seen, statuses outside those allowed."""
    acks: list[Ack] = field(default_factory=list)
    form_contents: list[tuple[int, str]] = field(default_factory=list)
    """(memory, content) of each edit the admin form acknowledged (it shows no version)."""
    stale_refused: int = 0

    def note(self, what: str, response: httpx.Response, allowed: set[int]) -> bool:
        """Count the answer; True for a success (303: a form saved). Any other answer not
        allowed is a problem."""
        self.statuses[f"{what} {response.status_code}"] += 1
        if "database is locked" in response.text:
            self.problems.append(f"{what}: 'database is locked' reached a client")
        if response.status_code >= 500 or response.status_code not in allowed:
            self.problems.append(f"{what} {response.status_code}: {response.text[:200]}")
        return response.status_code in (200, 201, 303)

    def ack(self, response: httpx.Response) -> None:
        body = response.json()
        self.acks.append(Ack(body["id"], body["version"], body["content"], body["is_deleted"]))


async def _agent(
    client: httpx.AsyncClient, secret: str, ids: list[int], number: int, stop: float, report: Report
) -> None:
    """One agent until the clock reaches stop: upserts, edits with the version just read,
    deliberately stale edits (must be 409), deletes and restores of the shared memories."""
    headers = {"Authorization": f"Bearer {secret}"}
    chance = random.Random(number)
    sent = 0
    while time.monotonic() < stop:
        sent += 1
        content = f"client {number} write {sent}"
        index = chance.randrange(SHARED)
        memory_id, action = ids[index], chance.random()
        if action < 0.35:
            body = {"namespace": "shared", "key": f"k{index}", "content": content}
            response = await client.put(f"{API}/memories", json=body, headers=headers)
            if report.note("PUT", response, {200, 201}):
                report.ack(response)
            continue
        current = await client.get(
            f"{API}/memories/{memory_id}", params={"include_deleted": "true"}, headers=headers
        )
        report.note("GET", current, {200})
        version, deleted = current.json()["version"], current.json()["is_deleted"]
        if action < 0.65:
            patch = {"content": content, "version": version}
            response = await client.patch(
                f"{API}/memories/{memory_id}", json=patch, headers=headers
            )
            if report.note("PATCH", response, {200, 404, 409}):  # 404: deleted meanwhile
                report.ack(response)
        elif action < 0.75 and version > 1:
            stale = {"content": content, "version": version - 1}
            response = await client.patch(
                f"{API}/memories/{memory_id}", json=stale, headers=headers
            )
            report.note("stale PATCH", response, {404, 409})
            report.stale_refused += response.status_code == 409
        elif action < 0.88 and not deleted:
            response = await client.delete(f"{API}/memories/{memory_id}", headers=headers)
            if report.note("DELETE", response, {200, 404}):
                report.ack(response)
        else:
            response = await client.post(f"{API}/memories/{memory_id}/restore", headers=headers)
            if report.note("restore", response, {200, 404}):
                report.ack(response)


_VERSION = re.compile(r'name="version" value="(\d+)"')


async def _admin(visitor: Visitor, ids: list[int], stop: float, report: Report) -> None:
    """A person editing the shared memories' content on their pages, with the version the
    page showed: saved (303) or refused as changed meanwhile (409)."""
    sent = 0
    chance = random.Random(-1)
    while time.monotonic() < stop:
        sent += 1
        memory_id = chance.choice(ids)
        page = await visitor.get(f"/memories/{memory_id}")
        report.note("form GET", page, {200})
        if "This memory is in Trash" in page.text:
            response = await visitor.post(f"/memories/{memory_id}/restore")
            report.note("form restore", response, {303})
            continue
        found = _VERSION.search(page.text)
        if found is None:
            report.problems.append(f"no version on the page of memory {memory_id}")
            continue
        content = f"admin write {sent}"
        fields = {"content": content, "expires_at": "", "version": found.group(1)}
        response = await visitor.post(f"/memories/{memory_id}/edit", fields)
        # 409: changed since the page was shown, deleted meanwhile included
        if report.note("form edit", response, {303, 404, 409}):
            report.form_contents.append((memory_id, content))


async def contend(server_url: str, cast: Cast, seconds: float, clients: int = 8) -> Report:
    """clients - 1 agents (of both users) and one admin at the forms, for seconds."""
    report = Report()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=server_url, limits=limits, timeout=60) as client:
        async with httpx.AsyncClient(base_url=server_url, timeout=60) as browser:
            visitor = Visitor(browser)
            assert (await visitor.log_in(cast.admin)).status_code == 303
            loops = [
                _agent(client, cast.secrets[n % 2], cast.shared[n % 2], n, stop, report)
                for n in range(clients - 1)
            ]
            every_shared = [i for ids in cast.shared for i in ids]
            await asyncio.gather(*loops, _admin(visitor, every_shared, stop, report))
    return report


async def first_writes(
    server_url: str, cast: Cast, rounds: int, writers: int = 8
) -> list[Counter[int]]:
    """writers first writes of one new key at once, rounds times: each round's statuses."""
    headers = {"Authorization": f"Bearer {cast.secrets[0]}"}
    found = []
    async with httpx.AsyncClient(base_url=server_url, timeout=60) as client:
        for number in range(rounds):
            body = {
                "namespace": "race",
                "key": f"first-{number}-{time.time_ns()}",
                "content": "first",
            }
            answers = await asyncio.gather(
                *(client.put(f"{API}/memories", json=body, headers=headers) for _ in range(writers))
            )
            found.append(Counter(answer.status_code for answer in answers))
    return found


async def lost_or_broken(engine: AsyncEngine, report: Report) -> list[str]:
    """What the database contradicts of the report: acknowledged writes missing from the
    trail, trails that do not lead to their rows, a version made twice."""
    problems: list[str] = []
    ids = {ack.memory_id for ack in report.acks} | {m for m, _ in report.form_contents}
    async with create_sessionmaker(engine)() as session:
        rows = {
            m.id: m
            for m in await session.scalars(select(LongTermMemory).where(LongTermMemory.id.in_(ids)))  # type: ignore[union-attr]
        }
        trail: dict[int, list[MemoryEvent]] = {}
        query = select(MemoryEvent).where(MemoryEvent.memory_id.in_(ids)).order_by(MemoryEvent.id)  # type: ignore[attr-defined,arg-type]
        for event in await session.scalars(query):
            trail.setdefault(event.memory_id, []).append(event)
    states: dict[int, dict[int, dict[str, Any]]] = {}
    for memory_id, row in rows.items():
        edits = [event for event in trail.get(memory_id, []) if event.action != "create"]
        if len(edits) != row.version - 1:
            problems.append(f"memory {memory_id}: version {row.version} after {len(edits)} edits")
            continue
        # Back from the row to version 1: each edit's new values must be the state it left.
        state = {"content": row.content, "is_deleted": row.is_deleted}
        by_version = {row.version: dict(state)}
        for version, event in zip(range(row.version, 1, -1), reversed(edits), strict=True):
            for name, change in (event.changes or {}).items():
                if name in state and change["new"] != state[name]:
                    problems.append(
                        f"memory {memory_id} v{version}: trail says {name}={change['new']!r}"
                    )
                if name in state:
                    state[name] = change["old"]
            by_version[version - 1] = dict(state)
        states[memory_id] = by_version
    made: Counter[tuple[int, int]] = Counter((ack.memory_id, ack.version) for ack in report.acks)
    problems += [
        f"version {v} of memory {m} acknowledged {n} times" for (m, v), n in made.items() if n > 1
    ]
    for ack in report.acks:
        held = states.get(ack.memory_id, {}).get(ack.version)
        if held != {"content": ack.content, "is_deleted": ack.is_deleted}:
            problems.append(f"acknowledged {ack} but the trail holds {held}")
    for memory_id, content in report.form_contents:
        if all(state["content"] != content for state in states.get(memory_id, {}).values()):
            problems.append(f"the form's edit {content!r} of memory {memory_id} is lost")
    return problems
