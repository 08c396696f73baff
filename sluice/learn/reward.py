"""DR's reward model for sluice.learn.offpolicy: a click probability q(a, k) of item a at
position k of a logged answer, fitted on the logged slots and never on a slot's own click.

The reward model (`REWARD_MODEL`) is clicks over expected clicks (COEC), the position-based
click model fitted in one pass, with one term that knows the user: q(a, k) = ctr_k * seg_s *
lift_a, with ctr_k the logged click-through at position k; s whether the candidate shows
item a to this user at all (at any position of its answer: its own judgement of the user's
taste, the same whatever the policy drew), seg_s = (clicks_s + m) / (expected_s + m) with
expected_s summing ctr_k over the slots of s; and lift_a = (clicks_a + m) / (expected_a + m),
where expected_a sums ctr_k * seg_s over the slots that showed a and m = `REWARD_PRIOR`
expected clicks shrinks an item seen rarely towards lift 1 (an item never logged gets
ctr_k * seg_s). The candidate's own item at a slot is one it shows (s = 1). q of the
candidate's item is thus a fact of the user, the item and the position, never of the item the
policy drew there, which DR's unbiasedness needs (the logged `explored` flag, say, would not
do: where the policy explored, the champion's item it displaced is not in the log). Where
the candidate's items are clicked like any other, seg_1 is about 1 and this is COEC by item
and position; on benchmarks/offpolicy.py it brings DM from 0.087 to 0.022 of the truth for the
worse candidate and DR's RMSE from 0.0174 to 0.0152 (benchmarks/README.md). It reads the log
and the candidate's answers (no model scores, so it works for every candidate family), and it
is cross-fitted:
the answers are split in two halves at random (`seed`), and each half's slots get the q
fitted on the other half only, so no slot's own click is in its q (with fewer than two
answers q is 0 and DR is IPS). The bootstrap refits q on each resample of the answers (the
halves kept), so DR's interval carries the model's sampling error too (obp's holds q fixed);
it cannot carry the model's misspecification: where few slots match, DR is mostly the
model's guess (compare `dm_ctr`), and the ESS says how few slots correct it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REWARD_PRIOR = 2.0  # expected clicks of prior weight on an item's COEC lift of 1
REWARD_MODEL = ("COEC per item, position and whether the candidate shows the item to the user "
                f"(clicks over expected clicks, prior {REWARD_PRIOR:g}), cross-fitted on two "
                "halves of the answers")


def reward_model(logged: pd.DataFrame, target: pd.Series,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The cross-fitted COEC click probability at each logged slot of its logged item and of
    the candidate's item there (0 where the candidate has none): each half of the answers
    gets the model fitted on the other half (the module's docstring)."""
    return RewardSlots.of(logged, target, seed).fit(np.ones(len(logged)))


@dataclass(frozen=True)
class RewardSlots:
    """The logged slots as the reward model reads them: position and item codes (-1: the
    candidate has no item), clicks, and the half of the answers each slot belongs to."""

    position: np.ndarray
    shown: np.ndarray
    wanted: np.ndarray
    click: np.ndarray
    half: np.ndarray
    items: int
    segment: np.ndarray
    wanted_segment: np.ndarray

    @classmethod
    def of(cls, logged: pd.DataFrame, target: pd.Series, seed: int) -> RewardSlots:
        n = len(logged)
        position, _ = pd.factorize(logged["position"].to_numpy())
        codes, _ = pd.factorize(np.concatenate([logged["item_id"].to_numpy(dtype=object),
                                                target.to_numpy(dtype=object)]))
        _, group = np.unique(logged["recommendation_id"].to_numpy(), return_inverse=True)
        half = np.random.default_rng(seed).permutation(group.max() + 1)[group] % 2
        shown, wanted = codes[:n], codes[n:]
        # whether the candidate shows the logged item anywhere in its answer for this user
        # (1) or not (0): a fact of the user and the candidate, whatever the policy drew
        items = int(codes.max()) + 2
        listed = (group * items + wanted)[wanted >= 0]
        segment = np.isin(group * items + shown, listed).astype(np.int64)
        return cls(position, shown, wanted, logged["is_clicked"].to_numpy(dtype=float),
                   half, int(codes.max()) + 1, segment, np.ones(n, dtype=np.int64))

    def fit(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q at each slot of its logged item and of the candidate's, each half's from the
        other half, every slot counted `times` (1, or its answer's draws in a resample)."""
        position, shown, click = self.position, self.shown, self.click
        ctr = np.zeros((2, int(position.max()) + 1))
        lift = np.zeros((2, self.items + 1))  # the last: no candidate item, q 0
        seg = np.ones((2, 2))  # items the candidate does not show this user, and those it does
        for part in (0, 1):
            m = times * (self.half != part)  # the other half, each slot as often as drawn
            slots = np.bincount(position, weights=m, minlength=ctr.shape[1])
            if not slots.any():  # nothing held out to fit on (one answer): q is 0, DR is IPS
                continue
            clicks = np.bincount(position, weights=m * click, minlength=ctr.shape[1])
            ctr[part] = np.divide(clicks, slots, out=np.full(len(slots), clicks.sum() /
                                                             slots.sum()), where=slots > 0)
            base = m * ctr[part][position]
            seg[part, :2] = (np.bincount(self.segment, weights=m * click, minlength=2)
                             + REWARD_PRIOR) / (np.bincount(self.segment, weights=base,
                                                            minlength=2) + REWARD_PRIOR)
            expected = np.bincount(shown, weights=base * seg[part][self.segment],
                                   minlength=self.items)
            lift[part, :-1] = (np.bincount(shown, weights=m * click, minlength=self.items)
                               + REWARD_PRIOR) / (expected + REWARD_PRIOR)
        at = ctr[self.half, position]
        return (np.minimum(at * seg[self.half, self.segment] * lift[self.half, shown], 1.0),
                np.minimum(at * seg[self.half, self.wanted_segment]
                           * lift[self.half, self.wanted], 1.0))
