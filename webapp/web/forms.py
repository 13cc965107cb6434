"""Submitted forms, read one way by every page: text fields as strings, files ignored."""

from __future__ import annotations

from fastapi import Request


async def form_fields(request: Request) -> dict[str, str]:
    """The form's text fields by name (one value each: a repeated field's last)."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def form_list(request: Request, name: str) -> list[str]:
    """Every text value of the field name, in the order sent (checkboxes that repeat it)."""
    form = await request.form()
    return [value for value in form.getlist(name) if isinstance(value, str)]
