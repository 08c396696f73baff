"""Serving experiments: every arm's model loaded (and reloaded when its version or alias
moves), each answer made by the visitor's arm, or for interleaving merged from both arms by
team draft with every slot credited to the arm that placed it."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable

from sluice.bundle import ModelBundle
from sluice.experiments import INTERLEAVED, Arm, Experiment
from sluice.learn import registry
from sluice.serve.answers import Answer, RecommendationRequest, Slot, new_id
from sluice.serve.model import LoadedModel
from sluice.serve.recommender import Recommender
from sluice.settings import Settings

log = logging.getLogger(__name__)


class ArmModels:
    """The recommenders of arms that are not the tenant's champion, by (tenant, model ref)."""

    def __init__(self, settings: Settings, build: Callable[[str, LoadedModel], Recommender]):
        self.settings, self._build = settings, build
        self._served: dict[tuple[str, str], Recommender] = {}
        self._missing: set[tuple[str, str]] = set()  # said once until the reference exists

    def get(self, tenant: str, ref: str) -> Recommender | None:
        return self._served.get((tenant, ref))

    def refresh(self, experiments: list[Experiment]) -> None:
        """Load each arm model that is new or whose reference moved; drop unused ones."""
        wanted = {(e.tenant, a.model) for e in experiments for a in e.arms
                  if a.model != registry.CHAMPION}
        for key in set(self._served) - wanted:
            self._served.pop(key)
        for tenant, ref in sorted(wanted):
            try:
                self._poll(tenant, ref)
            except Exception as exc:  # one arm failing to load must not stop the others
                registry.reset_connections(self.settings.mlflow_tracking_uri)
                log.warning("experiment arm %s of tenant %s could not be loaded: %s",
                            ref, tenant, str(exc).splitlines()[0][:300] if str(exc) else exc)

    def _poll(self, tenant: str, ref: str) -> None:
        name = self.settings.registered_model_name(tenant)
        c = registry.client(self.settings.mlflow_tracking_uri)
        version = registry.version_of(c, name, ref)
        if version is None:  # its experiment is answered outside until it exists: say so
            if (tenant, ref) not in self._missing:
                self._missing.add((tenant, ref))
                log.warning("experiment arm %s of tenant %s: %s has no such version or alias; "
                            "the experiment answers outside until it does", ref, tenant, name)
            return
        self._missing.discard((tenant, ref))
        served = self._served.get((tenant, ref))
        if served is not None and served.model is not None and (
                served.model.version == str(version.version)):
            return
        target = registry.local_copy(self.settings.mlflow_tracking_uri, name,
                                     str(version.version), self.settings.home / "serving-models")
        try:
            bundle = ModelBundle.load(target)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)  # download again at the next poll
            raise
        serving = self.settings.app.serving
        model = LoadedModel(bundle, str(version.version), serving.ranking_cache_size,
                            serving.ann)
        self._served[(tenant, ref)] = self._build(tenant, model)
        log.info("experiment arm %s of %s: v%s", ref, name, version.version)


def arm_answer(exp: Experiment, request: RecommendationRequest,
               recommender: Callable[[Arm], Recommender | None], scan: bool) -> Answer | None:
    """The experiment's answer; None while any arm's model is not loaded: the caller answers
    outside the experiment for every visitor, whichever arm they are assigned (answering only
    the loaded arms' visitors within it would credit those arms with answers the others did
    not get: a sample-ratio mismatch between an experiment's creation, or an arm's reload
    failing, and the next model poll)."""
    loaded = [recommender(arm) for arm in exp.arms]
    if any(found is None for found in loaded):
        return None
    if exp.kind == "interleaving":
        first, second = loaded
        assert first is not None and second is not None
        a = first.recommend(request, scan=scan)
        b = second.recommend(request, scan=scan)
        return team_draft(exp, a, b, request.num_results)
    arm = exp.assign(request.user_id, request.session_id)
    found = loaded[exp.arms.index(arm)]
    assert found is not None
    answer = found.recommend(request, scan=scan)
    answer.experiment, answer.arm, answer.arm_share = exp.id, arm.name, arm.share
    answer.unit = exp.unit
    for slot in answer.items:
        slot.arm = arm.name
    return answer


def team_draft(exp: Experiment, a: Answer, b: Answer, size: int,
               coin: Callable[[], float] | None = None) -> Answer:
    """Team-draft interleaving (Radlinski et al. 2008): the arm with fewer picks (a coin
    breaks ties) adds its best item not yet taken; each slot keeps its source and its arm,
    and as propensity the probability over the coin flips that this item lands at this
    position (draft_propensities) times its propensity within its arm's answer."""
    answer_id = new_id()
    flip = coin or random.Random(f"{exp.id}:{answer_id}").random
    lists = (a.items, b.items)
    chance = draft_propensities([s.item_id for s in a.items], [s.item_id for s in b.items],
                                size)
    taken: set[str] = set()
    picks, cursor = [0, 0], [0, 0]
    slots: list[Slot] = []
    while len(slots) < size:
        order = [0, 1] if picks[0] < picks[1] or (
            picks[0] == picks[1] and flip() < 0.5) else [1, 0]
        for team in order:
            slot = _next(lists[team], cursor, team, taken)
            if slot is not None:
                position = len(slots) + 1
                slots.append(Slot(slot.item_id, slot.score, position,
                                  slot.recommendation_source, arm=exp.arms[team].name,
                                  propensity=chance[position, slot.item_id] * slot.propensity))
                picks[team] += 1
                break
        else:
            break  # both lists exhausted
    versions = f"{a.model_version or ''}+{b.model_version or ''}"
    return Answer(answer_id, versions, a.template, slots, experiment=exp.id, arm=INTERLEAVED,
                  unit=exp.unit)


def _next(items: list[Slot], cursor: list[int], team: int, taken: set[str]) -> Slot | None:
    while cursor[team] < len(items):
        slot = items[cursor[team]]
        cursor[team] += 1
        if slot.item_id not in taken:
            taken.add(slot.item_id)
            return slot
    return None


def draft_propensities(a: list[str], b: list[str], size: int) -> dict[tuple[int, str], float]:
    """P(item at position) over team draft's coin flips, for the arms' rankings `a` and `b`.

    Exact, by following every state the draft can be in: (cursor in a, cursor in b, picks
    of a, picks of b) and its probability, one slot at a time; the items taken are those
    before the cursors, so the state says everything. At most size^2 states per slot.
    (An arm's own exploration makes its ranking random too: team_draft multiplies by the
    slot's propensity within its arm, exact for the explored slot's own draw only.)"""
    lists = (a, b)
    states: dict[tuple[int, int, int, int], float] = {(0, 0, 0, 0): 1.0}
    found: dict[tuple[int, str], float] = {}
    for position in range(1, size + 1):
        following: dict[tuple[int, int, int, int], float] = {}
        for (ca, cb, pa, pb), mass in states.items():
            orders = ([((0, 1), mass)] if pa < pb else [((1, 0), mass)] if pa > pb else
                      [((0, 1), mass / 2), ((1, 0), mass / 2)])
            taken = set(a[:ca]) | set(b[:cb])
            for order, share in orders:
                for team in order:
                    cursor = ca if team == 0 else cb
                    ids = lists[team]
                    while cursor < len(ids) and ids[cursor] in taken:
                        cursor += 1
                    if cursor < len(ids):
                        item = ids[cursor]
                        found[position, item] = found.get((position, item), 0.0) + share
                        key = ((cursor + 1, cb, pa + 1, pb) if team == 0 else
                               (ca, cursor + 1, pa, pb + 1))
                        following[key] = following.get(key, 0.0) + share
                        break
        states = following
    return found
