"""Top-N selection over item scores, shared by evaluation, the pyfunc model and serving."""

from __future__ import annotations

import numpy as np


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the n highest scores (best first), skipping `exclude` indices."""
    scores = np.asarray(scores, dtype=np.float32)
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = -np.inf
    n = min(n, len(scores))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n]
    part = part[np.argsort(-scores[part], kind="stable")]
    return part[np.isfinite(scores[part])]


def top_n_blocked(scores: np.ndarray, n: int, block: int = 256) -> np.ndarray:
    """Exact top-n (best first) reading the scores once for block maxima, then a few blocks.

    The n best items lie in the n blocks with the highest maxima: a block holding one of them
    has a maximum at least that item's score, and only n-1 items beat it. `scores` may hold
    -inf for excluded items; they are never returned.
    """
    size = len(scores)
    n = min(n, size)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    blocks = -(-size // block)
    if n * block * 4 >= size or blocks < 2:
        return top_n(scores, n)
    padded = scores
    if blocks * block != size:
        padded = np.full(blocks * block, -np.inf, dtype=np.float32)
        padded[:size] = scores
    maxima = padded.reshape(blocks, block).max(axis=1)
    chosen = np.argpartition(-maxima, n - 1)[:n]
    candidates = (chosen[:, None] * block + np.arange(block)).ravel()
    candidates = candidates[candidates < size]
    local = top_n(scores[candidates], n)
    return candidates[local]


class BatchScorer:
    """Scores user vectors against item factors, coalescing concurrent callers into one GEMM.

    A lone caller pays one matrix-vector product; sixteen concurrent callers share one pass
    over the item factors instead of sixteen, which is what bounds scoring (memory bandwidth).
    """

    def __init__(self, item_factors: np.ndarray, max_batch: int = 64):
        import queue
        import threading

        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="batch-scorer", daemon=True)
        self._thread.start()

    def score(self, vector: np.ndarray) -> np.ndarray:
        from concurrent.futures import Future

        if self._closed:
            return self.item_factors @ vector.astype(np.float32)
        future: Future = Future()
        self._queue.put((np.asarray(vector, dtype=np.float32), future))
        return future.result()

    def _run(self) -> None:
        import queue

        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                vectors = np.stack([v for v, _ in batch])
                scores = vectors @ self.item_factors.T if len(batch) > 1 else (
                    self.item_factors @ vectors[0])[None, :]
                for row, (_, future) in zip(scores, batch, strict=True):
                    future.set_result(row)
            except Exception as exc:  # pragma: no cover - a numpy failure reaches the callers
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the k best scores, best first (ties in any order)."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.empty((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)
