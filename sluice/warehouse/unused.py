"""What an ingest run loaded but will not be used: quarantined rows by reason (and where to
read them), and interactions whose type has no weight in `events.weights` (never trained on).

Read from the warehouse after the run, for the rows loaded since `since`, so the ingest loop
itself stays as it is.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sluice.warehouse.engine import Warehouse, as_warehouse

# the rule, not the value: "TIMESTAMP: <check> (got 12)" and "timestamp: 'x' is not ..." group
# by the field before the first colon; one example reason is kept with each group
_GROUPED = """
    select source_file, split_part(reason, ':', 1) as field, count(*) as rows,
           min(reason) as example
    from raw.quarantine where quarantined_at >= ?
    group by 1, 2 order by source_file, rows desc, field
"""
_UNWEIGHTED = """
    select tenant, interaction_type, count(*) as interactions
    from raw.events
    where event_type = 'interaction' and loaded_at >= ?
      and interaction_type not in (select unnest(?::varchar[]))
    group by 1, 2 order by tenant, interactions desc, interaction_type
"""


def not_used(warehouse: Warehouse | Path, since: datetime,
             weights: dict[str, float]) -> dict[str, Any]:
    """{"quarantined": [{source_file, field, rows, example, read_with}],
    "unweighted": [{tenant, interaction_type, interactions, why}]} for rows loaded since."""
    since = since.replace(tzinfo=None)  # loaded_at and quarantined_at are naive UTC
    warehouse = as_warehouse(warehouse)
    with warehouse.lock():
        return {"quarantined": _quarantined(warehouse, since),
                "unweighted": _unweighted(warehouse, since, sorted(weights))}


def _quarantined(warehouse: Warehouse, since: datetime) -> list[dict[str, Any]]:
    rows = warehouse.rows(_GROUPED, [since])
    return [{"source_file": source, "field": field, "rows": count, "example": example[:200],
             "read_with": f"select line_number, record, reason from raw.quarantine "
                          f"where source_file = '{source.replace(chr(39), chr(39) * 2)}'"}
            for source, field, count, example in rows]


def _unweighted(warehouse: Warehouse, since: datetime,
                weighted: list[str]) -> list[dict[str, Any]]:
    rows = warehouse.rows(_UNWEIGHTED, [since, weighted])
    return [{"tenant": tenant, "interaction_type": kind, "interactions": count,
             "why": "no weight in events.weights: loaded, never trained on"}
            for tenant, kind, count in rows]
