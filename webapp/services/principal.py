"""Who is acting: a user in the admin app, or an agent with a user's API token."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, true

from webapp.errors import InvalidInput, NotFound
from webapp.models import ApiToken, LongTermMemory, User


@dataclass(frozen=True)
class Principal:
    """The acting identity; every query and write of the service layer is scoped by it."""

    user_id: int | None
    username: str
    is_admin: bool = False
    token_id: int | None = None
    scope_user_id: int | None = None
    """Set by acting_for: the one user whose memories this principal works on."""
    channel: str | None = None
    """A local agent acting as the user without a token (`mcp stdio`), named by the trail."""

    @classmethod
    def operator(cls, name: str = "cli") -> Principal:
        """Someone at the command line of the server: an admin who is not a user row."""
        return cls(user_id=None, username=name, is_admin=True)

    @classmethod
    def of_user(cls, user: User) -> Principal:
        """A person acting in the admin app."""
        assert user.id is not None
        return cls(user_id=user.id, username=user.username, is_admin=user.is_admin)

    @classmethod
    def of_token(cls, user: User, token: ApiToken) -> Principal:
        """An agent acting with one of user's API tokens."""
        assert user.id is not None
        return cls(
            user_id=user.id, username=user.username, is_admin=user.is_admin, token_id=token.id
        )

    @classmethod
    def of_local_agent(cls, user: User, channel: str) -> Principal:
        """An agent started on the server's machine acting as user, with no token (the MCP
        server over stdio): it works on user's memories only, even an admin's."""
        assert user.id is not None
        return cls(
            user_id=user.id, username=user.username, is_admin=user.is_admin, channel=channel
        ).acting_for(user.id)

    @property
    def actor(self) -> str:
        """How the audit trail names this principal: `user:NAME`, `token:ID:NAME` (an agent)
        or `CHANNEL as NAME` (a local agent: `mcp stdio as NAME`)."""
        if self.token_id is not None:
            return f"token:{self.token_id}:{self.username}"
        if self.channel is not None:
            return f"{self.channel} as {self.username}"
        if self.user_id is None:
            return f"operator:{self.username}"
        return f"user:{self.username}"

    def acting_for(self, user_id: int) -> Principal:
        """This principal working on one user's memories only: its own, or (admins only)
        another user's. The audit trail still names this principal. Another user's id
        without being an admin is NotFound, never a refusal that confirms they exist."""
        if user_id != self.user_id and not self.is_admin:
            raise NotFound("no such user")
        return replace(self, scope_user_id=user_id)

    @property
    def sees_everyone(self) -> bool:
        """Whether every user's memories are visible (an admin not acting for one user)."""
        return self.is_admin and self.scope_user_id is None

    @property
    def own_user_id(self) -> int | None:
        """Whose memories are written when no owner is named: the scope, else its own."""
        return self.scope_user_id if self.scope_user_id is not None else self.user_id

    def visible(self, owner: ColumnElement[Any] | None = None) -> ColumnElement[bool]:
        """The condition restricting memories to what this principal may see; owner: the
        user id column to restrict (default the memories', e.g. the events' for history)."""
        if self.sees_everyone:
            return true()
        if owner is None:
            owner = LongTermMemory.__table__.c.user_id  # type: ignore[attr-defined]
        return owner == self.own_user_id

    def owner_for(self, user_id: int | None) -> int:
        """The user a write acts for: its own (or its scope's), or (admins only) another
        user.

        Acting for someone else without being an admin is NotFound, never a refusal
        that would confirm the other user exists.
        """
        own = self.own_user_id
        if user_id is None or user_id == own:
            if own is None:
                raise InvalidInput("say which user this memory belongs to")
            return own
        if not self.sees_everyone:
            raise NotFound("no such user")
        return user_id
