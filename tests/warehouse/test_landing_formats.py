"""Landing files as users have them: Personalize's dataset CSVs, Parquet written by pandas,
the MovieLens layouts that are not Personalize's, JSON Lines from Windows tools, loaded into a
real DuckDB warehouse.

Every TIMESTAMP column follows the one timestamp rule (epoch seconds or milliseconds by value,
fractions allowed, ISO-8601, a Parquet timestamp column); a file that is not one of the three
datasets is refused whole, naming the columns it has; nothing is half-loaded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.warehouse.test_ingest import Env, _by_path

MS_2023 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def _times(env: Env, source: str) -> dict[str, int]:
    """item -> event_at in epoch ms (event_at is naive UTC)."""
    return {item: (at - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
            for item, at in env.rows("select item_id, event_at from raw.events "
                                     "where source_file like ?", [f"%{source}"])}


def test_csv_timestamps_follow_the_one_rule(env):
    (env.landing / "times.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
        "u1,seconds,1700000000,click\n"
        "u1,millis,1700000000123,click\n"
        "u1,fraction,1700000000.5,click\n"
        "u1,whole-float,1700000001.0,click\n"
        "u1,iso,2023-11-14T22:13:20Z,click\n"
        "u1,iso-offset,2023-11-15T00:13:20.250+02:00,click\n"
        "u1,iso-naive,2023-11-14 22:13:20,click\n")
    result = _by_path(env.run())["times.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (7, 0)
    assert _times(env, "times.csv") == {
        "seconds": MS_2023, "millis": MS_2023 + 123, "fraction": MS_2023 + 500,
        "whole-float": MS_2023 + 1000, "iso": MS_2023, "iso-offset": MS_2023 + 250,
        "iso-naive": MS_2023}


def test_csv_timestamps_refused_name_the_column_and_the_rule(env):
    (env.landing / "bad.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
        "u1,ok,1700000000,click\n"
        "u1,word,soon,click\n"
        "u1,micros,1700000000000000,click\n"
        "u1,empty,,click\n"
        "u1,old,1970-01-02T00:00:00Z,click\n")
    result = _by_path(env.run())["bad.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (1, 4)
    reasons = dict(env.rows("select line_number, reason from raw.quarantine"))
    assert sorted(reasons) == [3, 4, 5, 6]
    assert all(r.startswith("TIMESTAMP") and "1973-03-03" in r for r in reasons.values())
    assert "'soon'" in reasons[3] and "microseconds" in reasons[4]


def test_parquet_timestamp_columns_are_instants(env):
    stamps = pd.to_datetime(["2023-11-14T22:13:20.250Z", "2023-11-15T00:13:20+02:00"],
                            utc=True, format="ISO8601")
    pd.DataFrame({"USER_ID": ["p1", "p1"], "ITEM_ID": ["aware", "aware-2"],
                  "TIMESTAMP": stamps, "EVENT_TYPE": "click"}).to_parquet(
        env.landing / "aware.parquet")
    pd.DataFrame({"USER_ID": ["p2"], "ITEM_ID": ["naive"],
                  "TIMESTAMP": [pd.Timestamp("2023-11-14 22:13:20")],
                  "EVENT_TYPE": "click"}).to_parquet(env.landing / "naive.parquet")
    pd.DataFrame({"USER_ID": ["p3"], "ITEM_ID": ["float"], "TIMESTAMP": [1700000000.25],
                  "EVENT_TYPE": "click"}).to_parquet(env.landing / "float.parquet")
    report = env.run()
    assert (report.rows_loaded, report.rows_quarantined) == (4, 0)
    assert _times(env, ".parquet") == {"aware": MS_2023 + 250, "aware-2": MS_2023,
                                       "naive": MS_2023, "float": MS_2023 + 250}


def test_items_creation_timestamp_follows_the_rule_and_names_itself(env):
    (env.landing / "items.csv").write_text(
        "ITEM_ID,GENRES,CREATION_TIMESTAMP\n"
        "i1,Action|Adventure,1700000000.0\n"      # as pandas writes a column with gaps
        "i2,Comedy,2023-11-14T22:13:20Z\n"
        "i3,Drama,yesterday\n")
    result = _by_path(env.run())["items.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert _times(env, "items.csv") == {"i1": MS_2023, "i2": MS_2023}
    [(line, reason)] = env.rows("select line_number, reason from raw.quarantine")
    assert line == 4 and reason.startswith("CREATION_TIMESTAMP:") and "yesterday" in reason


def test_interactions_without_event_type_are_interactions(env):
    """Personalize requires USER_ID, ITEM_ID, TIMESTAMP only; EVENT_TYPE is optional."""
    (env.landing / "interactions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_VALUE\nu1,i1,1700000000,4\nu2,i1,1700000001,\n")
    result = _by_path(env.run())["interactions.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    assert env.rows("select event_type, user_id, item_id, interaction_type, event_value "
                    "from raw.events order by user_id") == [
        ("interaction", "u1", "i1", "interaction", 4.0),
        ("interaction", "u2", "i1", "interaction", None)]


def test_interactions_without_timestamp_refused_whole_naming_it(env):
    (env.landing / "no-time.csv").write_text("USER_ID,ITEM_ID,EVENT_TYPE\nu1,i1,click\n")
    result = _by_path(env.run())["no-time.csv"]
    assert result.status == "unreadable" and result.rows_loaded == 0
    assert result.message == ("missing columns: an interactions file (USER_ID and ITEM_ID) "
                              "needs TIMESTAMP too; found USER_ID, ITEM_ID, EVENT_TYPE")
    assert env.count() == 0


def test_movielens_ratings_csv_refused_whole_naming_its_columns(env):
    """ml-latest-small's ratings.csv is not a Personalize dataset: said so, with its header."""
    (env.landing / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    result = _by_path(env.run())["ratings.csv"]
    assert result.status == "unreadable" and env.count() == 0
    assert result.message.startswith(
        "unrecognised columns: found userId, movieId, rating, timestamp; an interactions file "
        "needs USER_ID, ITEM_ID, TIMESTAMP")


def test_movielens_native_layouts_are_listed_as_not_read(env):
    """u.data (tab-separated), ml-1m's ratings.dat (`::`) and RecBole's atomic files have no
    ending ingest reads: the run names each of them instead of passing over them silently."""
    (env.landing / "u.data").write_text("196\t242\t3\t881250949\n")
    (env.landing / "ml-1m").mkdir()
    (env.landing / "ml-1m" / "ratings.dat").write_text("1::1193::5::978300760\n")
    (env.landing / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n")
    (env.landing / ".hidden.dat").write_text("not listed\n")
    (env.landing / "ok.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n")
    report = env.run()
    expected = [env.landing_path(name) for name in ("ml-1m/ratings.dat", "ml-100k.inter",
                                                     "u.data")]
    assert sorted(report.summary()["ignored_files"]) == sorted(expected)
    assert [Path(f.path).name for f in report.files if f.status != "ignored"] == ["ok.csv"]
    assert report.rows_loaded == env.count() == 1
    assert env.count("raw.manifest", "path like '%u.data'") == 0


def test_impression_column_becomes_the_ranking_putevents_would_record(env):
    """IMPRESSION is Personalize's reserved column of the item ids shown (`a|b|c`): as with
    PutEvents' `impression`, a ranking event the interaction names, not a plain field."""
    (env.landing / "impressions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,IMPRESSION,RECOMMENDATION_ID,SESSION_ID,DEVICE\n"
        "u1,i2,1700000000,click,i1|i2|i3,,s1,tablet\n"
        "u2,i5,1700000001,click,i4|i5,rec-9,,phone\n"
        "u3,i6,1700000002,click,,,,phone\n")
    result = _by_path(env.run())["impressions.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (5, 0)
    rankings = env.rows("select event_id, user_id, session_id, items from raw.events "
                        "where event_type = 'ranking' order by user_id")
    clicks = env.rows("select event_id, user_id, ranking_id, fields from raw.events "
                      "where event_type = 'interaction' order by user_id")
    assert [(r[1], r[2], r[3]) for r in rankings] == [
        ("u1", "s1", '[{"id":"i1"},{"id":"i2"},{"id":"i3"}]'),
        ("u2", None, '[{"id":"i4"},{"id":"i5"}]')]
    assert rankings[0][0] == f"{clicks[0][0]}:impression" == clicks[0][2]
    assert rankings[1][0] == f"{clicks[1][0]}:impression" and clicks[1][2] == "rec-9"
    assert clicks[2][2] is None
    assert [c[3] for c in clicks] == ['{"device":"tablet"}', '{"device":"phone"}',
                                      '{"device":"phone"}']
    assert env.run().rows_loaded == 0


def test_an_event_id_as_long_as_the_id_rule_allows_keeps_its_impression(env):
    """EVENT_ID may be 256 characters, as PutEvents' eventId: the list its IMPRESSION records
    gets an id within the same rule, so the row loads whole rather than being quarantined."""
    event_id = "e" * 256
    (env.landing / "long-ids.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_ID,IMPRESSION\n"
        f"u1,i2,1700000000,click,{event_id},i1|i2\n")
    result = _by_path(env.run())["long-ids.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    (ranking_id,) = env.rows("select event_id from raw.events where event_type = 'ranking'")[0]
    assert len(ranking_id) <= 256
    assert env.rows("select event_id, ranking_id from raw.events "
                    "where event_type = 'interaction'") == [(event_id, ranking_id)]


def test_a_column_given_twice_in_another_case_is_refused_whole(env):
    (env.landing / "twice.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP,user_id\nu,i,1700000000,v\n")
    result = _by_path(env.run())["twice.csv"]
    assert result.status == "unreadable" and env.count() == 0
    assert "'USER_ID' and 'user_id' are the same column" in result.message


def test_a_csv_that_is_not_utf8_is_refused_naming_the_line(env):
    """MovieLens-100k's own u.item is Latin-1: a CSV made from it without re-encoding."""
    (env.landing / "items.csv").write_bytes(
        "ITEM_ID,TITLE\n1,Toy Story (1995)\n2,Les Misérables (1995)\n".encode("latin-1"))
    result = _by_path(env.run())["items.csv"]
    assert result.status == "unreadable" and env.count() == 0
    assert "line 3 is not UTF-8 (byte 0xe9" in result.message
    assert "save the file as UTF-8" in result.message


def test_json_lines_saved_with_a_byte_order_mark_load_whole(env):
    """Windows tools save UTF-8 with a BOM; JSON readers may ignore it (RFC 8259 §8.1)."""
    lines = "".join(
        f'{{"event": "interaction", "id": "e{n}", "timestamp": "1599391467000", '
        f'"user": "u", "item": "i{n}", "type": "click"}}\r\n' for n in range(2))
    (env.landing / "events.jsonl").write_bytes(b"\xef\xbb\xbf" + lines.encode())
    result = _by_path(env.run())["events.jsonl"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    assert env.ids() == ["e0", "e1"]


def _movielens_frame() -> pd.DataFrame:
    """Three ratings as pandas holds them when a user id is missing: ids become floats."""
    return pd.DataFrame({"USER_ID": [196.0, None, 7.0], "ITEM_ID": [242, 1, 3],
                         "TIMESTAMP": [881250949, 881250950, 881250951],
                         "EVENT_TYPE": "rating"})


def test_parquet_float_ids_are_the_integers_pandas_meant(env):
    _movielens_frame().to_parquet(env.landing / "gaps.parquet")
    result = _by_path(env.run())["gaps.parquet"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert env.rows("select user_id, item_id from raw.events order by item_id") == [
        ("196", "242"), ("7", "3")]
    [(row, reason)] = env.rows("select line_number, reason from raw.quarantine")
    assert row == 2 and reason.startswith("USER_ID")  # Parquet rows are counted from 1


def test_parquet_with_a_repeated_or_named_index_loads_by_row(env):
    """pandas writes its index into Parquet: after a concat it repeats, after set_index it is
    a column. Neither stops the run (a repeated index made every ingest fail)."""
    frame = _movielens_frame().dropna()
    pd.concat([frame, frame.assign(ITEM_ID=[5, 6])]).to_parquet(env.landing / "concat.parquet")
    frame.assign(ITEM_ID=[8, 9]).set_index("USER_ID").to_parquet(env.landing / "named.parquet")
    report = env.run()
    assert {Path(f.path).name: (f.status, f.rows_loaded) for f in report.files} == {
        "concat.parquet": ("loaded", 4), "named.parquet": ("loaded", 2)}
    assert sorted(env.rows("select user_id, item_id from raw.events")) == [
        ("196", "242"), ("196", "5"), ("196", "8"), ("7", "3"), ("7", "6"), ("7", "9")]


def test_parquet_list_and_boolean_columns_are_list_and_boolean_fields(env):
    pd.DataFrame({"ITEM_ID": ["i1", "i2"], "GENRES": [["drama", "war"], ["comedy"]],
                  "IN_STOCK": [True, False], "PRICE": [9.5, None]}).to_parquet(
        env.landing / "items.parquet")
    result = _by_path(env.run())["items.parquet"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    assert env.rows("select item_id, fields from raw.events order by item_id") == [
        ("i1", '{"genres":["drama","war"],"in_stock":true,"price":9.5}'),
        ("i2", '{"genres":["comedy"],"in_stock":false}')]


def test_parquet_columns_of_the_wrong_shape_are_refused_and_the_run_goes_on(env):
    """A column of lists where an id or EVENT_VALUE goes: refused with the column named,
    never a traceback that stops every file's ingest."""
    pd.DataFrame({"USER_ID": [["a"], ["b", "c"]], "ITEM_ID": ["i1", "i2"],
                  "TIMESTAMP": [1700000000, 1700000001]}).to_parquet(env.landing / "ids.parquet")
    pd.DataFrame({"USER_ID": ["u1", "u2"], "ITEM_ID": ["i1", "i2"],
                  "TIMESTAMP": [1700000000, 1700000001],
                  "EVENT_VALUE": [[1.0, 2.0], [3.0]]}).to_parquet(env.landing / "values.parquet")
    (env.landing / "z.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP\nu9,i9,1700000009\n")
    by_path = _by_path(env.run())
    assert (by_path["ids.parquet"].rows_loaded, by_path["ids.parquet"].rows_quarantined) == (
        0, 2)
    assert env.rows("select line_number, reason from raw.quarantine where source_file like "
                    "'%ids.parquet' order by 1") == [
        (1, "USER_ID: expected a string, got ndarray"),
        (2, "USER_ID: expected a string, got ndarray")]
    assert by_path["values.parquet"].status == "unreadable"
    assert by_path["values.parquet"].message.startswith("EVENT_VALUE:")
    assert by_path["z.csv"].rows_loaded == 1
    assert env.rows("select user_id from raw.events") == [("u9",)]


def test_event_type_up_to_256_characters_as_personalize_allows(env):
    (env.landing / "types.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
        f"u1,i1,1700000000,{'t' * 256}\nu1,i2,1700000000,{'t' * 257}\n")
    result = _by_path(env.run())["types.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    [(reason,)] = env.rows("select reason from raw.quarantine")
    assert reason.startswith("EVENT_TYPE: must be 1 to 256 characters (got 'ttt")


def test_a_refused_csv_row_says_why_in_words_not_by_the_check_name(env):
    """An empty id cell or a value that is no number is named as such, not by pandera's
    check (`not_nullable (got nan)`, `coerce_dtype('float64')`)."""
    (env.landing / "gaps.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_VALUE\n"
        "u1,,1700000000,1\n,i1,1700000000,1\nu1,i1,1700000000,high\nu1,i2,1700000000,2\n")
    result = _by_path(env.run())["gaps.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (1, 3)
    assert env.rows("select line_number, reason from raw.quarantine order by 1") == [
        (2, "ITEM_ID: required (the cell is empty)"),
        (3, "USER_ID: required (the cell is empty)"),
        (4, "EVENT_VALUE: must be a number (got 'high')")]


def test_a_refused_csv_row_names_its_real_line_after_multi_line_cells(env):
    """A quoted cell may hold line breaks (an item description): the line a refusal names is
    the file's own line the record starts on, as an editor shows it, not header + position."""
    (env.landing / "items.csv").write_bytes(
        b'ITEM_ID,DESCRIPTION,CREATION_TIMESTAMP\r\n'
        b'i1,"two\r\nlines",1700000000\r\n'
        b'i2,"three\nlines\nhere",1700000000\r\n'
        b'\r\n'
        b'i3,plain,soon\r\n'
        b'i4,"a ""quoted""\nword",later\r\n')
    result = _by_path(env.run())["items.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 2)
    reasons = dict(env.rows("select line_number, reason from raw.quarantine"))
    assert sorted(reasons) == [8, 9]
    assert "'soon'" in reasons[8] and "'later'" in reasons[9]
    [description] = env.rows("select fields->>'description' from raw.events "
                             "where item_id = 'i2'")[0]
    assert description == "three\nlines\nhere"


def test_a_refused_csv_row_without_quotes_keeps_its_line(env):
    (env.landing / "plain.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n\nu1,i2,soon\n")
    result = _by_path(env.run())["plain.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert [r[0] for r in env.rows("select line_number from raw.quarantine")] == [4]
