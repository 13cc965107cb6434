"""The one domain error family; the web, API and CLI layers each map it in one handler."""

from __future__ import annotations


class MemoryAdminError(Exception):
    """Base of every error a user can act on; the message is shown as is."""

    status_code = 400
    headers: dict[str, str] | None = None
    """Response headers the error calls for (WWW-Authenticate for a 401)."""


class NotFound(MemoryAdminError):
    """Absent, or not visible to the acting user (the two are never told apart)."""

    status_code = 404


class Conflict(MemoryAdminError):
    """The write was based on a stale version, or would break a uniqueness rule."""

    status_code = 409


class Unauthorized(MemoryAdminError):
    """No bearer token, or one that is unknown or revoked (the API and MCP over HTTP)."""

    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class InvalidInput(MemoryAdminError):
    """A value breaks a field rule (validation.py) or a filter is malformed."""

    status_code = 422


class ImportFailed(MemoryAdminError):
    """An import line is bad; nothing of the import was written."""

    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(f"line {line_no}: {message}")
        self.line_no = line_no


class DatabaseUnavailable(MemoryAdminError):
    """The database cannot be reached or has not been migrated."""

    status_code = 503


class VersionConflict(Conflict):
    """An edit was based on a stale version; `current` holds the memory as it is now."""

    def __init__(self, message: str, *, current: object) -> None:
        super().__init__(message)
        self.current = current
