"""The layers keep their direction: the service layer imports without the web framework,
and never reaches into the pages or the API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import webapp

PACKAGE = Path(webapp.__file__).resolve().parent
SERVICE_MODULES = sorted(
    f"webapp.services.{path.stem}"
    for path in (PACKAGE / "services").glob("*.py")
    if path.stem != "__init__"
)


def test_the_service_layer_imports_without_the_web_framework() -> None:
    """Importing every service (and db, models, settings) loads neither FastAPI nor Starlette."""
    modules = ["webapp.db", "webapp.models", "webapp.settings", *SERVICE_MODULES]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette'}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]", completed.stdout


def test_no_service_imports_the_pages_or_the_api() -> None:
    """Data flows one way: a service never imports webapp.web, webapp.api or request_scope."""
    for path in sorted((PACKAGE / "services").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        upward = {
            name
            for name in imported
            if name.startswith(("webapp.web", "webapp.api", "webapp.request_scope"))
        }
        assert not upward, f"{path.name} imports {sorted(upward)}"
