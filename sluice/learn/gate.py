"""The champion gate: a candidate takes alias `champion` only if it beats, on the same users,
both popularity (when it is personalized) and the current champion, with confidence.

Both comparisons are paired: the per-user difference of the gate metric over the users of
this run's holdout, by a sign-flip randomization test (`quality.signflip`: under no difference
a user's difference is as likely either sign; the interval is the test inverted, with the same
sign draws). The candidate passes when the interval's low end is above zero (at
`evaluation.gate_confidence`, which is exactly when the one-sided test at (1 - confidence) / 2
rejects no difference), or when its relative lift reaches `evaluation.gate_min_lift` (when
set). The percentile bootstrap it replaced said "above zero" 3-4% of the time at 100 users
under no difference against 2.5% nominal; the sign-flip test is exact for any number of users
(benchmarks/gate.py). The champion is scored on that holdout as serving
would use its bundle (users folded in from their training history) when it was trained
before the holdout; when it has seen part of the holdout, its configuration (family and
parameters) is refit on this run's training part and that is scored instead. A personalized
candidate that does not beat popularity when there is no champion leaves popularity served
as the tenant's model (`serve_popularity`).

Ties and small samples: a champion refit with the candidate's own configuration (family,
parameters, matrix config, and the event weights and value threshold its marts were built
with: `sluice.learn.configuration`) scores what the candidate scores, user for user, so that
comparison is a tie by construction; the candidate then replaces it as a refresh (the same
configuration on newer data) once it beats popularity. Otherwise the reason says what differs.
Fewer evaluated users than `evaluation.gate_min_users` promote nothing (a couple of dozen
users, most of them ties, decide little, and the percentile bootstrap the gate used before was
far narrower than the truth there); a metric that is not finite promotes nothing either.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sluice.bundle import ModelBundle
from sluice.learn import registry, versions
from sluice.learn.configuration import (  # noqa: F401 (same_configuration re-exported)
    Configuration,
    differences,
    same_configuration,
)
from sluice.learn.evaluation import (
    K_VALUES,
    Ranker,
    Scored,
    factor_ranker,
    popular_ranker,
    score_model,
    score_ranker,
)
from sluice.learn.matrix import InteractionMatrix, trained_boost
from sluice.learn.model_base import als_fold_in, als_gram
from sluice.learn.models import make_model
from sluice.learn.quality import CONFIDENCE, RESAMPLES, SEED, SIGN_FLIP, Interval, signflip

log = logging.getLogger(__name__)

PASSED, FAILED = "passed", "failed"
MIN_USERS = 100  # evaluation.gate_min_users: fewer evaluated users decide nothing
METHOD = SIGN_FLIP  # how the difference's interval is computed (reason, tag gate.method)


@dataclass
class ChampionScore:
    version: str
    run_id: str | None
    scored: Scored | None   # the champion on this run's holdout users, None when not scored
    note: str               # how it was scored, or why it was not
    same_configuration: bool = False  # refit with the candidate's own configuration
    differs: tuple[str, ...] = ()     # else what tells its configuration from the candidate's


@dataclass
class Rule:
    """How sure the gate must be: evaluation.gate_confidence, gate_min_lift, and the sign
    draws of its test (evaluation.bootstrap_resamples, seed)."""

    confidence: float = CONFIDENCE
    min_lift: float | None = None
    resamples: int = RESAMPLES
    seed: int = SEED
    min_users: int = MIN_USERS


@dataclass
class Comparison:
    against: str            # "popularity" or "champion vN"
    candidate: float
    reference: float
    difference: Interval    # candidate - reference, per user, paired sign-flip interval
    users: int
    passed: bool

    def line(self, metric: str, confidence: float) -> str:
        d = self.difference
        return (f"{metric} {self.candidate:.4f} vs {self.against} {self.reference:.4f}, "
                f"difference {d.mean:+.4f} ({confidence:.0%} {METHOD} interval {d.low:+.4f} to "
                f"{d.high:+.4f}, {self.users:,} users)")


@dataclass
class Decision:
    promoted: bool
    reason: str
    metric: str
    candidate: float
    champion: float | None
    champion_version: str | None
    difference_low: float | None = None
    difference_high: float | None = None
    popularity: float | None = None
    serve_popularity: bool = False   # no champion and the candidate lost to popularity
    users: int = 0                   # evaluated users both sides were scored on
    refresh: bool = False            # promoted over a tie with its own configuration

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bundle_ranker(bundle: ModelBundle, train: InteractionMatrix) -> Ranker:
    """Top-k over `train`'s items for `train`'s user rows, by a bundle trained elsewhere.

    Users are folded in from their `train` history as serving would (bundle meta fold_in,
    alpha, regularization, its family's recency boost); items the bundle does not know are
    never recommended.
    """
    to_bundle = pd.Index(bundle.item_ids).get_indexer(train.item_ids)
    known = to_bundle >= 0
    items = np.zeros((len(train.item_ids), bundle.item_factors.shape[1]), dtype=np.float32)
    items[known] = bundle.item_factors[to_bundle[known]]
    meta = bundle.meta
    kind = meta.get("fold_in", "als")
    gram = (als_gram(bundle.item_factors, float(meta.get("regularization", 0.0)))
            if kind == "als" else None)
    alpha = float(meta.get("alpha", 1.0))
    boost = float((meta.get("matrix") or {}).get("recency_boost", 0.0))  # as it was trained
    rows = train.for_model(str(meta.get("algorithm")), boost).matrix.tocsr()

    def user_vector(u: int) -> np.ndarray:
        start, end = rows.indptr[u], rows.indptr[u + 1]
        picked, weights = to_bundle[rows.indices[start:end]], rows.data[start:end]
        keep = picked >= 0
        picked, weights = picked[keep], weights[keep]
        if kind == "history":
            vector = np.zeros(bundle.item_factors.shape[1], dtype=np.float32)
            np.add.at(vector, picked, weights)
            return vector
        if kind == "constant":
            return np.ones(bundle.item_factors.shape[1], dtype=np.float32)
        assert gram is not None
        return als_fold_in(bundle.item_factors, gram, picked, weights, alpha)

    def vectors(users: np.ndarray) -> np.ndarray:
        return np.vstack([user_vector(int(u)) for u in users])

    unknown = np.flatnonzero(~known)
    if kind == "constant":  # one ranking for everyone (popularity)
        shared = items @ np.ones(items.shape[1], dtype=np.float32)
        shared[unknown] = -np.inf
        return popular_ranker(shared, rows)
    return factor_ranker(vectors, items, rows, unknown if len(unknown) else None)


def score_champion(tracking_uri: str, name: str, train: InteractionMatrix,
                   test: pd.DataFrame, relevant: dict[int, np.ndarray],
                   k_values: tuple[int, ...] = K_VALUES,
                   candidate: Configuration | None = None) -> ChampionScore | None:
    """The current champion on this run's holdout users; None when there is no champion.

    `candidate` marks a refit champion of the same configuration (`sluice.learn.configuration`):
    a champion trained on another matrix config, or on marts of other event weights or value
    threshold, is refit on this run's, so that comparison is no refresh."""
    client = registry.client(tracking_uri)
    current = registry.alias_version(client, name, registry.CHAMPION)
    if current is None:
        return None
    score = ChampionScore(str(current.version), current.run_id, None, "")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            found = registry.download_alias(tracking_uri, name, registry.CHAMPION, Path(tmp))
            assert found is not None
            bundle = ModelBundle.load(found.local_path)
    except Exception as exc:  # a champion we cannot read must not block training
        score.note = f"its bundle could not be loaded ({type(exc).__name__}: {exc})"
        return score
    # by event time, unlike serving's fold-in (sluice.serve.model.TrainedLog): every event the
    # champion trained on is stamped at or before its cutoff, so a holdout with none there
    # shares nothing with its training; a late event only makes it refit when it need not
    cutoff_ms = int(bundle.meta.get("cutoff_ms", 0))
    event_ms = test["event_at"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    seen_share = float((event_ms <= cutoff_ms).mean()) if len(event_ms) else 0.0
    if seen_share == 0.0:
        score.scored = score_ranker(bundle_ranker(bundle, train), len(train.item_ids),
                                    relevant, k_values)
        score.note = f"its bundle on this run's holdout ({len(relevant):,} users)"
        return score
    algorithm, stored = bundle.meta.get("algorithm"), dict(bundle.meta.get("params") or {})
    # where it trained is no part of its configuration (a GPU champion is refit on the CPU)
    params = {**stored, "device": "auto"} if "device" in stored else stored
    try:
        refit = make_model(str(algorithm), **params)
        refit.fit(train.for_model(str(algorithm), trained_boost(refit)).matrix)
    except Exception as exc:  # a family or parameters this version no longer knows
        score.note = (f"it saw {seen_share:.0%} of this holdout and its configuration "
                      f"({algorithm}) could not be refit ({type(exc).__name__}: {exc})")
        return score
    score.scored = score_model(refit, train, relevant, k_values)
    if candidate is not None:
        score.differs = tuple(differences(candidate, Configuration.of_bundle(bundle.meta)))
        score.same_configuration = not score.differs
    score.note = (f"it saw {seen_share:.0%} of this holdout, so its configuration ({algorithm} "
                  f"{stored}) was refit on this run's training part")
    return score


def compare(metric: str, candidate: Scored, reference: Scored, against: str,
            rule: Rule) -> Comparison:
    """The paired per-user comparison of `metric` on the users both were scored on; a value
    that is not finite on either side fails it."""
    if not np.array_equal(candidate.users, reference.users):
        raise ValueError("a gate comparison needs both models scored on the same users")
    if metric not in candidate.per_user:
        raise ValueError(f"evaluation.gate_metric: {metric!r} is not a per-user metric, use "
                         f"one of {', '.join(sorted(candidate.per_user))}")
    mine, theirs = candidate.per_user[metric], reference.per_user[metric]
    finite = bool(np.isfinite(mine).all() and np.isfinite(theirs).all())
    nan = float("nan")
    difference = (signflip(mine - theirs, rule.resamples, rule.confidence, rule.seed)
                  if finite else Interval(nan, nan, nan))
    ours, other = float(mine.mean()), float(theirs.mean())
    lifted = (rule.min_lift is not None and other > 0 and ours / other - 1 >= rule.min_lift)
    passed = finite and bool(difference.low > 0 or lifted)
    return Comparison(against, ours, other, difference, len(mine), passed)


def decide(metric: str, candidate: Scored, popularity: Scored | None,
           champion: ChampionScore | None, rule: Rule | None = None) -> Decision:
    """Promote only past popularity (personalized candidates: give `popularity`) and then
    past the champion, each with confidence, and only on `rule.min_users` evaluated users or
    more; the reason states the numbers, the interval and the users.
    """
    rule = rule or Rule()
    if metric not in candidate.per_user:
        raise ValueError(f"evaluation.gate_metric: {metric!r} is not a computed metric")
    values = candidate.per_user[metric]
    value, users = float(values.mean()) if len(values) else float("nan"), len(values)
    version = champion.version if champion else None
    stays = (f"champion v{version} stays" if champion else
             "nothing is promoted (the tenant is served from its popular and random tiers)")
    if users < rule.min_users or not np.isfinite(values).all():
        return _undecided(metric, candidate, popularity, champion, rule, stays)
    beats_popularity = ""
    if popularity is not None:
        versus = compare(metric, candidate, popularity, "popularity", rule)
        if not versus.passed:
            serve = champion is None
            what = "popularity is served as the tenant's model" if serve else stays
            return Decision(False, f"{versus.line(metric, rule.confidence)}: does not beat "
                            f"popularity; {what}", metric, value, None, version,
                            versus.difference.low, versus.difference.high, versus.reference,
                            serve, users)
        beats_popularity = f"; beats popularity ({versus.line(metric, rule.confidence)})"
    if champion is None:
        return Decision(True, f"no champion yet; {metric}={value:.4f} over {users:,} users"
                        f"{beats_popularity}", metric, value, None, None, users=users)
    if champion.scored is None:
        return Decision(True, f"champion v{version} could not be scored ({champion.note}); "
                        f"{metric}={value:.4f} over {users:,} users{beats_popularity}",
                        metric, value, None, version, users=users)
    return _against_champion(metric, candidate, champion, rule, beats_popularity)


def _undecided(metric: str, candidate: Scored, popularity: Scored | None,
               champion: ChampionScore | None, rule: Rule, stays: str) -> Decision:
    """Too few users, or a metric that is not finite: nothing moves; the numbers are said."""
    values = candidate.per_user[metric]
    value, users = float(values.mean()) if len(values) else float("nan"), len(values)
    why = (f"{users:,} users evaluated, fewer than evaluation.gate_min_users "
           f"({rule.min_users:,}): too few to decide" if users < rule.min_users else
           f"{metric} is not finite for {int((~np.isfinite(values)).sum()):,} of "
           f"{users:,} users")
    version = champion.version if champion else None
    reference = champion.scored if champion and champion.scored else popularity
    against = f"champion v{version}" if reference is not popularity else "popularity"
    said = (compare(metric, candidate, reference, against, rule).line(metric, rule.confidence)
            if reference is not None and users else f"{metric}={value:.4f}")
    return Decision(False, f"{why}; {said}; {stays}", metric, value, None, version,
                    users=users)


def _against_champion(metric: str, candidate: Scored, champion: ChampionScore, rule: Rule,
                      beats_popularity: str) -> Decision:
    """The paired comparison with a scored champion; its own configuration refit is a tie
    by construction, which promotes the candidate as a refresh."""
    assert champion.scored is not None
    version = champion.version
    versus = compare(metric, candidate, champion.scored, f"champion v{version}", rule)
    refresh = not versus.passed and champion.same_configuration
    if refresh:  # the champion's configuration compared with itself: a tie by construction
        verdict = ("the champion's own configuration, a tie by construction: promoted as a "
                   "refresh on newer data")
    else:
        lift = f" or lift {rule.min_lift:.0%}" if rule.min_lift is not None else ""
        alone = versus.passed and not versus.difference.low > 0  # gate_min_lift's point value
        verdict = ("beats it on its lift alone: the interval includes zero" if alone else
                   "beats it" if versus.passed else "does not beat it") + (
            f" (needs the interval above zero{lift})")
        if not versus.passed and champion.differs:
            verdict += f"; no refresh: {', '.join(champion.differs)}"
    reason = (f"{versus.line(metric, rule.confidence)}: {verdict}; the champion scored as "
              f"{champion.note}{beats_popularity}")
    return Decision(versus.passed or refresh, reason, metric, versus.candidate,
                    versus.reference, version, versus.difference.low, versus.difference.high,
                    users=versus.users, refresh=refresh)


def apply(client: Any, name: str, version: str, decision: Decision) -> None:
    """Tag the version with the outcome and move `champion` when it passed."""
    client.set_model_version_tag(name, version, "validation_status",
                                 PASSED if decision.promoted else FAILED)
    client.set_model_version_tag(name, version, "gate_reason", decision.reason[:5000])
    if decision.promoted:  # recording the champion it replaces, for `sluice rollback`
        versions.move_champion(client, name, version, decision.reason)
    log.debug("model %s v%s %s: %s", name, version,  # training reports it, once
              "promoted" if decision.promoted else "kept out", decision.reason)
