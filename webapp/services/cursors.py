"""Opaque, signed keyset cursors: a tampered, foreign or stale one is InvalidInput, never a 500."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from webapp.errors import InvalidInput

_SALT = "memory-admin.cursor.v1"


@dataclass(frozen=True)
class Cursor:
    """A position in one ordering: the sort key's value and the id of a row, and a direction."""

    sort: str
    value: Any
    id: int
    forward: bool


class CursorSigner:
    """Signs cursors with the app's secret key, so clients cannot forge positions."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=_SALT)

    def dump(self, cursor: Cursor) -> str:
        """The cursor as an opaque URL-safe string."""
        value = cursor.value
        if isinstance(value, datetime):
            value = {"t": value.isoformat()}
        return str(
            self._serializer.dumps(
                {"s": cursor.sort, "v": value, "i": cursor.id, "f": int(cursor.forward)}
            )
        )

    def load(self, token: str, *, sort: str) -> Cursor:
        """The cursor in token, which must have been made for the same sort."""
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            raise InvalidInput("cursor is not valid (altered, or from another server)") from None
        if not isinstance(data, dict) or data.get("s") != sort:
            raise InvalidInput("cursor belongs to another sort order; start from the first page")
        value = data.get("v")
        if isinstance(value, dict) and "t" in value:
            value = datetime.fromisoformat(value["t"])
        memory_id = data.get("i")
        if not isinstance(memory_id, int):
            raise InvalidInput("cursor is not valid")
        return Cursor(sort=sort, value=value, id=memory_id, forward=bool(data.get("f", 1)))
