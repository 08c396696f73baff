"""The report's online sections: each experiment (arms, units, exposure, the metric per arm
with its interval, the sample-ratio check, interleaving's preference, the decision) and the
off-policy estimates that training logged per model version (IPS, SNIPS, DR and SNDR with
intervals, DR's reward model, the effective sample in answers and in slots, the weight clip in
force and the share of matching slots it capped, match rate, and whether DR rests on its
reward model)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from sluice.analytics.charts import LAG, Section, fit_days, mark, query, registered, svg, table
from sluice.analytics.experiments import UNIT_MEANING, Decision, decide
from sluice.experiments import Experiment
from sluice.learn.offpolicy import ESTIMATORS, dr_warning
from sluice.warehouse.engine import DuckDBWarehouse, Warehouse, as_warehouse

NO_EXPERIMENTS = ("no experiments for this tenant: `sluice experiments create` (or POST "
                  "/admin/experiments) starts one; its arms, effect and decision show here once "
                  "its answers are loaded and transformed")
NO_ESTIMATES = ("no version has off-policy estimates yet: they are computed by `sluice train` "
                "from answers the champion served with exploration (a template's "
                "`exploration.share` above 0), once those answers are loaded and transformed")


def experiment_sections(warehouse: Warehouse | Path, experiments: list[Experiment],
                        min_units: int = 100) -> list[Section]:
    """One section per experiment that has started (running, stopped or ended)."""
    now = int(time.time() * 1000)
    started = sorted((e for e in experiments if e.start_ms <= now), key=lambda e: e.id)
    if not started:
        return [Section("Experiments", NO_EXPERIMENTS, None)]
    engine = as_warehouse(warehouse)
    if not isinstance(engine, DuckDBWarehouse):  # the decisions' SQL is DuckDB's for now
        return [Section("Experiments", f"{len(started)} experiments; their decisions are read "
                        f"from the embedded DuckDB warehouse only, not from {engine.engine} yet: "
                        "run `sluice experiments decide` on a DuckDB home", None)]
    return [_experiment(engine.path, exp, min_units, now) for exp in started]


def _status(exp: Experiment, now: int) -> str:
    if exp.running(now):
        return "running"
    ended = min(t for t in (exp.end_ms, exp.stopped_ms) if t is not None)
    return f"{'stopped' if ended == exp.stopped_ms else 'ended'} {_day(ended)}"


def _day(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M} UTC"


def _experiment(warehouse: Path, exp: Experiment, min_units: int, now: int) -> Section:
    title = f"Experiment {exp.id} ({exp.kind}, {_status(exp, now)})"
    arms = _arm_rows(warehouse, exp)
    daily = query(warehouse, "select arm, served_date, " + _rate(exp) + " as value from "
                  "marts.experiment_daily where tenant = ? and experiment = ? order by 2",
                  [exp.tenant, exp.id])
    try:
        decision: Decision | None = decide(warehouse, exp, min_units)
    except Exception:  # the result marts do not exist yet: said below
        decision = None
    header = ["arm", "model", "share", "units", "answers", "slots", "clicks",
              f"{_measure(exp)} [95% CI]"]
    rows = [[a, *arms.loc[a, header[1:7]].tolist(), arms.loc[a, "shown"]] for a in arms.index]
    if arms["answers"].sum() == 0:
        note = (f"tenant {exp.tenant}, template {exp.template}: no answers of this experiment "
                f"in the marts yet; {LAG}")
        return Section(title, note, None, table(header, rows))
    summary = table(["decision", "value"], _summary(decision))
    return Section(title, f"tenant {exp.tenant}, template {exp.template}, started "
                   f"{_day(exp.start_ms)}; left: {_measure(exp)} per arm with its 95% interval, "
                   "right: per day", _plot(exp, arms, daily), table(header, rows) + summary)


def _rate(exp: Experiment) -> str:
    """The experiment's metric as a column of marts.experiment_daily (interleaving: CTR)."""
    return exp.metric if exp.kind == "ab" else "click_through_rate"


def _measure(exp: Experiment) -> str:
    return exp.metric if exp.kind == "ab" else ("click_through_rate of the slots it placed "
                                                "(binomial over slots)")


def _arm_rows(warehouse: Path, exp: Experiment) -> pd.DataFrame:
    """Per configured arm: its model, share, exposure and the metric with its interval."""
    totals = query(warehouse, "select arm, sum(exposures) as answers, sum(slots_served) as "
                   "slots, sum(clicks) as clicks from marts.experiment_daily where tenant = ? "
                   "and experiment = ? group by arm", [exp.tenant, exp.id])
    values = query(warehouse, "select arm, units, arm_value, ci_low, ci_high from "
                   "marts.experiment_arms where tenant = ? and experiment = ? and metric = ?",
                   [exp.tenant, exp.id, _rate(exp)])
    frame = pd.DataFrame({"arm": [a.name for a in exp.arms], "model": [a.model for a in exp.arms],
                          "share": [a.share for a in exp.arms]}).set_index("arm")
    for part in (totals, values):
        if not part.empty:
            frame = frame.join(part.set_index("arm"))
    for column in ("answers", "slots", "clicks", "units", "arm_value", "ci_low", "ci_high"):
        if column not in frame:  # no mart yet, or no row of this experiment in it
            frame[column] = float("nan")
    for column in ("answers", "slots", "clicks", "units"):
        frame[column] = frame[column].fillna(0).astype(int)
    if exp.kind == "interleaving":  # every unit sees both arms: rates over the slots placed
        frame["units"] = "both"
        rate = frame["clicks"] / frame["slots"].where(frame["slots"] > 0)
        spread = 1.959964 * (rate * (1 - rate) / frame["slots"].where(frame["slots"] > 0)) ** 0.5
        frame["arm_value"], frame["ci_low"], frame["ci_high"] = rate, rate - spread, rate + spread
    frame["shown"] = [("n/a" if pd.isna(v) else f"{v:.4f} [{lo:.4f}, {hi:.4f}]")
                      for v, lo, hi in zip(frame["arm_value"], frame["ci_low"],
                                           frame["ci_high"], strict=True)]
    return frame


def _summary(decision: Decision | None) -> list[list[Any]]:
    if decision is None:
        return [["recommendation", f"none: the result marts are not built yet; {LAG}"]]
    effect = ("n/a" if decision.difference is None else
              f"{decision.difference:+.4f} [{decision.ci_low:+.4f}, {decision.ci_high:+.4f}]")
    rows = [["unit", f"{decision.unit}: {UNIT_MEANING[decision.unit]}"],
            [f"{decision.challenger} vs {decision.control}"
             + (" (preference share - 0.5)" if decision.kind == "interleaving" else ""), effect]]
    if decision.kind == "interleaving":
        rows.append(["answers won", ", ".join(f"{a} {n}" for a, n in
                                              decision.answers_won.items())])
        rows.append(["units", decision.unit_counts()])
    else:
        rows.append(["sample ratio", "n/a" if decision.srm_passed is None else
                     f"{'passed' if decision.srm_passed else 'FAILED'} (chi-square "
                     f"{decision.chi_square:.3g}, fails above 10.83 for two arms)"])
    rows.append(["recommendation", f"{decision.recommendation}: {decision.reason}"])
    return rows


def _plot(exp: Experiment, arms: pd.DataFrame, daily: pd.DataFrame) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    drawn = arms.dropna(subset=["arm_value"])
    for n, (arm, row) in enumerate(drawn.iterrows()):
        bars = left.errorbar([n], [row["arm_value"]], fmt="o", capsize=4, label=str(arm),
                             yerr=[[row["arm_value"] - row["ci_low"]],
                                   [row["ci_high"] - row["arm_value"]]])
        mark(bars.lines[0])
    left.set_xticks(range(len(drawn)), [str(a) for a in drawn.index])
    left.set_xlim(-0.5, len(drawn) - 0.5)
    left.set_title(f"{_rate(exp)} per arm (95% CI)", fontsize=9)
    if not daily.empty:
        days = pd.DatetimeIndex(pd.to_datetime(daily["served_date"]).unique()).sort_values()
        for arm, part in daily.groupby("arm"):
            mark(right.plot(pd.to_datetime(part["served_date"]), part["value"], marker="o",
                            label=str(arm)))
        fit_days(right, days)
        if len(days) < 8:  # a short run: one readable tick per day
            right.set_xticks(list(days), [f"{d:%m-%d}" for d in days])
        right.legend(fontsize=7)
        right.tick_params(axis="x", labelrotation=30, labelsize=7)
    right.set_title(f"{_rate(exp)} per day", fontsize=9)
    return svg(fig)


def off_policy(tracking_uri: str, model_name: str) -> Section:
    """Per version with estimates: IPS, SNIPS, DR and SNDR click-through with their intervals,
    then what backs them: the effective sample in answers and slots, the clip in force, the
    matching slots and the share of the candidate's slots they correct; a DR that rests on
    its reward model is said so in its cells and in words below the tables."""
    title = "Off-policy estimates per version (on the explored answers of the champion)"
    try:
        versions, _, runs = registered(tracking_uri, model_name)
    except Exception as exc:
        return Section(title, f"registry unreadable: {exc}", None)
    found, models = [], set()
    for v in sorted(versions, key=lambda v: int(v.version)):
        data = runs.get(v.run_id)
        metrics = {k.removeprefix("off_policy."): x for k, x in (
            data.metrics.items() if data else ()) if k.startswith("off_policy.")}
        if data and metrics:
            found.append((f"v{v.version}", metrics))
            models.add(data.tags.get("off_policy.reward_model", "none (an older run: no DR)"))
    if not found:
        return Section(title, NO_ESTIMATES, None)
    estimates = table(["version", "logged CTR", *(f"{name.upper()} CTR [95% CI]"
                                                  for name in ESTIMATORS), "DM CTR"],
                      [[name, f"{m['logged_ctr']:.4f}",
                        *(_interval(m, f"{e}_ctr") + (ON_MODEL if e in ("dr", "sndr") and
                                                      dr_warning(m) else "")
                          for e in ESTIMATORS),
                        f"{m['dm_ctr']:.4f}" if "dm_ctr" in m else "n/a"] for name, m in found])
    backing = table(["version", "answers", "slots", "match rate", "matching slots",
                     "ESS (answers)", "ESS (slots)", "weight clip", "matching slots capped",
                     "DR support", "sample"],
                    [[name, int(m["answers"]), int(m["slots"]), f"{m['match_rate']:.3f}",
                      f"{m['matched_slots']:.0f}" if "matched_slots" in m else "n/a",
                      f"{m['ess']:.0f}", f"{m['ess_slots']:.0f}" if "ess_slots" in m else "n/a",
                      f"{m['clip']:g}" if "clip" in m else "none",
                      f"{m['clipped_share']:.1%}" if "clip" in m else "-",
                      f"{min(m['support'], 1.0):.0%}" if "support" in m else "n/a",
                      _sample(m)]
                     for name, m in found])
    warnings = [f"{name}: {warning}" for name, m in found if (warning := dr_warning(m))]
    return Section(title, OFF_POLICY_NOTE.format(models="; ".join(sorted(models)))
                   + "".join(f". {w}" for w in warnings), _estimates_plot(found),
                   estimates + backing)


OFF_POLICY_NOTE = (
    "each candidate's click-through per slot had it served the champion's explored answers, "
    "estimated when it was trained; a small effective sample (ESS) is marked, not hidden. DR "
    "and SNDR correct a reward model's guess (DM) with the logged clicks; reward model: "
    "{models}. DR support: the share of the candidate's slots the logged clicks correct (the "
    "mean weight); the rest is the reward model's guess alone. Below the minimum ESS or "
    "support (evaluation.off_policy_min_ess, off_policy_min_support) DR rests on the reward "
    "model and is marked so: a guess, not evidence. Weight clip: each weight 1/propensity "
    "capped there (evaluation.off_policy_clip), a narrower interval for a bias; ESS (slots) "
    "counts an answer's slots as independent, ESS (answers) is the unit the intervals "
    "resample")


ON_MODEL = " (rests on the reward model: a guess)"


def _sample(m: dict[str, float]) -> str:
    """The sample column: small, DR resting on its reward model, or ok."""
    said = ["small (below the minimum ESS)"] if m["small_sample"] else []
    if dr_warning(m):
        said.append("DR rests on the reward model")
    return "; ".join(said) or "ok"


def _interval(m: dict[str, float], key: str) -> str:
    if key not in m:  # no logged slot matched the candidate, or a run from before DR
        return ("n/a (no logged slot matches)" if m.get("match_rate", 0) == 0 else
                "n/a (not computed by this run)")
    return f"{m[key]:.4f} [{m[key + '_low']:.4f}, {m[key + '_high']:.4f}]"


def _estimates_plot(found: list[tuple[str, dict[str, float]]]) -> str:
    fig, ax = plt.subplots(figsize=(9, 3))
    offsets = dict(zip(ESTIMATORS, (-0.21, -0.07, 0.07, 0.21), strict=True))
    for c, (name, offset) in enumerate(offsets.items()):
        key = f"{name}_ctr"
        for n, (_, m) in enumerate(found):
            if key not in m:
                continue
            guess = name in ("dr", "sndr") and dr_warning(m) is not None
            bars = ax.errorbar([n + offset], [m[key]], fmt="o", capsize=3, color=f"C{c}",
                               yerr=[[max(m[key] - m[key + "_low"], 0.0)],
                                     [max(m[key + "_high"] - m[key], 0.0)]],
                               markerfacecolor="none" if guess else f"C{c}",
                               label=name.upper() if n == 0 else None)
            mark(bars.lines[0])
    for n, (_, m) in enumerate(found):
        mark(ax.plot([n - 0.3, n + 0.3], [m["logged_ctr"]] * 2, color="grey", linewidth=1,
                     label="logged CTR" if n == 0 else None))
    ax.set_xticks(range(len(found)), [name for name, _ in found])
    ax.set_xlim(-0.5, len(found) - 0.5)
    ax.set_ylabel("click-through per slot")
    if any(dr_warning(m) for _, m in found):
        ax.set_title("hollow: DR or SNDR resting on the reward model (a guess)", fontsize=8)
    ax.legend(fontsize=8)
    return svg(fig)
