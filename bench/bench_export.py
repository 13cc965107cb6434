"""Export through the admin app (`/memories/export`, uvicorn) against `memory-admin export`.

For each size (the namespace whose row count is nearest, or every row for the largest),
downloads JSON Lines and CSV over HTTP while sampling the server's resident memory
(psutil, every 20 ms), and times the CLI's export of the same rows to /dev/null in the
same run (the floor; it includes the command's start-up). Prints a Markdown table.

    .venv/bin/python bench/bench_export.py --sqlite-path COPY.db --postgres-url URL \\
        --secret KEY [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from harness import free_port, memory_admin_command, running_server, server_env
from sqlalchemy.engine import make_url

USER = "bench-export-admin"
PASSWORD = "bench export password 1"


def namespace_counts(url: str) -> dict[str, int]:
    """Rows per namespace (all states)."""
    sql = "SELECT namespace, count(*) FROM long_term_memory GROUP BY namespace"
    if url.startswith("sqlite"):
        with sqlite3.connect(make_url(url).database or "") as conn:
            return dict(conn.execute(sql).fetchall())
    dsn = url.replace("+asyncpg", "")
    out = subprocess.run(
        ["psql", dsn, "-AtF", "\t", "-c", sql], capture_output=True, text=True, check=True
    ).stdout
    return {ns: int(n) for ns, n in (line.split("\t") for line in out.splitlines())}


def pick(counts: dict[str, int], sizes: list[int]) -> list[tuple[str | None, int]]:
    """(namespace or None for every row, its row count) nearest each size."""
    total = sum(counts.values())
    chosen: list[tuple[str | None, int]] = []
    for size in sizes:
        if size >= total:
            chosen.append((None, total))
            continue
        namespace = min(counts, key=lambda ns: abs(counts[ns] - size))
        chosen.append((namespace, counts[namespace]))
    return chosen


class PeakRss:
    """Samples a process's RSS in a thread until stopped; the peak in MB."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def log_in(client: httpx.Client) -> None:
    """Log in through the login form, as a browser does."""
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post(
        "/login", data={"username": USER, "password": PASSWORD, "csrf_token": token}
    )
    if response.status_code != 303:
        raise SystemExit(f"login failed: {response.status_code}")


def http_export(client: httpx.Client, namespace: str | None, fmt: str) -> tuple[int, float]:
    """Lines downloaded and seconds taken."""
    params = {"state": "all", "format": fmt, **({"namespace": namespace} if namespace else {})}
    lines = 0
    start = time.perf_counter()
    with client.stream("GET", "/memories/export", params=params) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
    return lines, time.perf_counter() - start


def cli_export(env: dict[str, str], namespace: str | None) -> float:
    """Seconds `memory-admin export` takes for the same rows (to /dev/null)."""
    args = ["export", "--state", "all", "-o", os.devnull]
    if namespace:
        args += ["--namespace", namespace]
    start = time.perf_counter()
    subprocess.run([*memory_admin_command(), *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def bench(
    name: str, url: str, secret: str, sizes: list[int], formats: list[str], cli: bool
) -> list[str]:
    """Table rows for one database."""
    env = server_env(url, secret)
    subprocess.run(  # fails harmlessly when the user is there from an earlier run
        [*memory_admin_command(), "createuser", USER, "--admin", "--password-stdin"],
        env=env,
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as logs:
        port = free_port()
        with running_server(url, secret, port, Path(logs)) as server:
            with httpx.Client(base_url=server.base_url, timeout=None) as client:
                log_in(client)
                idle = psutil.Process(server.proc.pid).memory_info().rss / 2**20
                for namespace, count in pick(namespace_counts(url), sizes):
                    floor = cli_export(env, namespace) if cli else None
                    for fmt in formats:
                        with PeakRss(server.proc.pid) as rss:
                            lines, seconds = http_export(client, namespace, fmt)
                        vs_cli = (
                            f"{count / floor:,.0f} | {floor / seconds:.2f}" if floor else "- | -"
                        )
                        rows.append(
                            f"| {name} | {count:,} | {fmt} | {lines:,} | {count / seconds:,.0f} "
                            f"| {vs_cli} | {idle:.0f} | {rss.peak / 2**20:.0f} |"
                        )
                        print(rows[-1], flush=True)
    return rows


def main() -> None:
    """Run the benchmark on the databases given and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite-path", type=Path)
    parser.add_argument("--postgres-url")
    parser.add_argument("--secret", default=os.environ.get("SECRET_KEY", "bench"))
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--formats", default="jsonl,csv")
    parser.add_argument("--no-cli", action="store_true", help="Skip the CLI floor.")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    options = (sizes, args.formats.split(","), not args.no_cli)
    header = [
        "| database | rows | format | lines | HTTP rows/s | CLI rows/s | HTTP / CLI "
        "| server RSS idle, MB | server RSS peak, MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(header), flush=True)
    rows = []
    if args.sqlite_path:
        rows += bench("SQLite", f"sqlite+aiosqlite:///{args.sqlite_path}", args.secret, *options)
    if args.postgres_url:
        rows += bench("PostgreSQL", args.postgres_url, args.secret, *options)
    print("\n" + "\n".join(header + rows))


if __name__ == "__main__":
    sys.exit(main())
