"""Exploration in the model tier: a share of its slots go to items drawn with a known
probability, and every slot carries that probability (its propensity) for off-policy estimates.

The policy, per answer, over the model's candidates that pass the filters (best first):
the first n are the greedy list g_1..g_n (what the tier serves without exploration), the next
m >= n are the exploration pool. Each position k is explored on its own with probability
`share`; explored positions take items drawn uniformly from the pool without replacement.
So, exactly, the probability that the policy put

- g_k at position k is 1 - share (no other greedy item can land there),
- a pool item at position k is share / m (each draw of a uniform draw without replacement is
  uniform over the pool),

and at every position the outcomes sum to one: (1 - share) + m * share / m. With a pool
shorter than n there is no exploration in that answer (every slot propensity 1, pool 0).
"""

from __future__ import annotations

import random

Candidates = list[tuple[str, float]]


Placed = tuple[str, float, float, bool]  # item id, score, propensity, explored


def explore(eligible: Candidates, n: int, share: float, rng: random.Random) -> tuple[
        list[Placed], int]:
    """The n slots of the model tier from its `eligible` candidates (best first, filtered),
    and the size of the pool explored from (0: none, then every propensity is 1)."""
    greedy, pool = eligible[:n], eligible[n:2 * n]
    if share <= 0 or not greedy or len(pool) < len(greedy):
        return [(i, s, 1.0, False) for i, s in greedy], 0
    draw = rng.random
    positions = [k for k in range(len(greedy)) if draw() < share]
    kept, drawn = 1.0 - share, share / len(pool)
    placed: list[Placed] = [(item_id, score, kept, False) for item_id, score in greedy]
    for k, (item_id, score) in zip(positions, rng.sample(pool, len(positions)), strict=True):
        placed[k] = (item_id, score, drawn, True)  # the greedy item there is not served
    return placed, len(pool)
