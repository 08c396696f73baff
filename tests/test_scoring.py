"""Top-n selection and coalesced scoring are exact."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sluice.scoring import BatchScorer, top_n, top_n_blocked


@pytest.mark.parametrize("size", [10, 255, 256, 1000, 4097, 100_003])
@pytest.mark.parametrize("n", [1, 5, 25, 300])
def test_blocked_top_n_equals_a_full_sort(size, n):
    rng = np.random.default_rng(size + n)
    scores = rng.normal(size=size).astype(np.float32)
    expected = np.argsort(-scores, kind="stable")[: min(n, size)]
    got = top_n_blocked(scores.copy(), n)
    np.testing.assert_array_equal(scores[got], scores[expected])
    assert len(set(got.tolist())) == len(got)


def test_excluded_items_never_come_back_even_when_few_are_left():
    scores = np.arange(5000, dtype=np.float32)
    scores[:4990] = -np.inf
    got = top_n_blocked(scores.copy(), 25)
    assert sorted(got.tolist()) == list(range(4990, 5000))
    assert top_n(np.arange(10, dtype=np.float32), 3, exclude=np.array([9])).tolist() == [8, 7, 6]


def test_the_best_items_clustered_in_one_block_are_all_found():
    scores = np.zeros(10_000, dtype=np.float32)
    scores[512:537] = np.linspace(2, 1, 25)
    assert top_n_blocked(scores, 25).tolist() == list(range(512, 537))


def test_concurrent_callers_get_their_own_rows():
    rng = np.random.default_rng(3)
    items = rng.normal(size=(20_000, 16)).astype(np.float32)
    scorer = BatchScorer(items)
    vectors = rng.normal(size=(64, 16)).astype(np.float32)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = scorer.score(vectors[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scorer.close()
    for i in range(64):
        np.testing.assert_allclose(results[i], items @ vectors[i], rtol=1e-4, atol=1e-4)
    # a closed scorer still answers, alone
    np.testing.assert_allclose(scorer.score(vectors[0]), items @ vectors[0], rtol=1e-4, atol=1e-4)
