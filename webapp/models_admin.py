"""The admin audit trail: one row per administrative act on a person (an erasure), without
the person's content.

Kept apart from models.py (which holds the memory store's own entities) and imported at
its end, so the models' metadata, Alembic's comparison and create_all all see it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, Integer, String
from sqlmodel import Field, SQLModel

from webapp.types import PortableJSON, UTCDateTime, utcnow


class AdminAction(StrEnum):
    """What an admin did to a user."""

    erase_user = "erase_user"


class AdminEvent(SQLModel, table=True):
    """One administrative act: what, by whom, on which user id, when, and counts.

    No foreign keys: the subject is gone after an erasure, and the record outlives the
    actor too. `details` holds numbers only (what was removed), never names or content.
    """

    __tablename__ = "admin_event"
    __table_args__ = (Index("ix_admin_event_created_at", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    action: AdminAction = Field(sa_column=Column(String(32), nullable=False))
    actor: str = Field(sa_column=Column(String(200), nullable=False))
    actor_user_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    subject_user_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    details: dict[str, Any] | None = Field(default=None, sa_type=PortableJSON)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
