"""How long deleted and expired memories are kept: one rule for Trash's "days left" and purge."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, false, true

from webapp.models import LongTermMemory
from webapp.settings import Settings

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Retention:
    """Days a soft-deleted memory stays in Trash, and days an expired one is kept, before
    purge removes it for good (TRASH_RETENTION_DAYS and EXPIRED_GRACE_DAYS)."""

    deleted_days: int = 30
    expired_grace_days: int = 7

    @classmethod
    def of(
        cls,
        settings: Settings,
        *,
        deleted_days: int | None = None,
        expired_grace_days: int | None = None,
    ) -> Retention:
        """The settings' retention, with either period overridden (purge's flags, one run)."""
        return cls(
            deleted_days=settings.trash_retention_days if deleted_days is None else deleted_days,
            expired_grace_days=(
                settings.expired_grace_days if expired_grace_days is None else expired_grace_days
            ),
        )

    def days_left(self, deleted_at: datetime, now: datetime) -> int:
        """Days, rounded up, until purge may remove a memory deleted at deleted_at (0 once
        it may: purge takes what was deleted `deleted_days` ago or earlier)."""
        left = deleted_at + timedelta(days=self.deleted_days) - now
        return max(0, math.ceil(left / timedelta(days=1)))

    def purgeable(self, now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        """(soft-deleted past retention, expired past the grace period), as SQL conditions."""
        deleted = and_(
            _c.is_deleted.is_(true()), _c.deleted_at <= now - timedelta(days=self.deleted_days)
        )
        expired = and_(
            _c.is_deleted.is_(false()),
            _c.expires_at <= now - timedelta(days=self.expired_grace_days),
        )
        return deleted, expired
