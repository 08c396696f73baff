"""Reading an experiment's result marts into a decision: effect with its interval, the
sample-ratio check, and what to do (keep running, ship the challenger, stop).

The first arm of an experiment is its control, the second its challenger (the one a decision
may ship); with more arms, the best of the others by difference is the challenger, and its
interval is widened for the arms compared (Bonferroni: each of m comparisons at 5% / m), since
the best of several differences looks better than any one of them. Every reason states the
values, the difference, its interval and the units per arm.

The intervals are fixed-horizon: the flow re-reads them on every run, and each reading is
another look (peeking), so over an experiment's life a difference of zero crosses a 95%
interval's edge more often than 5% of the time. `min_units` guards the earliest looks only;
the decision says so (`Decision.caveat`). It counts units in every arm, the ones assignment
hashed (the marts take them by the unit each answer logged, sluice.experiments): with `unit:
session` sessions, else users; with `unit: user` users, else sessions, so a logged-in user's
sessions are one unit, and a unit seen in several arms (crossed) is left out of every arm and
counted in `crossed_units`, as for sessions. In an interleaving experiment every unit sees
both arms, and the units counted are those that decided at least one answer (a click on one
arm's slots more than on the other's), said with the answers each arm won.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

from sluice.experiments import Experiment, Experiments
from sluice.warehouse.db import connect

KEEP, SHIP, STOP = "keep running", "ship challenger", "stop"
MAX_CROSSED = 0.01  # units seen in several arms: beyond this share, assignment is not stable
Z95 = 1.959964  # the marts' intervals are 95%, normal
UNIT_MEANING = {"session": "a session, else a user", "user": "a user (all their sessions), "
                "else a session"}
PEEKING = ("fixed-horizon interval read again on every run: each look raises the chance of "
           "a false ship, so decide at the sample size planned before the start")


@dataclass
class Decision:
    experiment: str
    tenant: str
    kind: str
    metric: str
    control: str
    challenger: str
    units: dict[str, int] = field(default_factory=dict)  # interleaving: units that decided
    value: float | None = None  # the challenger's metric (or its preference share)
    baseline_value: float | None = None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    chi_square: float | None = None
    srm_passed: bool | None = None
    recommendation: str = KEEP
    reason: str = "no data yet"
    comparisons: int = 1    # arms compared with the control (the interval is widened for them)
    crossed_units: int = 0  # units seen in more than one arm, left out of every arm
    caveat: str = PEEKING
    answers_won: dict[str, int] = field(default_factory=dict)  # interleaving, per arm
    tied_answers: int = 0       # interleaving: answers with as many clicks on either arm
    units_shown: int = 0        # interleaving: units shown interleaved answers, decided or not
    unit: str = "session"       # what a unit is (sluice.experiments.UNITS), as assigned

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        interleaved = self.kind == "interleaving"
        counts = self.answers_won if interleaved else self.units
        rows = "\n".join(f"| {arm} | {n} |" for arm, n in counts.items())
        effect = ("n/a" if self.difference is None else
                  f"{self.difference:+.4g} ({self.level()} CI {self.ci_low:+.4g} to "
                  f"{self.ci_high:+.4g})")
        srm = ("n/a" if self.srm_passed is None else
               f"{'passed' if self.srm_passed else 'FAILED'} (chi-square {self.chi_square:.3g})")
        measure = "preference share - 0.5" if interleaved else self.metric
        counted = "answers won" if interleaved else "units"
        return (f"# Experiment {self.experiment} ({self.tenant}, {self.kind})\n\n"
                f"| arm | {counted} |\n| --- | --- |\n{rows}\n\n"
                + (f"- units: {self.unit_counts()}\n" if interleaved else "") +
                f"- {measure}: {self.challenger} vs {self.control}: {effect}\n"
                f"- unit: {self.unit} ({UNIT_MEANING[self.unit]})\n"
                f"- sample ratio: {srm}\n"
                f"- **recommendation: {self.recommendation}** ({self.reason})\n"
                f"- caveat: {self.caveat}\n")

    def level(self) -> str:
        """The interval's coverage for one comparison (95%, Bonferroni-adjusted for more)."""
        return "95%" if self.comparisons == 1 else (
            f"{1 - 0.05 / self.comparisons:.2%} (95% over {self.comparisons} arms)")

    def detectable(self) -> float:
        """The smallest true difference this interval finds with 80% power: (z + 0.84) times
        its standard error (two-sided, at the interval's own level)."""
        assert self.ci_low is not None and self.ci_high is not None
        z = Z95 if self.comparisons == 1 else NormalDist().inv_cdf(
            1 - 0.05 / (2 * self.comparisons))
        return (z + NormalDist().inv_cdf(0.8)) * (self.ci_high - self.ci_low) / (2 * z)

    def numbers(self) -> str:
        """The values, the difference, its interval and the units per arm, in one phrase."""
        if self.difference is None:
            return "no result yet"
        return (f"{self.metric} {self.value:.4g} vs {self.baseline_value:.4g}, difference "
                f"{self.difference:+.4g} ({self.level()} interval {self.ci_low:+.4g} to "
                f"{self.ci_high:+.4g}); units: {self.unit_counts()}")

    def unit_counts(self) -> str:
        """Units per arm; for interleaving, the units that decided an answer (each sees both
        arms) and the answers each arm won."""
        if self.kind != "interleaving":
            return ", ".join(f"{arm} {n:,}" for arm, n in self.units.items())
        won = ", ".join(f"{arm} {n:,}" for arm, n in self.answers_won.items())
        deciding = min(self.units.values()) if self.units else 0
        return (f"{deciding:,} decided an answer, of {self.units_shown:,} units shown "
                f"interleaved answers (each sees both arms); answers won: {won}, "
                f"{self.tied_answers:,} tied")


def decide(warehouse: Path, exp: Experiment, min_units: int = 100) -> Decision:
    """The decision on one experiment from the marts (read only)."""
    con = connect(warehouse, read_only=True)
    try:
        decision = (_interleaving(con, exp, min_units) if exp.kind == "interleaving" else
                    _split(con, exp, min_units))
    finally:
        con.close()
    decision.unit = exp.unit
    return decision


def _split(con: Any, exp: Experiment, min_units: int) -> Decision:
    control = exp.arms[0].name
    rows = con.execute(
        "select arm, units, baseline_units, arm_value, baseline_value, difference, ci_low, ci_high "
        "from marts.experiment_results where tenant = ? and experiment = ? and metric = ? "
        "and baseline_arm = ? order by difference desc", [exp.tenant, exp.id, exp.metric,
                                                          control]).fetchall()
    decision = Decision(exp.id, exp.tenant, exp.kind, exp.metric, control,
                        rows[0][0] if rows else exp.arms[1].name)
    if not rows:
        return decision
    arm, units, baseline_units, *numbers = rows[0]
    decision.units = {control: baseline_units, **{r[0]: r[1] for r in rows}}
    (decision.value, decision.baseline_value, decision.difference, decision.ci_low,
     decision.ci_high) = numbers
    decision.comparisons = len(rows)
    if len(rows) > 1 and None not in numbers:  # the best of m: each comparison at 5% / m
        widen = NormalDist().inv_cdf(1 - 0.05 / (2 * len(rows))) / Z95
        half = (decision.ci_high - decision.ci_low) / 2 * widen
        decision.ci_low, decision.ci_high = decision.difference - half, decision.difference + half
    srm = con.execute("select chi_square, srm_passed, crossed_units from "
                      "marts.experiment_assignment where tenant = ? and experiment = ?",
                      [exp.tenant, exp.id]).fetchone()
    if srm is not None:
        decision.chi_square, decision.srm_passed = float(srm[0]), bool(srm[1])
        decision.crossed_units = int(srm[2])
    return _recommend(decision, min_units, zero=0.0)


def _interleaving(con: Any, exp: Experiment, min_units: int) -> Decision:
    control, challenger = exp.arms[0].name, exp.arms[1].name
    decision = Decision(exp.id, exp.tenant, exp.kind, "preference_share", control, challenger)
    row = con.execute(
        "select wins, losses, preference_share, ci_low, ci_high, tied_answers, units, "
        "deciding_units from "
        "marts.experiment_preferences where tenant = ? and experiment = ? and arm = ? and "
        "baseline_arm = ?", [exp.tenant, exp.id, challenger, control]).fetchone()
    if row is None or row[2] is None:
        return decision
    wins, losses, share, low, high, tied, shown, deciding = row
    decision.answers_won = {challenger: int(wins), control: int(losses)}
    decision.units = {challenger: int(deciding), control: int(deciding)}  # both see each unit
    decision.tied_answers, decision.units_shown = int(tied), int(shown)
    decision.value, decision.baseline_value = share, 1 - share
    decision.difference, decision.ci_low, decision.ci_high = share - 0.5, low - 0.5, high - 0.5
    return _recommend(decision, min_units, zero=0.0)


def _recommend(d: Decision, min_units: int, zero: float) -> Decision:
    fewest = min(d.units.values()) if d.units else 0  # interleaving: each arm's is every unit
    if d.srm_passed is False:
        d.recommendation = STOP
        d.reason = (f"sample ratio mismatch (chi-square {d.chi_square:.3g}): assignment or "
                    "logging is broken, the effect cannot be trusted")
    elif d.crossed_units > MAX_CROSSED * (sum(d.units.values()) + d.crossed_units):
        d.recommendation = STOP
        d.reason = (f"{d.crossed_units:,} units were seen in more than one arm (over "
                    f"{MAX_CROSSED:.0%} of the units; left out of every arm): assignment is not "
                    "stable, the effect cannot be trusted")
    elif fewest < min_units:
        which = ("that decided an answer" if d.kind == "interleaving" else "(smallest arm)")
        d.reason = f"{fewest:,} units {which}, fewer than the {min_units:,} needed"
    elif d.ci_low is not None and d.ci_low > zero:
        d.recommendation = SHIP
        d.reason = f"{d.challenger} better: the interval excludes zero"
    elif d.ci_high is not None and d.ci_high < zero:
        d.recommendation = STOP
        d.reason = f"{d.challenger} worse: the interval excludes zero"
    else:
        d.reason = (f"the interval includes zero: no difference shown yet (at these units a "
                    f"true difference of ±{d.detectable():.4g} would be found 80% of the time)")
    crossed = (f"; {d.crossed_units:,} units seen in several arms left out"
               if d.crossed_units else "")
    d.reason = f"{d.reason}; {d.numbers()}{crossed}"
    return d


def promote(settings: Any, exp: Experiment, decision: Decision) -> str:
    """Move the tenant's `champion` to the shipped arm's model version through the registry's
    promote path (sluice.learn.versions: the version it replaces and the reason are recorded),
    the experiment and its numbers as the reason, then stop the experiment (every worker
    answers outside it within a second: left running, its control arm, on the `champion`
    alias, would serve the shipped version too and dilute the effect it reads); returns the
    version."""
    from sluice.learn import registry, versions

    arm = next(a for a in exp.arms if a.name == decision.challenger)
    name = settings.registered_model_name(exp.tenant)
    client = registry.client(settings.mlflow_tracking_uri)
    version = registry.version_of(client, name, arm.model)
    if version is None:
        raise LookupError(f"arm {arm.name}: {name} has no version or alias {arm.model!r}")
    reason = f"experiment {exp.id}: {decision.reason}"
    versions.move_champion(client, name, str(version.version), reason)
    Experiments(settings.home).stop(exp.id)
    return str(version.version)
