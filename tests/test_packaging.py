"""`pip install` of the built wheel (not editable) ships templates, static and migrations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = (
    "webapp/templates/",
    "webapp/static/",
    "webapp/migrations/env.py",
    "webapp/migrations/versions/0001_initial_schema.py",
)
TABLES = {"alembic_version", "users", "long_term_memory", "memory_event", "api_token"}


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; fail the test with its output if it fails."""
    completed = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert completed.returncode == 0, (
        f"{args} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}"
    )
    return completed.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would let the checkout leak into the venv."""
    skip = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DATABASE_URL", "SECRET_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the checkout with `python -m build --wheel`, by the hatchling of
    the test extra (an isolated build would download one every run)."""
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out]
    _run([*build, REPO_ROOT], cwd=out)
    (built,) = out.glob("memory_admin-*.whl")
    return built


def test_the_wheel_ships_templates_static_and_migrations(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()

    for shipped in SHIPPED:
        assert any(name.startswith(shipped) for name in names), f"{shipped} missing from {names}"
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_the_installed_wheel_migrates_from_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    work = tmp_path / "work"
    work.mkdir()
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", "--no-deps", "--no-index", wheel], cwd=work, env=_clean_env())
    share_installed_dependencies(python)
    checked = _run([*pip, "check"], cwd=work, env=_clean_env())  # the wheel's requirements
    database = work / "memories.db"
    env = _clean_env(DATABASE_URL=f"sqlite+aiosqlite:///{database}", SECRET_KEY="packaging")

    package = _run([python, "-c", "import webapp; print(webapp.__file__)"], cwd=work, env=env)
    templates = _run(
        [python, "-c", "from webapp.paths import resource_dir; print(resource_dir('templates'))"],
        cwd=work,
        env=env,
    )
    migrated = _run([venv / "bin" / "memory-admin", "migrate"], cwd=work, env=env)

    assert "No broken requirements" in checked
    assert Path(package.strip()).is_relative_to(venv)
    assert Path(templates.strip()).is_relative_to(venv)
    assert "revision" in migrated
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert tables >= TABLES


def share_installed_dependencies(python: Path) -> None:
    """Let the venv of python import the packages installed for this test run, after its own.

    Installing the wheel's dependencies afresh took minutes and the network; those of the
    test run are the versions CI pins, and `pip check` in the venv still proves they meet
    the wheel's requirements. The checkout stays out: a directory named in a .pth file is
    put on sys.path without reading the .pth files in it, such as the editable install's.
    """
    ours = sysconfig.get_paths()
    theirs = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=python.parent,
    )
    paths = dict.fromkeys([ours["purelib"], ours["platlib"]])
    (Path(theirs.strip()) / "_test_run_packages.pth").write_text("\n".join(paths) + "\n")
