"""The `memory-admin` command: serve, demo, migrate, users, tokens, import, export, backup,
embed, erase, mcp.

Every failure is one line on standard error and a non-zero exit, never a traceback
(set MEMORY_ADMIN_DEBUG=1 to see one). The commands live in this package's modules
by group; this one assembles them and turns errors into that one line.
"""

from __future__ import annotations

import os
import sys

import click
from sqlalchemy.exc import DBAPIError, OperationalError

from webapp.cli.common import PROG
from webapp.cli.data import backup, export, import_, migrate, purge
from webapp.cli.embed import embed
from webapp.cli.erase import erase_user_command
from webapp.cli.mcp import mcp
from webapp.cli.serve import demo, serve
from webapp.cli.tokens import token
from webapp.cli.users import createuser, passwd, users
from webapp.errors import MemoryAdminError
from webapp.settings import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memory-admin", prog_name=PROG)
def cli() -> None:
    """Long-term memory store for AI agents, with a browser admin app.

    The database is DATABASE_URL (default: memory_admin.db in the current folder).
    """


for _command in (
    serve,
    demo,
    migrate,
    createuser,
    passwd,
    users,
    token,
    import_,
    purge,
    export,
    backup,
    embed,
    erase_user_command,
    mcp,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning every error into one line on stderr."""
    debug = bool(os.environ.get("MEMORY_ADMIN_DEBUG"))
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(0)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `export | head`); not an error
        sys.exit(0)
    except Exception as exc:
        if debug:
            raise
        _fail(_describe(exc), 1)


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryAdminError | ConfigError):
        return str(exc)
    if isinstance(exc, OperationalError | DBAPIError):
        return f"database error: {_first_line(str(exc.orig) if exc.orig else str(exc))}"
    if isinstance(exc, OSError):
        return f"cannot reach the database or a file: {exc.strerror or exc}"
    return f"unexpected {type(exc).__name__}: {_first_line(str(exc))}"


def _fail(message: str, code: int) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)
