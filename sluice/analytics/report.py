"""An HTML analytics report: events, slot sources, click-through and model metrics.

Reads the warehouse (read-only) and the MLflow store; writes one self-contained page with the
plots inline as SVG, so it can be mailed, attached to a Prefect artifact or opened offline.
Every drawn data element carries the id `mark-...` (a browser test counts them); a chart
without data says why instead, and when the next flow run will fill it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from sluice.analytics.charts import (
    LAG,
    Section,
    fit_days,
    mark,
    query,
    readable,
    registered,
    svg,
)
from sluice.errors import NotFoundError
from sluice.experiments import Experiment
from sluice.vocabulary import DEFAULT_TENANT, SOURCES
from sluice.warehouse.engine import MissingTable, Warehouse, as_warehouse

# the attribute index's next-item check (sluice.learn.next_item), beside the model's metrics
NEXT_ITEM = tuple(f"attributes.next_item_hit_at_10.{source}"
                  for source in ("attributes", "similar_items", "popularity"))


def _only(tenant: str | None) -> tuple[str, list[str]]:
    """The where clause (and its parameter) that keeps one tenant's rows; none: every tenant."""
    return ("where tenant = ?", [tenant]) if tenant is not None else ("", [])


def events_per_day(warehouse: Warehouse | Path, tenant: str | None = None) -> Section:
    where, params = _only(tenant)
    frame = query(warehouse, f"""
        select cast(event_at as date) as day,
               case when event_type = 'interaction' then interaction_type else event_type end
                   as kind,
               count(*) as events
        from raw.events {where} group by 1, 2 order by 1""", params)
    if frame.empty:
        return Section("Events per day by type", "no events loaded yet", None)
    table = frame.pivot_table(index="day", columns="kind", values="events", fill_value=0)
    table.index = pd.to_datetime(table.index)
    # days without any event are gaps in the lines, not slopes drawn across them
    table = table.reindex(pd.date_range(table.index.min(), table.index.max(), freq="D"))
    spans = _spans(table.dropna(how="all").index)
    fig, axes = plt.subplots(1, len(spans), figsize=(9, 3.5), sharey=True, squeeze=False,
                             width_ratios=[max(3, (b - a).days + 1) for a, b in spans])
    for ax, (start, end) in zip(axes[0], spans, strict=True):
        part = table.loc[start:end]
        for kind in part.columns:
            mark(ax.plot(part.index, part[kind], linewidth=1.2, marker=".", markersize=4,
                          label=kind))
        fit_days(ax, part.index)
        if (end - start).days < 7:  # a short run: one readable tick per day
            ax.set_xticks(list(part.index), [f"{d:%m-%d}" for d in part.index])
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[0][0].set_ylabel("events")
    axes[0][0].legend(fontsize=7, loc="upper right")
    note = (f"{int(frame['events'].sum()):,} events from {table.index.min():%Y-%m-%d} to "
            f"{table.index.max():%Y-%m-%d}")
    if len(spans) > 1:  # one axis would squeeze the history into a sliver of its width
        gaps = ", ".join(f"{a:%Y-%m-%d}..{b:%Y-%m-%d}" for (_, a), (b, _) in zip(
            spans, spans[1:], strict=False))
        note += f"; the time axis is broken where no event came ({gaps})"
    return Section("Events per day by type", note, svg(fig))


GAP = pd.Timedelta(days=14)  # an empty stretch longer than this breaks the time axis


def _spans(days: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Runs of days with events, split where no event came for over GAP (at most 3)."""
    spans = [[days[0], days[0]]]
    for day in days[1:]:
        if day - spans[-1][1] > GAP:
            spans.append([day, day])
        else:
            spans[-1][1] = day
    while len(spans) > 3:  # join the two closest runs
        i = min(range(len(spans) - 1), key=lambda j: spans[j + 1][0] - spans[j][1])
        spans[i:i + 2] = [[spans[i][0], spans[i + 1][1]]]
    return [(a, b) for a, b in spans]


def slot_sources(warehouse: Warehouse | Path, tenant: str | None = None) -> Section:
    where, params = _only(tenant)
    frame = query(warehouse, f"""
        select served_date as day, recommendation_source as source, sum(slots_served) as slots
        from marts.recommendation_performance {where} group by 1, 2 order by 1""", params)
    title = "Share of slots by source over time"
    if frame.empty:
        return Section(title, _not_in_marts(warehouse), None)
    table = frame.pivot_table(index="day", columns="source", values="slots", fill_value=0)
    table = table.reindex(columns=[s for s in SOURCES if s in table.columns])
    table.index = pd.to_datetime(table.index)
    share = table.div(table.sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    bottom = pd.Series(0.0, index=share.index)
    for source in share.columns:  # stacked bars: one day reads as well as a year
        mark(list(ax.bar(share.index, share[source], bottom=bottom, width=0.8, label=source)))
        bottom += share[source]
    fit_days(ax, share.index)
    fig.autofmt_xdate()
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of slots")
    ax.legend(fontsize=8)
    return Section(title, f"{int(frame['slots'].sum()):,} slots served from "
                   f"{share.index.min():%Y-%m-%d} to {share.index.max():%Y-%m-%d}", svg(fig))


def _not_in_marts(warehouse: Warehouse | Path) -> str:
    """Why there is nothing to draw: the marts lag the answers, they are not the answers."""
    loaded = query(warehouse, "select count(*) as n from raw.events "
                               "where event_type = 'recommendation'")
    count = int(loaded["n"].iloc[0]) if not loaded.empty else 0
    if count:
        return (f"{count:,} served answers are loaded but not in the marts yet: {LAG}; the "
                "next transform draws them")
    return (f"no served answers in the warehouse yet; answers served since the last ingest "
            f"are in the raw log until then: {LAG}")


def click_through(warehouse: Warehouse | Path, tenant: str | None = None) -> Section:
    where, params = _only(tenant)
    by_source = query(warehouse, f"""
        select recommendation_source as source, sum(clicks) as clicks,
               sum(slots_served) as slots
        from marts.recommendation_performance {where} group by 1""", params)
    by_position = query(warehouse, f"""
        select position, avg(case when is_clicked then 1.0 else 0.0 end) as ctr
        from marts.ranking_outcomes {where or 'where true'} and position <= 25
        group by 1 order by 1""", params)
    if by_source.empty and by_position.empty:
        return Section("Click-through rate", _not_in_marts(warehouse), None)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    if not by_source.empty:
        ctr = (by_source["clicks"] / by_source["slots"].where(by_source["slots"] > 0)).fillna(0)
        bars = left.bar(by_source["source"], ctr)
        mark(list(bars))
        left.bar_label(bars, labels=[f"{c:.1%}\n{int(k)}/{int(n)}" for c, k, n in zip(
            ctr, by_source["clicks"], by_source["slots"], strict=True)], fontsize=7)
        left.set_ylim(0, max(0.05, float(ctr.max()) * 1.4))
        left.tick_params(axis="x", rotation=20)
    else:
        left.text(0.5, 0.5, "no recommendation slots yet", ha="center", va="center")
        left.set_axis_off()
    left.set_title("by source")
    if not by_position.empty:
        mark(right.plot(by_position["position"], by_position["ctr"], marker="o"))
    else:
        right.text(0.5, 0.5, "no rankings yet", ha="center", va="center")
        right.set_axis_off()
    right.set_title("by position")
    right.set_xlabel("position")
    return Section("Click-through rate", "clicks attributed by recommendation or ranking id "
                   "(bars: rate, clicks/slots)", svg(fig))


def model_metrics(tracking_uri: str, model_name: str) -> Section:
    title = "Model metrics across versions"
    try:
        versions, champion, runs = registered(tracking_uri, model_name)
    except Exception as exc:
        return Section(title, f"registry unreadable: {exc}", None)
    rows = []
    for v in versions:
        run = runs.get(v.run_id)
        metrics = run.metrics if run else {}
        algorithm = run.tags.get("algorithm", "?") if run else "?"
        is_champion = champion is not None and str(champion.version) == str(v.version)
        rows.append({"version": int(v.version), "label": f"v{v.version} {algorithm}"
                     f"{' (champion)' if is_champion else ''}", **{k: metrics.get(k) for k in (
                         "ndcg_at_10", "recall_at_10", "precision_at_10",
                         "popularity.ndcg_at_10", *NEXT_ITEM)}})
    if not rows:
        return Section(title, f"no versions of {model_name} yet: `sluice train` registers "
                       "one (the nightly `pipeline` under `make up`)", None)
    frame = pd.DataFrame(rows).sort_values("version").set_index("label").drop(columns="version")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    positions = range(len(frame))
    for column in frame.columns:
        mark(ax.plot(positions, frame[column], marker="o", label=column))
    ax.set_xticks(list(positions), frame.index, rotation=15, fontsize=8)
    ax.set_xlim(-0.5, len(frame) - 0.5)
    ax.set_ylabel("holdout metric")
    ax.legend(fontsize=8)
    count = f"{len(rows)} version{'s' if len(rows) != 1 else ''}"
    return Section(title, f"{count} of {model_name}", svg(fig))


QUALITY = ("ndcg_at_10", "catalog_coverage", "novelty", "intra_list_diversity",
           "popularity_bias")


def model_quality(tracking_uri: str, model_name: str) -> Section:
    """Per version: NDCG@10 with its interval, beyond-accuracy measures, and who serves."""
    title = "Model quality per version (95% intervals)"
    try:
        versions, champion, runs = registered(tracking_uri, model_name)
    except Exception as exc:
        return Section(title, f"registry unreadable: {exc}", None)
    if not versions:
        return Section(title, "no model versions yet", None)
    ordered = sorted(versions, key=lambda v: int(v.version))
    fig, axes = plt.subplots(1, len(QUALITY), figsize=(14, 3))
    for ax, key in zip(axes, QUALITY, strict=True):
        for number, v in enumerate(ordered):
            metrics = runs[v.run_id].metrics if v.run_id in runs else {}
            if key in metrics:
                value = metrics[key]
                low, high = metrics.get(f"{key}_ci_low", value), metrics.get(f"{key}_ci_high",
                                                                             value)
                # a percentile interval may sit off its mean by rounding: clamp at zero
                bars = ax.errorbar([number], [value], fmt="o",
                                   yerr=[[max(value - low, 0.0)], [max(high - value, 0.0)]])
                mark(bars.lines[0])
        ax.set_xticks(range(len(ordered)), [f"v{v.version}" for v in ordered], fontsize=7)
        ax.set_title(key, fontsize=9)
    served = "no champion"
    if champion is not None:
        data = runs.get(champion.run_id or "")  # no run id: no run to read
        algorithm = data.params.get("algorithm") if data else None
        served = (f"champion v{champion.version}"
                  + (" is popularity: the personalized candidates did not beat it"
                     if champion.tags.get("gate_reason", "").startswith("served as") else
                     f" ({algorithm})" if algorithm else ""))
    return Section(title, f"{len(versions)} versions of {model_name}; {served}", svg(fig))


def render(sections: list[Section], title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;"
             "color:#222}h2{border-bottom:1px solid #ddd}.note{color:#666}table{border-collapse:"
             "collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;"
             "text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='note'>generated "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>"
                     f"<p class='note'>{html.escape(section.note)}</p>")
        body = (section.svg or "") + (section.table or "") or (
            f"<p class='empty'>{html.escape(section.note)}</p>")
        parts.append(f"<section class='chart'>{body}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(warehouse: Warehouse | Path, tracking_uri: str, model_name: str, out: Path,
                 experiments: Iterable[Experiment] = (), min_units: int = 100, *,
                 tenant: str | None = None) -> Path:
    """The report of one tenant (its model `model_name`); `experiments` are the tenant's
    (sluice.experiments.Experiments), each drawn with its decision (`min_units` per arm).
    `tenant` keeps the events, slots and clicks to that tenant's (None: every tenant's)."""
    from sluice.analytics import online

    readable(warehouse)
    sections = [events_per_day(warehouse, tenant), slot_sources(warehouse, tenant),
                click_through(warehouse, tenant),
                model_metrics(tracking_uri, model_name), model_quality(tracking_uri, model_name),
                *online.experiment_sections(warehouse, list(experiments), min_units),
                online.off_policy(tracking_uri, model_name)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(sections, "Sluice analytics"))
    return out


def known_tenants(warehouse: Warehouse | Path, tracking_uri: str, model_prefix: str) -> list[str]:
    """Tenants with events in the warehouse or a registered model (`<model_prefix><tenant>`)."""
    from sluice.learn import registry

    try:
        found = {row[0] for row in as_warehouse(warehouse).rows(
            "select distinct tenant from raw.events")}
    except MissingTable:  # nothing ingested yet
        found = set()
    client = registry.client(tracking_uri)
    found.update(m.name.removeprefix(model_prefix) for m in
                 client.search_registered_models(f"name LIKE '{model_prefix}%'"))
    return sorted(found)


def check_tenant(warehouse: Warehouse | Path, tracking_uri: str, model_prefix: str,
                 tenant: str) -> None:
    """A report of a tenant with no events and no model would be empty: refuse it, naming
    the tenants there are (a fresh home's default tenant is let through). A warehouse that
    cannot be read stops it first, with the reason."""
    readable(warehouse)
    known = known_tenants(warehouse, tracking_uri, model_prefix)
    if tenant in known or (not known and tenant == DEFAULT_TENANT):
        return  # a fresh home's report: each section says which run fills it
    if not known:
        raise NotFoundError("--tenant", f"no tenant has events or a model yet, {tenant!r} "
                                        "neither: run `sluice ingest` (or send events) first")
    raise NotFoundError("--tenant", f"{tenant!r} has no events and no model: known tenants "
                                    f"are {', '.join(known)}")


def tenant_experiments(settings: Any, tenant: str) -> tuple[list[Experiment], int]:
    """The tenant's experiments and the units per arm a decision needs (write_report's last
    two arguments)."""
    from sluice.experiments import Experiments

    found = [e for e in Experiments(settings.home).all(fresh=True).values() if e.tenant == tenant]
    return found, settings.app.experiments.min_units_per_arm
