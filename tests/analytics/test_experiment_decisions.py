"""Experiment decisions read from result marts in a real DuckDB file: what a decision states
(values, difference, interval, units per arm), too little data, several arms, peeking."""

from __future__ import annotations

import pytest
from scipy import stats

from sluice.analytics.experiments import KEEP, SHIP, STOP, decide
from sluice.experiments import Arm, Experiment
from sluice.warehouse.db import connect
from tests.flows.test_experiments_flow import ASSIGNMENT, RESULTS

TWO = Experiment("two", "shop", (Arm("control", "champion", 0.5), Arm("treatment", "2", 0.5)))
THREE = Experiment("three", "shop", (Arm("control", "champion", 0.34), Arm("b", "2", 0.33),
                                     Arm("c", "3", 0.33)))


@pytest.fixture
def marts(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    con = connect(path)
    con.execute("create schema marts")
    con.execute(RESULTS)
    con.execute(ASSIGNMENT)
    con.close()

    def write(experiment: str, rows: list[tuple], srm: tuple[float, bool] = (0.2, True),
              crossed: int = 0):
        con = connect(path)
        con.execute("delete from marts.experiment_results where experiment = ?", [experiment])
        con.execute("delete from marts.experiment_assignment where experiment = ?", [experiment])
        for arm, units, base_units, value, base, low, high in rows:
            con.execute("insert into marts.experiment_results values ('shop', ?, "
                        "'click_through_rate', 'control', ?, ?, ?, ?, ?, ?, ?, ?)",
                        [experiment, arm, units, base_units, value, base, value - base,
                         low, high])
        con.execute("insert into marts.experiment_assignment values ('shop', ?, ?, ?, ?)",
                    [experiment, *srm, crossed])
        con.close()
        return path

    return write


def test_a_shipped_arm_states_its_numbers_sample_sizes_and_the_peeking_caveat(marts):
    path = marts("two", [("treatment", 2400, 2500, 0.12, 0.10, 0.004, 0.036)])
    decision = decide(path, TWO, 100)
    assert decision.recommendation == SHIP
    assert decision.reason == (
        "treatment better: the interval excludes zero; click_through_rate 0.12 vs 0.1, "
        "difference +0.02 (95% interval +0.004 to +0.036); units: control 2,500, "
        "treatment 2,400")
    markdown = decision.markdown()
    assert "caveat: fixed-horizon interval read again on every run" in markdown


def test_too_little_data_keeps_running_and_still_says_the_numbers(marts):
    path = marts("two", [("treatment", 40, 45, 0.3, 0.1, 0.05, 0.35)])
    decision = decide(path, TWO, 100)
    assert decision.recommendation == KEEP
    assert decision.reason.startswith("40 units (smallest arm), fewer than the 100 needed; ")
    assert "difference +0.2 (95% interval +0.05 to +0.35)" in decision.reason


def test_the_best_of_several_arms_needs_an_interval_widened_for_the_comparisons(marts):
    # b's own 95% interval just excludes zero, which the best of two arms does by chance
    # more often than 5% of the time
    path = marts("three", [("b", 3000, 3000, 0.12, 0.10, 0.001, 0.039),
                           ("c", 3000, 3000, 0.09, 0.10, -0.03, 0.01)])
    decision = decide(path, THREE, 100)
    assert decision.challenger == "b" and decision.comparisons == 2
    standard_error = (0.039 - 0.001) / (2 * stats.norm.ppf(0.975))
    half = stats.norm.ppf(1 - 0.05 / 4) * standard_error
    assert decision.ci_low == pytest.approx(0.02 - half)
    assert decision.ci_high == pytest.approx(0.02 + half)
    assert decision.ci_low < 0 and decision.recommendation == KEEP
    assert "97.50% (95% over 2 arms) interval" in decision.reason
    assert "units: control 3,000, b 3,000, c 3,000" in decision.reason


def test_a_sample_ratio_mismatch_stops_whatever_the_effect(marts):
    path = marts("two", [("treatment", 2000, 3000, 0.2, 0.1, 0.08, 0.12)], srm=(333.0, False))
    decision = decide(path, TWO, 100)
    assert decision.recommendation == STOP and "sample ratio mismatch" in decision.reason
    assert "units: control 3,000, treatment 2,000" in decision.reason


def test_units_seen_in_two_arms_are_said_and_too_many_stop_the_experiment(marts):
    few = decide(marts("two", [("treatment", 2400, 2500, 0.12, 0.10, 0.004, 0.036)],
                       crossed=30), TWO, 100)
    assert few.recommendation == SHIP and few.crossed_units == 30
    assert few.reason.endswith("; 30 units seen in several arms left out")
    many = decide(marts("two", [("treatment", 2400, 2500, 0.12, 0.10, 0.004, 0.036)],
                        crossed=200), TWO, 100)
    assert many.recommendation == STOP
    assert many.reason.startswith("200 units were seen in more than one arm")


def test_no_difference_shown_yet_says_what_difference_these_units_could_find(marts):
    path = marts("two", [("treatment", 5000, 5000, 0.101, 0.100, -0.009, 0.011)])
    decision = decide(path, TWO, 100)
    assert decision.recommendation == KEEP
    standard_error = 0.02 / (2 * stats.norm.ppf(0.975))
    found = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * standard_error
    assert decision.detectable() == pytest.approx(found)
    assert f"a true difference of ±{found:.4g} would be found 80% of the time" in (
        decision.reason)


IL = Experiment("il", "shop", (Arm("control", "champion", 0.5), Arm("treatment", "2", 0.5)),
                kind="interleaving")
PREFERENCES = ("create table marts.experiment_preferences (tenant varchar, experiment varchar, "
               "arm varchar, baseline_arm varchar, wins bigint, losses bigint, "
               "tied_answers bigint, units bigint, deciding_units bigint, "
               "preference_share double, share_variance double, ci_low double, "
               "ci_high double)")


def _preferences(path, wins: int, losses: int, tied: int, units: int, deciding: int,
                 low: float, high: float):
    con = connect(path)
    con.execute("create schema if not exists marts")
    con.execute(PREFERENCES)
    share = wins / (wins + losses)
    con.execute("insert into marts.experiment_preferences values ('shop', 'il', 'treatment', "
                "'control', ?, ?, ?, ?, ?, ?, 0.0, ?, ?)",
                [wins, losses, tied, units, deciding, share, low, high])
    con.close()
    return path


def test_interleaving_counts_units_not_decided_answers(tmp_path):
    # 500 decided answers, but from 60 units: too few units, whatever the interval
    path = _preferences(tmp_path / "few.duckdb", 300, 200, 40, 150, 60, 0.55, 0.65)
    decision = decide(path, IL, 100)
    assert decision.recommendation == KEEP
    assert decision.reason.startswith("60 units that decided an answer, fewer than the 100 "
                                      "needed; ")
    assert decision.reason.endswith(
        "units: 60 decided an answer, of 150 units shown interleaved answers (each sees both "
        "arms); answers won: treatment 300, control 200, 40 tied")
    assert decision.answers_won == {"treatment": 300, "control": 200}
    markdown = decision.markdown()
    assert "| arm | answers won |" in markdown and "| treatment | 300 |" in markdown
    assert "- units: 60 decided an answer, of 150 units" in markdown

    enough = decide(_preferences(tmp_path / "many.duckdb", 300, 200, 40, 400, 120, 0.55,
                                 0.65), IL, 100)
    assert enough.recommendation == SHIP and enough.units == {"treatment": 120,
                                                              "control": 120}
