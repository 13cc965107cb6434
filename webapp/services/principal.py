"""Who is acting: a user in the admin app, or an agent with a user's API token."""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def actor(self) -> str:
        """How the audit trail names this principal: `user:NAME` or `token:ID:NAME` (an agent)."""
        if self.token_id is not None:
            return f"token:{self.token_id}:{self.username}"
        if self.user_id is None:
            return f"operator:{self.username}"
        return f"user:{self.username}"

    def visible(self) -> ColumnElement[bool]:
        """The condition restricting memories to what this principal may see."""
        if self.is_admin:
            return true()
        return LongTermMemory.__table__.c.user_id == self.user_id  # type: ignore[attr-defined]

    def owner_for(self, user_id: int | None) -> int:
        """The user a write acts for: self, or (admins only) another user.

        Acting for someone else without being an admin is NotFound, never a refusal
        that would confirm the other user exists.
        """
        if user_id is None or user_id == self.user_id:
            if self.user_id is None:
                raise InvalidInput("say which user this memory belongs to")
            return self.user_id
        if not self.is_admin:
            raise NotFound("no such user")
        return user_id
