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
    for each of its forms, about 15 per row. The first call for a name finds its path with
    placeholder values, and later calls only put the real values in.
    """

    _PLACEHOLDER = 987_654_321_000

    def __init__(self, url_path_for: Callable[..., Any]) -> None:
        self._url_path_for = url_path_for
        self._templates: dict[tuple[str, tuple[str, ...]], tuple[str, dict[str, str]]] = {}

    def __call__(self, name: str, /, **params: Any) -> str:
        """The path of the route called name, with params filled in."""
        names = tuple(sorted(params))
        known = self._templates.get((name, names))
        if known is None:
            placeholders = {key: self._PLACEHOLDER + index for index, key in enumerate(names)}
            path = str(self._url_path_for(name, **placeholders))
            known = (path, {key: str(value) for key, value in placeholders.items()})
            self._templates[(name, names)] = known
        path, markers = known
        for key, marker in markers.items():
            path = path.replace(marker, quote(str(params[key]), safe=""))
        return path
