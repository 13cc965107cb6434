"""Bulk actions from the browser and Trash: preview (GET), confirm (POST), undo a delete.

The bulk bar above a list is a GET form (`bulk-form`) that the rows' checkboxes join
through their `form` attribute, so choosing works without JavaScript. Its submit buttons
pick the scope: the checked rows, every row of the page (sent as hidden `page_ids`), or
every memory matching the filter. The preview page names the count, a sample, the
selection and the action; its confirm form carries the selection and the fingerprint of
the previewed set, and the filter in its URL. A stale preview is shown again (409), a bad
value in the preview's own form (422); nothing is written in either case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature

from webapp.errors import InvalidInput, NotFound
from webapp.models import BrowseQuery
from webapp.services import bulk
from webapp.services.bulk import BulkAction, BulkResult, Selection, StalePreview
from webapp.validation import number_from_text
from webapp.web.deps import (
    CheckedVisitor,
    CurrentVisitor,
    DatabaseDep,
    Visitor,
    cookie_signer,
    memory_id_from_text,
    safe_next,
)
from webapp.web.filters import ParsedFilters, parse_filters, query_string
from webapp.web.render import is_htmx, redirect, render

router = APIRouter()

EXPORT = "export"
LABELS = {
    BulkAction.delete: "Delete",
    BulkAction.restore: "Restore",
    BulkAction.add_tag: "Add tag",
    BulkAction.remove_tag: "Remove tag",
    BulkAction.set_importance: "Set importance",
    BulkAction.set_expiry: "Set expiry",
    EXPORT: "Export",
}
PLACES: dict[str, dict[str, Any]] = {
    "memories": {
        "fixed": {},
        "omit": ("cursor",),
        "actions": (
            BulkAction.delete,
            BulkAction.add_tag,
            BulkAction.remove_tag,
            BulkAction.set_importance,
            BulkAction.set_expiry,
            BulkAction.restore,
            EXPORT,
        ),
    },
    "trash": {
        "fixed": {"state": "deleted"},
        "omit": ("cursor", "state"),
        "actions": (BulkAction.restore, EXPORT),
    },
}
SCOPES = ("selected", "page", "filter")
UNDO_PREFIX = "bulk-undo:"


def bulk_filter_fields(query: BrowseQuery, omit: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The filter of a list as (name, value) pairs for hidden fields: what a filter-wide
    action acts on (no cursor: the whole filter, not one page)."""
    return parse_qsl(query_string(query, omit=("cursor", "limit", *omit)))


def bulk_actions(place: str) -> list[tuple[str, str]]:
    """The actions the bulk bar of a list offers, as (value, label)."""
    return [(str(action), LABELS[action]) for action in PLACES[place]["actions"]]


@dataclass
class BulkRequest:
    """A bulk form as submitted: where from, what to do, to which memories."""

    place: str
    action: str
    value: str
    scope: str
    ids: list[int]
    filters: ParsedFilters
    back: str
    fingerprint: str = ""
    pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def selection(self) -> Selection:
        """The service's Selection: the ids, or the whole filter."""
        if self.scope == "filter":
            return Selection(query=self.filters.query.model_copy(update={"cursor": None}))
        return Selection(ids=self.ids)


def _bulk_request(request: Request, place: str, fields: Any) -> BulkRequest:
    """Read a preview's query string or a confirm's form (fields: a multi-dict)."""
    config = PLACES[place]
    action = fields.get("action", "")
    if action not in config["actions"]:
        raise InvalidInput(f"choose one of: {', '.join(LABELS[a] for a in config['actions'])}")
    scope = fields.get("scope", "selected")
    if scope not in SCOPES:
        scope = "selected"
    name = "page_ids" if scope == "page" else "ids"
    ids = [memory_id_from_text(text) for text in fields.getlist(name) if text.strip()]
    filters = parse_filters(request, **config["fixed"])
    if filters.error:
        raise InvalidInput(filters.error)
    list_path = "/trash" if place == "trash" else "/memories"
    back = safe_next(fields.get("next") or list_path)
    if not back.startswith(list_path):
        back = list_path
    return BulkRequest(
        place=place,
        action=action,
        value=fields.get("value", "").strip(),
        scope="ids" if scope in ("selected", "page") else "filter",
        ids=ids,
        filters=filters,
        back=back,
        fingerprint=fields.get("fingerprint", ""),
        pairs=bulk_filter_fields(filters.query, config["omit"]),
    )


def _value(action: BulkAction, text: str) -> Any:
    """The form's value for action, as the service takes it (it validates the rest)."""
    if action is BulkAction.set_importance:
        return number_from_text(text) if text else ""
    if action is BulkAction.set_expiry:
        if text.lower() in ("", "never"):
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                "expiry: enter a date and time like 2026-12-31T18:00 (UTC), or never"
            ) from None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return text


def _checked(bulk_request: BulkRequest) -> tuple[Any, str | None]:
    """The validated value, or None and the error to show in the preview form."""
    action = BulkAction(bulk_request.action)
    try:
        return bulk.checked_value(action, _value(action, bulk_request.value)), None
    except InvalidInput as exc:
        return None, str(exc)


def _export_url(request: Request, bulk_request: BulkRequest) -> str:
    """The export endpoint (web/transfer's) for the selection: its filters or `id=`s."""
    export_path = request.app.url_path_for("export_memories")
    if bulk_request.scope == "filter":
        pairs = bulk_filter_fields(bulk_request.filters.query)
    else:
        pairs = [("id", str(memory_id)) for memory_id in bulk_request.ids]
    return f"{export_path}?{urlencode(pairs)}" if pairs else export_path


async def _preview_page(
    request: Request,
    db: DatabaseDep,
    visitor: Visitor,
    bulk_request: BulkRequest,
    *,
    stale: str | None = None,
) -> Response:
    checked, error = _checked(bulk_request)
    found = await bulk.preview(db, principal=visitor.principal, selection=bulk_request.selection)
    action = BulkAction(bulk_request.action)
    status = 422 if error else 409 if stale else 200
    return render(
        request,
        "bulk/preview.html",
        {
            "bulk": bulk_request,
            "label": LABELS[action],
            "needs_value": action not in (BulkAction.delete, BulkAction.restore),
            "value_shown": _shown_value(action, checked) if error is None else "",
            "error": error,
            "stale": stale,
            "found": found,
            "section": bulk_request.place,
            "owners_shown": visitor.user.is_admin,
        },
        block="results",
        status_code=status,
    )


def _shown_value(action: BulkAction, value: Any) -> str:
    if action is BulkAction.set_expiry:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"
    if action is BulkAction.set_importance:
        return f"{value:.2f}"
    return str(value or "")


async def _preview(request: Request, db: DatabaseDep, visitor: Visitor, place: str) -> Response:
    bulk_request = _bulk_request(request, place, request.query_params)
    if bulk_request.scope == "ids" and not bulk_request.ids:
        return redirect(request, bulk_request.back, message="Select at least one memory first.")
    if bulk_request.action == EXPORT:
        return RedirectResponse(_export_url(request, bulk_request), status_code=303)
    return await _preview_page(request, db, visitor, bulk_request)


@router.get("/memories/bulk/preview", name="bulk_preview")
async def bulk_preview(request: Request, db: DatabaseDep, visitor: CurrentVisitor) -> Response:
    """What a bulk action on the browser's selection or filter would do; changes nothing."""
    return await _preview(request, db, visitor, "memories")


@router.get("/trash/bulk/preview", name="trash_bulk_preview")
async def trash_bulk_preview(
    request: Request, db: DatabaseDep, visitor: CurrentVisitor
) -> Response:
    """What a bulk restore (or export) of Trash's selection or filter would do."""
    return await _preview(request, db, visitor, "trash")


def _plural(count: int) -> str:
    return f"{count:,} memor{'y' if count == 1 else 'ies'}"


def done_message(action: BulkAction, value: str, result: BulkResult) -> str:
    """What a bulk action did, for the flash after it."""
    many = _plural(result.changed)
    text = {
        BulkAction.delete: f"Deleted {many}.",
        BulkAction.restore: f"Restored {many}.",
        BulkAction.add_tag: f"Added tag “{value}” to {many}.",
        BulkAction.remove_tag: f"Removed tag “{value}” from {many}.",
        BulkAction.set_importance: f"Set importance {value} on {many}.",
        BulkAction.set_expiry: f"Set expiry {value} on {many}.",
    }[action]
    if result.unchanged:
        text += f" {_plural(result.unchanged)} already were so."
    return text


def _done(request: Request, url: str, **flash: Any) -> Response:
    """Post/Redirect/Get; htmx follows with a full page load (HX-Redirect), the flash kept."""
    response = redirect(request, url, **flash)
    if is_htmx(request):
        response.status_code = 200
        response.headers["HX-Redirect"] = url
    return response


async def _apply(request: Request, db: DatabaseDep, visitor: Visitor, place: str) -> Response:
    form = await request.form()
    bulk_request = _bulk_request(request, place, form)
    if bulk_request.action == EXPORT:
        return _done(request, _export_url(request, bulk_request))
    action = BulkAction(bulk_request.action)
    checked, error = _checked(bulk_request)
    if error is not None:
        return await _preview_page(request, db, visitor, bulk_request)
    try:
        result = await bulk.apply(
            db,
            principal=visitor.principal,
            selection=bulk_request.selection,
            action=action,
            value=checked,
            expected=bulk_request.fingerprint,
        )
    except StalePreview as exc:
        return await _preview_page(request, db, visitor, bulk_request, stale=str(exc))
    message = done_message(action, _shown_value(action, checked), result)
    undo = None
    if action is BulkAction.delete and result.changed:
        undo = undo_token(request, visitor, result.at)
    return _done(request, bulk_request.back, message=message, undo_token=undo)


@router.post("/memories/bulk/apply", name="bulk_apply")
async def bulk_apply(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """Run a previewed bulk action, all or nothing, if the selection is still as previewed."""
    return await _apply(request, db, visitor, "memories")


@router.post("/trash/bulk/apply", name="trash_bulk_apply")
async def trash_bulk_apply(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """Run a previewed bulk restore from Trash."""
    return await _apply(request, db, visitor, "trash")


def undo_token(request: Request, visitor: Visitor, at: datetime) -> str:
    """A signed token naming a bulk delete (who, and its deletion time) for its Undo."""
    payload = f"{UNDO_PREFIX}{visitor.user.id}:{at.isoformat()}"
    return cookie_signer(request).sign(payload.encode()).decode()


def _undone_at(request: Request, visitor: Visitor, token: str) -> datetime:
    """The deletion time a token names; NotFound for a forged token or someone else's."""
    try:
        payload = cookie_signer(request).unsign(token.encode()).decode()
    except BadSignature:
        raise NotFound("nothing to undo") from None
    owner, _, at = payload.removeprefix(UNDO_PREFIX).partition(":")
    if not payload.startswith(UNDO_PREFIX) or owner != str(visitor.user.id):
        raise NotFound("nothing to undo")
    return datetime.fromisoformat(at)


@router.post("/memories/bulk/undo", name="bulk_undo")
async def bulk_undo(request: Request, db: DatabaseDep, visitor: CheckedVisitor) -> Response:
    """Restore exactly the memories one bulk delete deleted (those still deleted by it)."""
    form = await request.form()
    token = form.get("token")
    at = _undone_at(request, visitor, token if isinstance(token, str) else "")
    result = await bulk.apply(
        db,
        principal=visitor.principal,
        selection=Selection(deleted_at=at),
        action=BulkAction.restore,
    )
    next_value = form.get("next")
    back = safe_next(next_value if isinstance(next_value, str) else "/memories")
    return _done(request, back, message=f"Restored {_plural(result.changed)}.")
