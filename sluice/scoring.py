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
