"""Where the benchmarks run: a generated or given data set, SQLite and PostgreSQL
databases loaded with `memory-admin import` (or reused), the app under uvicorn, and the
command line the server benchmarks share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from common import DEFAULT_PG, GEN, REPO, BenchError, Raw, RawPostgres, RawSqlite, describe


def memory_admin_command() -> list[str]:
    """The installed memory-admin command (the venv's, beside this Python), or the module."""
    exe = Path(sys.executable).with_name("memory-admin")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "webapp.cli"]


def memory_admin(env: dict[str, str], *args: str) -> str:
    """Run the installed memory-admin command (the venv's, beside this Python); its output."""
    proc = subprocess.run([*memory_admin_command(), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"memory-admin {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def load(url: str, data: Path) -> None:
    """Migrate a fresh database and import data into it, as a user would."""
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench"}
    memory_admin(env, "migrate")
    start = time.perf_counter()
    summary = memory_admin(env, "import", str(data))
    print(f"  {summary} [{time.perf_counter() - start:.0f} s in all]", flush=True)


@contextmanager
def sqlite_database(args: argparse.Namespace, data: Callable[[], Path]) -> Iterator[Path]:
    """The SQLite file of --sqlite-path, or a fresh loaded one (removed afterwards unless
    --keep)."""
    path: Path = args.sqlite_path
    made: Path | None = None
    if path is None:
        made = Path(tempfile.mkdtemp(prefix="ma-bench-queries-"))
        path = made / "memories.db"
        source = data()
        print(f"sqlite: loading {path} ...", flush=True)
        load(f"sqlite+aiosqlite:///{path}", source)
    elif not path.exists():
        raise BenchError(f"no such file: {path}")
    try:
        yield path
    finally:
        if made is not None and args.keep:
            print(f"kept the SQLite database: --sqlite-path {path}")
        elif made is not None:
            shutil.rmtree(made, ignore_errors=True)


async def pg_admin(admin_url: str, statement: str) -> None:
    """Run one statement (CREATE or DROP DATABASE) on the server's admin database."""
    conn = await asyncpg.connect(admin_url.replace("+asyncpg", ""))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def postgres_database(args: argparse.Namespace, data: Callable[[], Path]) -> Iterator[str]:
    """The database of --postgres-url, or a fresh loaded one (dropped afterwards unless
    --keep), as a postgresql+asyncpg:// URL."""
    if args.postgres_url:
        yield args.postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        return
    name = f"ma_bench_q_{uuid.uuid4().hex[:8]}"
    url = args.postgres_admin_url.rsplit("/", 1)[0] + "/" + name
    source = data()
    asyncio.run(pg_admin(args.postgres_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        print(f"postgresql: loading database {name} ...", flush=True)
        load(url, source)
        yield url
    finally:
        if args.keep:
            print(f"kept the PostgreSQL database: --postgres-url {url}")
        else:
            asyncio.run(pg_admin(args.postgres_admin_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


def dataset(args: argparse.Namespace, tmp: Path) -> Callable[[], Path]:
    """A function giving the JSON Lines to load: --file, or --rows generated once into tmp."""
    generated: list[Path] = []

    def data() -> Path:
        """The file to load (generated on first use)."""
        if args.file is not None:
            return Path(args.file)
        if not generated:
            generated.append(tmp / "memories.jsonl")
            print(f"generating {args.rows:,} rows with {GEN.name} ...", flush=True)
            with generated[0].open("wb") as out:
                subprocess.run(
                    [sys.executable, str(GEN), "--memories", str(args.rows)],
                    stdout=out,
                    check=True,
                )
        return generated[0]

    return data


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """The options both benchmarks take: the data set, databases to reuse or keep, runs."""
    parser.add_argument("--file", type=Path, help="JSON Lines to import (default: generate)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate")
    parser.add_argument(
        "--sqlite-path", type=Path, help="an already migrated and imported SQLite file to reuse"
    )
    parser.add_argument(
        "--postgres-url", help="an already migrated and imported PostgreSQL database to reuse"
    )
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG),
        help="the server to create a fresh database on (default: TEST_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases this run made")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per query or request")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")


RESULTS = REPO / "bench" / "results"


AUTO = Path("auto")  # --json without a file name: a timestamped file under RESULTS


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(url: str, secret: str) -> dict[str, str]:
    """The environment of the app and of memory-admin for the database at url."""
    return {**os.environ, "DATABASE_URL": url, "SECRET_KEY": secret}


@dataclass
class Server:
    """A running uvicorn with one worker, and where its log goes."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU the server (and any child) has used so far."""
        process = psutil.Process(self.proc.pid)
        total = 0.0
        for each in [process, *process.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
        return total

    def log_problems(self) -> list[str]:
        """Lines of the server's log that report errors (tracebacks, 5xx)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if re.search(r"Traceback|ERROR|Exception", line)]


@contextmanager
def running_server(url: str, secret: str, port: int, log_dir: Path) -> Iterator[Server]:
    """Start uvicorn on url's database, wait until /healthz answers, stop it afterwards."""
    log = log_dir / f"uvicorn-{port}.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "webapp.main:create_app",
        "--factory",
        "--workers",
        "1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=server_env(url, secret), cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    """Poll /healthz until it answers 200; BenchError with the log if the server dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"uvicorn exited with {server.proc.returncode}:\n{tail}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise BenchError(f"uvicorn did not answer /healthz within {timeout:.0f} s")


BenchOne = Callable[[str, str, Callable[[], Awaitable[Raw]], argparse.Namespace, Path], dict]
"""Bench one database: (name, URL, the floor's driver, options, log folder) -> results."""


def run_main(
    doc: str,
    kind: str,
    bench: BenchOne,
    report: Callable[[list[dict[str, Any]]], None],
    meta: Callable[[argparse.Namespace], dict[str, Any]],
    *,
    throughput: bool = True,
) -> None:
    """A server benchmark's command line: parse the options, get each database (reused
    or loaded), bench it, print the report, write --json (bench/results/KIND-<time>.json
    by default). Shared by the server benchmarks; throughput: it has a throughput run
    (--duration, --concurrency)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database only")
    add_dataset_options(parser)
    if throughput:
        parser.add_argument(
            "--duration", type=int, default=10, help="seconds of the throughput run"
        )
        parser.add_argument(
            "--concurrency", type=int, default=4, help="clients in the throughput run"
        )
    parser.add_argument("--port", type=int, help="the server's port (default: a free one)")
    parser.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=AUTO,
        metavar="OUT",
        help=f"also write the numbers (default file: bench/results/{kind}-<time>.json)",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1, --warmup 0 or more")
    if throughput and (args.duration < 1 or args.concurrency < 1):
        parser.error("--duration and --concurrency must be at least 1")

    results = []
    with tempfile.TemporaryDirectory(prefix=f"ma-bench-{kind}-") as tmp:
        data = dataset(args, Path(tmp))
        for name in ("sqlite", "postgresql"):
            if args.only not in (None, name):
                continue
            try:
                results.append(one_database(name, args, data, Path(tmp), bench))
            except Exception as exc:  # report it and go on with the other database
                print(f"{name}: {describe(exc)}", file=sys.stderr, flush=True)

    report(results)
    if args.json is not None:
        out = args.json
        if out == AUTO:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            out = RESULTS / f"{kind}-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        document = {**meta(args), "databases": results}
        out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {out}")
    if not results:
        raise SystemExit(1)


def one_database(
    name: str, args: argparse.Namespace, data: Callable[[], Path], tmp: Path, bench: BenchOne
) -> dict[str, Any]:
    """Get the database (reused or loaded) and bench it with bench."""
    if name == "sqlite":
        with sqlite_database(args, data) as path:
            url = f"sqlite+aiosqlite:///{path.resolve()}"

            async def sqlite_raw() -> Raw:
                """The floor's sqlite3 connection."""
                return RawSqlite(path)

            return bench(name, url, sqlite_raw, args, tmp)
    with postgres_database(args, data) as url:

        async def postgres_raw() -> Raw:
            """The floor's asyncpg connection."""
            return await RawPostgres.connect(url.replace("+asyncpg", ""))

        return bench(name, url, postgres_raw, args, tmp)
