"""A real `memory-admin serve` in a subprocess, for tests that need its workers and HTTP:
faults (tests/test_faults.py) and contention (tests/test_concurrency.py, and
bench/bench_concurrency.py, which runs the same workload for longer)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT = 60.0
"""Seconds the server may take to answer /healthz: two workers importing the app."""


@dataclass
class Server:
    """A running `memory-admin serve`, and where it listens."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What the server wrote so far (its log), for assertion messages."""
        return self.log.read_text(errors="replace")


@contextmanager
def serving(
    database_url: str,
    secret_key: str,
    log_dir: Path,
    *,
    workers: int = 2,
    environment: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`memory-admin serve --workers N` on a migrated database, until the block ends;
    environment: settings of its own (SEMANTIC_SEARCH=false, say)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = log_dir / "serve.log"
    env = {k: v for k, v in os.environ.items() if k not in ("MEMORY_ADMIN_DEBUG",)}
    env["DATABASE_URL"] = database_url
    env["SECRET_KEY"] = secret_key
    # A request waits for a pooled connection up to DB_POOL_TIMEOUT seconds, and for a new
    # one up to DB_CONNECT_TIMEOUT, then answers 503. The defaults (10 s, 5 s) would make
    # these tests timed ones on a shared machine: 1,000 requests on 2 busy cores took 30 s,
    # and a new connection over 5 s. A request that waits on a pool nobody gives back (as
    # when each request held one connection while waiting for a second) still fails.
    env["DB_POOL_TIMEOUT"] = env["DB_CONNECT_TIMEOUT"] = "60"
    env.update(environment or {})
    command = [sys.executable, "-m", "webapp.cli", "serve", "--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=log_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_until_ready(served)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert server.process.poll() is None, f"serve exited: {server.output()}"
        try:
            if httpx.get(server.url + "/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"serve did not start: {server.output()}"
        time.sleep(0.2)


@asynccontextmanager
async def open_client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the server that may keep 1,000 requests in flight at once."""
    limits = httpx.Limits(max_connections=1_000, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:
        yield client
