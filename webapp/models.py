"""SQLModel families per entity: tables double as schemas, validation rules live once.

Each entity has a base with the fields people may write, the table model, and the
Create / Update / Public schemas derived from it. Field rules come from validation.py.
The agent API's own request and response bodies are in webapp/api/schemas.py.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, Optional

from pydantic import AfterValidator, BeforeValidator, StrictInt, model_validator
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, Relationship, SQLModel

from webapp.types import PortableJSON, UTCDateTime, utcnow
from webapp.validation import (
    current_content_limit,
    ensure_utc,
    validate_content,
    validate_email,
    validate_importance,
    validate_key,
    validate_namespace,
    validate_tags,
    validate_username,
)

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


def _content_rule(value: str) -> str:
    return validate_content(value, current_content_limit())


Namespace = Annotated[str, AfterValidator(validate_namespace)]
MemoryKey = Annotated[str, AfterValidator(validate_key)]
Content = Annotated[str, AfterValidator(_content_rule)]
Tags = Annotated[list[str], BeforeValidator(validate_tags)]
Importance = Annotated[float, BeforeValidator(validate_importance)]
Username = Annotated[str, AfterValidator(validate_username)]
Email = Annotated[str, AfterValidator(validate_email)]
AwareDatetime = Annotated[datetime, AfterValidator(ensure_utc)]


def _utc_column(*, nullable: bool, index: bool = False) -> Any:
    return Column(UTCDateTime(), nullable=nullable, index=index)


# --- users -------------------------------------------------------------------------------


class UserBase(SQLModel):
    """Fields of a user that an admin may set."""

    username: Username = Field(max_length=150, sa_column_kwargs={"unique": True})
    email: Email | None = Field(default=None, max_length=320)
    is_admin: bool = False
    is_active: bool = True


class User(UserBase, table=True):
    """A person who logs in to the admin app, and whose memories agents keep."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column(nullable=False))

    memories: list["LongTermMemory"] = Relationship(
        back_populates="user", sa_relationship_kwargs={"lazy": "raise", "passive_deletes": True}
    )


class UserCreate(UserBase):
    """Input for creating a user; the password is hashed before it is stored."""

    password: str = Field(min_length=8, max_length=1024)


class PasswordSet(SQLModel):
    """A new password as a person types it in a form: twice, and the two must match."""

    password: str = Field(min_length=8, max_length=1024)
    password_again: str = Field(max_length=1024)

    @model_validator(mode="after")
    def _typed_twice_alike(self) -> "PasswordSet":
        if self.password != self.password_again:
            raise ValueError("the two passwords do not match")
        return self


# --- memories ----------------------------------------------------------------------------


class MemoryState(StrEnum):
    """deleted = soft-deleted (whatever its expiry); expired = not deleted and past expires_at."""

    active = "active"
    expired = "expired"
    deleted = "deleted"


class MemoryBase(SQLModel):
    """Fields of a memory that agents and people write; the field rules of validation.py apply."""

    namespace: Namespace = Field(max_length=200, index=True)
    key: MemoryKey = Field(sa_type=String(255))  # length checked after NFC, by validate_key
    content: Content = Field(sa_type=Text)
    tags: Tags = Field(default_factory=list, sa_type=PortableJSON)
    importance: Importance = Field(default=0.5, sa_type=Float, index=True)
    expires_at: AwareDatetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class LongTermMemory(MemoryBase, table=True):
    """One thing an agent remembers about a user, unique per (user, namespace, key)."""

    __tablename__ = "long_term_memory"
    __table_args__ = (
        UniqueConstraint("user_id", "namespace", "key"),
        # With id: search walks it from a memory to its neighbours in a namespace
        # (SQLite's indexes end in the rowid anyway; PostgreSQL's need it named).
        Index("ix_long_term_memory_user_id_namespace", "user_id", "namespace", "id"),
        Index("ix_long_term_memory_tags_gin", "tags", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
        # Keyset pages walk these in order instead of sorting: the default view (all
        # memories, newest first), one user's newest and most important, one user's
        # namespace, and Trash.
        Index("ix_long_term_memory_updated_at_id", "updated_at", "id"),
        Index("ix_long_term_memory_user_id_updated_at_id", "user_id", "updated_at", "id"),
        Index(
            "ix_long_term_memory_user_id_namespace_updated_at_id",
            "user_id",
            "namespace",
            "updated_at",
            "id",
        ),
        Index("ix_long_term_memory_user_id_importance_id", "user_id", "importance", "id"),
        Index(
            "ix_long_term_memory_trash",
            "user_id",
            "updated_at",
            "id",
            sqlite_where=text("is_deleted IS 1"),
            postgresql_where=text("is_deleted IS true"),
        ),
        # The other sorts of the browser walk these too. NULL sorts first on the way up
        # (last in descending pages): SQLite's own order; PostgreSQL needs it named.
        Index("ix_long_term_memory_created_at_id", "created_at", "id"),
        Index("ix_long_term_memory_access_count_id", "access_count", "id"),
        Index("ix_long_term_memory_last_accessed_at_id", "last_accessed_at", "id").ddl_if(
            dialect="sqlite"
        ),
        Index(
            "ix_long_term_memory_last_accessed_at_id",
            text("last_accessed_at NULLS FIRST"),
            "id",
        ).ddl_if(dialect="postgresql"),
        # Rows that expire and are not deleted, by user and expiry: what expires soon
        # (dashboard, expiring_within) and the expired ones, counted from the index
        # alone (per namespace, with their importance, for the namespace tree). Partial,
        # so that no query for active rows is tempted to start from `expires_at IS
        # NULL` (SQLite's statistics take it for a rare value).
        Index(
            "ix_long_term_memory_expiry",
            "user_id",
            "expires_at",
            "namespace",
            "importance",
            sqlite_where=text("is_deleted IS 0 AND expires_at IS NOT NULL"),
            postgresql_where=text("is_deleted IS false AND expires_at IS NOT NULL"),
        ),
        # The audit trail outlives purged rows, so an id must never be handed out twice.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    access_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    last_accessed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    is_deleted: bool = Field(
        default=False,
        sa_column=Column(Boolean, nullable=False, default=False, server_default=text("false")),
    )
    deleted_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, default=1))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column(nullable=False))

    user: Optional["User"] = Relationship(
        back_populates="memories", sa_relationship_kwargs={"lazy": "raise"}
    )

    @property
    def is_expired(self) -> bool:
        """True once expires_at has passed (a TTL of zero expires at once)."""
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def state(self) -> MemoryState:
        """The memory's one state: deleted wins over expired."""
        if self.is_deleted:
            return MemoryState.deleted
        if self.is_expired:
            return MemoryState.expired
        return MemoryState.active


class MemoryRow(NamedTuple):
    """A memory as lists read it: every column of long_term_memory and its `state`, as a
    plain tuple (no ORM state to build, attributes read at C speed), in the table's
    column order."""

    namespace: str
    key: str
    content: str
    tags: list[str]
    importance: float
    expires_at: datetime | None
    id: int
    user_id: int
    access_count: int
    last_accessed_at: datetime | None
    is_deleted: bool
    deleted_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
    state: str
    """'active', 'expired' or 'deleted', as MemoryState names them."""


class MemoryCreate(MemoryBase):
    """Input for remembering a memory (upsert by namespace + key)."""


class MemoryUpdate(SQLModel):
    """A partial edit; `version` is the one the editor saw, checked before writing."""

    content: Content | None = None
    tags: Tags | None = None
    importance: Importance | None = None
    expires_at: AwareDatetime | None = None
    version: int | None = Field(default=None, ge=1)


SORT_FIELDS = ("updated_at", "importance", "access_count", "last_accessed_at", "created_at")
SORTS = tuple(f"{sign}{name}" for name in SORT_FIELDS for sign in ("-", ""))


class BrowseQuery(SQLModel):
    """The browse filters, as the admin's query string and the API's parameters.

    `q` is full text over key and content: every word must appear (a trailing `*`
    matches a prefix); the indexes and query syntax are in services/fulltext.py.
    """

    user: str | None = Field(default=None, max_length=150)
    namespace: str | None = Field(default=None, max_length=201)
    tag: list[str] = Field(default_factory=list, max_length=32)
    tags_mode: Literal["any", "all"] = "any"
    q: str | None = Field(default=None, max_length=500)
    min_importance: Importance | None = None
    max_importance: Importance | None = None
    state: Literal["active", "expired", "deleted", "all"] = "active"
    expiring_within: int | None = Field(default=None, ge=0, le=36_500)
    accessed: Literal["never", "stale"] | None = None
    stale_days: int = Field(default=90, ge=1, le=36_500)
    sort: Literal[SORTS] = "-updated_at"  # type: ignore[valid-type]
    cursor: str | None = Field(default=None, max_length=2000)
    limit: int = Field(default=50, ge=1, le=200)


class SearchRequest(SQLModel):
    """An agent's ranked search: words to look for, optionally within a namespace and tags."""

    query: str = Field(min_length=1, max_length=500)
    namespace: str | None = Field(default=None, max_length=201)
    tags: list[str] = Field(default_factory=list, max_length=32)
    limit: int = Field(default=10, ge=1, le=100)


CONTEXT_MAX_CHARS = 100_000


class ContextRequest(SQLModel):
    """POST /api/v1/context: what to look for, and the size of the text block wanted."""

    model_config = {"extra": "forbid"}

    query: str = Field(min_length=1, max_length=500)
    namespace: str | None = Field(default=None, max_length=201)
    tags: list[str] = Field(default_factory=list, max_length=32)
    max_chars: StrictInt = Field(ge=1, le=CONTEXT_MAX_CHARS)


# --- audit trail -------------------------------------------------------------------------


class EventAction(StrEnum):
    """What a write did; reading is never an event."""

    create = "create"
    update = "update"
    delete = "delete"
    restore = "restore"
    purge = "purge"


class MemoryEvent(SQLModel, table=True):
    """One write to a memory: who did it, what, and each changed field's old and new value.

    memory_id is deliberately not a foreign key: the trail outlives a purged memory. For
    `create` the row's own values are the new side; `changes` holds
    {field: {"old": ..., "new": ...}} for each field that changed.
    """

    __tablename__ = "memory_event"
    __table_args__ = (
        Index("ix_memory_event_memory_id_id", "memory_id", "id"),
        # Erasing a user finds the events they wrote (and the foreign keys' SET NULL finds
        # them on deleting the user and their tokens) without a scan of the whole trail.
        Index("ix_memory_event_actor_user_id", "actor_user_id"),
        Index("ix_memory_event_actor_token_id", "actor_token_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    memory_id: int = Field(sa_column=Column(Integer, nullable=False))
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    actor: str = Field(sa_column=Column(String(200), nullable=False))
    actor_user_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    actor_token_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("api_token.id", ondelete="SET NULL"), nullable=True),
    )
    action: EventAction = Field(sa_column=Column(String(16), nullable=False))
    changes: dict[str, Any] | None = Field(default=None, sa_type=PortableJSON)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column(nullable=False))


# --- API tokens --------------------------------------------------------------------------


class ApiToken(SQLModel, table=True):
    """A bearer token that acts as its user; only a hash of the secret is kept."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str = Field(sa_column=Column(String(100), nullable=False))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column(nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


# --- admin app sessions and login throttling ----------------------------------------------


class WebSession(SQLModel, table=True):
    """A logged-in browser. The cookie carries a signed random secret; only its sha256 is
    kept here, so a copied database does not hand out live sessions. Deleting the row
    (logout) ends the session on the server: the cookie stops working everywhere."""

    __tablename__ = "web_session"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    csrf_token: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column(nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column(nullable=False))
    expires_at: datetime = Field(sa_column=_utc_column(nullable=False, index=True))


class LoginThrottle(SQLModel, table=True):
    """Failed logins for one key (`user:NAME` or `address:IP`) in the current window, kept
    in the database so every worker and host sees the same count."""

    __tablename__ = "login_throttle"

    key: str = Field(sa_column=Column(String(200), primary_key=True))
    failures: int = Field(sa_column=Column(Integer, nullable=False))
    window_started_at: datetime = Field(sa_column=_utc_column(nullable=False))
    locked_until: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class NamespaceSummary(SQLModel, table=True):
    """Per user and namespace: the memories not deleted (and their importance summed) and
    the deleted ones. Kept by database triggers (webapp.services.namespace_summary)."""

    __tablename__ = "namespace_summary"

    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    )
    namespace: str = Field(sa_column=Column(String(200), primary_key=True))
    live_count: int = Field(sa_column=Column(Integer, nullable=False))
    deleted_count: int = Field(sa_column=Column(Integer, nullable=False))
    live_importance_sum: float = Field(sa_column=Column(Float, nullable=False))


from webapp.models_admin import AdminEvent as AdminEvent  # noqa: E402  (in `metadata` too)
from webapp.models_embedding import DuplicateDismissal as DuplicateDismissal  # noqa: E402
from webapp.models_embedding import DuplicatePair as DuplicatePair  # noqa: E402
from webapp.models_embedding import DuplicateWatermark as DuplicateWatermark  # noqa: E402
from webapp.models_embedding import EmbeddingQueue as EmbeddingQueue  # noqa: E402
from webapp.models_embedding import MemoryEmbedding as MemoryEmbedding  # noqa: E402
from webapp.models_embedding import VectorCount as VectorCount  # noqa: E402
