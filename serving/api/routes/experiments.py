"""Operator routes for online experiments (admin keys): create, list, show, stop."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from serving.api.bodies import JsonBody
from serving.api.deps import Admin, ServiceDep
from serving.api.errors import RELOAD_BEHIND, responses
from sluice.experiments import ALL_TEMPLATES, Arm, Experiment
from sluice.intake.values import LATEST_MS
from sluice.learn import registry
from sluice.store import StoreError
from sluice.vocabulary import TEMPLATES, TENANT_PATTERN

router = APIRouter(prefix="/admin/experiments", tags=["admin"],
                   responses=responses(401, 403, 404, 413, 422))


class ArmBody(JsonBody):
    name: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=256,
                       description="a registered version number or alias (champion, ...)")
    share: float = Field(gt=0, le=1, allow_inf_nan=False,
                         description="the share of traffic; shares sum to 1")


class ExperimentBody(JsonBody):
    id: str = Field(min_length=1, max_length=64)
    tenant: str = Field("default", pattern=TENANT_PATTERN)
    arms: list[ArmBody] = Field(min_length=2, max_length=16,
                                description="the first arm is the control")
    template: str = Field(ALL_TEMPLATES,
                          description="a built-in or configured template, or * (all)")
    kind: str = Field("ab", description="ab or interleaving")
    metric: str = Field("click_through_rate", description="click_through_rate, "
                        "conversion_rate or purchases_per_user: the one that decides")
    unit: str | None = Field(None, description="what assignment keeps an arm for: session "
                             "(the session id, else the user id) or user (the user id, else "
                             "the session id: a logged-in user keeps one arm across sessions, "
                             "an anonymous session may change arm at login); default: the "
                             "config's experiments.default_unit (session)")
    start_ms: int | None = Field(None, ge=0, lt=LATEST_MS, description="default: now")
    end_ms: int | None = Field(None, ge=0, lt=LATEST_MS, description="default: open-ended")


def _unreadable(field: str, exc: StoreError) -> HTTPException:
    """409: the stored experiments (or this one) cannot be read; the reason says what to fix."""
    return HTTPException(409, detail=[{"field": field, "reason": str(exc)}])


def _get(service: ServiceDep, experiment_id: str) -> Experiment:
    try:
        return service.experiments.get(experiment_id)
    except StoreError as exc:
        raise _unreadable("experiment_id", exc) from None


@router.get("", responses=responses(409))
def list_experiments(principal: Admin, service: ServiceDep) -> list[dict]:
    """Every readable experiment of the tenants this key covers, running or not (one that
    cannot be read is left out and named in the server's log)."""
    try:
        found = sorted(service.experiments.all(fresh=True).values(), key=lambda e: e.id)
    except StoreError as exc:
        raise _unreadable("experiments", exc) from None
    return [e.as_dict() for e in found if principal.covers(e.tenant)]


@router.post("", status_code=201, responses={**responses(415), **RELOAD_BEHIND})
async def create_experiment(body: ExperimentBody, principal: Admin,
                            service: ServiceDep) -> dict:
    """Start an experiment; 422 names the field at fault (shares, unknown models, overlap).
    The answer comes once every serving process of the home (`sluice serve --workers N`) has
    loaded its arms and answers within it (503, the experiment saved all the same, naming
    those of this host that had not within `serving.reload_wait_seconds`)."""
    principal.require("admin", body.tenant)
    settings = service.settings
    exp = Experiment(
        id=body.id, tenant=body.tenant, template=body.template, kind=body.kind,
        metric=body.metric, arms=tuple(Arm(a.name, a.model, a.share) for a in body.arms),
        start_ms=int(time.time() * 1000) if body.start_ms is None else body.start_ms,
        end_ms=body.end_ms,
        unit=settings.app.experiments.default_unit if body.unit is None else body.unit)
    name = settings.registered_model_name(body.tenant)
    await run_in_threadpool(service.polls.create_experiment, exp, lambda ref: registry.ref_exists(
        settings.mlflow_tracking_uri, name, ref), [*TEMPLATES, *settings.app.templates])
    return exp.as_dict()


@router.get("/{experiment_id:path}", responses=responses(409))
def show_experiment(experiment_id: str, principal: Admin, service: ServiceDep) -> dict:
    exp = _get(service, experiment_id)
    principal.require("admin", exp.tenant)
    return exp.as_dict()


@router.post("/{experiment_id:path}/stop", responses={**RELOAD_BEHIND, **responses(409)})
def stop_experiment(experiment_id: str, principal: Admin, service: ServiceDep) -> dict:
    """Stop it now: answers leave the experiment, in every serving process of the home when
    this answers (503 as for a creation); its data stays for the analysis."""
    principal.require("admin", _get(service, experiment_id).tenant)
    return service.polls.stop_experiment(experiment_id).as_dict()
