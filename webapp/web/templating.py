"""Filters and globals the templates use to show values: dates, numbers, states."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi.templating import Jinja2Templates
from jinja2 import Environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Expr
from markupsafe import _escape_inner

from webapp.types import utcnow


def escape_to_str(value: Any) -> str:
    """What markupsafe.escape(value) holds, as a plain str instead of a new Markup object
    (the same steps, with markupsafe's own C escaper; tests/test_templating.py compares)."""
    if type(value) is str:
        return _escape_inner(value)
    html = getattr(value, "__html__", None)
    if html is not None:
        return str(html())
    return _escape_inner(str(value))


class _EscapeToStrCodeGenerator(CodeGenerator):
    """Compiles `{{ value }}` under autoescape to escape_to_str(value), not escape(value).

    Jinja wraps every escaped value in a Markup object only to join them all into one
    string; a list page outputs about 1,400 values, and building those objects took 40%
    of its rendering time. The text is the same.
    """

    def _output_child_pre(
        self, node: Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        if frame.eval_ctx.volatile or not frame.eval_ctx.autoescape:
            super()._output_child_pre(node, frame, finalize)
            return
        self.write("environment.escape_to_str(")
        if finalize.src is not None:
            self.write(finalize.src)


class AppEnvironment(Environment):
    """The templates' Jinja environment: autoescape as usual, with cheaper output."""

    code_generator_class = _EscapeToStrCodeGenerator
    escape_to_str = staticmethod(escape_to_str)


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


def expiry(value: datetime) -> str:
    """'expires in 3 days' or 'expired 2 hours ago'."""
    return f"{'expired' if value <= utcnow() else 'expires'} {ago(value)}"


def iso(value: datetime) -> str:
    """A machine-readable time, for <time datetime>."""
    return value.isoformat()


def clip(text: str, limit: int) -> str:
    """text cut to limit characters, with an ellipsis if it was longer."""
    return text if len(text) <= limit else text[:limit] + "…"


def reads(count: int) -> str:
    """'1 read', '12,345 reads'."""
    return f"{count:,} read{'' if count == 1 else 's'}"


def importance(value: float) -> str:
    """0.50: importance as people read it."""
    return f"{value:.2f}"


def utc(value: datetime | str | None) -> str:
    """An exact UTC time, as the title of a relative one (or as an event stores it, ISO)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
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
    env.filters.update(
        ago=ago,
        clip=clip,
        expiry=expiry,
        importance=importance,
        iso=iso,
        local_input=local_input,
        number=number,
        reads=reads,
        utc=utc,
    )
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
