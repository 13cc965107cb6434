"""`memory-admin mcp`: the MCP server over stdio, for a desktop agent that starts it."""

from __future__ import annotations

import click

from webapp.cli.common import run_with_db
from webapp.db import Database
from webapp.settings import Settings


@click.command("mcp")
@click.option("--user", "username", required=True, help="Act as this user (their memories).")
@click.option("--read-only", is_flag=True, help="Serve only the tools that read.")
def mcp(username: str, read_only: bool) -> None:
    """Serve MCP on standard input and output, acting as USERNAME, on DATABASE_URL.

    For a local agent that starts this command (a desktop assistant, an IDE): standard
    output carries only the protocol, and logs go to standard error. Agents elsewhere use
    the running app's /mcp endpoint with an API token instead.
    """

    async def work(db: Database, settings: Settings) -> None:
        from webapp.mcp_server.stdio import serve_stdio

        await serve_stdio(db, settings, username=username, read_only=read_only)

    run_with_db(work)
