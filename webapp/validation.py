"""The rules for memory fields, once: used by the SQLModel schemas and by bulk import.

Each function takes a value, returns it normalised, or raises ValueError with a message
that a person can act on. The pydantic schemas in models.py wrap them as validators, and
the import fast path (services/transfer/) calls them directly, so both paths agree.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from webapp.settings import DEFAULT_CONTENT_MAX_BYTES

NAMESPACE_MAX_CHARS = 200
KEY_MAX_CHARS = 255
TAGS_MAX_COUNT = 32
TAG_MAX_CHARS = 64
USERNAME_MAX_CHARS = 150
TOKEN_NAME_MAX_CHARS = 100

_content_max_bytes: ContextVar[int] = ContextVar(
    "memory_admin_content_max_bytes", default=DEFAULT_CONTENT_MAX_BYTES
)


@contextmanager
def content_limit(max_bytes: int) -> Iterator[None]:
    """Inside the block, the schemas' content rule allows max_bytes: an app applies its own
    CONTENT_MAX_BYTES to each request this way, so two apps in one process each keep theirs."""
    token = _content_max_bytes.set(max_bytes)
    try:
        yield
    finally:
        _content_max_bytes.reset(token)


def current_content_limit() -> int:
    """The content limit in force here (content_limit's, else the default 65,536 bytes)."""
    return _content_max_bytes.get()


_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*")
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@+\-]+")


def validate_namespace(value: str) -> str:
    """Return the namespace if it is 1..200 chars of `/`-joined `[A-Za-z0-9_.-]+` segments."""
    if not isinstance(value, str):
        raise ValueError("namespace must be a string")
    if not value:
        raise ValueError("namespace must not be empty")
    if len(value) > NAMESPACE_MAX_CHARS:
        raise ValueError(f"namespace is longer than {NAMESPACE_MAX_CHARS} characters")
    if _NAMESPACE_RE.fullmatch(value) is None:
        raise ValueError(
            "namespace must be segments of letters, digits, '_', '.' or '-' joined by single '/' "
            f"(no empty segment, no leading or trailing '/'): {value!r}"
        )
    for segment in value.split("/"):
        if segment in (".", ".."):
            raise ValueError(f"namespace must not contain a '.' or '..' segment: {value!r}")
    return value


def validate_key(value: str) -> str:
    """Return the key NFC-normalised if it is 1..255 printable chars without surrounding spaces."""
    if not isinstance(value, str):
        raise ValueError("key must be a string")
    value = unicodedata.normalize("NFC", value)
    if not value:
        raise ValueError("key must not be empty")
    if len(value) > KEY_MAX_CHARS:
        raise ValueError(f"key is longer than {KEY_MAX_CHARS} characters")
    if value != value.strip():
        raise ValueError("key must not start or end with whitespace")
    if not value.isprintable():
        raise ValueError("key must not contain control or non-printable characters")
    return value


def validate_content(value: str, max_bytes: int) -> str:
    """Return the content if it is 1..max_bytes bytes of UTF-8 without NUL."""
    if not isinstance(value, str):
        raise ValueError("content must be a string")
    if not value:
        raise ValueError("content must not be empty")
    # len(str) <= bytes <= 4 * len(str): skip the encode when the answer is certain.
    if len(value) * 4 > max_bytes:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ValueError("content is not valid UTF-8 (lone surrogate)") from exc
        if size > max_bytes:
            raise ValueError(f"content is {size} bytes; the limit is {max_bytes} bytes")
    elif not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("content is not valid UTF-8 (lone surrogate)") from exc
    if "\x00" in value:
        raise ValueError("content must not contain NUL characters")
    return value


def validate_tags(values: Iterable[str] | None) -> list[str]:
    """Return tags trimmed, lowercased and de-duplicated (first wins); at most 32 of 1..64 chars."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise ValueError("tags must be a list of strings")
    seen: dict[str, None] = {}
    for raw in values:
        if not isinstance(raw, str):
            raise ValueError("tags must be a list of strings")
        tag = raw.strip().lower()
        if not tag:
            raise ValueError("a tag must not be empty")
        if len(tag) > TAG_MAX_CHARS:
            raise ValueError(f"tag {tag[:20]!r}... is longer than {TAG_MAX_CHARS} characters")
        if not tag.isprintable():
            raise ValueError(f"tag {tag!r} contains control or non-printable characters")
        seen[tag] = None
    if len(seen) > TAGS_MAX_COUNT:
        raise ValueError(f"a memory has at most {TAGS_MAX_COUNT} tags (got {len(seen)})")
    return list(seen)


def number_from_text(value: Any) -> Any:
    """A number written as text (a form field, a query string) as a float, for rules that
    take only real numbers; other text, and anything not text, is left for them to refuse
    with the field's name."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        return value


def validate_importance(value: float) -> float:
    """Return importance as a float if it is a finite number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("importance must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("importance must be a finite number")
    if number < 0.0 or number > 1.0:
        raise ValueError(f"importance must be between 0 and 1 (got {value})")
    return number


def validate_token_name(value: str) -> str:
    """Return an API token's name without surrounding spaces: 1..100 printable characters."""
    name = value.strip() if isinstance(value, str) else ""
    if not name:
        raise ValueError("name must not be empty")
    if len(name) > TOKEN_NAME_MAX_CHARS:
        raise ValueError(f"name is longer than {TOKEN_NAME_MAX_CHARS} characters")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise ValueError("name must not contain control characters")
    return name


def validate_username(value: str) -> str:
    """Return the username if it is 1..150 chars of letters, digits and `_.@+-`."""
    if not isinstance(value, str) or not value:
        raise ValueError("username must not be empty")
    if len(value) > USERNAME_MAX_CHARS:
        raise ValueError(f"username is longer than {USERNAME_MAX_CHARS} characters")
    if _USERNAME_RE.fullmatch(value) is None:
        raise ValueError(
            f"username may contain only letters, digits and the characters _ . @ + -: {value!r}"
        )
    return value


EMAIL_MAX_CHARS = 320


def validate_email(value: str) -> str:
    """Return an e-mail address as given if it looks like one: up to 320 printable
    characters, no spaces, an '@' with something on each side (delivery is not checked)."""
    if not isinstance(value, str):
        raise ValueError("email must be a string")
    if len(value) > EMAIL_MAX_CHARS:
        raise ValueError(f"email is longer than {EMAIL_MAX_CHARS} characters")
    local, at, domain = value.rpartition("@")
    if not (local and at and domain) or not value.isprintable() or " " in value:
        raise ValueError("email must be an address like name@example.org")
    return value


def parse_utc(value: str | datetime | None, field: str) -> datetime | None:
    """Parse an ISO-8601 timestamp with an explicit offset (or `Z`) into an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{field} is not an ISO-8601 timestamp: {value!r}") from exc
    else:
        raise ValueError(f"{field} must be an ISO-8601 timestamp string or null")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{field} must carry a timezone (e.g. a trailing 'Z'): {value!r}")
    return _in_utc(parsed, field)


def ensure_utc(value: datetime | None) -> datetime | None:
    """Return an aware datetime in UTC; a naive one is refused rather than guessed."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return _in_utc(value, "datetime")


def _in_utc(value: datetime, field: str) -> datetime:
    """value in UTC; ValueError (not OverflowError, which pydantic lets through as a 500)
    when UTC's wall clock is past year 9999 or before year 1, as 9999-12-31T23:00-05:00 is."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field} is out of range (years 1 to 9999 in UTC)") from None
