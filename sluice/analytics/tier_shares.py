"""Where served slots came from, per tenant and template over a window, against the
thresholds of `alerts.tier_shares` (config): what the tier-share flow checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from sluice.settings import AlertsConfig
from sluice.warehouse.db import connect

SHARES_SQL = """
select tenant, template, sum(total) as slots,
       sum(personalized_count) / sum(total) as personalized_share,
       sum(model_fallback_count + fallback_count) / sum(total) as fallback_share,
       sum(model_non_personalized_count) / sum(total) as non_personalized_share,
       count(*) as answers
from marts.recommendation_events
where recommended_at >= ? and total > 0
group by tenant, template order by tenant, template
"""


def shares(warehouse: Path, window_minutes: int, now: datetime | None = None) -> pd.DataFrame:
    """Per tenant and template: slots, answers and each tier's share of the slots."""
    since = (now or datetime.now(UTC)).replace(tzinfo=None) - timedelta(minutes=window_minutes)
    con = connect(warehouse, read_only=True)
    try:
        return con.execute(SHARES_SQL, [since]).df()
    finally:
        con.close()


def breaches(frame: pd.DataFrame, alerts: AlertsConfig) -> list[str]:
    """One line per threshold crossed, naming tenant, template, the share and the threshold."""
    found = []
    for row in frame.itertuples():
        if row.slots < alerts.min_slots:
            continue
        for rule in alerts.tier_shares:
            if not (fnmatchcase(row.tenant, rule.tenant) and fnmatchcase(row.template,
                                                                          rule.template)):
                continue
            where = f"tenant {row.tenant} template {row.template}"
            low, high = rule.min_personalized_share, rule.max_fallback_share
            if low is not None and row.personalized_share < low:
                found.append(f"{where}: personalized share {row.personalized_share:.1%} of "
                             f"{int(row.slots):,} slots is below {low:.0%}")
            if high is not None and row.fallback_share > high:
                found.append(f"{where}: fallback share {row.fallback_share:.1%} of "
                             f"{int(row.slots):,} slots is above {high:.0%}")
    return found
