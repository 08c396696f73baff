"""Approximate top-N by inner product over the item factors, for catalogs too large to scan.

The train flow builds the index (`ItemIndex.build`) into the bundle when the catalog has at
least `serving.ann.min_items` items; serving asks it for a few hundred candidates and scores
those exactly from the factors (`sluice.serve.retrieval`), so the ranking it returns is the
exact ranking of the candidates it found.

Two kinds, both under the inner-product metric (score = x_u . y_i is what the models rank
by; BPR and LMF keep their biases as factor columns, so the index sees them too):

- `hnsw`: faiss's graph index (`IndexHNSWFlat`, METRIC_INNER_PRODUCT). A query
  walks the graph from its entry point toward better-scoring items, keeping the `ef_search`
  best it has met; it visits a few thousand items at a million. The graph's links are drawn
  by inner product too: the usual reduction of inner product to a metric (one extra
  coordinate per item) measured far worse recall on factors shaped like a trained model's
  (benchmarks/README.md, 2026-12-02 session 5). Building it is parallel, so two builds of the
  same factors may link a few items differently.
- `ivf` (the default): faiss's inverted file: k-means splits the items into `lists`, a
  query scans the `probes` lists whose centroids score best. Seeded: the same factors give
  the same index. At a million items it measured better recall and less time per answer than
  the graph at the defaults (benchmarks/README.md, session 5). Its lists hold each item as
  `codes`: `sq8` (the default; `IndexIVFScalarQuantizer`, one byte a factor, a quarter of
  the factors' memory) or `flat` (`IndexIVFFlat`, a float32 copy of the factors). The scan's
  scores only choose candidates, and serving scores those exactly from the factors, so 8-bit
  codes cost no recall where the candidates asked for reach past the top 25 (measured equal
  at 1M items, benchmarks/README.md session 7) and scan faster: the scan at a million items is
  bound by reading the lists from memory.

How widely a query looks (probes, efSearch) is calibrated when the index is built
(`calibrate`): the narrowest breadth whose recall@25 against the exact scan reaches
`serving.ann.recall_target` on a sample of queries like serving's (fold-ins of trained users'
histories). The bundle's meta carries it (`ann`, with the recall measured); serving's
`serving.ann.probes` / `ef_search` above 0 override it, and bundles from before calibration
search with the former defaults (`LEGACY_BREADTH`).

It is stored as faiss's own file, `ann.faiss` beside the bundle's `.npz` (never pickle), and
read with its lists (or the graph's vectors) memory-mapped, so a server's workers share them;
bundles written before held faiss's serialization as a uint8 array in the `.npz`, read as a
copy. Either is checked at load like every array; the kind is read back from it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 7  # the k-means sample and initialisation: the same factors give the same index
POINTS_PER_LIST = 64  # k-means trains on this many items per list (faiss warns below 39)
KMEANS_ITERATIONS = 10
KINDS = ("hnsw", "ivf")
CODES = ("flat", "sq8")  # how an inverted file's lists hold each item
LEGACY_BREADTH = {"ivf": 48, "hnsw": 128}  # bundles built before calibration: former defaults
RECALL_AT = 25  # calibration's recall is of the top 25, the answer size the aims are set at
STEP = 1.5  # calibration tries breadths growing by this factor
EXACT_BLOCK = 16  # queries scored against every item at once while calibrating: 16 x items floats


@dataclass(frozen=True)
class Calibration:
    """The breadth `calibrate` chose and what it measured there."""

    breadth: int
    recall: float  # mean recall@25 of the sample's queries against the exact scan
    worst: float  # the lowest query's
    queries: int
    target: float

    @property
    def met(self) -> bool:
        return self.recall >= self.target

    def meta(self) -> dict[str, Any]:
        """For the bundle's meta and the run's log."""
        return {"breadth": self.breadth, "recall_at_25": round(self.recall, 4),
                "worst_recall_at_25": round(self.worst, 4), "queries": self.queries,
                "recall_target": self.target}


def _faiss() -> Any:
    import faiss  # imported on use: only catalogs above serving.ann.min_items need it

    return faiss


def default_lists(items: int) -> int:
    """About 4 sqrt(items) lists (4,000 at a million): a few hundred items per list."""
    return max(1, min(items // POINTS_PER_LIST, int(4 * math.sqrt(items))))


class ItemIndex:
    """An index of item factors (row j is item j), of either kind; see the module docstring."""

    def __init__(self, index: Any):
        self.index = index
        self.kind = "ivf" if isinstance(index, _faiss().IndexIVF) else "hnsw"
        self._params: dict[int, Any] = {}  # search parameters by breadth: made once each

    @classmethod
    def build(cls, item_factors: np.ndarray, kind: str = "ivf", lists: int = 0,
              links: int = 32, ef_construction: int = 80, codes: str = "sq8") -> ItemIndex:
        """`lists` and `codes` for the inverted file; `links` (HNSW's M) and
        `ef_construction` for the graph. Ids are row numbers: item j is id j."""
        if kind not in KINDS:
            raise ValueError(f"ann index kind {kind!r}: expected one of {', '.join(KINDS)}")
        if codes not in CODES:
            raise ValueError(f"ann index codes {codes!r}: expected one of {', '.join(CODES)}")
        vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
        if kind == "ivf":
            return cls(_inverted_file(vectors, lists, codes))
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(vectors.shape[1], links, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(vectors)
        return cls(index)

    @classmethod
    def read(cls, path: Path) -> ItemIndex:
        """An index written by `write`, its lists (or graph's vectors) mapped read-only from
        the file (faiss's IO_FLAG_MMAP_IFC) rather than copied: a server's workers, loading
        one download of the model, share them."""
        faiss = _faiss()
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC))

    def write(self, path: Path) -> None:
        """Written beside `path` and renamed in, so a process that mapped the file it
        replaces keeps reading the old one."""
        partial = path.with_name(f"{path.name}.partial")
        try:
            _faiss().write_index(self.index, str(partial))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    @classmethod
    def from_bytes(cls, data: np.ndarray) -> ItemIndex:
        faiss = _faiss()
        return cls(faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8)))

    def to_bytes(self) -> np.ndarray:
        return _faiss().serialize_index(self.index)

    @property
    def items(self) -> int:
        return int(self.index.ntotal)

    @property
    def dims(self) -> int:
        return int(self.index.d)

    @property
    def codes(self) -> str:
        """How an inverted file's lists hold each item (`CODES`); "flat" for a graph."""
        return "sq8" if isinstance(self.index, _faiss().IndexIVFScalarQuantizer) else "flat"

    def breadths(self, candidates: int) -> list[int]:
        """What calibration tries, narrowest first: up to every list, or efSearch 4096."""
        first, last = (8, int(self.index.nlist)) if self.kind == "ivf" else (candidates, 4096)
        steps = [min(first, last)]
        while steps[-1] < last:
            steps.append(min(last, max(steps[-1] + 1, int(steps[-1] * STEP))))
        return steps

    def describe(self) -> str:
        """What it is, for logs and benchmark tables."""
        if self.kind == "ivf":
            return f"inverted file of {self.index.nlist:,} lists, {self.codes} codes"
        return f"HNSW graph, M {self.index.hnsw.nb_neighbors(1)}, " \
               f"efConstruction {self.index.hnsw.efConstruction}"

    def search(self, vector: np.ndarray, count: int, breadth: int) -> np.ndarray:
        """Item rows of up to `count` best items found, best first. `breadth` is how widely
        it looks: lists probed (inverted file; fewer items when those lists hold fewer) or
        the graph search's efSearch (at least `count` whatever it is)."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        _, found = self.index.search(query, count, params=self._search_params(breadth, count))
        rows = found[0]
        return rows[rows >= 0]

    def _search_params(self, breadth: int, count: int) -> Any:
        breadth = (max(1, min(breadth, self.index.nlist)) if self.kind == "ivf"
                   else max(breadth, count))
        params = self._params.get(breadth)
        if params is None:  # read-only once made: threads may share it (a race makes two)
            faiss = _faiss()
            params = (faiss.SearchParametersIVF(nprobe=breadth) if self.kind == "ivf"
                      else faiss.SearchParametersHNSW(efSearch=breadth))
            self._params = {**self._params, breadth: params} if len(self._params) < 64 else {}
        return params


def calibrate(index: ItemIndex, item_factors: np.ndarray, queries: np.ndarray,
              target: float, candidates: int) -> Calibration:
    """The narrowest breadth of the index whose mean recall@25 over `queries` reaches
    `target`: each query's `candidates` found items, scored exactly (as serving does), against
    its exact top 25 over every item. When none does, the widest tried is kept."""
    factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    at = min(RECALL_AT, len(factors))
    truth = exact_top(factors, queries, at)
    count = min(max(candidates, at), len(factors))
    chosen = None
    for breadth in index.breadths(count):
        recalls = [len(set(rescored(factors, query, index.search(query, count, breadth), at))
                       & set(best.tolist())) / at for query, best in zip(queries, truth,
                                                                          strict=True)]
        chosen = Calibration(breadth, float(np.mean(recalls)), float(np.min(recalls)),
                             len(queries), target)
        if chosen.met:
            break
    assert chosen is not None  # breadths() is never empty
    return chosen


def exact_top(factors: np.ndarray, queries: np.ndarray, at: int) -> np.ndarray:
    """Each query's `at` best rows by inner product over every item (unordered)."""
    tops = []
    for start in range(0, len(queries), EXACT_BLOCK):
        scores = queries[start:start + EXACT_BLOCK] @ factors.T
        tops.append(np.argpartition(-scores, at - 1, axis=1)[:, :at])
    return np.concatenate(tops) if tops else np.empty((0, at), dtype=np.int64)


def rescored(factors: np.ndarray, query: np.ndarray, rows: np.ndarray, at: int) -> list[int]:
    """The `at` best of `rows` by their exact scores, as serving ranks the index's finds."""
    scores = factors[rows] @ query
    return rows[np.argsort(-scores, kind="stable")[:at]].tolist()


def _inverted_file(vectors: np.ndarray, lists: int, codes: str) -> Any:
    faiss = _faiss()
    items, dims = vectors.shape
    lists = min(lists or default_lists(items), items)
    quantizer = faiss.IndexFlatIP(dims)
    if codes == "sq8":  # one range per factor, learnt from the sample; codes of the vectors
        # themselves, not of their residuals to the centroid: measured as fast or faster
        index = faiss.IndexIVFScalarQuantizer(quantizer, dims, lists,
                                              faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT, False)
    else:
        index = faiss.IndexIVFFlat(quantizer, dims, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.seed = KMEANS_ITERATIONS, SEED
    sample = min(items, lists * POINTS_PER_LIST)
    rows = np.random.default_rng(SEED).choice(items, sample, replace=False)
    index.train(vectors[np.sort(rows)])
    index.add(vectors)
    return index


def single_threaded() -> None:
    """One OpenMP thread for faiss in serving: each request searches one vector from its own
    thread, and a team of OpenMP threads per call only fights those threads for the cores."""
    _faiss().omp_set_num_threads(1)
