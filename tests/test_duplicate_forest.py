"""The near-duplicate forest (webapp/services/duplicate_forest.py) keeps fewer pairs than
vectors, yet gives the same groups as all the similar pairs at every threshold, built at
once or a part at a time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from webapp.embeddings import normalize
from webapp.services.duplicate_forest import components, spanning_forest

FLOOR = 0.80


def clustered_vectors(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """300 unit vectors in 30 loose clusters, so that pairs fall on both sides of every
    threshold; ids are not in row order."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, 48))
    rows = centres[rng.integers(0, 30, size=300)] + rng.normal(scale=0.45, size=(300, 48))
    ids = rng.permutation(np.arange(1000, 1300)).astype(np.int64)
    return ids, normalize(rows)


def all_pairs(
    ids: np.ndarray, matrix: np.ndarray, threshold: float
) -> list[tuple[int, int, float]]:
    similarity = matrix @ matrix.T
    return [
        (int(ids[i]), int(ids[j]), float(similarity[i, j]))
        for i, j in itertools.combinations(range(len(ids)), 2)
        if similarity[i, j] >= threshold
    ]


def groups(edges: list[tuple[int, int, float]], threshold: float) -> list[list[int]]:
    return components(edge for edge in edges if edge[2] >= threshold)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_forest_gives_the_groups_of_all_pairs_at_every_threshold(seed: int) -> None:
    ids, matrix = clustered_vectors(seed)
    every = all_pairs(ids, matrix, FLOOR)
    at_once = spanning_forest(ids, matrix, np.ones(len(ids), dtype=bool), [], FLOOR)
    first = np.arange(len(ids)) < 170
    in_parts = spanning_forest(ids, matrix, first, [], FLOOR)
    in_parts = spanning_forest(
        ids,
        matrix,
        ~first,
        [(a, b, s) for a, b, s in in_parts],
        FLOOR,
    )
    assert len(every) > 3 * len(at_once), "the data must be dense enough to matter"
    assert len(at_once) < len(ids)
    for threshold in (0.80, 0.84, 0.88, 0.92):
        expected = groups(every, threshold)
        assert expected, threshold
        assert groups(at_once, threshold) == expected, threshold
        assert groups(in_parts, threshold) == expected, threshold


def test_each_memorys_best_similarity_is_in_the_forest() -> None:
    ids, matrix = clustered_vectors(4)
    forest = spanning_forest(ids, matrix, np.ones(len(ids), dtype=bool), [], FLOOR)
    best_of_all: dict[int, float] = {}
    best_in_forest: dict[int, float] = {}
    for edges, best in ((all_pairs(ids, matrix, FLOOR), best_of_all), (forest, best_in_forest)):
        for a, b, s in edges:
            best[a] = max(best.get(a, 0.0), s)
            best[b] = max(best.get(b, 0.0), s)
    assert best_in_forest.keys() == best_of_all.keys()
    for memory_id, value in best_of_all.items():
        assert best_in_forest[memory_id] == pytest.approx(value, abs=1e-5)


def test_exact_copies_tie_and_still_give_the_groups_of_all_pairs() -> None:
    """Copies of one memory are equally similar to each other and to the rest of their
    group: the forest must break those ties without closing a cycle or leaving a copy out."""
    ids, matrix = clustered_vectors(5)
    copies = np.repeat(matrix[:40], 4, axis=0)
    matrix = np.vstack([matrix, copies])
    ids = np.concatenate([ids, np.arange(5000, 5000 + len(copies))]).astype(np.int64)
    forest = spanning_forest(ids, matrix, np.ones(len(ids), dtype=bool), [], FLOOR)
    every = all_pairs(ids, matrix, FLOOR)
    assert len(forest) < len(ids)
    for threshold in (0.80, 0.90, 0.999):
        assert groups(forest, threshold) == groups(every, threshold), threshold
