"""Off-policy estimates: how a candidate ranking would have done on the answers the champion
served, from the logged slots, their propensities and their clicks.

Per slot (position-based): a logged slot (answer, position k, item a, propensity p, click c)
weighs w = 1[the candidate puts a at k] / p. IPS is mean(w * c) over the slots, the
self-normalised IPS (SNIPS) sum(w * c) / sum(w); per answer both are the per-slot value times
the mean slots per answer. Intervals are percentile bootstraps that resample whole answers
(slots of one answer are not independent), and the effective sample size counts the same
unit: with W_a the sum of the weights of answer a's slots, ESS = sum(W)^2 / sum(W^2), the
number of answers of equal weight that would carry as much (`ess_slots` is the same over
slots, sum(w)^2 / sum(w^2), which counts an answer's matching slots as independent draws). An
estimate whose effective sample is below `min_ess` answers is returned all the same, marked
`small_sample`. With `clip` (evaluation.off_policy_clip, off by default) each weight is
min(w, clip): less variance, for a bias (IPS reads low where rare items were explored); the
estimate then carries `clip` and `clipped_share` (the share of matching slots capped). When no
logged slot matches the candidate there is nothing to weigh: no IPS, SNIPS or DR is given (a
zero with a zero-width interval would read as a measured click-through of nothing, and DR
would be the reward model's guess alone), only the match rate and the ESS of 0. SNIPS (and
SNDR) is undefined in a resample that draws no matching slot; such resamples are left out of
its interval rather than counted as a click-through of zero.

Doubly robust (DR): with q(a, k) a reward model's click probability of item a at position k,
a slot whose candidate item is t counts q(t, k) + w * (c - q(a, k)) (Dudik et al. 2014); its
mean over the slots is DR, and the self-normalised DR (SNDR) divides the correction's sum by
sum(w) instead of the slot count, as SNIPS does. DR is unbiased whenever the propensities
are right, whatever q is, as long as q never reads the slot's own click (below: it is
cross-fitted), for the correction removes q's error on average; and its variance is
smaller the closer q is to the clicks: the weights multiply c - q instead of c. A slot the
candidate cannot fill (it does not know the user) counts 0, as in IPS. `dm_ctr` is the
model's part alone (mean q(t, k), the direct method), so DR - DM is what the logged clicks
corrected. The same weights, clipped or not, are used, and so the same ESS.

The reward model (`REWARD_MODEL`, sluice.learn.reward) is COEC by item, position and whether
the candidate shows the item to the user, cross-fitted on two halves of the answers, and the
bootstrap refits it on each resample. Where few slots match, DR is mostly the model's guess
(compare `dm_ctr`), and the ESS says how few slots correct it.

Where DR rests on the reward model, it is marked (`dr_on_model`) and said in words
(`dr_warning`: the log line, the run's tag `off_policy.dr_warning`, `models show`, the
report): a guess, not evidence. Two measures, both from the weights: `matched_slots` and
their ESS in answers, and `support`, the mean weight over the slots. A slot's weight has
expectation 1 where the policy could show the candidate's item there and 0 where it never
could (sum over the logged item a of P(a) 1[a = t] / P(t)), so the mean weight estimates the
share of the candidate's slots that the correction reaches; on the rest DR is q alone, right
only if q is (with `clip`, a capped weight reaches min(1, clip * p) of its slot, and the
support says that too). DR is marked below `min_ess` effective answers or below
`min_support` (evaluation.off_policy_min_ess and off_policy_min_support). The defaults come
from the simulation of benchmarks/offpolicy.py (benchmarks/README.md): DR's bias is the
unreached share times the model's error there, which no log measures, and its interval held
the truth in 19 of 20 seeds at a support of 0.90, 17 at 0.84 and 7 at 0.75, hence 0.85; below
about 100 effective answers the support itself is too noisy to tell a candidate within the
log's support from one a sixth outside it.

Point values use obp's arithmetic (per-slot terms, then their mean), so they equal
`obp.ope` 0.4.1's InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting,
DoublyRobust and SelfNormalizedDoublyRobust on the same arrays to the last digit
(tests/learn/test_offpolicy_obp.py feeds both); obp 0.4.1 has no clipping, so a clipped
weight min(1/p, clip) is fed to it as the propensity max(p, 1/clip). Where an estimate or a
bound falls outside [0, 1] (DR and SNDR can: the correction w * (c - q) is negative where
matching slots went unclicked; IPS can pass 1 with large weights), it is moved to the nearer
end: a click-through lies in [0, 1], so the move only brings a value nearer the truth, and
an interval cut to [0, 1] holds the truth whenever the whole one did. obp's raw value is not.

The exploration of sluice.serve.exploration supports, at position k, the champion's k-th item
and its pool: a candidate that puts an item elsewhere is weighed 0 there (IPS reads it as no
click); `match_rate` says how much of the log matches the candidate at all.

Interleaved answers (experiments of kind interleaving) are not read: their model_version names
both arms' versions (`3+4`), never the champion's alone, and their propensities are team
draft's (sluice.serve.arms), a policy that mixes two models rather than the champion's.

Written in numpy rather than with `obp`: obp needs torch and matplotlib, is pinned to old
releases and has no release since 2023; these estimators are a few lines each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from sluice.learn.reward import REWARD_MODEL, RewardSlots
from sluice.vocabulary import MODEL_NON_PERSONALIZED, MODEL_PERSONALIZED
from sluice.warehouse.engine import MissingTable, Warehouse, as_warehouse

if TYPE_CHECKING:
    from sluice.learn.matrix import InteractionMatrix
    from sluice.learn.model_base import Model

MIN_ESS = 100.0  # effective answers below which an estimate is a small sample (default)
MIN_SUPPORT = 0.85  # share of the candidate's slots DR's correction must reach (default)
BOOTSTRAPS = 500
LEVEL = 0.95
BATCH = 1024  # users scored at once
ESTIMATORS = ("ips", "snips", "dr", "sndr")


def log(warehouse: Warehouse | Path, tenant: str, champion_version: str | None, model: Model,
        train: InteractionMatrix, say: Callable[[str], None],
        clip: float | None = None, min_ess: float = MIN_ESS,
        min_support: float = MIN_SUPPORT) -> dict[str, Any] | None:
    """Inside the train run: the candidate's estimates as metrics `off_policy.*` beside the
    offline ones (a small effective sample is marked, not hidden), the reward model of DR as
    the tag `off_policy.reward_model`, and, where DR rests on that model, the words saying
    so as the tag `off_policy.dr_warning`."""
    found = for_candidate(warehouse, tenant, champion_version, model, train, min_ess=min_ess,
                          clip=clip, min_support=min_support)
    if found is None:
        return None
    mlflow.log_metrics({f"off_policy.{k}": float(v) for k, v in found.items()})
    if "snips_ctr" not in found:
        say(f"[{tenant}] off-policy on champion v{champion_version}'s {found['answers']:,} "
            "explored answers: no logged slot matches the candidate's ranking, no estimate")
        return found
    mlflow.set_tag("off_policy.reward_model", REWARD_MODEL)
    warning = dr_warning(found)
    if warning:
        mlflow.set_tag("off_policy.dr_warning", warning)
    say(f"[{tenant}] off-policy on champion v{champion_version}'s {found['answers']:,} explored "
        f"answers: {summary(found)}")
    return found


def summary(found: dict[str, Any]) -> str:
    """One line of a candidate's estimates: SNIPS and DR with their intervals, the effective
    sample in answers and in slots, and the clip in force (how much of the weight it cut)."""
    def shown(name: str) -> str:
        key = f"{name}_ctr"
        return (f"{name.upper()} CTR {found[key]:.4f} [{found[key + '_low']:.4f}, "
                f"{found[key + '_high']:.4f}]")

    mark = " (small effective sample)" if found["small_sample"] else ""
    warning = dr_warning(found)
    return (f"{shown('snips')}, {shown('dr')}, ESS {found['ess']:.0f} answers / "
            f"{found['ess_slots']:.0f} slots{mark}; {clip_text(found)}"
            + (f"; {warning}" if warning else ""))


def dr_warning(found: dict[str, Any]) -> str | None:
    """Words for a DR (and SNDR) that rests on the reward model (`dr_on_model`), or None:
    how many logged slots match, their effective sample and the share of the candidate's
    slots they correct. None for an estimate from before the mark, or without DR."""
    if not found.get("dr_on_model") or "dr_ctr" not in found:
        return None
    matched, ess = int(found["matched_slots"]), float(found["ess"])
    min_ess, min_support = (float(found.get(k, d)) for k, d in (("min_ess", MIN_ESS),
                                                                 ("min_support", MIN_SUPPORT)))
    support = min(float(found["support"]), 1.0)
    said = (f"only {matched:,} logged slots match (ESS {ess:.0f} answers, under the minimum "
            f"{min_ess:g})" if ess < min_ess else
            f"{matched:,} logged slots match (ESS {ess:.0f} answers)")
    said += (f" and they correct about {support:.1%}" if support < 0.1 else
             f" and they correct about {support:.0%}") + " of the candidate's slots"
    if support < min_support:
        said += f" (under the minimum {min_support:.0%}: the rest is the model's guess)"
    return (f"DR rests on the reward model: {said}; treat DR and SNDR (DR "
            f"{found['dr_ctr']:.4f}, the model's guess alone {found['dm_ctr']:.4f}) as a "
            "guess, not as evidence")


def clip_text(found: dict[str, Any]) -> str:
    """The clip in force, as the report and the run's log line say it."""
    if "clip" not in found:
        return "weights not clipped"
    return (f"weights clipped at {found['clip']:g} ({found['clipped_share']:.1%} of matching "
            "slots capped)")


def for_candidate(warehouse: Warehouse | Path, tenant: str, champion_version: str | None,
                  model: Model, train: InteractionMatrix, min_ess: float = MIN_ESS,
                  clip: float | None = None,
                  min_support: float = MIN_SUPPORT) -> dict[str, Any] | None:
    """The candidate's estimates on the explored answers the champion served; None when
    there is no champion or it served no answer with exploration."""
    if champion_version is None:
        return None
    logged = load_logged(warehouse, tenant, champion_version)
    if logged.empty:
        return None
    return estimate(logged, candidate_targets(model, train, logged), min_ess=min_ess, clip=clip,
                    min_support=min_support)


def load_logged(warehouse: Warehouse | Path, tenant: str, model_version: str) -> pd.DataFrame:
    """The model-tier slots of the answers `model_version` served with exploration."""
    try:
        return as_warehouse(warehouse).frame(
            "select recommendation_id, user_id, position, item_id, propensity, is_clicked "
            "from marts.slot_propensities where tenant = ? and model_version = ? "
            "and exploration_pool > 0 and recommendation_source in (?, ?) "
            "order by recommendation_id, position",
            [tenant, model_version, MODEL_PERSONALIZED, MODEL_NON_PERSONALIZED])
    except MissingTable:  # a warehouse built before the mart existed
        return pd.DataFrame()


def candidate_targets(model: Model, train: InteractionMatrix, logged: pd.DataFrame) -> pd.Series:
    """The candidate's item at each logged slot's position in its own ranking of the user's
    unseen items; None where it does not know the user (weighed 0: no estimate there)."""
    users = pd.Index(train.user_ids).get_indexer(logged["user_id"].astype(str))
    known = np.unique(users[users >= 0])
    positions = logged["position"].to_numpy(dtype=np.int64) - 1
    depth = int(positions.max()) + 1
    top = np.concatenate([model.recommend(known[s:s + BATCH], train.matrix, n=depth)
                          for s in range(0, len(known), BATCH)]) if len(known) else (
        np.empty((0, depth), dtype=np.int64))
    target = np.full(len(logged), None, dtype=object)
    seen = users >= 0
    picks = top[np.searchsorted(known, users[seen]), positions[seen]]
    target[np.flatnonzero(seen)] = np.where(picks >= 0, train.item_ids[np.maximum(picks, 0)],
                                            None)
    return pd.Series(target, index=logged.index)


def estimate(logged: pd.DataFrame, target: pd.Series, *, min_ess: float = MIN_ESS,
             bootstraps: int = BOOTSTRAPS, seed: int = 0, clip: float | None = None,
             min_support: float = MIN_SUPPORT) -> dict[str, Any]:
    """IPS, SNIPS, DR and SNDR of the candidate whose item per logged slot is `target`
    (aligned with `logged`, which has recommendation_id, position, item_id, propensity and
    is_clicked); with `clip`, each slot's weight is capped there. `seed` draws the reward
    model's halves and the bootstrap's resamples. DR is marked `dr_on_model` where its
    effective sample is below `min_ess` answers or its `support` below `min_support`."""
    if logged.empty:
        return {"slots": 0, "answers": 0, "ess": 0.0, "small_sample": True,
                "matched_slots": 0, "support": 0.0, "dr_on_model": True}
    propensity = logged["propensity"].to_numpy(dtype=float)
    if not np.all((propensity > 0) & (propensity <= 1)):
        raise ValueError("propensities must be in (0, 1]: rebuild the marts (dbt tests them)")
    match = logged["item_id"].to_numpy() == target.to_numpy()
    weight, clipped = _clipped(match / propensity, match, clip)
    click = logged["is_clicked"].to_numpy(dtype=float)
    answers, group = np.unique(logged["recommendation_id"].to_numpy(), return_inverse=True)
    per_answer = len(logged) / len(answers)
    ess, ess_slots = (_ess(np.bincount(group, weights=weight)), _ess(weight)) if (
        weight.any()) else (0.0, 0.0)
    support = float(weight.mean())  # E[w] per slot: 1 where the log can show its item, else 0
    out = {"slots": len(logged), "answers": len(answers), "slots_per_answer": per_answer,
           "match_rate": float(match.mean()), "logged_ctr": float(click.mean()),
           "ess": ess, "ess_slots": ess_slots, "small_sample": ess < min_ess,
           "matched_slots": int(match.sum()), "support": support, "min_ess": float(min_ess),
           "min_support": float(min_support),
           "dr_on_model": ess < min_ess or support < min_support, **clipped}
    if not weight.any():  # nothing the candidate would have shown was logged: no estimate
        return out
    slots = RewardSlots.of(logged, target, seed)
    q_logged, q_target = slots.fit(np.ones(len(logged)))
    # point values as obp computes them: per-slot terms, then their mean
    correction = weight * (click - q_logged)
    out |= {"ips_ctr": float((click * weight).mean()),
            "snips_ctr": float((click * weight / weight.mean()).mean()),
            "dr_ctr": float((q_target + correction).mean()),
            "sndr_ctr": float((q_target + correction / weight.mean()).mean()),
            "dm_ctr": float(q_target.mean())}
    low, high = _bootstrap(slots, weight, group, bootstraps, seed)
    for name in ESTIMATORS:
        out[f"{name}_ctr_low"], out[f"{name}_ctr_high"] = low[name], high[name]
        for tail in ("", "_low", "_high"):  # a click-through lies in [0, 1]: see the module
            out[f"{name}_ctr{tail}"] = min(max(out[f"{name}_ctr{tail}"], 0.0), 1.0)
            out[f"{name}_clicks_per_answer{tail}"] = out[f"{name}_ctr{tail}"] * per_answer
    return out


def _clipped(weight: np.ndarray, match: np.ndarray,
             clip: float | None) -> tuple[np.ndarray, dict[str, float]]:
    """The weights capped at `clip` (if any), and the clip with the share of matching slots
    it capped."""
    if clip is None:
        return weight, {}
    capped = weight > clip
    return np.minimum(weight, clip), {
        "clip": float(clip),
        "clipped_share": float(capped.sum() / match.sum()) if match.any() else 0.0}


def _ess(weights: np.ndarray) -> float:
    """Kish's effective sample size of `weights` (per answer, or per slot)."""
    return float(weights.sum() ** 2 / (weights ** 2).sum())


def _values(totals: np.ndarray) -> dict[str, np.ndarray]:
    """Each estimator from (resample, [sum w*c, sum w, slots, sum q_t, sum w*(c - q)])
    totals: NaN for the self-normalised ones where sum w is 0."""
    weighted, weights, slots, model, correction = (totals[:, i] for i in range(5))

    def per_weight(x: np.ndarray) -> np.ndarray:
        return np.divide(x, weights, out=np.full_like(x, np.nan), where=weights > 0)

    return {"ips": weighted / slots, "snips": per_weight(weighted),
            "dr": (model + correction) / slots, "sndr": model / slots + per_weight(correction)}


def _bootstrap(slots: RewardSlots, weight: np.ndarray, group: np.ndarray, bootstraps: int,
               seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Percentile intervals of each estimator over answers drawn with replacement; the
    reward model is refitted on each resample (its halves kept), so DR's interval carries
    the model's own sampling error, not only the clicks'."""
    rng = np.random.default_rng(seed)
    n = int(group.max()) + 1
    weighted = weight * slots.click
    totals = []
    for start in range(0, bootstraps, 50):  # in chunks: memory stays at 50 x answers
        counts = rng.multinomial(n, np.full(n, 1 / n), size=min(50, bootstraps - start))
        for drawn in counts:
            times = drawn[group].astype(float)
            q_logged, q_target = slots.fit(times)
            totals.append([times @ weighted, times @ weight, times.sum(), times @ q_target,
                           times @ (weight * (slots.click - q_logged))])
    tails = [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100]
    low, high = {}, {}
    for name, values in _values(np.array(totals)).items():
        q = np.nanpercentile(values, tails)
        low[name], high[name] = float(q[0]), float(q[1])
    return low, high
