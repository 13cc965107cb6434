"""Every knob of memory-admin in one pydantic-settings class, read from the environment."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./memory_admin.db"
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")

HTMX_VERSION = "2.0.11"
HTMX_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
HTMX_INTEGRITY = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"
"""The pinned htmx build; the integrity hash is sha384 of that exact file (npm pack
htmx.org@HTMX_VERSION, dist/htmx.min.js). Change all three together."""


DEFAULT_CONTENT_MAX_BYTES = 65_536

SearchLanguage = Literal["english", "simple"]
DEFAULT_SEARCH_LANGUAGE: SearchLanguage = "english"
"""How the full-text index reads words: `english` stems them and drops stop words;
`simple` keeps them as written, in any language (services/fulltext.py)."""


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


class Settings(BaseSettings):
    """Configuration; each field is read from the environment variable of the same name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    secret_key: SecretStr | None = None

    content_max_bytes: int = Field(DEFAULT_CONTENT_MAX_BYTES, ge=1, le=16 * 1024 * 1024)

    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(20, ge=0)
    db_connect_timeout: float = Field(5.0, gt=0)
    db_pool_timeout: float = Field(10.0, gt=0)
    sqlite_busy_timeout_ms: int = Field(10_000, ge=0)
    sqlite_import_cache_mb: int = Field(64, ge=2, le=4096)
    sqlite_cache_mb: int = Field(32, ge=2, le=4096)
    sqlite_mmap_mb: int = Field(0, ge=0, le=1_048_576)

    session_hours: int = Field(12, ge=1, le=24 * 90)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    import_max_bytes: int = Field(1024 * 1024 * 1024, ge=1024)
    import_dir: Path | None = None
    import_stale_hours: int = Field(24, ge=1, le=24 * 30)
    trash_retention_days: int = Field(30, ge=0, le=36_500)
    expired_grace_days: int = Field(7, ge=0, le=36_500)
    semantic_search: bool = True
    background_embedding: bool = True
    search_catch_up: int = Field(8, ge=0, le=1_000)
    search_vector_cache_rows: int = Field(250_000, ge=1_000)
    search_language: SearchLanguage = DEFAULT_SEARCH_LANGUAGE

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as exc:  # SQLAlchemy raises ArgumentError with a terse text
            raise ValueError(f"DATABASE_URL is not a database URL: {value!r}") from exc
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"DATABASE_URL must start with one of {', '.join(SUPPORTED_DRIVERS)} "
                f"(got {url.drivername!r})"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        """True when the database is SQLite (the embedded default)."""
        return self.database_url.startswith("sqlite")

    @property
    def uses_default_database(self) -> bool:
        """True when DATABASE_URL is not set, i.e. the embedded SQLite file in the cwd."""
        return self.database_url == DEFAULT_DATABASE_URL

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for PostgreSQL and in-memory SQLite."""
        if not self.is_sqlite:
            return None
        database = make_url(self.database_url).database
        if not database or database == ":memory:":
            return None
        return Path(database)

    def resolve_secret_key(self) -> str:
        """SECRET_KEY, or on the default SQLite database a key generated once beside it."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value()
        path = self.sqlite_path
        if not self.uses_default_database or path is None:
            raise ConfigError(
                "SECRET_KEY is required when DATABASE_URL is set; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        key_file = path.with_name(path.name + ".secret")
        if key_file.exists():
            return key_file.read_text().strip()
        key = secrets.token_urlsafe(48)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
