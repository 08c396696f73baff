"""Flow `ingest`: raw event log + landing files -> the warehouse's raw tables, exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.names import run_name
from sluice.settings import get_settings
from sluice.warehouse.engine import from_settings
from sluice.warehouse.ingest import Ingestor, format_table
from sluice.warehouse.sources import IGNORED
from sluice.warehouse.unused import not_used


@dataclass
class IngestOutcome:
    """What one ingest run loaded; `table` is the per-file summary table (with a total row)."""

    files: int
    rows_loaded: int
    rows_quarantined: int
    duplicates_skipped: int
    unreadable_files: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)  # names no reader takes
    refused_files: list[str] = field(default_factory=list)  # symbolic links, not followed
    table: list[dict[str, Any]] = field(default_factory=list)
    not_used: dict[str, Any] = field(default_factory=dict)  # quarantined and unweighted rows


@task(retries=2, retry_delay_seconds=5)
def load_new_files() -> IngestOutcome:
    """Load every raw log segment and landing file not loaded yet."""
    logger = get_run_logger()
    settings = get_settings()
    started = datetime.now(UTC)
    warehouse = from_settings(settings)
    report = Ingestor(warehouse, settings.raw_location, settings.landing_location,
                      progress=logger.info, warn=logger.warning).run()  # warns once a file
    table = report.table_rows(settings.home)
    create_table_artifact(key="ingest-summary", table=table,
                          description="Files loaded by this ingest run, then the totals")
    logger.info("ingest summary:\n%s", format_table(table))
    outcome = IngestOutcome(**report.summary(), table=table)
    for path in outcome.ignored_files:
        logger.warning("%s %s", path, IGNORED)
    outcome.not_used = _report_not_used(not_used(warehouse, started,
                                                 settings.app.events.weights), logger,
                                        said=set(outcome.unreadable_files))
    return outcome


def _report_not_used(unused: dict[str, Any], logger: Any, said: set[str]) -> dict[str, Any]:
    """Quarantined rows by reason, and interactions no weight trains on: artifacts and log
    (a file quarantined whole, `said`, was logged by the ingest itself)."""
    if unused["quarantined"]:
        create_table_artifact(key="ingest-quarantined", table=unused["quarantined"],
                              description="Rows quarantined by this run, by file and field; "
                                          "read_with is the query that shows them")
    if unused["unweighted"]:
        create_table_artifact(key="ingest-unweighted", table=unused["unweighted"],
                              description="Interactions loaded by this run whose type has no "
                                          "weight in events.weights: never trained on")
    for row in (r for r in unused["quarantined"] if r["source_file"] not in said):
        logger.warning("quarantined %(rows)s rows of %(source_file)s on %(field)s, e.g. "
                       "%(example)s; read them with: %(read_with)s", row)
    for row in unused["unweighted"]:
        logger.warning("%(interactions)s interactions of tenant %(tenant)s have type "
                       "%(interaction_type)s with no weight in events.weights: never trained "
                       "on", row)
    return unused


@flow(name="ingest", flow_run_name=run_name("ingest"), log_prints=False)
def ingest() -> IngestOutcome:
    """Load new raw log segments and landing files into the warehouse, exactly once; say what
    will not be used (quarantined rows, unweighted interactions, ignored files)."""
    outcome = load_new_files()
    get_run_logger().info(
        "ingest: %s files, %s rows loaded, %s quarantined, %s duplicates skipped",
        outcome.files, outcome.rows_loaded, outcome.rows_quarantined, outcome.duplicates_skipped)
    return outcome
