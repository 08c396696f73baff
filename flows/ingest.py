"""Flow `ingest`: raw event log + landing files -> DuckDB raw tables, exactly once."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.names import run_name
from sluice.settings import get_settings
from sluice.warehouse.ingest import Ingestor, format_table


@task(retries=2, retry_delay_seconds=5)
def load_new_files() -> dict[str, Any]:
    """Load every raw log segment and landing file not loaded yet."""
    logger = get_run_logger()
    settings = get_settings()
    report = Ingestor(settings.warehouse_path, settings.raw_location, settings.landing_location,
                      progress=logger.info).run()
    table = report.table_rows(settings.home)
    create_table_artifact(key="ingest-summary", table=table,
                          description="Files loaded by this ingest run, then the totals")
    logger.info("ingest summary:\n%s", format_table(table))
    for path in report.summary()["unreadable_files"]:
        logger.warning("quarantined whole (unreadable): %s", path)
    for path in report.summary()["changed_files"]:
        logger.warning("changed after loading, not reloaded: %s", path)
    return {**report.summary(), "table": table}


@flow(name="ingest", flow_run_name=run_name("ingest"), log_prints=False)
def ingest() -> dict[str, Any]:
    summary = load_new_files()
    get_run_logger().info(
        "ingest: %(files)s files, %(rows_loaded)s rows loaded, %(rows_quarantined)s quarantined,"
        " %(duplicates_skipped)s duplicates skipped", summary)
    return summary
