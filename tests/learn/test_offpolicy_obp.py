"""Sluice's IPS, SNIPS, DR and SNDR against obp 0.4.1's (obp.ope) on identical arrays.

obp is installed by `make install` from tests/reference-requirements.txt with --no-deps: its
declared torch and seaborn are not here. Its numpy estimators need neither: obp.ope.estimators
and obp.utils are loaded alone (obp.ope's __init__ would import its plots, hence seaborn), and
`torch`, which they import for annotations and their tensor methods, is a module holding only
a `Tensor` class where torch is not installed. The numpy path checks `isinstance(x,
torch.Tensor)` at most, which a real ndarray never is."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sluice.learn.offpolicy import estimate
from sluice.learn.reward import reward_model
from tests.learn.test_offpolicy import simulate


def _obp() -> types.ModuleType:
    """obp.ope.estimators, imported without obp.ope's __init__."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        torch = types.ModuleType("torch")
        torch.Tensor = type("Tensor", (), {})  # type: ignore[attr-defined]
        sys.modules["torch"] = torch
    spec = importlib.util.find_spec("obp")
    assert spec is not None and spec.origin, (
        "obp 0.4.1 is missing: `make install` installs tests/reference-requirements.txt")
    import obp

    assert obp.__version__ == "0.4.1"
    if "obp.ope" not in sys.modules:
        package = types.ModuleType("obp.ope")
        package.__path__ = [str(Path(spec.origin).parent / "ope")]
        sys.modules["obp.ope"] = package
    return importlib.import_module("obp.ope.estimators")


def _obp_inputs(logged: pd.DataFrame, target: pd.Series, q_logged: np.ndarray,
                q_target: np.ndarray, clip: float | None) -> dict[str, np.ndarray]:
    """obp's arrays for the same slots: an action per item, one more for "no item" (a slot
    the candidate cannot fill: q 0), a deterministic action_dist, and the reward model's
    values at each slot's logged and candidate item."""
    n = len(logged)
    codes, items = pd.factorize(np.concatenate([logged["item_id"].to_numpy(dtype=object),
                                                target.to_numpy(dtype=object)]))
    none = len(items)
    action, wanted = codes[:n], np.where(codes[n:] < 0, none, codes[n:])
    position = logged["position"].to_numpy(dtype=np.int64) - 1
    rows = np.arange(n)
    dist = np.zeros((n, none + 1, int(position.max()) + 1))
    dist[:, none, :] = 1.0  # at the other positions of the round: no item
    dist[rows, none, position] = 0.0
    dist[rows, wanted, position] = 1.0
    q = np.zeros_like(dist)
    q[rows, action, position] = q_logged
    q[rows, wanted, position] = q_target
    pscore = logged["propensity"].to_numpy(dtype=float)
    if clip is not None:  # obp 0.4.1 has no clipping: min(1/p, clip) is 1/max(p, 1/clip)
        pscore = np.maximum(pscore, 1 / clip)
    return {"reward": logged["is_clicked"].to_numpy(dtype=float), "action": action,
            "position": position, "pscore": pscore, "action_dist": dist,
            "estimated_rewards_by_reg_model": q}


@pytest.mark.parametrize("clip", [None, 8.0])  # a power of two: 1 / (1 / clip) is clip exactly
def test_every_estimator_equals_obp_to_the_last_digit(clip):
    est = _obp()
    logged, targets, _ = simulate(5)
    target = targets["better"].astype(object)
    target[::37] = None  # users the candidate does not know: no item there
    found = estimate(logged, target, clip=clip, seed=5)
    q_logged, q_target = reward_model(logged, target, seed=5)
    matched = logged["item_id"].to_numpy() == target.to_numpy()
    # the one model: the candidate's item is the logged one where they match
    assert np.array_equal(q_logged[matched], q_target[matched])
    assert 0 < q_target.min(initial=1, where=target.notna().to_numpy()) and q_logged.max() < 1
    assert np.all(q_target[target.isna().to_numpy()] == 0)
    inputs = _obp_inputs(logged, target, q_logged, q_target, clip)
    plain = {k: v for k, v in inputs.items() if k != "estimated_rewards_by_reg_model"}
    theirs = {"ips_ctr": est.InverseProbabilityWeighting().estimate_policy_value(**plain),
              "snips_ctr": est.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(
                  **plain),
              "dr_ctr": est.DoublyRobust().estimate_policy_value(**inputs),
              "sndr_ctr": est.SelfNormalizedDoublyRobust().estimate_policy_value(**inputs),
              "dm_ctr": est.DirectMethod().estimate_policy_value(
                  position=inputs["position"], action_dist=inputs["action_dist"],
                  estimated_rewards_by_reg_model=inputs["estimated_rewards_by_reg_model"])}
    assert {k: found[k] for k in theirs} == {k: float(v) for k, v in theirs.items()}
    # and they are five different numbers: a mix-up of two would not pass unseen
    assert len(set(theirs.values())) == 5
    if clip is not None:
        assert 0 < found["clipped_share"] < 1
    # obp's interval resamples slots, Sluice's answers: not equal, both around the value
    interval = est.DoublyRobust().estimate_interval(**inputs, n_bootstrap_samples=500,
                                                    random_state=0)
    assert interval["95.0% CI (lower)"] < found["dr_ctr"] < interval["95.0% CI (upper)"]
    assert found["dr_ctr_low"] < found["dr_ctr"] < found["dr_ctr_high"]
