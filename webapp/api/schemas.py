"""The agent API's request and response bodies (/api/v1), built on the models' families.

The schemas the services take (BrowseQuery, SearchRequest, ContextRequest, MemoryCreate,
MemoryUpdate) stay in webapp.models, so the service layer never imports the API.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import StrictInt, model_validator
from sqlmodel import Field, SQLModel

from webapp.models import MemoryBase, MemoryCreate, MemoryUpdate, SearchRequest

if TYPE_CHECKING:
    from webapp.services.context import Context
    from webapp.services.namespaces import NamespaceHealth
    from webapp.services.search import ScoredMemory


class MemoryPublic(MemoryBase):
    """A memory as the API returns it, with the fields the server owns."""

    id: int
    user_id: int
    access_count: int
    last_accessed_at: datetime | None
    is_deleted: bool
    deleted_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


TTL_SECONDS_MAX = 100 * 366 * 24 * 3600
"""A hundred years: further than that is 'never', which an absent expiry already says."""


class MemoryPut(MemoryCreate):
    """PUT /api/v1/memories: remember (upsert by namespace + key).

    The expiry is `expires_at` or `ttl_seconds` from now, not both. `version`, when
    given, must be the memory's current one (a stale write is a 409). Fields the server
    owns (id, user, access counts, timestamps) are refused, as is any other unknown name.
    """

    model_config = {"extra": "forbid"}

    # Strict: JSON's true is not the number 1 here.
    ttl_seconds: StrictInt | None = Field(default=None, ge=1, le=TTL_SECONDS_MAX)
    version: StrictInt | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_expiry(self) -> "MemoryPut":
        if self.ttl_seconds is not None and self.expires_at is not None:
            raise ValueError("give expires_at or ttl_seconds, not both")
        return self

    def as_create(self, now: datetime) -> MemoryCreate:
        """The memory to remember, its ttl turned into an expiry from now."""
        values = self.model_dump(exclude={"ttl_seconds", "version"})
        if self.ttl_seconds is not None:
            values["expires_at"] = now + timedelta(seconds=self.ttl_seconds)
        return MemoryCreate.model_validate(values)


class MemoryPatch(MemoryUpdate):
    """PATCH /api/v1/memories/{id}: the fields to change, and the version they are based
    on (required: an agent must not overwrite an edit it has not seen)."""

    model_config = {"extra": "forbid"}

    version: StrictInt = Field(ge=1)


class MemoryPage(SQLModel):
    """GET /api/v1/memories: one page, keyset cursors to its neighbours and a capped count."""

    items: list[MemoryPublic]
    next_cursor: str | None
    prev_cursor: str | None
    count: int
    count_capped: bool


class ScoreComponents(SQLModel):
    """The parts a search score sums, each in [0, 1] before its weight."""

    text: float
    semantic: float
    importance: float
    recency: float
    access: float


class ScoredMemoryPublic(MemoryPublic):
    """A search result: the memory's fields, its score and the score's components."""

    score: float
    score_components: ScoreComponents


class SearchResults(SQLModel):
    """POST /api/v1/search: the best-ranked memories, best first."""

    items: list[ScoredMemoryPublic]

    @classmethod
    def of(cls, found: "Iterable[ScoredMemory]") -> "SearchResults":
        """The body for the service's search results (the API's and MCP's)."""
        return cls(
            items=[
                ScoredMemoryPublic.model_validate(
                    {
                        **hit.memory.model_dump(),
                        "score": hit.score,
                        "score_components": hit.score_components,
                    }
                )
                for hit in found
            ]
        )


class SearchRequestBody(SearchRequest):
    """POST /api/v1/search's body; unknown names are refused."""

    model_config = {"extra": "forbid"}

    limit: StrictInt = Field(default=10, ge=1, le=100)


class ContextBlock(SQLModel):
    """A prompt-ready block of the best-ranked memories, most relevant first, within
    max_chars; `ids` are the memories it holds, in its order."""

    context: str
    ids: list[int]
    chars: int
    truncated: bool
    """Whether memories that matched were left out, or the last one cut, for the budget."""

    @classmethod
    def of(cls, context: "Context") -> "ContextBlock":
        """The body for the service's block (the API's and MCP's)."""
        return cls(
            context=context.text,
            ids=context.ids,
            chars=len(context.text),
            truncated=context.truncated,
        )


class NamespaceCounts(SQLModel):
    """GET /api/v1/namespaces: one namespace and its memories per state."""

    namespace: str
    active: int
    expired: int
    deleted: int

    @classmethod
    def of(cls, health: "NamespaceHealth") -> "NamespaceCounts":
        """The counts of one namespace the service reports (the API's and MCP's)."""
        return cls(
            namespace=health.namespace,
            active=health.active,
            expired=health.expired,
            deleted=health.deleted,
        )
