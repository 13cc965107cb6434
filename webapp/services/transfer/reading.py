"""The import's input: whole-line chunks of the source, parsed here or in a worker process."""

from __future__ import annotations

import asyncio
import itertools
import pickle
import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from typing import IO, Any

from webapp.services.jsonl import ParsedChunk, ParseOptions, parse_chunk
from webapp.services.parse_worker import HEADER

CHUNK_BYTES = 1024 * 1024
IN_FLIGHT_CHUNKS = 3


def _chunks(source: IO[bytes], chunk_bytes: int) -> Any:
    """(data, first line number) pieces of whole lines read from source."""
    line_no = 1
    pending = b""
    while True:
        block = source.read(chunk_bytes)
        if not block:
            break
        data = pending + block
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            pending = data
            continue
        pending = data[cut:]
        yield data[:cut], line_no
        line_no += data.count(b"\n", 0, cut)
    if pending:
        yield pending, line_no


async def parsed_chunks(
    source: IO[bytes], options: ParseOptions, parallel: bool | None
) -> AsyncGenerator[tuple[ParsedChunk, int]]:
    """Parsed chunks with their size in bytes, parsed in a worker process when it pays."""
    pieces = _chunks(source, CHUNK_BYTES)
    first = next(pieces, None)
    if first is None:
        return
    second = next(pieces, None)
    head = [first] if second is None else [first, second]
    if parallel is None:
        parallel = second is not None  # one chunk: starting a process costs more than it saves
    if not parallel:
        for data, line_no in itertools.chain(head, pieces):
            yield parse_chunk(data, line_no, options), len(data)
        return
    async with aclosing(_parse_in_worker(itertools.chain(head, pieces), options)) as parsed:
        async for answer in parsed:
            yield answer


async def _parse_in_worker(
    pieces: Iterator[tuple[bytes, int]], options: ParseOptions
) -> AsyncGenerator[tuple[ParsedChunk, int]]:
    """Send pieces to a parse worker process and yield its answers in order.

    A feeder task keeps at most IN_FLIGHT_CHUNKS pieces ahead of the consumer, and a
    reader task drains the worker's answers as they come, so the worker parses while
    this process waits on the database, and memory stays bounded.
    """
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webapp.services.parse_worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    requests, responses = worker.stdin, worker.stdout
    slots = asyncio.Semaphore(IN_FLIGHT_CHUNKS)
    sizes: asyncio.Queue[int | None] = asyncio.Queue()
    answers: asyncio.Queue[ParsedChunk | BaseException] = asyncio.Queue()

    async def feed() -> None:
        while True:
            await slots.acquire()
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                break
            payload = pickle.dumps((*piece, options), protocol=pickle.HIGHEST_PROTOCOL)
            requests.write(HEADER.pack(len(payload)) + payload)
            await requests.drain()
            await sizes.put(len(piece[0]))
        requests.close()
        await sizes.put(None)

    async def read() -> None:
        try:
            while True:
                (size,) = HEADER.unpack(await responses.readexactly(HEADER.size))
                await answers.put(pickle.loads(await responses.readexactly(size)))
        except asyncio.IncompleteReadError:
            await answers.put(RuntimeError("the import's parse worker stopped unexpectedly"))

    feeder = asyncio.create_task(feed())
    reader = asyncio.create_task(read())
    try:
        while (size := await sizes.get()) is not None:
            answer = await answers.get()
            if isinstance(answer, BaseException):
                raise answer
            slots.release()
            yield answer, size
        await feeder
    finally:
        for task in (feeder, reader):
            task.cancel()
        await asyncio.gather(feeder, reader, return_exceptions=True)
        if worker.returncode is None:
            try:
                worker.kill()
            except ProcessLookupError:
                pass
        # Read the worker's output to its end, so its pipe is closed on this loop: left
        # half-closed, it was closed by the garbage collector, after a command's
        # asyncio.run had closed the loop ("Event loop is closed" in whatever ran next).
        await responses.read()
        await worker.wait()
