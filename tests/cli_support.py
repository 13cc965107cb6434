"""Running the memory-admin command in tests: in this process, or as a real process.

Most CLI tests check what a command did and said, which the in-process run shows as well
as a subprocess does, in a fraction of the time (a fresh interpreter imports the whole
app: about a second a call on a busy machine). Tests where the process boundary is the
point (serve, the real entry point's exit codes and stderr, stdout carrying only a
secret) use run_cli.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from click.testing import CliRunner

from webapp.cli import main
from webapp.settings import get_settings

SECRET_KEY = "cli-test-secret-key"


@dataclass
class Result:
    """What one run of the command gave."""

    code: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        """Standard output as text."""
        return self.stdout.decode()


class Runner(Protocol):
    """Runs `memory-admin ARGS` on a test's database (see the `cli` fixtures)."""

    def __call__(
        self,
        *args: str,
        input: bytes | str | None = None,
        secret_key: str | None = SECRET_KEY,
        process: bool = False,
    ) -> Result: ...


def run_cli(
    *args: str,
    database_url: str,
    cwd: Path,
    input: bytes | str | None = None,
    secret_key: str | None = SECRET_KEY,
) -> Result:
    """Run `memory-admin ARGS` in a fresh process with DATABASE_URL, as a shell user would."""
    env = {k: v for k, v in os.environ.items() if k not in ("MEMORY_ADMIN_DEBUG", "SECRET_KEY")}
    env["DATABASE_URL"] = database_url
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    if isinstance(input, str):
        input = input.encode()
    completed = subprocess.run(
        [sys.executable, "-m", "webapp.cli", *args],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=120,
        start_new_session=True,  # no controlling terminal: a prompt can never hang the test
    )
    return Result(completed.returncode, completed.stdout, completed.stderr.decode())


def invoke_cli(
    *args: str,
    database_url: str,
    cwd: Path,
    input: bytes | str | None = None,
    secret_key: str | None = SECRET_KEY,
) -> Result:
    """Run `memory-admin ARGS` through its entry point in this process, with the same
    environment, working directory and standard streams as run_cli gives the process.

    The command runs on a thread of its own, as its asyncio.run needs a thread without an
    event loop (async tests have one); the caller waits for it.
    """
    env: dict[str, str | None] = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secret_key,
        "MEMORY_ADMIN_DEBUG": None,
    }
    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (stdout, stderr, _mixed):
        get_settings.cache_clear()  # the settings come from this run's environment
        try:
            with contextlib.chdir(cwd), ThreadPoolExecutor(max_workers=1) as pool:
                code = pool.submit(_exit_code_of_main, list(args)).result()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            get_settings.cache_clear()
        return Result(code, stdout.getvalue(), stderr.getvalue().decode())


def _exit_code_of_main(args: list[str]) -> int:
    """Run the entry point with args; the status a process would have exited with."""
    try:
        main(args)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # as the interpreter does with sys.exit("message")
        return 1
    return 0


def assert_one_line_error(result: Result, *fragments: str, code: int | None = None) -> str:
    """A failure: non-zero exit, nothing on stdout, one line on stderr holding fragments."""
    assert result.code != 0, result
    if code is not None:
        assert result.code == code, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not one line: {result.stderr!r}"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == b"", result.stdout
    return lines[0]


def records(jsonl: bytes) -> list[dict[str, Any]]:
    """The objects of a JSON Lines text."""
    return [json.loads(line) for line in jsonl.splitlines() if line.strip()]
