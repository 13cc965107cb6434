"""`memory-admin demo`: a throwaway SQLite database of generated memories, with logins.

The memories come from a small deterministic generator (same seed, same memories; the
timestamps are relative to the run's start) and go in through the JSON Lines import, so
every index and the audit trail are as a real import leaves them.
"""

from __future__ import annotations

import bisect
import io
import itertools
import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

import orjson

from webapp import migrate
from webapp.db import Database, create_engine
from webapp.errors import MemoryAdminError
from webapp.formats import format_time
from webapp.models import UserCreate
from webapp.services.users import (
    count_users,
    create_user,
    get_user_by_username,
    verify_password,
)
from webapp.settings import Settings
from webapp.types import utcnow

DEFAULT_PATH = "memory_admin_demo.db"
DEFAULT_MEMORIES = 2_000
MAX_MEMORIES = 1_000_000
ADMIN = "admin"
DEMO_USER = "demo"
APPLICATION_ID = 0x6D61646D  # "madm" in the SQLite header: this file was made by the demo
"""Lets a later run tell its own file from a real database it must not delete."""

DAY = 86_400
HISTORY_DAYS = 365

# (username, share of the memories). The admin keeps a few notes of their own.
USERS = (
    (DEMO_USER, 0.30),
    ("alice", 0.24),
    ("bob", 0.18),
    ("carmen", 0.14),
    ("dmitri", 0.10),
    (ADMIN, 0.04),
)
PROJECTS = ("apollo", "borealis", "cedar", "dynamo")

# fmt: off
POOLS: dict[str, tuple[str, ...]] = {
    "person": ("Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines",
               "Jonas", "Kemi", "Lucas", "Maya", "Nils", "Olga", "Priya", "Rafael", "Sofia"),
    "person2": ("Tom", "Uma", "Victor", "Wen", "Yara", "Zoltan", "Marta", "Omar"),
    "city": ("Lisbon", "Berlin", "Lyon", "Toronto", "Osaka", "Porto", "Utrecht", "Denver",
             "Ghent", "Valencia", "Krakow", "Melbourne"),
    "role": ("product manager", "data engineer", "designer", "backend developer",
             "team lead", "support engineer", "researcher", "accountant"),
    "company": ("Northwind", "Acme Logistics", "Bluebird Health", "Lumen Labs",
                "Fernwood Bank", "Orbit Games"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"),
    "date": ("3 March", "14 April", "22 May", "9 June", "1 July", "18 August",
             "30 September", "12 October", "5 November", "19 December", "8 January"),
    "time": ("8:30", "9:00", "9:30", "10:00", "11:15", "13:00", "14:30", "16:00"),
    "n": ("2", "3", "4", "5", "6", "8", "10", "12"),
    "money": ("120 EUR", "450 EUR", "2,000 EUR", "35 USD", "80 GBP", "15,000 EUR"),
    "coffee": ("a flat white", "black filter coffee", "an oat-milk cappuccino",
               "a double espresso", "green tea"),
    "allergen": ("peanuts", "shellfish", "sesame", "gluten", "kiwi"),
    "cuisine": ("Japanese", "Georgian", "Lebanese", "Mexican", "South Indian", "Portuguese"),
    "dish": ("ramen", "khachapuri", "falafel", "tacos al pastor", "masala dosa",
             "pasteis de nata", "mushroom risotto"),
    "food": ("coriander", "olives", "blue cheese", "raw onion", "liquorice"),
    "restaurant": ("Casa Lima", "Noodle Bar 88", "The Green Fig", "Trattoria Sole",
                   "Kobo Izakaya"),
    "airline": ("KLM", "TAP", "Lufthansa", "Air Canada", "ANA"),
    "channel": ("Slack", "e-mail", "Signal", "text"),
    "transport": ("bike", "tram", "train", "car", "bus"),
    "language": ("Spanish", "Portuguese", "Japanese", "German", "Polish", "Dutch"),
    "status": ("on track", "slightly behind", "blocked on legal review", "in beta",
               "waiting for budget approval"),
    "component": ("billing", "search", "onboarding", "mobile app", "data pipeline", "API"),
    "tool_choice": ("PostgreSQL over MySQL", "Kafka over RabbitMQ", "Figma over Sketch",
                    "Terraform over Pulumi", "dbt over hand-written SQL", "Grafana over Datadog"),
    "doc": ("design doc", "budget sheet", "launch checklist", "status report", "contract"),
    "meeting": ("planning session", "design review", "retro", "demo", "budget call"),
    "medication": ("vitamin D", "an antihistamine", "iron tablets", "magnesium"),
    "hobby": ("vinyl", "climbing", "origami", "sourdough", "birdwatching", "chess"),
    "sight": ("old harbour", "botanical garden", "castle", "modern art museum", "market hall"),
    "hotel": ("Hotel Aurora", "the Riverside Inn", "a small guesthouse", "Casa do Rio"),
    "book": ("The Pragmatic Programmer", "Thinking in Systems", "Piranesi",
             "The Overstory", "Designing Data-Intensive Applications"),
    "topic": ("statistics", "negotiation", "SQL", "public speaking", "Rust", "watercolour"),
    "service": ("streaming", "meal kit", "gym", "cloud storage", "newspaper"),
    "goal": ("new bike", "summer holiday", "emergency fund", "kitchen renovation"),
    "task": ("renew the passport", "book the car service", "call the bank",
             "back up the laptop", "water the plants"),
}


@dataclass(frozen=True)
class Topic:
    """What memories in one namespace are about.

    facts: (key stem, the sentence a memory under that key opens with); one to three more
    follow it, from extras or else from the other facts. dated: keys carry the memory's
    creation date, as minutes do.
    """

    namespace: str
    facts: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]
    dated: bool = False
    extras: tuple[str, ...] = ()


TOPICS = (
    Topic("profile", (
        ("home-city", "Lives in {city} and has been there for {n} years."),
        ("job", "Works as a {role} at {company}."),
        ("working-hours", "Usually online from {time}, and rarely after 18:00."),
        ("languages", "Speaks {language} at home and English at work."),
        ("name", "Prefers to be called by first name, also in formal e-mails."),
        ("birthday", "Birthday is on {date}; likes a quiet dinner better than a party."),
        ("commute", "Gets to work by {transport} most days."),
    ), ("personal", "profile")),
    Topic("preferences/food", (
        ("coffee-order", "Drinks {coffee} in the morning and no caffeine after 15:00."),
        ("allergies", "Allergic to {allergen}, so always check the menu first."),
        ("favourite-cuisine", "Loves {cuisine} food, {dish} most of all."),
        ("dislikes", "Does not eat {food} and asks for it to be left out."),
        ("diet", "Mostly vegetarian during the week."),
        ("favourite-restaurant", "Favourite restaurant is {restaurant} in {city}."),
        ("usual-order", "Orders {dish} whenever it is on the menu."),
    ), ("food", "preferences", "restaurant")),
    Topic("preferences/travel", (
        ("seat", "Prefers an aisle seat on flights longer than two hours."),
        ("airline", "Flies {airline} when possible, for the miles."),
        ("hotels", "Likes small hotels within walking distance of the centre."),
        ("luggage", "Travels with hand luggage only."),
        ("trains", "Takes the train over a flight for anything under {n} hours."),
    ), ("travel", "preferences")),
    Topic("preferences/communication", (
        ("tone", "Prefers short messages with the decision in the first line."),
        ("channel", "Would rather get a {channel} message than a call."),
        ("meeting-times", "No meetings before {time} on {day}s."),
        ("summaries", "Likes summaries as a few bullet points, not long paragraphs."),
        ("notifications", "Turns notifications off after 19:00 and at weekends."),
    ), ("communication", "preferences")),
    Topic("projects/{project}", (
        ("status", "{Project} is {status}; the next milestone is on {date}."),
        ("owners", "{person} owns the {component} work on {Project}."),
        ("decision", "Chose {tool_choice} after the review on {day}."),
        ("risk", "The main risk is the {component} migration slipping by {n} weeks."),
        ("budget", "Budget for the quarter is {money}, and a third of it is already spent."),
        ("next-step", "Next step: send the {doc} to {person} before {day}."),
        ("retro", "The retro found the hand-off between design and engineering too slow."),
    ), ("work", "project", "deadline", "decision")),
    Topic("work/meetings", (
        ("standup", "{person} gave an update on {component}: {status}."),
        ("planning", "Agreed to move the {meeting} to {day} at {time}."),
        ("one-on-one", "Action item: {person} drafts the {doc} by {day}."),
        ("standup", "Nobody had blockers, so the meeting ended early."),
        ("team-meeting", "Talked about hiring another {role} for the team."),
    ), ("work", "meeting", "follow-up"), dated=True),
    Topic("work/contacts", (
        ("anna-berg", "Anna Berg is a {role} at {company}; they met at a conference."),
        ("ben-okafor", "Ben Okafor runs the {component} team at {company}."),
        ("grace-liu", "Grace Liu is the {role} to ask about {tool_choice}."),
        ("jonas-weber", "Jonas Weber is a {role} at {company} and lives in {city}."),
        ("priya-nair", "Priya Nair was introduced by {person2} in {month}."),
    ), ("contacts", "work"), extras=(
        "Best reached by {channel}; answers quickly in the morning.",
        "Coaches a youth football team on {day}s.",
        "Prefers to meet for coffee rather than lunch.",
        "They last spoke in {month} about the {component} work.",
    )),
    Topic("health", (
        ("dentist", "Next dentist appointment is on {date} at {time}."),
        ("medication", "Takes {medication} every morning with breakfast."),
        ("running", "Runs {n} km on {day}s."),
        ("sleep", "Sleeps badly after late coffee, so meetings end by 17:00."),
    ), ("health", "personal", "reminder")),
    Topic("family", (
        ("birthdays", "{person}'s birthday is on {date}; they are into {hobby}."),
        ("school-run", "Picks the kids up from school on {day}s."),
        ("anniversary", "Anniversary dinner is booked at {restaurant} for {date}."),
        ("mother", "Calls their mother every {day} evening."),
    ), ("family", "personal", "birthday")),
    Topic("travel/trips", (
        ("plan", "Trip to {city} planned for {month}, {n} nights."),
        ("hotel", "Booked {hotel}; check-in is after 15:00."),
        ("wishlist", "Wants to see the {sight} this time."),
        ("visa", "Needs a visa check at least {n} weeks before leaving."),
    ), ("travel", "holiday"), dated=True),
    Topic("learning", (
        ("language-course", "Learning {language} with a tutor on {day} evenings."),
        ("current-book", "Reading {book} and is about halfway through."),
        ("online-course", "Finished the {topic} course and wants a follow-up next quarter."),
        ("reading-list", "Asked for book tips on {topic}."),
    ), ("learning", "reading")),
    Topic("home", (
        ("boiler", "The boiler service is due in {month}; {person} from the plumbers does it."),
        ("bins", "Bins go out on {day} night."),
        ("internet", "The internet contract renews on {date} at {money} a month."),
        ("balcony", "Planted tomatoes and basil on the balcony in {month}."),
    ), ("home", "reminder")),
    Topic("finance", (
        ("tax-return", "The tax return is due on {date}; {person} is the accountant."),
        ("savings", "Saving {money} a month for the {goal}."),
        ("subscriptions", "Cancelled the {service} subscription in {month}."),
        ("budget", "Wants a summary of spending on the first {day} of each month."),
    ), ("finance", "tax", "budget")),
    Topic("notes", (
        ("todo", "Remember to {task} before {day}."),
        ("idea", "Idea: a shared calendar for the {meeting} so nobody double-books."),
        ("gift-idea", "Gift idea for {person}: something to do with {hobby}."),
        ("reminder", "Must {task} this month."),
    ), ("idea", "todo", "reminder"), dated=True),
)

FOLLOW_UPS = (
    "Mentioned in a conversation on a {day}.",
    "Confirmed again in {month}.",
    "This came up more than once, so it matters.",
    "Low priority, but worth keeping.",
    "Check that this is still true before relying on it.",
    "{person2} knows about this too.",
)
GENERAL_TAGS = ("important", "follow-up", "recurring", "personal", "work", "urgent",
                "weekend", "idea", "reminder", "archive")
TAG_COUNT_WEIGHTS = (0.2, 0.3, 0.25, 0.15, 0.1)  # 0, 1, 2, 3 or 4 tags
# fmt: on


class DemoRefused(MemoryAdminError):
    """The demo would have to delete a file that is not a demo database."""


@dataclass
class StateCounts:
    """How many generated memories are active, expired and soft-deleted."""

    active: int = 0
    expired: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class Login:
    """A username and its (printed) password."""

    username: str
    password: str


@dataclass(frozen=True)
class Demo:
    """A prepared demo database and how to log in to it."""

    path: Path
    memories: int
    users: int
    states: StateCounts
    admin: Login
    user: Login


class _Slots(dict[str, str]):
    """Template values drawn on first use, so a slot reads the same throughout a memory."""

    def __init__(self, rnd: Random, **fixed: str) -> None:
        super().__init__(fixed)
        self.rnd = rnd

    def __missing__(self, name: str) -> str:
        value = self[name] = self.rnd.choice(POOLS[name])
        return value


@dataclass
class _UserPlan:
    """One user's namespaces, the more common first, and the key stems used so far."""

    name: str
    topics: list[tuple[Topic, str]]
    cumulative: list[float]
    used: Counter[tuple[str, str]] = field(default_factory=Counter)


def _plans(rnd: Random) -> list[_UserPlan]:
    """Each user's own mix of namespaces: every topic but projects, and one to three projects."""
    plans = []
    for name, _share in USERS:
        projects = rnd.sample(PROJECTS, rnd.randint(1, 3))
        topics: list[tuple[Topic, str]] = []
        for topic in TOPICS:
            if "{project}" in topic.namespace:
                topics += [(topic, project) for project in projects]
            else:
                topics.append((topic, ""))
        rnd.shuffle(topics)
        weights = itertools.accumulate(1 / rank for rank in range(1, len(topics) + 1))
        plans.append(_UserPlan(name, topics, list(weights)))
    return plans


def _iso(seconds: int) -> str:
    """Unix seconds as ISO-8601 UTC with a Z."""
    return format_time(datetime.fromtimestamp(seconds, UTC)) or ""


def generate_memories(
    count: int, *, seed: int, now: datetime, states: StateCounts | None = None
) -> Iterator[dict[str, Any]]:
    """count memories as import records, the same for the same seed and now.

    Creation times grow along the stream over the year before now; states are tallied.
    """
    rnd = Random(seed)
    r = rnd.random
    plans = _plans(rnd)
    user_cumulative = list(itertools.accumulate(share for _name, share in USERS))
    tag_count_cumulative = list(itertools.accumulate(TAG_COUNT_WEIGHTS))
    end = int(now.timestamp())
    start = end - HISTORY_DAYS * DAY
    tally = states if states is not None else StateCounts()
    for i in range(count):
        plan = plans[min(bisect.bisect(user_cumulative, r() * user_cumulative[-1]), len(plans) - 1)]
        topic, project = plan.topics[
            min(bisect.bisect(plan.cumulative, r() * plan.cumulative[-1]), len(plan.topics) - 1)
        ]
        namespace = topic.namespace.format(project=project)
        slots = _Slots(rnd, Project=project.capitalize())

        jitter = int((r() - 0.5) * 4 * DAY)
        created = min(max(start + int((i + r()) / count * (end - start)) + jitter, start), end - 60)

        fact = rnd.randrange(len(topic.facts))
        stem = topic.facts[fact][0]
        if topic.dated:
            stem += "-" + _iso(created)[:10]
        plan.used[namespace, stem] += 1
        seen = plan.used[namespace, stem]
        key = stem if seen == 1 else f"{stem}-{seen}"

        others = topic.extras or [text for n, (_, text) in enumerate(topic.facts) if n != fact]
        sentences = [topic.facts[fact][1], *rnd.sample(others, rnd.randint(1, 3))]
        sentences += rnd.sample(FOLLOW_UPS, rnd.randint(0, 2))
        content = " ".join(sentence.format_map(slots) for sentence in sentences)

        tags: list[str] = []
        wanted = bisect.bisect(tag_count_cumulative, r() * tag_count_cumulative[-1])
        while len(tags) < min(wanted, 4):
            tag = rnd.choice(topic.tags if r() < 0.6 else GENERAL_TAGS)
            if tag not in tags:
                tags.append(tag)

        updated = created
        if r() < 0.35:  # edited later; an edit that would fall after now lands before it
            updated = created + int(rnd.expovariate(1 / (20 * DAY)))
            if updated > end:
                updated = created + int(r() * (end - created))
        access_count, last_accessed = 0, None
        if r() < 0.55:
            access_count = min(int(rnd.paretovariate(1.3)), 5_000)
            last_accessed = updated + int(r() * (end - updated))

        expires = deleted = None
        state = r()
        if state < 0.06:
            low = max(updated, end - 30 * DAY)
            deleted = low + int(r() * (end - low))
            tally.deleted += 1
        elif state < 0.12:  # expired in the last two months (or since it was written)
            low = max(created, end - 60 * DAY)
            expires = low + int(r() * (end - 1 - low))
            tally.expired += 1
        else:
            tally.active += 1
            if state < 0.17:  # expires within a week
                expires = end + 3_600 + int(r() * (7 * DAY - 3_600))
            elif state < 0.24:
                expires = end + 8 * DAY + int(r() * 357 * DAY)

        yield {
            "user": plan.name,
            "namespace": namespace,
            "key": key,
            "content": content,
            "tags": tags,
            "importance": round(rnd.betavariate(2.0, 2.5), 2),
            "access_count": access_count,
            "last_accessed_at": None if last_accessed is None else _iso(last_accessed),
            "expires_at": None if expires is None else _iso(expires),
            "is_deleted": deleted is not None,
            "deleted_at": None if deleted is None else _iso(deleted),
            "created_at": _iso(created),
            "updated_at": _iso(updated),
        }


class _JsonLines(io.RawIOBase):
    """A readable byte stream of records as JSON Lines, made as the reader asks for them."""

    def __init__(self, records: Iterator[dict[str, Any]]) -> None:
        super().__init__()
        self._records = records
        self._pending = b""

    def readable(self) -> bool:
        """Always: this is a source."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill buffer with the next lines; 0 at the end."""
        view = memoryview(buffer).cast("B")
        while len(self._pending) < len(view):
            lines = [orjson.dumps(record) for record in itertools.islice(self._records, 500)]
            if not lines:
                break
            self._pending += b"\n".join(lines) + b"\n"
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def demo_settings(path: Path) -> Settings:
    """Settings for the demo's own SQLite file, with a fresh secret key; DATABASE_URL ignored."""
    return Settings(
        database_url=f"sqlite+aiosqlite:///{path.resolve()}",
        secret_key=secrets.token_urlsafe(48),
    )


def _application_id(path: Path) -> int | None:
    """The application id in a SQLite file's header; None when it is not SQLite."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("PRAGMA application_id").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def remove_previous(path: Path) -> None:
    """Delete an earlier demo database at path; DemoRefused if it is anything else."""
    if path.exists() and path.stat().st_size > 0:
        if _application_id(path) != APPLICATION_ID:
            raise DemoRefused(
                f"{path} exists and is not a memory-admin demo database; "
                "the demo will not delete it (choose another --path)"
            )
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


async def prepare_demo(
    settings: Settings, *, memories: int, seed: int, now: datetime | None = None
) -> Demo:
    """Recreate the demo database of settings: schema, admin and demo logins, memories."""
    from webapp.services.transfer import import_jsonl  # asyncpg: only when the demo runs

    path = settings.sqlite_path
    assert path is not None, "the demo runs on a SQLite file"
    remove_previous(path)
    admin = Login(ADMIN, secrets.token_urlsafe(12))
    user = Login(DEMO_USER, secrets.token_urlsafe(12))
    states = StateCounts()
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:  # mark the file first: a half-made one is ours too
            await conn.exec_driver_sql(f"PRAGMA application_id = {APPLICATION_ID}")
            await conn.commit()
        await migrate.upgrade(engine, search_language=settings.search_language)
        db = Database(engine, search_language=settings.search_language)
        for login, is_admin in ((admin, True), (user, False)):
            data = UserCreate(
                username=login.username,
                password=login.password,
                email=f"{login.username}@example.org",
                is_admin=is_admin,
            )
            await create_user(db, data=data)
        records = generate_memories(memories, seed=seed, now=now or utcnow(), states=states)
        with io.BufferedReader(_JsonLines(records), buffer_size=1 << 20) as source:
            report = await import_jsonl(db, source=source, settings=settings)
        users = await _check_logins(db, admin, user)
    finally:
        await engine.dispose()
    return Demo(path, report.created, users, states, admin, user)


async def _check_logins(db: Database, *logins: Login) -> int:
    """Make sure each printed password logs in; returns how many users there are."""
    for login in logins:
        found = await get_user_by_username(db, username=login.username)
        if not verify_password(found.password_hash, login.password):
            raise MemoryAdminError(f"the demo user {login.username!r} cannot log in")
    return await count_users(db)
