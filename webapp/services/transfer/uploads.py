"""Import uploads from the browser: kept on disk under a random id, checked, dry-run, imported.

The request body never sits in memory: Starlette's multipart parser spools the file to a
temporary file past 1 MiB, and store_upload copies that in 1 MiB chunks (in a thread).
An upload is copied into IMPORT_DIR as `<id>.jsonl`, with `<id>.json` beside it
holding who uploaded it (user and a hash of their session's CSRF token, so only that
session sees it), its name, size and the dry-run report. The dry run checks every line
with the import's own parser (so it lists every rejected line, not only the first, as
the CLI does) and then runs `import_jsonl(dry_run=True)` over the good lines for the
created / updated counts. The real import refuses a file with rejected lines: the CLI
would abort on the first, and importing only the good ones would drop the others
silently. Files are deleted after the import or a discard, and any upload older than
IMPORT_STALE_HOURS is removed the next time an upload is stored or listed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio

from webapp.db import Database
from webapp.errors import InvalidInput, NotFound
from webapp.services.jsonl import ParseOptions, RecordParser
from webapp.services.principal import Principal
from webapp.services.transfer.importer import ImportReport, import_jsonl
from webapp.settings import Settings
from webapp.types import utcnow

REJECTED_SHOWN = 50
COPY_BYTES = 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


class UploadTooLarge(InvalidInput):
    """An upload over IMPORT_MAX_BYTES (when the request did not declare its length)."""

    status_code = 413


@dataclass
class DryRunReport:
    """What importing an upload would do, and which of its lines are rejected."""

    upload_id: str
    filename: str
    size: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    users_created: int = 0
    lines: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """The first REJECTED_SHOWN rejected lines: (line number, reason)."""
    rejected_total: int = 0


def import_dir(settings: Settings) -> Path:
    """The directory uploads wait in (created, private to this user, on first use)."""
    path = settings.import_dir or Path(tempfile.gettempdir()) / "memory-admin-imports"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _session_tag(csrf_token: str) -> str:
    """What an upload keeps of the session that made it: a hash, not the CSRF token."""
    return hashlib.sha256(csrf_token.encode()).hexdigest()


def _owned_by(owner: dict[str, Any], principal: Principal, csrf_token: str) -> bool:
    """Whether an upload's owner record is this user's in this session; the session tags
    are compared in constant time (hmac.compare_digest), as every secret is."""
    same_session = hmac.compare_digest(str(owner.get("session", "")), _session_tag(csrf_token))
    return owner.get("user_id") == principal.user_id and same_session


def _paths(settings: Settings, upload_id: str) -> tuple[Path, Path]:
    if not _ID.match(upload_id):
        raise NotFound("no such upload")
    folder = import_dir(settings)
    return folder / f"{upload_id}.jsonl", folder / f"{upload_id}.json"


def _copy(source: IO[bytes], target: Path, limit: int) -> int:
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as sink:
        while block := source.read(COPY_BYTES):
            size += len(block)
            if size > limit:
                raise UploadTooLarge(f"the file is over the upload limit ({limit:,} bytes)")
            sink.write(block)
    return size


def _check_lines(source: Path, good: Path, options: ParseOptions) -> tuple[int, list[Any], int]:
    """Parse every line; write the good ones to `good` (only when some are bad)."""
    parser = RecordParser(options)
    rejected: list[tuple[int, str]] = []
    total = lines = 0
    with source.open("rb") as lines_in, good.open("wb") as sink:
        for line_no, line in enumerate(lines_in, start=1):
            if not line.strip():
                continue
            lines += 1
            try:
                parser.parse(line)
            except ValueError as exc:
                total += 1
                if len(rejected) < REJECTED_SHOWN:
                    rejected.append((line_no, str(exc)))
                continue
            sink.write(line if line.endswith(b"\n") else line + b"\n")
    return lines, rejected, total


async def store_upload(
    db: Database,
    settings: Settings,
    *,
    source: IO[bytes],
    filename: str,
    principal: Principal,
    csrf_token: str,
) -> DryRunReport:
    """Keep an uploaded JSON Lines file under a new id and dry-run it."""
    clean_stale_uploads(settings)
    upload_id = secrets.token_urlsafe(16)
    data, meta = _paths(settings, upload_id)
    try:
        size = await anyio.to_thread.run_sync(_copy, source, data, settings.import_max_bytes)
        if size == 0:
            raise InvalidInput("the file is empty")
        report = DryRunReport(upload_id=upload_id, filename=filename[:200], size=size)
        await _dry_run(db, settings, data, report)
    except BaseException:
        data.unlink(missing_ok=True)
        raise
    owner = {"user_id": principal.user_id, "session": _session_tag(csrf_token), "at": time.time()}
    meta.write_text(json.dumps({"owner": owner, "report": asdict(report)}))
    return report


async def _dry_run(db: Database, settings: Settings, data: Path, report: DryRunReport) -> None:
    options = ParseOptions(
        for_sqlite=db.dialect == "sqlite",
        content_max_bytes=settings.content_max_bytes,
        now=utcnow(),
    )
    good = data.with_suffix(".good")
    try:
        lines, rejected, total = await anyio.to_thread.run_sync(_check_lines, data, good, options)
        report.lines, report.rejected, report.rejected_total = lines, rejected, total
        with (good if total else data).open("rb") as source:
            counts = await import_jsonl(db, source=source, settings=settings, dry_run=True)
    finally:
        good.unlink(missing_ok=True)
    report.created, report.updated = counts.created, counts.updated
    report.unchanged, report.users_created = counts.unchanged, counts.users_created


def load_upload(
    settings: Settings, *, upload_id: str, principal: Principal, csrf_token: str
) -> DryRunReport:
    """The dry-run report of an upload of this session; NotFound for any other."""
    data, meta = _paths(settings, upload_id)
    try:
        stored = json.loads(meta.read_text())
    except (OSError, ValueError):
        raise NotFound("no such upload (it was imported, discarded or has expired)") from None
    owner = stored["owner"]
    if not _owned_by(owner, principal, csrf_token):
        raise NotFound("no such upload (it was imported, discarded or has expired)")
    report = stored["report"]
    report["rejected"] = [tuple(item) for item in report["rejected"]]
    return DryRunReport(**report)


async def run_upload(
    db: Database,
    settings: Settings,
    *,
    upload_id: str,
    principal: Principal,
    csrf_token: str,
) -> ImportReport:
    """Import an upload for real, all or nothing, then delete it; refused while any of
    its lines is rejected."""
    report = load_upload(settings, upload_id=upload_id, principal=principal, csrf_token=csrf_token)
    if report.rejected_total:
        raise InvalidInput(
            f"{report.rejected_total:,} lines are rejected; fix them in the file and upload it "
            "again (nothing was imported)"
        )
    data, _meta = _paths(settings, upload_id)
    with data.open("rb") as source:
        result = await import_jsonl(
            db,
            source=source,
            settings=settings,
            actor=principal.actor,
            actor_user_id=principal.user_id,
        )
    discard_upload(settings, upload_id=upload_id, principal=principal, csrf_token=csrf_token)
    return result


def discard_upload(
    settings: Settings, *, upload_id: str, principal: Principal, csrf_token: str
) -> None:
    """Delete an upload of this session and its report."""
    load_upload(settings, upload_id=upload_id, principal=principal, csrf_token=csrf_token)
    for path in _paths(settings, upload_id):
        path.unlink(missing_ok=True)


def clean_stale_uploads(settings: Settings, *, now: float | None = None) -> int:
    """Remove uploads older than IMPORT_STALE_HOURS (left by closed tabs); how many."""
    cutoff = (now if now is not None else time.time()) - settings.import_stale_hours * 3600
    removed = 0
    for path in import_dir(settings).iterdir():
        if path.suffix in (".jsonl", ".json", ".good") and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += path.suffix == ".jsonl"
    return removed
