"""Config sections of serving: answers, templates, exploration, alerts, experiments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from sluice.vocabulary import (
    DEFAULT_NUM_RESULTS,
    MAX_NUM_RESULTS,
    MIN_NUM_RESULTS,
    PERSONALIZED,
    TEMPLATES,
)


class AnnConfig(BaseModel):
    """Catalog passes by an approximate nearest-neighbour index (sluice.ann) at scale."""

    # the train flow builds the index into the bundle of a catalog of at least this many
    # items, and serving uses it for such a catalog instead of scoring every item: below,
    # an exact pass (about a millisecond per 100,000 items x 64 factors) is cheap enough
    min_items: int = Field(250_000, ge=1)
    # the kind the train flow builds: ivf (an inverted file) or hnsw (a graph; at 1M items it
    # measured worse recall and time per answer than ivf, benchmarks/README.md session 5);
    # serving reads the kind from the bundle, so bundles of either kind serve either way
    kind: Literal["hnsw", "ivf"] = "ivf"
    # hnsw: links per item (faiss's M) and the breadth of the build's searches
    # (efConstruction): more is better recall for more build time
    m: int = Field(32, ge=4, le=128)
    ef_construction: int = Field(80, ge=8, le=1000)
    lists: int = Field(0, ge=0)  # ivf: inverted lists (k-means cells); 0: about 4 sqrt(items)
    # ivf: how the lists hold each item: sq8 (a byte a factor, a quarter of the memory and a
    # faster scan; candidates are scored exactly afterwards) or flat (float32)
    codes: Literal["flat", "sq8"] = "sq8"
    # the train flow calibrates how widely a query looks (ivf: lists probed; hnsw: efSearch)
    # to the narrowest breadth whose recall@25 against the exact scan reaches this, on a
    # sample of fold-ins of trained users' histories; the bundle records both
    recall_target: float = Field(0.95, gt=0, le=1)
    # serving: a fixed breadth instead of the bundle's calibrated one (0: calibrated)
    ef_search: int = Field(0, ge=0, le=4096)
    probes: int = Field(0, ge=0)


class ServingConfig(BaseModel):
    # what a request without num_results gets, and the most one may ask for (a larger one is
    # refused with 422 naming num_results); both within vocabulary's MAX_NUM_RESULTS
    default_num_results: int = Field(DEFAULT_NUM_RESULTS, ge=MIN_NUM_RESULTS, le=MAX_NUM_RESULTS)
    max_num_results: int = Field(MAX_NUM_RESULTS, ge=MIN_NUM_RESULTS, le=MAX_NUM_RESULTS)
    popular_list_size: int = Field(1000, ge=10)
    model_poll_seconds: float = Field(10, gt=0)
    log_poll_seconds: float = Field(0.2, gt=0)
    # how long `POST /admin/reload` (and creating or stopping an experiment through the admin
    # routes) waits for every other serving process of the host to reload, before a 503
    # naming those that had not (sluice.reloads)
    reload_wait_seconds: float = Field(120, gt=0, le=3600, allow_inf_nan=False)
    # each trained user's best unseen items, computed by the train flow into the bundle so
    # that most answers read a list instead of scoring every item (0: score every request)
    precomputed_candidates: int = Field(100, ge=0, le=1000)
    ranking_cache_size: int = Field(50_000, ge=0)  # users whose computed ranking head is kept
    ann: AnnConfig = Field(default_factory=AnnConfig)

    @model_validator(mode="after")
    def _default_within_max(self) -> ServingConfig:
        if self.default_num_results > self.max_num_results:
            raise ValueError(f"default_num_results ({self.default_num_results}) is above "
                             f"max_num_results ({self.max_num_results})")
        return self


class ExplorationConfig(BaseModel):
    # the share of the model tier's slots given to items drawn from the model's next
    # candidates (sluice.serve.exploration); 0 is off, else within 0.05-0.3: below, the
    # off-policy estimates see too few explored slots to weigh; above, answers get worse
    share: float = Field(0.0, ge=0.0, le=0.3)

    @field_validator("share")
    @classmethod
    def _off_or_in_range(cls, value: float) -> float:
        if 0 < value < 0.05:
            raise ValueError("0 (off) or from 0.05 to 0.3")
        return value


class TemplateConfig(BaseModel):
    """A named template: a built-in chain (`base`) with static filters and defaults."""

    base: str = PERSONALIZED
    filters: list[dict[str, Any]] = Field(default_factory=list)
    num_results: int | None = Field(None, ge=MIN_NUM_RESULTS, le=MAX_NUM_RESULTS)
    fill_with_random: bool | None = None
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)

    @field_validator("base")
    @classmethod
    def _known_base(cls, value: str) -> str:
        if value not in TEMPLATES:
            raise ValueError(f"base must be one of {', '.join(TEMPLATES)}")
        return value


class TierShareThreshold(BaseModel):
    """Where slots come from, per tenant and template ("*": any), over alerts.window_minutes:
    an alert when the personalized share falls below, or the fallback share (model_fallback
    + fallback) rises above."""

    tenant: str = "*"
    template: str = "*"
    min_personalized_share: float | None = Field(None, ge=0, le=1)
    max_fallback_share: float | None = Field(None, ge=0, le=1)


class AlertsConfig(BaseModel):
    # the marts are as fresh as the last transform (the refresh deployment: every 2 hours)
    window_minutes: int = Field(180, ge=1, le=7 * 24 * 60)
    min_slots: int = Field(100, ge=1)  # fewer slots in the window: too few to judge
    tier_shares: list[TierShareThreshold] = Field(default_factory=list)


class ExperimentsConfig(BaseModel):
    """The decision flow over running experiments (flows/experiments.py)."""

    min_units_per_arm: int = Field(100, ge=1)  # fewer: keep running, whatever the interval
    auto_promote: bool = False  # move `champion` to a challenger whose interval excludes 0
    # the unit of an experiment created without one (sluice.experiments.UNITS); an experiment
    # keeps the unit it was created with, whatever this becomes later
    default_unit: Literal["session", "user"] = "session"
