"""The templates' Jinja environment: its cheaper escaping writes what markupsafe would."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from jinja2 import Environment
from markupsafe import Markup, escape
from pydantic import SecretStr

from webapp.main import create_app
from webapp.settings import Settings
from webapp.web import PAGE_ROUTERS
from webapp.web.templating import AppEnvironment, escape_to_str


class Colour(StrEnum):
    red = "<red>"


class Widget:
    """An object with its own HTML, as Markup-aware objects have."""

    def __html__(self) -> str:
        return "<b>widget</b>"

    def __str__(self) -> str:
        return "<widget & co>"


VALUES: list[Any] = [
    "plain",
    "<script>alert('x')</script>",
    'a "quoted" & <tagged> value',
    "",
    "naïve café – ✓",
    0,
    12345,
    0.5,
    None,
    True,
    Markup("<em>already safe</em>"),
    Colour.red,
    Widget(),
    ["<list>"],
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_escape_to_str_holds_what_markupsafe_escape_does(value: Any) -> None:
    assert escape_to_str(value) == str(escape(value))
    assert type(escape_to_str(value)) is str


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_templates_render_as_plain_jinja_does(value: Any) -> None:
    """Output, attributes, filters, macros and set blocks, under autoescape, as Jinja's own
    environment renders them."""
    source = (
        '{% macro tag(v) %}<i title="{{ v }}">{{ v }}</i>{% endmacro %}'
        "{% set block %}[{{ value }}]{% endset %}"
        '<p data-x="{{ value }}">{{ value }}|{{ value | string | upper }}|{{ tag(value) }}'
        "|{{ block }}|{{ value ~ '<&>' }}</p>"
        "{% autoescape false %}{{ '<raw>' }}{% endautoescape %}"
    )
    ours = AppEnvironment(autoescape=True).from_string(source).render(value=value)
    theirs = Environment(autoescape=True).from_string(source).render(value=value)
    assert ours == theirs
    assert "<script>" not in ours


def test_every_page_route_name_finds_its_page(tmp_path: Path) -> None:
    """Templates link with path_for(name): each page route's name must find that page,
    never an API route of the same name (the API's list_memories is /api/v1/memories)."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    app = create_app(settings.model_copy(update={"secret_key": SecretStr("k" * 40)}))
    checked = 0
    for router in PAGE_ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            params = dict.fromkeys(route.param_convertors, "1")
            found = app.url_path_for(route.name, **params)
            assert found == route.path.format(**params), (route.name, found)
            checked += 1
    assert checked > 40
