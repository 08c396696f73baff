"""Flow `batch`: recommendations for a file of users (or items, or every user), or segments
(for each item, its most likely users), written to $SLUICE_HOME/exports/<job>/ (see
`sluice.serve.batch`, which answers with the serving tiers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from flows.names import run_name
from flows.retries import IO_RETRIES
from flows.tenants import fail_if_any, settle
from sluice.errors import NotFoundError
from sluice.serve.batch import BatchJob, every_tenant, new_job_id, run_recommendations
from sluice.serve.batch_io import input_location
from sluice.serve.segments import run_segments
from sluice.settings import get_settings
from sluice.vocabulary import DEFAULT_TENANT, PERSONALIZED


@dataclass
class BatchOutcome:
    """What a batch job wrote: its folder (or URL) and the manifest written beside the output."""

    job: str
    output: str
    manifest: dict[str, Any]

    @property
    def counts(self) -> dict[str, Any]:
        """lines, answered, errors, slots, without_personalized, by_source."""
        return dict(self.manifest["counts"])

    @property
    def model_version(self) -> str | None:
        return self.manifest["lineage"]["model_version"]


@flow(name="batch", flow_run_name=run_name("batch"))
def batch(tenant: str = DEFAULT_TENANT, input: str | None = None,
          template: str = PERSONALIZED, num_results: int | None = None,
          filters: list[dict[str, Any]] | None = None, filter_name: str | None = None,
          filter_values: dict[str, str] | None = None, fill_with_random: bool | None = None,
          model_version: str | None = None, segments: bool = False,
          log_answers: bool = False, output: str | None = None) -> BatchOutcome:
    """Answer `input` (a JSON Lines file in the landing folder, a path or an fsspec URL; none:
    every user, or every item for segments) and return the job's manifest.

    Lines that cannot be answered become error lines in the output; the job reports how many.
    A tenant without a champion is answered from its popular and random tiers, as the API
    answers it (segments need a model: they fail, naming the tenant).
    """
    job_id = new_job_id()
    out = output or str(get_settings().home / "exports" / job_id)
    return _job(tenant, job_id, out, input, template=template, num_results=num_results,
                filters=filters, filter_name=filter_name, filter_values=filter_values,
                fill_with_random=fill_with_random, model_version=model_version,
                segments=segments, log_answers=log_answers)


@task(**IO_RETRIES)
def find_tenants() -> list[str]:
    """Every tenant with a champion or events in the raw log, as of now (at least one)."""
    found = every_tenant(get_settings())
    if not found:
        raise NotFoundError("tenants", "no tenant has a champion model or events in the raw "
                                       "log yet: send events (or run `sluice ingest`) first")
    get_run_logger().info("tenants found: %s", ", ".join(found))
    return found


@flow(name="batch-tenants", flow_run_name=run_name("batch"))
def batch_tenants(tenants: list[str] | None = None, input: str | None = None,
                  template: str = PERSONALIZED, num_results: int | None = None,
                  filters: list[dict[str, Any]] | None = None, filter_name: str | None = None,
                  filter_values: dict[str, str] | None = None,
                  fill_with_random: bool | None = None, segments: bool = False,
                  log_answers: bool = False, output: str | None = None) -> list[BatchOutcome]:
    """The same job for each tenant (None: every tenant with a champion or events, found when
    the run starts, as the nightly deployment runs it), into `<output or
    exports/<job>>/<tenant>/`. One tenant's failure does not stop the others: each is
    answered, then the run fails naming the failed tenants and why."""
    job_id = new_job_id()
    root = (output or str(get_settings().home / "exports" / job_id)).rstrip("/")
    options = {"template": template, "num_results": num_results, "filters": filters,
               "filter_name": filter_name, "filter_values": filter_values,
               "fill_with_random": fill_with_random, "segments": segments,
               "log_answers": log_answers}
    outcomes, failed = settle([(name, tenant_batch(name, job_id, f"{root}/{name}", input,
                                                   options, return_state=True))
                               for name in dict.fromkeys(tenants or find_tenants())])
    fail_if_any(failed, [o.manifest["tenant"] for o in outcomes], "answered")
    return outcomes


@task(task_run_name="batch-{tenant}")
def tenant_batch(tenant: str, job_id: str, out: str, input: str | None,
                 options: dict[str, Any]) -> BatchOutcome:
    """One tenant's part of `batch_tenants`."""
    return _job(tenant, job_id, out, input, **options)


def _job(tenant: str, job_id: str, out: str, input: str | None, *, segments: bool = False,
         num_results: int | None = None, model_version: str | None = None,
         **request: Any) -> BatchOutcome:
    logger = get_run_logger()
    settings = get_settings()
    source = input_location(settings.landing_location, input)
    artifact = create_progress_artifact(0.0, key=f"batch-{_slug(tenant)}",
                                        description=f"batch job {job_id}")

    def report(p: dict[str, Any]) -> None:
        left = f", {p['left_s']:.0f}s left" if p["left_s"] is not None else ""
        of = f"/{p['total']:,}" if p["total"] else ""
        logger.info("batch %s: %s%s lines, %.0f/s%s", job_id, f"{p['done']:,}", of, p["rate"],
                    left)
        if p["total"]:
            update_progress_artifact(artifact, 100.0 * p["done"] / p["total"])  # type: ignore[arg-type]

    if segments:
        manifest = run_segments(settings, tenant, source, out, num_results or 100,
                                model_version, report, job_id)
    else:
        job = BatchJob(tenant, num_results=num_results, model_version=model_version, **request)
        manifest = run_recommendations(settings, job, source, out, report, job_id)
    counts = manifest["counts"]
    if manifest["lineage"].get("note"):  # no champion: the popular tier answered
        logger.warning("tenant %s: %s; `sluice train` gives it a model once it has enough "
                       "data", tenant, manifest["lineage"]["note"])
    logger.info("batch %s: %d lines answered, %d error lines, %d slots -> %s", job_id,
                counts["answered"], counts["errors"], counts["slots"], out)
    create_markdown_artifact(key=f"batch-{_slug(tenant)}-summary", markdown=_summary(manifest),
                             description=f"batch job {job_id}")
    return BatchOutcome(job=job_id, output=out, manifest=manifest)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def _summary(manifest: dict[str, Any]) -> str:
    counts, lineage = manifest["counts"], manifest["lineage"]
    rows = [("lines", counts["lines"]), ("answered", counts["answered"]),
            ("error lines", counts["errors"]), ("slots", counts["slots"]),
            ("answers without a personalized slot", counts["without_personalized"]),
            *counts["by_source"].items(), ("model version", lineage["model_version"]),
            ("data high-water (ms)", lineage["data_high_water_ms"]),
            ("seconds", manifest["timings"]["seconds"])]
    return "\n".join([f"### batch {manifest['kind']} {manifest['job']} ({manifest['tenant']})",
                      "", "| | |", "|---|---:|", *[f"| {k} | {v} |" for k, v in rows]])
