#!/usr/bin/env python3
"""Embedding at scale: import and backfill rates against the model alone, and how long a
new memory waits for its vector in a running app.

For each database it generates --rows memories with gen_memories.py and measures:

    model alone     webapp.embeddings embedding the same contents in this process, one
                    thread per core: the floor for anything that embeds them
    import          `memory-admin import` (the rows land and are queued for vectors)
    embed           `memory-admin embed` on the queued rows (the backfill), rows/s
    with vectors    rows / (import + embed): the rate of an import with its vectors,
                    as a ratio to the model alone
    vector lag      the app under uvicorn (one worker, background embedding on): PUT a
                    new memory every --gap seconds, --puts times, and time until its vector
                    is in memory_embedding; and those PUTs' latency

    .venv/bin/python bench/bench_embed.py --rows 5000
    .venv/bin/python bench/bench_embed.py --rows 20000 --only postgresql --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_PG, GEN  # noqa: E402
from harness import free_port, memory_admin, pg_admin, running_server, server_env  # noqa: E402

SECRET = "bench-embed-secret-key-0123456789"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(share * (len(ordered) - 1))], 1)


def model_alone(contents: list[str]) -> float:
    """Rows/s of the model on contents, in this process, one thread per core."""
    from webapp.embeddings import Embedder

    embedder = Embedder()
    embedder.embed(contents[:8])
    started = time.perf_counter()
    embedder.embed(contents)
    return len(contents) / (time.perf_counter() - started)


def timed(env: dict[str, str], *args: str) -> tuple[str, float]:
    started = time.perf_counter()
    out = memory_admin(env, *args)
    return out, time.perf_counter() - started


def vector_lag(url: str, puts: int, gap: float, work: Path) -> dict[str, Any]:
    """PUT new memories to a running app; latency of each PUT and the wait for its vector."""
    env = server_env(url, SECRET)
    # A user of the imported data (gen_memories names them user-00001 ...).
    token = memory_admin(env, "token", "create", "user-00001", "--name", "lag").splitlines()[-1]
    lags: list[float] = []
    latencies: list[float] = []

    async def run(base_url: str) -> None:
        from sqlalchemy import select

        from webapp.db import create_engine
        from webapp.models import MemoryEmbedding
        from webapp.settings import Settings

        engine = create_engine(Settings(database_url=url, secret_key=SECRET))
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
            for number in range(puts):
                body = {
                    "namespace": "lag",
                    "key": f"k{number}-{uuid.uuid4().hex[:6]}",
                    "content": f"The user mentioned that their sister visits every {number} days.",
                }
                started = time.perf_counter()
                response = await client.put("/api/v1/memories", json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                memory_id = response.json()["id"]
                wanted = select(MemoryEmbedding.seq).where(MemoryEmbedding.memory_id == memory_id)  # type: ignore[arg-type]
                while True:
                    async with engine.connect() as conn:
                        if (await conn.execute(wanted)).first() is not None:
                            break
                    await asyncio.sleep(0.005)
                lags.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(gap)
        await engine.dispose()

    with running_server(url, SECRET, free_port(), work) as server:
        asyncio.run(run(server.base_url))
    return {
        "put_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)},
        "vector_lag_ms": {"p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95)},
        "puts": puts,
    }


def bench_one(name: str, url: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**server_env(url, SECRET), "BACKGROUND_EMBEDDING": "false"}
    memory_admin(env, "migrate")
    imported, import_seconds = timed(env, "import", str(data))
    embedded, embed_seconds = timed(env, "embed")
    print(f"  {imported}\n  {embedded}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ma-bench-embed-") as folder:
        lag = vector_lag(url, args.puts, args.gap, Path(folder))
    return {
        "database": name,
        "import_rows_per_s": round(args.rows / import_seconds),
        "embed_rows_per_s": round(args.rows / embed_seconds, 1),
        "with_vectors_rows_per_s": round(args.rows / (import_seconds + embed_seconds), 1),
        **lag,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--puts", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between PUTs")
    parser.add_argument(
        "--postgres-admin-url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ma-bench-embed-data-") as folder:
        data = Path(folder) / "rows.jsonl"
        with data.open("w") as out:
            subprocess.run(
                [sys.executable, str(GEN), "--memories", str(args.rows), "--users", "20"],
                stdout=out,
                check=True,
            )
        contents = [json.loads(line)["content"] for line in data.open()]
        floor = model_alone(contents)
        print(f"model alone: {floor:.1f} rows/s on {len(contents)} rows", flush=True)
        results = []
        for name in ("sqlite", "postgresql"):
            if args.only and args.only != name:
                continue
            print(f"{name}:", flush=True)
            if name == "sqlite":
                results.append(bench_one(name, f"sqlite+aiosqlite:///{folder}/e.db", data, args))
                continue
            database = f"ma_bench_embed_{uuid.uuid4().hex[:8]}"
            admin = args.postgres_admin_url
            asyncio.run(pg_admin(admin, f'CREATE DATABASE "{database}"'))
            try:
                url = admin.rsplit("/", 1)[0] + "/" + database
                results.append(bench_one(name, url, data, args))
            finally:
                asyncio.run(pg_admin(admin, f'DROP DATABASE "{database}" WITH (FORCE)'))
    print(
        f"\n| database | import rows/s | embed rows/s | with vectors rows/s (x model alone "
        f"{floor:.1f}) | PUT p50 / p95 ms | vector lag p50 / p95 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['database']} | {r['import_rows_per_s']:,} | {r['embed_rows_per_s']} | "
            f"{r['with_vectors_rows_per_s']} ({r['with_vectors_rows_per_s'] / floor:.2f}x) | "
            f"{r['put_ms']['p50']} / {r['put_ms']['p95']} | "
            f"{r['vector_lag_ms']['p50']} / {r['vector_lag_ms']['p95']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"model_alone": floor, "databases": results}, indent=2))


if __name__ == "__main__":
    main()
