"""How busy this process is with HTTP requests, so that background work can wait its turn.

The app's background embedder (services/vectors.drain_forever) asks `quiet()` before each
batch: the model takes the CPU of a whole core per text, and even at the lowest priority
it slowed the requests it ran beside on two cores (the caches and memory bandwidth are
shared; nice only orders the CPU). It runs while no request is in flight, and under
steady traffic still a little at a time, so the queue never stops moving.
"""

from __future__ import annotations

import asyncio
import time


class Traffic:
    """Requests in flight and when the last one ended; RequestScope keeps it."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._last_end = time.monotonic()

    def started(self) -> None:
        self.in_flight += 1

    def ended(self) -> None:
        self.in_flight -= 1
        self._last_end = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request ended, 0 while one is in flight."""
        return 0.0 if self.in_flight else time.monotonic() - self._last_end

    async def quiet(self, *, idle: float = 0.05, most: float = 2.0) -> bool:
        """Wait until no request has been in flight for `idle` seconds: True. Give up after
        `most` seconds of steady traffic: False."""
        deadline = time.monotonic() + most
        while (waited := self.idle_for()) < idle:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(idle - waited if not self.in_flight else idle)
        return True
