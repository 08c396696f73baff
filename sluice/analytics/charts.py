"""What every section of the HTML report shares: the section, the read-only query, and the
figure as inline SVG with its data elements tagged `mark-<n>` (a browser test counts them)."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sluice.warehouse.engine import MissingTable, Warehouse, as_warehouse

LAG = ("the marts are rebuilt by `sluice transform` (the `refresh` deployment, every 2 h under "
       "`make up`) after `sluice ingest` loads the raw log (every 5 min)")


@dataclass
class Section:
    title: str
    note: str
    svg: str | None
    table: str | None = None  # an HTML table drawn under the chart (numbers to read)


class ReportError(RuntimeError):
    """The warehouse is there but cannot be read: a report would say "no data" and be wrong."""


def readable(warehouse: Warehouse | Path) -> None:
    """A warehouse not built yet is fine (each section says so); one that does not open or
    read (a truncated file, a server refusing) stops the report with the reason."""
    found = as_warehouse(warehouse)
    try:
        found.rows("select count(*) from raw.events")
    except MissingTable:
        return
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReportError(f"the warehouse {found} cannot be read ({reason}): `sluice doctor` "
                          "says how to fix it") from exc


def query(warehouse: Warehouse | Path, sql: str, params: list | None = None) -> pd.DataFrame:
    """A read query on either engine; empty when a mart does not exist yet (the section says
    so)."""
    try:
        return as_warehouse(warehouse).frame(sql, params or [])
    except Exception:
        return pd.DataFrame()


def svg(fig: Figure) -> str:
    """The figure as inline SVG, its data artists tagged `mark-<n>`."""
    marks = 0
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.patches, *ax.collections]:
            if artist.get_gid() == "mark":
                marks += 1
                artist.set_gid(f"mark-{marks}")
    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def mark(artists) -> None:  # type: ignore[no-untyped-def]
    for artist in artists if isinstance(artists, list | tuple) else [artists]:
        artist.set_gid("mark")


def fit_days(ax, days: pd.DatetimeIndex) -> None:  # type: ignore[no-untyped-def]
    """The time axis covers the data (half a day either side), not a calendar."""
    ax.set_xlim(days.min() - pd.Timedelta(hours=12), days.max() + pd.Timedelta(hours=12))


def table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain HTML table, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def registered(tracking_uri: str, model_name: str) -> tuple[list[Any], Any, dict[str, Any]]:
    """The model's versions, its champion (or None) and each version's run data by run id."""
    from sluice.learn import registry

    client = registry.client(tracking_uri)
    versions = client.search_model_versions(f"name = '{model_name}'")
    champion = registry.alias_version(client, model_name, registry.CHAMPION)
    runs = {v.run_id: client.get_run(v.run_id).data for v in versions if v.run_id}
    return list(versions), champion, runs
