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
and finds the forest of the old forest and their pairs (Borůvka's algorithm, in numpy).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Edge = tuple[int, int, float]
"""(a, b, similarity) with a < b, memory ids."""

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
    by_id = np.argsort(ids)
    if kept:
        kept_a, kept_b, kept_s = (np.array(column) for column in zip(*kept, strict=True))
        a = by_id[np.searchsorted(ids, kept_a.astype(np.int64), sorter=by_id)]
        b = by_id[np.searchsorted(ids, kept_b.astype(np.int64), sorter=by_id)]
        similarity = kept_s.astype(np.float32)
    else:
        a = b = np.empty(0, dtype=np.int64)
        similarity = np.empty(0, dtype=np.float32)
    fresh_rows = np.flatnonzero(fresh)
    for start in range(0, len(fresh_rows), CHUNK):
        part = fresh_rows[start : start + CHUNK]
        product = matrix[part] @ matrix.T
        i, j = np.nonzero(product >= floor)
        distinct = part[i] != j
        a = np.concatenate([a, part[i][distinct]])
        b = np.concatenate([b, j[distinct]])
        similarity = np.concatenate([similarity, np.minimum(product[i, j][distinct], 1.0)])
        del product
        a, b, similarity = _boruvka(ids, a, b, similarity)
    low, high = np.minimum(ids[a], ids[b]), np.maximum(ids[a], ids[b])
    return list(zip(low.tolist(), high.tolist(), similarity.astype(float).tolist(), strict=True))


def _boruvka(
    ids: npt.NDArray[np.int64],
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    similarity: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The maximum spanning forest of the edges (rows a, b): Borůvka's algorithm in whole
    array steps. Each round every part of the forest takes its strongest edge to another
    part (ties broken by the memory ids: with every edge ranked, no two parts can choose
    edges that close a cycle), so a round at least halves the parts. A loop over the edges in
    Python took seconds for the million pairs of a thousand near copies, holding the GIL
    from the page views; numpy's sorts and gathers let it go."""
    order = np.lexsort((np.maximum(ids[a], ids[b]), np.minimum(ids[a], ids[b]), -similarity))
    a, b, similarity = a[order], b[order], similarity[order]  # an edge's index is its rank
    none = len(a)
    part = np.arange(len(ids))
    chosen = np.zeros(len(a), dtype=bool)
    live = np.arange(len(a))
    while True:
        part_a, part_b = part[a[live]], part[b[live]]
        crossing = part_a != part_b
        live, part_a, part_b = live[crossing], part_a[crossing], part_b[crossing]
        if not len(live):
            break
        strongest = np.full(len(ids), none)
        np.minimum.at(strongest, part_a, live)
        np.minimum.at(strongest, part_b, live)
        parts = np.flatnonzero(strongest < none)
        edge = strongest[parts]
        chosen[edge] = True
        ends_a = part[a[edge]]
        other = np.where(ends_a == parts, part[b[edge]], ends_a)
        parent = np.arange(len(ids))
        parent[parts] = other
        # Two parts that chose the same edge point at each other: the lower one leads.
        mutual = (parent[other] == parts) & (parts < other)
        parent[parts[mutual]] = parts[mutual]
        while not np.array_equal(grand := parent[parent], parent):
            parent = grand
        part = parent[part]
        time.sleep(0)  # between rounds, let the event loop's thread take the GIL
    return a[chosen], b[chosen], similarity[chosen]


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
