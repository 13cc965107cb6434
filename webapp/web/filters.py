"""The browser's query string: parsed into a BrowseQuery, and written back as canonical URLs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from pydantic import ValidationError

from webapp.ids import positive_int4
from webapp.models import BrowseQuery
from webapp.validation import number_from_text

_FIELDS = frozenset(BrowseQuery.model_fields)
_DEFAULTS = BrowseQuery()


@dataclass
class ParsedFilters:
    """The query (defaults where the input was bad), the raw values to show, and the error."""

    query: BrowseQuery
    raw: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def describe_error(exc: ValidationError) -> str:
    """One readable sentence for the first problem of a validation error."""
    return describe_problem(exc.errors()[0])


def describe_problem(error: Mapping[str, Any], *, skip: int = 0) -> str:
    """One readable sentence for one validation problem: where (its `loc` past the first
    `skip` parts, such as a request error's "body") and what."""
    where = ".".join(str(part) for part in error["loc"][skip:] if not isinstance(part, int))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where.replace('_', ' ')}: {message}" if where else message


NUMERIC_FILTERS = ("min_importance", "max_importance")


def parse_filters(request: Request, **fixed: Any) -> ParsedFilters:
    """The browse filters of this request; empty fields are absent, unknown names ignored."""
    raw: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name not in _FIELDS or not value.strip():
            continue
        if name == "tag":
            raw.setdefault("tag", []).append(value.strip())
        else:
            raw[name] = value.strip()
    values = {
        name: number_from_text(value) if name in NUMERIC_FILTERS else value
        for name, value in raw.items()
    }
    try:
        query = BrowseQuery.model_validate({**values, **fixed})
    except ValidationError as exc:
        return ParsedFilters(query=BrowseQuery(**fixed), raw=raw, error=describe_error(exc))
    return ParsedFilters(query=query, raw=raw)


def query_string(query: BrowseQuery, *, omit: tuple[str, ...] = (), **changes: Any) -> str:
    """The query string of query with changes, naming only what differs from the defaults
    (and nothing in omit, for a page whose route fixes that filter)."""
    values = query.model_dump()
    values.update(changes)
    pairs: list[tuple[str, Any]] = []
    for name in BrowseQuery.model_fields:
        value = values.get(name)
        if name in omit:
            continue
        if value is None or value == [] or value == getattr(_DEFAULTS, name):
            continue
        if name == "tag":
            pairs.extend(("tag", tag) for tag in value)
        else:
            pairs.append((name, value))
    return urlencode(pairs)


def url_with(path: str, query: BrowseQuery, *, omit: tuple[str, ...] = (), **changes: Any) -> str:
    """path followed by the canonical query string of query with changes."""
    text = query_string(query, omit=omit, **changes)
    return f"{path}?{text}" if text else path


EDIT_PARAMETER = "edit"
"""The browser's `?edit=ID`: that row shows its editor (how Edit works without JavaScript)."""


def with_edit(url: str, memory_id: int) -> str:
    """url (a list page) with the row memory_id's editor open."""
    return _set_edit(url, str(memory_id))


def without_edit(url: str) -> str:
    """url with no row's editor open."""
    return _set_edit(url, None)


def _set_edit(url: str, value: str | None) -> str:
    path, _, query = url.partition("?")
    pairs = [(name, item) for name, item in parse_qsl(query) if name != EDIT_PARAMETER]
    if value is not None:
        pairs.append((EDIT_PARAMETER, value))
    return f"{path}?{urlencode(pairs)}" if pairs else path


def editing_id(request: Request) -> int | None:
    """The id of the row whose editor a list request asks to open, if any."""
    return positive_int4(request.query_params.get(EDIT_PARAMETER, ""))


def owner_links(list_path: str, owners: dict[int, str]) -> dict[int, str]:
    """Each owner's list URL (`/memories?user=NAME`), made once per page, not once per row."""
    return {user_id: f"{list_path}?{urlencode({'user': name})}" for user_id, name in owners.items()}
