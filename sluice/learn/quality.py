"""What a run's numbers are worth: bootstrap intervals over users, and beyond accuracy.

Every per-user metric gets a percentile bootstrap interval of its mean: users are resampled
with replacement (seeded), the mean recomputed, and the middle `confidence` of those means
kept. A difference between two models on the same users is bootstrapped per user (paired).
The gate decides on a paired sign-flip randomization test instead (`signflip`): exact when,
with no difference, each user's difference is as likely either sign, where the percentile
bootstrap promotes too often on a few hundred users or fewer. Catalog coverage is a property
of the set of users, so its interval resamples the users' top lists.

Beyond accuracy, from the top lists (first 10 slots) and the training matrix: novelty (mean
self-information, -log2 of the share of training users who had the item), intra-list
diversity (mean 1 - cosine between the items of a list, over their training users),
popularity bias (share of slots from the most popular 10% of items), and NDCG@10 per user
segment (training history length, and users whose history is mostly after the cutoff).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sluice.learn.evaluation import Scored

RESAMPLES, CONFIDENCE, SEED = 1000, 0.95, 20261201
SEGMENTS = ((1, 4), (5, 19), (20, 99), (100, None))  # training history length buckets
DIVERSITY_SAMPLE = 1000   # users whose lists are compared pairwise (seeded sample)
_CELLS = 20_000_000       # resample weights held at once: chunk x users


@dataclass
class Interval:
    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


def _weights(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Resample counts (chunk x n), each row a draw of n users with replacement."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CELLS // max(n, 1)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def bootstrap(columns: dict[str, np.ndarray], resamples: int = RESAMPLES,
              confidence: float = CONFIDENCE, seed: int = SEED) -> dict[str, Interval]:
    """The mean of each per-user column with its percentile interval (same resamples for all:
    the columns must be over the same users, in the same order)."""
    names = list(columns)
    if not names:
        return {}
    values = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in names])
    n = values.shape[0]
    if n == 0:
        return {name: Interval(float("nan"), float("nan"), float("nan")) for name in names}
    means = np.vstack([w @ values / n for w in _weights(n, resamples, seed)])
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    mean = values.mean(axis=0)
    return {name: Interval(float(mean[i]), float(low[i]), float(high[i]))
            for i, name in enumerate(names)}


def paired(candidate: np.ndarray, other: np.ndarray, resamples: int = RESAMPLES,
           confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """The mean per-user difference candidate - other, with its interval."""
    return bootstrap({"d": np.asarray(candidate) - np.asarray(other)}, resamples, confidence,
                     seed)["d"]


SIGN_FLIP = "sign-flip"  # the method's name, as the gate's reason and metrics state it


def _flips(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Random sign flips (chunk x n, 1.0 where a user's difference is flipped)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CELLS // max(n, 1)))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        yield (rng.random((size, n), dtype=np.float32) < 0.5).astype(np.float64)


def signflip(difference: np.ndarray, resamples: int = RESAMPLES,
             confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """The mean per-user difference with the interval of a paired sign-flip randomization
    test, inverted: the shifts delta its one-sided tests at (1 - confidence) / 2 keep.

    Under no difference each user's difference is as likely either sign (which model is
    which is arbitrary), so flipping signs at random gives the null distribution of the
    sum, and p = (1 + draws at least as far) / (resamples + 1) is exact for any n, ties
    included. Testing a shift delta with the same draws, draw b is at least as far as the
    observed sum exactly when delta >= the mean of the differences it flips, so the interval
    is the order statistics of those subset means (Hartigan's): its low end is above zero
    exactly when the one-sided test rejects no difference at that level. Too few resamples
    for the level give an infinite end (nothing promotes)."""
    d = np.asarray(difference, dtype=np.float64)
    n = len(d)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    means = []
    for flips in _flips(n, resamples, seed):
        flipped = flips.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(flipped > 0, flips @ d / np.maximum(flipped, 1), np.nan))
    subset = np.concatenate(means)
    empty = np.isnan(subset)  # a draw that flips nobody is the observed sum itself
    rank = int(np.floor((1.0 - confidence) / 2 * (resamples + 1) + 1e-9)) - 1
    if rank < 0:
        return Interval(float(d.mean()), float("-inf"), float("inf"))
    low = np.sort(np.where(empty, -np.inf, subset))[rank]
    high = np.sort(np.where(empty, np.inf, subset))[resamples - 1 - rank]
    return Interval(float(d.mean()), float(low), float(high))


def ratio(candidate: np.ndarray, other: np.ndarray, resamples: int = RESAMPLES,
          confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """mean(candidate) / mean(other) over the same users, resampled together (a lift)."""
    pair = np.column_stack([np.asarray(candidate, np.float64), np.asarray(other, np.float64)])
    n = len(pair)
    if n == 0 or pair[:, 1].sum() == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    sums = np.vstack([w @ pair for w in _weights(n, resamples, seed)])
    lifts = sums[:, 0] / np.maximum(sums[:, 1], 1e-300)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(lifts, [tail, 100 - tail])
    return Interval(float(pair[:, 0].sum() / pair[:, 1].sum()), float(low), float(high))


def coverage_interval(top: np.ndarray, n_items: int, resamples: int = RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """Share of the catalog in at least one top list, users resampled.

    A resample repeats some users and misses others, so its coverage is biased low; the
    interval is the resamples' spread around their own centre, placed around the observed
    value (a bias-corrected percentile interval)."""
    rows, cols = np.nonzero(top >= 0)
    shown = sp.csr_matrix((np.ones(len(rows)), (rows, top[rows, cols])),
                          shape=(top.shape[0], max(n_items, 1)))
    mean = len(np.unique(top[top >= 0])) / max(n_items, 1)
    if top.shape[0] == 0:
        return Interval(mean, mean, mean)
    values = np.concatenate([((shown.T @ w.T).T > 0).sum(axis=1) / max(n_items, 1)
                             for w in _weights(top.shape[0], resamples, seed)])
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) - np.median(values) + mean
    return Interval(mean, float(max(low, 0.0)), float(min(high, 1.0)))


def beyond_accuracy(scored: Scored, seen: sp.csr_matrix, seed: int = SEED) -> dict[str, np.ndarray]:
    """Per evaluated user: novelty, intra-list diversity and popularity bias of the top list.

    Diversity is computed on a seeded sample of DIVERSITY_SAMPLE users (NaN for the rest),
    since it compares every pair of items in a list."""
    seen = (seen.tocsr() > 0).astype(np.float64)
    counts = np.asarray(seen.sum(axis=0)).ravel()
    n_users = max(seen.shape[0], 1)
    information = -np.log2(np.maximum(counts, 1.0) / n_users)
    head = max(1, int(np.ceil(0.1 * len(counts))))
    popular = np.zeros(len(counts), dtype=bool)
    popular[np.argsort(-counts, kind="stable")[:head]] = True
    top, valid = scored.top, scored.top >= 0
    slots = np.maximum(valid.sum(axis=1), 1)
    safe = np.where(valid, top, 0)
    novelty = np.where(valid, information[safe], 0.0).sum(axis=1) / slots
    bias = (valid & popular[safe]).sum(axis=1) / slots
    return {"novelty": novelty, "popularity_bias": bias,
            "intra_list_diversity": _diversity(top, seen, seed)}


def _diversity(top: np.ndarray, seen: sp.csr_matrix, seed: int) -> np.ndarray:
    columns = seen.T.tocsr()
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=1)).ravel())
    unit = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ columns
    out = np.full(top.shape[0], np.nan)
    rng = np.random.default_rng(seed)
    picked = (np.arange(top.shape[0]) if top.shape[0] <= DIVERSITY_SAMPLE
              else rng.choice(top.shape[0], DIVERSITY_SAMPLE, replace=False))
    for row in picked:
        items = top[row][top[row] >= 0]
        if len(items) < 2:
            continue
        vectors = unit[items]
        similarity = (vectors @ vectors.T).toarray()
        pairs = len(items) * (len(items) - 1)
        out[row] = 1.0 - (similarity.sum() - np.trace(similarity)) / pairs
    return out


def segments(scored: Scored, seen: sp.csr_matrix,
             test_counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Boolean masks over the evaluated users: training history length buckets, and (given
    each training user row's held-out count) users with more held out than trained on."""
    history = np.diff(seen.tocsr().indptr)[scored.users]
    masks = {}
    for low, high in SEGMENTS:
        name = f"history_{low}_{high}" if high else f"history_{low}_plus"
        masks[name] = (history >= low) & (history <= (high or np.iinfo(np.int64).max))
    if test_counts is not None:
        masks["mostly_after_cutoff"] = test_counts[scored.users] > history
    return masks


def intervals(scored: Scored, seen: sp.csr_matrix, test_counts: np.ndarray | None = None,
              resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
              seed: int = SEED) -> dict[str, Interval]:
    """Every metric of a run with its interval: accuracy at each k, coverage, beyond accuracy
    and NDCG@10 per segment (`ndcg_at_10.<segment>`, with `users.<segment>` counts)."""
    out = bootstrap(scored.per_user, resamples, confidence, seed)
    out["catalog_coverage"] = coverage_interval(scored.top, scored.n_items, resamples,
                                                confidence, seed)
    extra = beyond_accuracy(scored, seen, seed)
    for name, values in extra.items():
        known = values[~np.isnan(values)]
        out[name] = bootstrap({name: known}, resamples, confidence, seed)[name]
    ndcg = scored.per_user.get("ndcg_at_10")
    if ndcg is not None:
        for name, mask in segments(scored, seen, test_counts).items():
            count = int(mask.sum())
            out[f"users.{name}"] = Interval(count, count, count)
            if count:
                out[f"ndcg_at_10.{name}"] = bootstrap({name: ndcg[mask]}, resamples,
                                                      confidence, seed)[name]
    return out


def as_metrics(found: dict[str, Interval]) -> dict[str, float]:
    """MLflow metrics: `<name>` the mean, `<name>_ci_low` and `<name>_ci_high` its interval."""
    metrics: dict[str, float] = {}
    for name, interval in found.items():
        metrics[name] = interval.mean
        if not name.startswith("users."):
            metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = interval.low, interval.high
    return {k: v for k, v in metrics.items() if np.isfinite(v)}
