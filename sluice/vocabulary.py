"""The words every part of Sluice shares, defined once: templates, slot sources, tenant names,
id lengths and the bounds of `num_results`.

Intake, serving, settings, the CLI and the HTTP schemas all read them from here, so that one
rule gives one verdict wherever a value enters.
"""

from __future__ import annotations

import re
from typing import Any

# the built-in templates: each is a declared chain of tiers (sluice.serve.tiers)
PERSONALIZED = "personalized"
SIMILAR_ITEMS = "similar_items"
POPULAR = "popular"
FILTER_BASED = "filter_based"
RECENTLY_VIEWED = "recently_viewed"
SIMILAR_ATTRIBUTES = "similar_attributes"  # neighbours by item fields: new items have them
TEMPLATES = (PERSONALIZED, SIMILAR_ITEMS, POPULAR, FILTER_BASED, RECENTLY_VIEWED,
             SIMILAR_ATTRIBUTES)

# where a recommended slot came from (docs/architecture.md, "tiers, sources and counts")
MODEL_PERSONALIZED = "model_personalized"
MODEL_NON_PERSONALIZED = "model_non_personalized"
MODEL_FALLBACK = "model_fallback"
FALLBACK = "fallback"
SOURCES = (MODEL_PERSONALIZED, MODEL_NON_PERSONALIZED, MODEL_FALLBACK, FALLBACK)

# a tenant (a Personalize dataset group): 1 to 64 characters, starting alphanumeric
DEFAULT_TENANT = "default"
TENANT_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # unanchored: ARN patterns embed it
TENANT_PATTERN = f"^{TENANT_NAME}$"
TENANT_RULE = "1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
_TENANT = re.compile(TENANT_PATTERN)

MAX_ID_LENGTH = 256  # user, item, session, event and recommendation ids

# num_results: config (serving.default_num_results, serving.max_num_results) picks within these
MIN_NUM_RESULTS = 1
DEFAULT_NUM_RESULTS = 25  # the default of serving.default_num_results
MAX_NUM_RESULTS = 500


def is_tenant(value: Any) -> bool:
    """Whether `value` is a valid tenant name (the one rule of every entry point)."""
    return isinstance(value, str) and _TENANT.fullmatch(value) is not None
