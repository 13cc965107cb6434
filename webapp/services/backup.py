"""`memory-admin backup PATH`: an online, consistent copy of a SQLite database.

SQLite's online backup API copies the database page by page. Done in one step it reads
the whole file inside one read transaction, so the copy is the database as it was at one
moment, and in WAL mode the app's writers go on meanwhile (done in several steps, each
write by another connection would restart the copy, which under steady traffic might
never end). The copy is written beside PATH under a temporary name, checked with
`PRAGMA quick_check`, flushed to disk, and only then given its name: a backup that fails
or is stopped leaves nothing at PATH, and it never replaces a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from webapp.errors import MemoryAdminError


class BackupFailed(MemoryAdminError):
    """The copy could not be made; nothing was written at the target path."""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    memories: int
    seconds: float


def backup_sqlite(source: Path, target: Path, *, busy_timeout_ms: int) -> Backup:
    """Copy the memory-admin SQLite database at source to target, a path that must not
    exist yet, while other connections may read and write source."""
    started = time.perf_counter()
    if not source.is_file():
        raise BackupFailed(f"there is no database at {source}")
    if target.exists():
        raise BackupFailed(f"{target} exists already: a backup never replaces a file")
    if not target.parent.is_dir():
        raise BackupFailed(f"there is no folder {target.parent}")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        memories = _copy(source, partial, busy_timeout_ms)
        _make_durable(partial)
        _name(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return Backup(target, target.stat().st_size, memories, time.perf_counter() - started)


def _copy(source: Path, partial: Path, busy_timeout_ms: int) -> int:
    """Copy source into the new file partial and check it; the memories it holds."""
    with contextlib.closing(sqlite3.connect(source, timeout=busy_timeout_ms / 1000)) as origin:
        tables = {row[0] for row in origin.execute("SELECT name FROM sqlite_master")}
        if "long_term_memory" not in tables:
            raise BackupFailed(f"{source} is not a memory-admin database")
        try:
            destination = sqlite3.connect(partial)
        except sqlite3.Error as exc:
            raise BackupFailed(f"cannot write {partial.parent}: {exc}") from None
        with contextlib.closing(destination):
            try:
                origin.backup(destination)  # one step: see the module's docstring
            except sqlite3.Error as exc:
                raise BackupFailed(f"the copy failed: {exc}") from None
            # One self-contained file, which opens without a -wal beside it (even from
            # read-only media); the app turns WAL back on when it opens a restored copy.
            destination.execute("PRAGMA journal_mode=DELETE")
            verdict = destination.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise BackupFailed(f"the copy does not pass quick_check: {verdict}")
            return int(destination.execute("SELECT count(*) FROM long_term_memory").fetchone()[0])


def _make_durable(path: Path) -> None:
    """Flush the file's content to disk before it takes its name."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _name(partial: Path, target: Path) -> None:
    """Give the finished copy its name, unless a file took that name meanwhile (a hard
    link fails then, where a rename would replace it)."""
    try:
        os.link(partial, target)
    except FileExistsError:
        raise BackupFailed(f"{target} exists already: a backup never replaces a file") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        os.replace(partial, target)  # a file system without hard links
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the new name, too, survives a crash
    finally:
        os.close(folder)
