"""Hand-built warehouse marts (the `marts.interactions` / `marts.items` contracts) for tests."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

INTERACTIONS_DDL = """
create schema if not exists marts;
create table if not exists marts.interactions (
    tenant varchar not null, event_id varchar not null, user_id varchar not null,
    item_id varchar not null, interaction_type varchar not null, event_at timestamp not null,
    event_value double, weight double not null
);
create table if not exists marts.items (
    tenant varchar not null, item_id varchar not null, fields varchar not null,
    category varchar, brand varchar, color varchar, price double,
    first_seen_at timestamp not null, updated_at timestamp not null
);
"""
WEIGHTS = {"click": 1.0, "purchase": 4.0}
START = pd.Timestamp("2024-01-01")


def taste_history(users: int = 150, groups: int = 3, per_group: int = 20, per_user: int = 12,
                  days: float = 30.0, seed: int = 0, start: pd.Timestamp = START,
                  user_prefix: str = "u") -> pd.DataFrame:
    """Users who mostly pick items of their own taste group, spread evenly over `days`."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        group = u % groups
        own = rng.choice(per_group, size=per_user, replace=False) + group * per_group
        for item in own:
            kind = "purchase" if rng.random() < 0.2 else "click"
            at = start + pd.Timedelta(days=float(rng.uniform(0, days)))
            rows.append((f"{user_prefix}{u}", f"i{item}", kind, at, float(rng.integers(1, 6))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "interaction_type", "event_at",
                                        "event_value"])
    frame["weight"] = frame["interaction_type"].map(WEIGHTS)
    return frame.sort_values("event_at", kind="stable").reset_index(drop=True)


def write_marts(warehouse: Path, frame: pd.DataFrame, tenant: str = "default") -> None:
    """Append `frame` to marts.interactions and its items to marts.items."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse))
    try:
        for statement in filter(str.strip, INTERACTIONS_DDL.split(";")):
            con.execute(statement).fetchall()
        start = con.execute("select count(*) from marts.interactions").fetchall()[0][0]
        rows = frame.assign(tenant=tenant,
                            event_id=[f"e{start + i}" for i in range(len(frame))])
        con.register("new_rows", rows)
        con.execute("insert into marts.interactions select tenant, event_id, user_id, item_id, "
                    "interaction_type, event_at, event_value, weight from new_rows")
        items = sorted(set(frame["item_id"]) - {r[0] for r in con.execute(
            "select item_id from marts.items where tenant = ?", [tenant]).fetchall()})
        for item in items:
            fields = {"category": f"c{int(item[1:]) % 3}"}
            con.execute("insert into marts.items values (?, ?, ?, ?, null, null, null, ?, ?)",
                        [tenant, item, json.dumps(fields), fields["category"], START, START])
    finally:
        con.close()
