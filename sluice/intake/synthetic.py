"""A realistic synthetic event history: hidden tastes drive what is shown, clicked and bought.

Items belong to categories with latent vectors; users prefer one to three categories. Rankings
show ten items, mostly popular and in-taste ones; clicks depend on taste and on position, and
purchases on taste again. Some visitors browse anonymously and log in part-way; a few never do.
Output is Metarank JSON Lines, the native bulk format, written to the landing folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CATEGORIES = [
    "books", "music", "movies", "games", "garden", "kitchen", "sports", "outdoors", "toys",
    "beauty", "health", "fashion", "shoes", "jewelry", "electronics", "computers", "phones",
    "office", "pets", "baby",
]
COLORS = ["red", "blue", "green", "black", "white", "yellow", "grey", "brown"]
DAY_MS = 86_400_000


@dataclass
class SyntheticSpec:
    users: int = 5_000
    items: int = 2_000
    events: int = 200_000
    days: int = 60
    seed: int = 7
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    shown_per_ranking: int = 10
    anonymous_login_share: float = 0.15  # sessions that start anonymous and log in part-way
    anonymous_only_share: float = 0.05   # sessions that never log in
    files: int = 4


@dataclass
class SyntheticResult:
    paths: list[Path]
    events: int
    users: int
    items: int
    interactions: int
    known_user: str
    anonymous_session: str
    stitched_user: str
    counts: dict[str, int] = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Population:
    """The hidden model behind a history: what a simulation needs to make the same users
    react to answers the history never showed (users `u<n>`, items `i<n>`)."""

    item_cat: np.ndarray
    item_pop: np.ndarray
    affinity: np.ndarray  # users x items: the hidden taste
    activity: np.ndarray

    def click_probability(self, user: int, items: np.ndarray) -> np.ndarray:
        """P(click) of `items` shown in this order to `user`: the generator's own rule, taste
        times a position bias."""
        position_bias = 1.0 / np.log2(np.arange(2, len(items) + 2))
        return _sigmoid(3.0 * self.affinity[user, items] - 1.5) * position_bias * 0.6

    def purchase_probability(self, user: int, item: int) -> float:
        """P(purchase | click), the generator's rule."""
        return float(0.25 * _sigmoid(2.0 * self.affinity[user, item]))


def population(spec: SyntheticSpec | None = None) -> Population:
    """The hidden tastes of the history `generate(spec)` writes (same seed, same users)."""
    spec = spec or SyntheticSpec()
    return _population(np.random.default_rng(spec.seed), spec)


def _population(rng: np.random.Generator, spec: SyntheticSpec) -> Population:
    dim = 8
    n_cat = len(CATEGORIES)
    centroids = rng.normal(size=(n_cat, dim))
    item_cat = rng.integers(0, n_cat, spec.items)
    item_vec = centroids[item_cat] + 0.5 * rng.normal(size=(spec.items, dim))
    item_pop = rng.pareto(1.2, spec.items) + 0.2  # a long tail of popularity
    prefs = [rng.choice(n_cat, size=rng.integers(1, 4), replace=False) for _ in range(spec.users)]
    user_vec = np.stack([centroids[p].mean(axis=0) for p in prefs])
    user_vec += 0.3 * rng.normal(size=user_vec.shape)
    affinity = (user_vec @ item_vec.T) / np.sqrt(dim)  # users x items
    activity = rng.pareto(1.5, spec.users) + 0.5
    return Population(item_cat, item_pop, affinity, activity)


def generate(out_dir: Path, spec: SyntheticSpec | None = None) -> SyntheticResult:
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)  # the population's draws, then the history's
    hidden = _population(rng, spec)
    history = _History(spec, hidden, _catalog_events(rng, spec, hidden.item_cat))
    while len(history.events) < spec.events:
        history.session(rng)
    paths = _write(out_dir, history.events, spec)
    sessions = history.anonymous_sessions
    best_anon = max(sessions, key=lambda s: s[1])[0] if sessions else "s1"
    return SyntheticResult(
        paths=paths, events=len(history.events), users=spec.users, items=spec.items,
        interactions=history.counts["interaction"],
        known_user=f"u{int(history.per_user.argmax())}", anonymous_session=best_anon,
        stitched_user=history.stitched[0] if history.stitched else "u0", counts=history.counts,
    )


def _catalog_events(rng: np.random.Generator, spec: SyntheticSpec,
                    item_cat: np.ndarray) -> list[dict]:
    """One item event per item, and a user event for every other user, the day before."""
    t0 = spec.start_ms
    events = [_item_event(rng, i, int(item_cat[i]), t0 - DAY_MS) for i in range(spec.items)]
    for u in range(0, spec.users, 2):
        events.append({"event": "user", "id": f"user-event-{u}", "user": f"u{u}",
                       "timestamp": str(t0 - DAY_MS),
                       "fields": [{"name": "country", "value": ["us", "de", "fr", "jp"][u % 4]}]})
    return events


class _History:
    """The events of a history as sessions are drawn, and what the result reports of them."""

    def __init__(self, spec: SyntheticSpec, hidden: Population, catalog: list[dict]) -> None:
        self.spec, self.hidden, self.events = spec, hidden, catalog
        self.counts = {"item": spec.items, "user": len(catalog) - spec.items, "ranking": 0,
                       "interaction": 0}
        self.base_weight = np.log1p(hidden.item_pop)
        self.user_p = hidden.activity / hidden.activity.sum()
        self.per_user = np.zeros(spec.users, dtype=np.int64)
        self.anonymous_sessions: list[tuple[str, int]] = []
        self.stitched: list[str] = []
        self.sessions = 0

    def session(self, rng: np.random.Generator) -> None:
        """One session of 1-4 rankings by one user, anonymous for a while or throughout."""
        spec = self.spec
        self.sessions += 1
        u = int(rng.choice(spec.users, p=self.user_p))
        session = f"s{self.sessions}"
        mode = rng.random()
        anonymous_only = mode < spec.anonymous_only_share
        login_after = (int(rng.integers(1, 3))
                       if mode < spec.anonymous_only_share + spec.anonymous_login_share else 0)
        start = spec.start_ms + int(rng.random() * spec.days * DAY_MS)
        scores = 0.7 * self.base_weight + 2.5 * self.hidden.affinity[u]
        p = np.exp(scores - scores.max())
        p /= p.sum()
        clicks = 0
        for r in range(int(rng.integers(1, 5))):
            known = not anonymous_only and r >= login_after
            who = {"session": session} | ({"user": f"u{u}"} if known else {})
            clicks += self._ranking(rng, u, f"r{self.sessions}-{r}", start + r * 60_000, who, p)
        if anonymous_only:
            self.anonymous_sessions.append((session, clicks))
        else:
            self.per_user[u] += clicks
            if login_after and clicks:
                self.stitched.append(f"u{u}")

    def _ranking(self, rng: np.random.Generator, u: int, ranking_id: str, ts: int,
                 who: dict, p: np.ndarray) -> int:
        """A shown list, the clicks the user's tastes draw on it and their purchases."""
        shown = rng.choice(self.spec.items, size=self.spec.shown_per_ranking, replace=False, p=p)
        self.events.append({"event": "ranking", "id": ranking_id, "timestamp": ts, **who,
                            "items": [{"id": f"i{i}"} for i in shown]})
        self.counts["ranking"] += 1
        clicked = shown[rng.random(len(shown)) < self.hidden.click_probability(u, shown)]
        tag = ranking_id[1:]
        for k, i in enumerate(clicked):
            base = {"timestamp": ts + 1_000 * (k + 1), "ranking": ranking_id, **who,
                    "item": f"i{i}"}
            self.events.append({"event": "interaction", "id": f"c{tag}-{k}", "type": "click",
                                **base})
            self.counts["interaction"] += 1
            if rng.random() < self.hidden.purchase_probability(u, int(i)):
                price = round(float(5 + 200 * rng.random()), 2)
                self.events.append({"event": "interaction", "id": f"p{tag}-{k}",
                                    "type": "purchase", **base,
                                    "fields": [{"name": "price", "value": price}]})
                self.counts["interaction"] += 1
        return len(clicked)


def _item_event(rng: np.random.Generator, i: int, cat: int, ts: int) -> dict:
    fields = [
        {"name": "title", "value": f"{CATEGORIES[cat].title()} item {i}"},
        {"name": "category", "value": CATEGORIES[cat]},
        {"name": "brand", "value": f"brand-{int(rng.integers(0, 60))}"},
        {"name": "color", "value": COLORS[int(rng.integers(0, len(COLORS)))]},
        {"name": "price", "value": round(float(np.exp(rng.normal(3.2, 0.8))), 2)},
        {"name": "tags", "value": [CATEGORIES[cat], f"tag-{int(rng.integers(0, 40))}"]},
        {"name": "in_stock", "value": bool(rng.random() > 0.05)},
    ]
    return {"event": "item", "id": f"item-event-{i}", "item": f"i{i}",
            "timestamp": _iso(ts), "fields": fields}


def _iso(ms: int) -> str:
    return np.datetime_as_string(np.datetime64(ms, "ms"), unit="ms") + "Z"


def _write(out_dir: Path, events: list[dict], spec: SyntheticSpec) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    events.sort(key=lambda e: int(e["timestamp"]) if not isinstance(e["timestamp"], str)
                or e["timestamp"].isdigit() else 0)
    size = -(-len(events) // spec.files)
    paths = []
    for n in range(spec.files):
        path = out_dir / f"synthetic-seed{spec.seed}-part{n:02d}.jsonl"
        tmp = path.with_suffix(".tmp")  # ingest ignores it until the rename below
        with open(tmp, "w") as handle:
            for event in events[n * size:(n + 1) * size]:
                handle.write(json.dumps(event, separators=(",", ":")) + "\n")
        tmp.replace(path)
        paths.append(path)
    return paths
