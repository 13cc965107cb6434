"""Export of the browser's filter (JSON Lines or CSV, streamed) and the admins' import page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile

from webapp.errors import InvalidInput, MemoryAdminError
from webapp.services.transfer.export import ExportFormat, export_selection
from webapp.services.transfer.uploads import (
    DryRunReport,
    clean_stale_uploads,
    discard_upload,
    load_upload,
    run_upload,
    store_upload,
)
from webapp.types import utcnow
from webapp.web.deps import (
    AdminVisitor,
    CheckedAdmin,
    CurrentVisitor,
    DatabaseDep,
    SettingsDep,
    Visitor,
    memory_id_from_text,
)
from webapp.web.filters import parse_filters
from webapp.web.render import is_htmx, redirect, render

export_router = APIRouter()
"""Mounted before the memory pages: /memories/export is not a memory id."""
router = APIRouter()

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


@export_router.get("/memories/export", name="export_memories")
async def export_memories(
    request: Request, db: DatabaseDep, visitor: CurrentVisitor, format: ExportFormat = "jsonl"
) -> Response:
    """The browser's filter (or the rows chosen by repeated id=N) as a streamed download."""
    parsed = parse_filters(request)
    if parsed.error is not None:
        raise InvalidInput(parsed.error)
    ids = [memory_id_from_text(value) for value in request.query_params.getlist("id")]
    chunks = export_selection(
        db, principal=visitor.principal, query=parsed.query, ids=ids, export_format=format
    )
    filename = f"memories-{utcnow():%Y%m%d-%H%M%S}.{format}"
    return StreamingResponse(
        chunks,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _import_page(
    request: Request,
    report: DryRunReport | None = None,
    *,
    error: str | None = None,
    status_message: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "import.html",
        {"report": report, "error": error, "status_message": status_message},
        block="import",
        status_code=status_code,
        headers={"HX-Push-Url": _report_path(request, report)} if is_htmx(request) else None,
    )


def _report_path(request: Request, report: DryRunReport | None) -> str:
    if report is None:
        return request.app.url_path_for("show_import")
    return request.app.url_path_for("show_import_report", upload_id=report.upload_id)


@router.get("/import", name="show_import")
async def show_import(request: Request, settings: SettingsDep, visitor: AdminVisitor) -> Response:
    """The upload form."""
    clean_stale_uploads(settings)
    return _import_page(request)


@router.post("/import", name="upload_import")
async def upload_import(
    request: Request, db: DatabaseDep, settings: SettingsDep, visitor: CheckedAdmin
) -> Response:
    """Keep the uploaded file and dry-run it; then its report (PRG without htmx)."""
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _import_page(request, error="Choose a JSON Lines file to upload.", status_code=422)
    try:
        report = await store_upload(
            db,
            settings,
            source=upload.file,
            filename=upload.filename,
            principal=visitor.principal,
            csrf_token=visitor.csrf_token,
        )
    except MemoryAdminError as exc:
        return _import_page(request, error=str(exc), status_code=exc.status_code)
    finally:
        await upload.close()
    if is_htmx(request):
        return _import_page(request, report)
    return redirect(request, _report_path(request, report))


def _owned(settings: SettingsDep, visitor: Visitor, upload_id: str) -> DryRunReport:
    return load_upload(
        settings, upload_id=upload_id, principal=visitor.principal, csrf_token=visitor.csrf_token
    )


@router.get("/import/{upload_id}", name="show_import_report")
async def show_import_report(
    request: Request, upload_id: str, settings: SettingsDep, visitor: AdminVisitor
) -> Response:
    """The dry-run report of an upload, with Import and Discard."""
    return _import_page(request, _owned(settings, visitor, upload_id))


@router.post("/import/{upload_id}/run", name="run_import")
async def run_import(
    request: Request,
    upload_id: str,
    db: DatabaseDep,
    settings: SettingsDep,
    visitor: CheckedAdmin,
) -> Response:
    """Import an upload for real (refused while lines are rejected), then delete it."""
    try:
        result = await run_upload(
            db,
            settings,
            upload_id=upload_id,
            principal=visitor.principal,
            csrf_token=visitor.csrf_token,
        )
    except InvalidInput as exc:
        report = _owned(settings, visitor, upload_id)
        return _import_page(request, report, error=str(exc), status_code=exc.status_code)
    message = f"Created {result.created:,}, updated {result.updated:,}."
    if result.unchanged:
        message += f" {result.unchanged:,} unchanged."
    if is_htmx(request):
        return _import_page(request, status_message=message)
    return redirect(request, request.app.url_path_for("show_import"), message=message)


@router.post("/import/{upload_id}/discard", name="discard_import")
async def discard_import(
    request: Request, upload_id: str, settings: SettingsDep, visitor: CheckedAdmin
) -> Response:
    """Delete an upload without importing it."""
    discard_upload(
        settings, upload_id=upload_id, principal=visitor.principal, csrf_token=visitor.csrf_token
    )
    message = "Discarded the upload; nothing was imported."
    if is_htmx(request):
        return _import_page(request, status_message=message)
    return redirect(request, request.app.url_path_for("show_import"), message=message)
