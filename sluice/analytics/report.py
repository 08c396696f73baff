"""An HTML analytics report: events, slot sources, click-through and model metrics.

Reads the warehouse (read-only) and the MLflow store; writes one self-contained page with the
plots embedded as PNG, so it can be mailed, attached to a Prefect artifact or opened offline.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from sluice.vocabulary import SOURCES
from sluice.warehouse.db import connect

# the attribute index's next-item check (sluice.learn.next_item), beside the model's metrics
NEXT_ITEM = tuple(f"attributes.next_item_hit_at_10.{source}"
                  for source in ("attributes", "similar_items", "popularity"))


@dataclass
class Section:
    title: str
    note: str
    png: bytes | None


def _query(warehouse: Path, sql: str) -> pd.DataFrame:
    con = connect(warehouse, read_only=True)
    try:
        return con.execute(sql).df()
    except Exception:  # a mart that does not exist yet: that section says so
        return pd.DataFrame()
    finally:
        con.close()


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def events_per_day(warehouse: Path) -> Section:
    frame = _query(warehouse, """
        select cast(event_at as date) as day,
               case when event_type = 'interaction' then interaction_type else event_type end
                   as kind,
               count(*) as events
        from raw.events group by 1, 2 order by 1""")
    if frame.empty:
        return Section("Events per day by type", "no events loaded yet", None)
    table = frame.pivot_table(index="day", columns="kind", values="events", fill_value=0)
    table.index = pd.to_datetime(table.index)
    # days without any event are gaps in the lines, not slopes drawn across them
    table = table.reindex(pd.date_range(table.index.min(), table.index.max(), freq="D"))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    table.plot(ax=ax, linewidth=1.2, marker=".", markersize=2)
    ax.set_ylabel("events")
    ax.set_xlabel("")
    return Section("Events per day by type", f"{int(frame['events'].sum()):,} events", _png(fig))


def slot_sources(warehouse: Path) -> Section:
    frame = _query(warehouse, """
        select served_date as day, recommendation_source as source, sum(slots_served) as slots
        from marts.recommendation_performance group by 1, 2 order by 1""")
    if frame.empty:
        return Section("Share of slots by source", "no recommendations served yet", None)
    table = frame.pivot_table(index="day", columns="source", values="slots", fill_value=0)
    table = table.reindex(columns=[s for s in SOURCES if s in table.columns])
    share = table.div(table.sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    share.plot.area(ax=ax, linewidth=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of slots")
    ax.set_xlabel("")
    return Section("Share of slots by source over time",
                   f"{int(frame['slots'].sum()):,} slots served", _png(fig))


def click_through(warehouse: Path) -> Section:
    by_source = _query(warehouse, """
        select recommendation_source as source, sum(clicks) as clicks,
               sum(slots_served) as slots
        from marts.recommendation_performance group by 1""")
    by_position = _query(warehouse, """
        select position, avg(case when is_clicked then 1.0 else 0.0 end) as ctr
        from marts.ranking_outcomes where position <= 25 group by 1 order by 1""")
    if by_source.empty and by_position.empty:
        return Section("Click-through rate", "no rankings or recommendations yet", None)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    if not by_source.empty:
        ctr = (by_source["clicks"] / by_source["slots"].where(by_source["slots"] > 0)).fillna(0)
        left.bar(by_source["source"], ctr)
        left.tick_params(axis="x", rotation=20)
    else:
        left.text(0.5, 0.5, "no recommendation slots yet", ha="center", va="center")
        left.set_axis_off()
    left.set_title("by source")
    if not by_position.empty:
        right.plot(by_position["position"], by_position["ctr"], marker="o")
    else:
        right.text(0.5, 0.5, "no rankings yet", ha="center", va="center")
        right.set_axis_off()
    right.set_title("by position")
    right.set_xlabel("position")
    return Section("Click-through rate", "clicks attributed by recommendation or ranking id",
                   _png(fig))


def model_metrics(tracking_uri: str, model_name: str) -> Section:
    try:
        from sluice.learn import registry
        client = registry.client(tracking_uri)
        versions = client.search_model_versions(f"name = '{model_name}'")
    except Exception as exc:
        return Section("Model metrics across versions", f"registry unreadable: {exc}", None)
    rows = []
    for v in versions:
        metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
        rows.append({"version": int(v.version), **{k: metrics.get(k) for k in (
            "ndcg_at_10", "recall_at_10", "precision_at_10", "popularity.ndcg_at_10",
            *NEXT_ITEM)}})
    if not rows:
        return Section("Model metrics across versions", "no model versions yet", None)
    frame = pd.DataFrame(rows).sort_values("version").set_index("version")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    frame.plot(ax=ax, marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("holdout metric")
    count = f"{len(rows)} version{'s' if len(rows) != 1 else ''}"
    return Section("Model metrics across versions", f"{count} of {model_name}", _png(fig))


QUALITY = ("ndcg_at_10", "catalog_coverage", "novelty", "intra_list_diversity",
           "popularity_bias")


def model_quality(tracking_uri: str, model_name: str) -> Section:
    """Per version: NDCG@10 with its interval, beyond-accuracy measures, and who serves."""
    title = "Model quality per version (95% intervals)"
    try:
        from sluice.learn import registry
        client = registry.client(tracking_uri)
        versions = client.search_model_versions(f"name = '{model_name}'")
        champion = registry.alias_version(client, model_name, registry.CHAMPION)
        runs = {v.run_id: client.get_run(v.run_id).data for v in versions if v.run_id}
    except Exception as exc:
        return Section(title, f"registry unreadable: {exc}", None)
    if not versions:
        return Section(title, "no model versions yet", None)
    versions = sorted(versions, key=lambda v: int(v.version))
    fig, axes = plt.subplots(1, len(QUALITY), figsize=(14, 3))
    for ax, key in zip(axes, QUALITY, strict=True):
        for number, v in enumerate(versions):
            metrics = runs[v.run_id].metrics if v.run_id in runs else {}
            if key in metrics:
                value = metrics[key]
                low, high = metrics.get(f"{key}_ci_low", value), metrics.get(f"{key}_ci_high",
                                                                             value)
                # a percentile interval may sit off its mean by rounding: clamp at zero
                ax.errorbar([number], [value], fmt="o",
                            yerr=[[max(value - low, 0.0)], [max(high - value, 0.0)]])
        ax.set_xticks(range(len(versions)), [f"v{v.version}" for v in versions], fontsize=7)
        ax.set_title(key, fontsize=9)
    served = "no champion"
    if champion is not None:
        data = runs.get(champion.run_id)
        algorithm = data.params.get("algorithm") if data else None
        served = (f"champion v{champion.version}"
                  + (" is popularity: the personalized candidates did not beat it"
                     if champion.tags.get("gate_reason", "").startswith("served as") else
                     f" ({algorithm})" if algorithm else ""))
    return Section(title, f"{len(versions)} versions of {model_name}; {served}", _png(fig))


def render(sections: list[Section], title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;"
             "color:#222}h2{border-bottom:1px solid #ddd}.note{color:#666}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='note'>generated "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>"
                     f"<p class='note'>{html.escape(section.note)}</p>")
        if section.png:
            data = base64.b64encode(section.png).decode()
            parts.append(f"<img alt='{html.escape(section.title)}' "
                         f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(warehouse: Path, tracking_uri: str, model_name: str, out: Path) -> Path:
    sections = [events_per_day(warehouse), slot_sources(warehouse), click_through(warehouse),
                model_metrics(tracking_uri, model_name), model_quality(tracking_uri, model_name)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(sections, "Sluice analytics"))
    return out
