"""Filters and globals the templates use to show values: dates, numbers, states."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi.templating import Jinja2Templates

from webapp.types import utcnow


def ago(value: datetime | None) -> str:
    """'3 days ago', 'in 2 hours': a time relative to now, for humans."""
    if value is None:
        return "never"
    seconds = (value - utcnow()).total_seconds()
    future = seconds > 0
    seconds = abs(seconds)
    for unit, size in (
        ("year", 31_536_000),
        ("month", 2_592_000),
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
    ):
        if seconds >= size:
            amount = int(seconds // size)
            text = f"{amount} {unit}{'' if amount == 1 else 's'}"
            return f"in {text}" if future else f"{text} ago"
    return "in a moment" if future else "just now"


def utc(value: datetime | None) -> str:
    """An exact UTC time, as the title of a relative one."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


def local_input(value: datetime | None) -> str:
    """A datetime-local input's value (UTC, minutes)."""
    return value.strftime("%Y-%m-%dT%H:%M") if value is not None else ""


def number(value: int) -> str:
    """12,345."""
    return f"{value:,}"


def install_template_helpers(templates: Jinja2Templates, **globals_: Any) -> None:
    """Register the filters and globals on the app's Jinja environment."""
    env = templates.env
    env.filters.update(ago=ago, utc=utc, local_input=local_input, number=number)
    env.globals.update(globals_)


class RoutePaths:
    """`path_for(name, **params)` for templates, without walking the routes every time.

    Looking a route up by name walks every route (about 40 µs); a list page names a route
    a few times per row. The first call for a name and parameter names finds the path
    with placeholder values and keeps it split around them; later calls only join the
    pieces with the real values.
    """

    _PLACEHOLDER = 987_654_321_000

    def __init__(self, url_path_for: Callable[..., Any]) -> None:
        self._url_path_for = url_path_for
        self._pieces: dict[tuple[str, tuple[str, ...]], tuple[list[str], list[str]]] = {}

    def __call__(self, name: str, /, **params: Any) -> str:
        """The path of the route called name, with params filled in."""
        names = tuple(params)
        known = self._pieces.get((name, names))
        if known is None:
            known = self._learn(name, names)
        pieces, order = known
        if not order:
            return pieces[0]
        path = [pieces[0]]
        for key, piece in zip(order, pieces[1:], strict=True):
            value = params[key]
            path.append(str(value) if isinstance(value, int) else quote(str(value), safe=""))
            path.append(piece)
        return "".join(path)

    def _learn(self, name: str, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
        markers = {str(self._PLACEHOLDER + index): key for index, key in enumerate(names)}
        path = str(self._url_path_for(name, **{key: int(m) for m, key in markers.items()}))
        pieces, order, rest = [], [], path
        while True:
            found = [(rest.find(m), m) for m in markers if m in rest]
            if not found:
                break
            position, marker = min(found)
            pieces.append(rest[:position])
            order.append(markers[marker])
            rest = rest[position + len(marker) :]
        pieces.append(rest)
        self._pieces[(name, names)] = (pieces, order)
        return pieces, order
