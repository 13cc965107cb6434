"""The near-duplicate graph of one user's vectors, kept as a maximum spanning forest.

Two memories are near duplicates when their vectors' cosine similarity is at least the
review page's threshold (MIN_THRESHOLD or more), and a group is a connected component
of that graph. A million generated memories gave the heaviest user (50,000 vectors)
22 million pairs at 0.80: far too many to store and read per page view. But the groups
at every threshold t are the components of the maximum spanning forest's edges at or
above t (single-linkage clustering), and the forest has fewer edges than vectors. Each
vector's most similar neighbour is one of its edges, too, so a member's best similarity
is read off the forest.

The forest of a graph with new edges is the forest of (the old forest + the new edges),
so a refresh compares only the new vectors with all of them (a numpy product per chunk)
and runs Kruskal's algorithm over the old forest and their pairs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Edge = tuple[int, int, float]
"""(a, b, similarity) with a < b, memory ids."""

YIELD_EVERY = 256
"""Edges between two hand-overs of the GIL (about a quarter of a millisecond). The loop
runs in a worker thread, but in Python: holding the GIL for whole switch intervals
(5 ms), it made the page views during a refresh of 1,000 new vectors take 0.5-3.4 s."""
CHUNK = 512
"""New vectors per matrix product: 512 x 50,000 float32 is 100 MB."""


def spanning_forest(
    ids: npt.NDArray[np.int64],
    matrix: npt.NDArray[np.float32],
    fresh: npt.NDArray[np.bool_],
    kept: Sequence[Edge],
    floor: float,
) -> list[Edge]:
    """The maximum spanning forest of the graph whose edges are `kept` and every pair of
    a fresh row with any row at `floor` or more similar (ids[i] is row i's memory)."""
    forest = list(kept)
    fresh_rows = np.flatnonzero(fresh)
    for start in range(0, len(fresh_rows), CHUNK):
        part = fresh_rows[start : start + CHUNK]
        similarity = matrix[part] @ matrix.T
        i, j = np.nonzero(similarity >= floor)
        a, b = ids[part[i]], ids[j]
        values = np.minimum(similarity[i, j], 1.0)
        distinct = a != b
        forest = _kruskal(forest, a[distinct], b[distinct], values[distinct])
    return forest


def _kruskal(
    forest: Sequence[Edge],
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    similarity: npt.NDArray[np.float32],
) -> list[Edge]:
    """The maximum spanning forest of the forest's edges and the pairs (a, b)."""
    if forest:
        old_a, old_b, old_s = (np.array(column) for column in zip(*forest, strict=True))
        a = np.concatenate([old_a.astype(np.int64), a])
        b = np.concatenate([old_b.astype(np.int64), b])
        similarity = np.concatenate([old_s.astype(np.float32), similarity])
    order = np.lexsort((np.minimum(a, b), -similarity))  # strongest first, ties by id
    left, right = np.minimum(a, b)[order].tolist(), np.maximum(a, b)[order].tolist()
    values = similarity[order].tolist()
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while (up := parent.get(x, x)) != x:
            parent[x] = parent.get(up, up)
            x = up
        return x

    chosen = []
    for number, (x, y, value) in enumerate(zip(left, right, values, strict=True)):
        if number % YIELD_EVERY == 0:
            time.sleep(0)  # let the event loop's thread take the GIL (see YIELD_EVERY)
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[rx] = ry
            chosen.append((x, y, float(value)))
    return chosen


def components(edges: Iterable[Edge]) -> list[list[int]]:
    """Connected components of the edges, largest first, each sorted by id."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for x in list(parent):
        members.setdefault(root(x), []).append(x)
    return sorted((sorted(m) for m in members.values()), key=lambda m: (-len(m), m[0]))
