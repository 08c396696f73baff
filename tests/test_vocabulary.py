"""One vocabulary (sluice/vocabulary.py): the tenant rule gives one verdict at every entry point,
and the config's num_results bounds are the ones a real server applies."""

from __future__ import annotations

import re

import pydantic
import pytest

from serving.api.routes.admin import NewTracker
from serving.api.routes.personalize import _CAMPAIGN, _ENTITIES
from serving.api.routes.recommendations import RankRequest, RecommendationQuery
from sluice.errors import InputError
from sluice.intake.events import parse_event
from sluice.intake.personalize import dataset_tenant
from sluice.intake.trackers import TrackerError, Trackers
from sluice.settings import AppConfig, Settings
from sluice.vocabulary import is_tenant
from tests.utils.auth import READ, WRITE, boto_client
from tests.utils.factories import environment, now_ms, write_config

NAMES = {
    "default": True, "shop": True, "a": True, "7": True, "shop_eu.v2-b": True,
    "x" * 21: True, "x" * 22: True, "x" * 64: True,  # Personalize's ARNs once stopped at 21
    "x" * 65: False, "": False, "_shop": False, "-shop": False, ".shop": False,
    "shop/eu": False, "shop eu": False, "*": False, "shöp": False, "shop\n": False,
}
ARN = "arn:aws:personalize:us-east-1:000000000000:{}/{}"


def _verdicts(name: str, tmp_path) -> dict[str, bool]:
    """Whether each entry point accepts `name` as a tenant."""
    def accepts(call) -> bool:
        try:
            call()
        except (InputError, TrackerError, pydantic.ValidationError):
            return False
        return True

    event = {"event": "item", "id": "i", "timestamp": 1_700_000_000_000, "item": "i",
             "tenant": name}
    settings = Settings(home=tmp_path, config=write_config(tmp_path / "c.yaml", trackers=[]))
    dataset_arn = ARN.format("dataset", f"{name}/ITEMS")
    # with a template after the group: `campaign/shop/eu` is group shop's template eu
    campaign_arn = ARN.format("campaign", name) + "/personalized"
    schema = {"dataset": _ENTITIES["items"]["requestBody"]["content"]["application/json"]
              ["schema"]["properties"]["datasetArn"]["pattern"],
              "campaign": _CAMPAIGN["pattern"]}
    return {
        "vocabulary": is_tenant(name),
        "native event": accepts(lambda: parse_event(event)),
        "tracker create (CLI, admin)": accepts(lambda: Trackers(settings).create(name)),
        "config tracker": accepts(lambda: AppConfig.model_validate(
            {"trackers": [{"tracking_id": "t", "tenant": name}]})),
        "config key": accepts(lambda: AppConfig.model_validate(
            {"auth": {"keys": [{"role": "read", "tenant": name, "key": "k" * 20}]}})),
        "recommendation query": accepts(lambda: RecommendationQuery(tenant=name)),
        "rank request": accepts(lambda: RankRequest(tenant=name, items=["i"])),
        "admin tracker": accepts(lambda: NewTracker(tenant=name)),
        "Personalize ARN": accepts(lambda: dataset_tenant(dataset_arn))
        and dataset_tenant(dataset_arn) == name,
        # JSON Schema's `$` ends the text; Python's also matches before a final newline
        "Personalize dataset schema": bool(re.search(schema["dataset"] + r"\Z", dataset_arn)),
        "Personalize campaign schema": bool(re.search(schema["campaign"] + r"\Z", campaign_arn)),
    }


@pytest.mark.parametrize("name", list(NAMES), ids=repr)
def test_one_tenant_rule_everywhere(name, tmp_path):
    verdicts = _verdicts(name, tmp_path)
    expected = dict.fromkeys(verdicts, NAMES[name])
    expected["config key"] = NAMES[name] or name == "*"  # a key's `*`: every tenant
    assert verdicts == expected


# --- num_results from config, on a real server ----------------------------------------------
DEFAULT, MAXIMUM = 7, 30


REAL_SERVER = True  # the real boto3 client calls it over HTTP (conftest's `server`)


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    return environment(tmp_path_factory.mktemp("vocabulary"),
                       serving={"default_num_results": DEFAULT, "max_num_results": MAXIMUM})


@pytest.fixture(scope="module")
def api(server):
    """The server, with a catalog of 60 items (more than the maximum, so answers fill up)."""
    items = [{"event": "item", "id": f"item-{i}", "timestamp": now_ms(), "item": f"i{i}"}
             for i in range(60)]
    assert server["http"].post("/v1/events", json=items, headers=WRITE).status_code == 200
    return server


def test_config_num_results_bounds_apply_to_native_requests(api):
    http = api["http"]
    answer = http.post("/v1/recommendations", json={"user_id": "u1"}, headers=READ)
    assert answer.status_code == 200 and answer.json()["total"] == DEFAULT
    most = http.post("/v1/recommendations", headers=READ,
                     json={"user_id": "u1", "num_results": MAXIMUM})
    assert most.status_code == 200 and most.json()["total"] == MAXIMUM
    over = http.get("/v1/recommendations", headers=READ,
                    params={"user_id": "u1", "num_results": MAXIMUM + 1})
    assert over.status_code == 422
    assert over.json() == {"detail": [{"field": "num_results",
                                       "reason": f"an integer from 1 to {MAXIMUM}"}]}


def test_config_num_results_bounds_apply_to_personalize_requests(api):
    client = boto_client(api["base"], "personalize-runtime")
    campaign = ARN.format("campaign", "default")
    assert len(client.get_recommendations(campaignArn=campaign, userId="u1")["itemList"]) == (
        DEFAULT)
    with pytest.raises(client.exceptions.InvalidInputException) as refused:
        client.get_recommendations(campaignArn=campaign, userId="u1", numResults=MAXIMUM + 1)
    assert refused.value.response["Error"]["Message"] == (
        f"numResults: an integer from 1 to {MAXIMUM}")


def test_default_num_results_above_the_maximum_is_a_config_error():
    with pytest.raises(pydantic.ValidationError, match="default_num_results"):
        AppConfig.model_validate({"serving": {"default_num_results": 40,
                                              "max_num_results": 30}})
    with pytest.raises(pydantic.ValidationError, match="serving.max_num_results"):
        AppConfig.model_validate({"serving": {"max_num_results": 30},
                                  "templates": {"long": {"num_results": 31}}})
