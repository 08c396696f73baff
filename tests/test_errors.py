"""One error family (sluice/errors.py) mapped to HTTP once (serving/api/errors.py): the native
shape and the Personalize shape of the same InputError, in the mapping and on a real server."""

from __future__ import annotations

import json

import pytest

from serving.api.errors import input_error
from sluice.errors import InputError, NotFoundError
from sluice.filters import FilterError
from sluice.intake.events import EventError
from sluice.intake.personalize import PersonalizeError
from sluice.serve.answers import RecommendationError
from tests.utils.auth import READ, boto_client

KINDS = (InputError, EventError, FilterError, RecommendationError, PersonalizeError)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_every_input_error_has_the_native_and_the_personalize_shape(kind):
    exc = kind("numResults", "an integer from 1 to 500")
    native = input_error(exc, "/v1/recommendations")
    assert native.status_code == 422
    assert json.loads(native.body) == {"detail": [{"field": "numResults",
                                                   "reason": "an integer from 1 to 500"}]}
    aws = input_error(exc, "/personalize/recommendations")
    assert aws.status_code == 400
    assert aws.headers["x-amzn-ErrorType"] == "InvalidInputException"
    assert json.loads(aws.body) == {"__type": "InvalidInputException",
                                    "message": "numResults: an integer from 1 to 500"}


def test_something_missing_is_404_in_both_shapes():
    exc = NotFoundError("filterArn", "no filter named 'x'")
    native = input_error(exc, "/v1/recommendations")
    assert (native.status_code, json.loads(native.body)) == (
        404, {"detail": [{"field": "filterArn", "reason": "no filter named 'x'"}]})
    aws = input_error(exc, "/personalize/recommendations")
    assert (aws.status_code, aws.headers["x-amzn-ErrorType"]) == (404, "ResourceNotFoundException")


def test_personalize_parameters_are_not_event_errors():
    assert not issubclass(PersonalizeError, EventError)
    assert not issubclass(RecommendationError, EventError)


REAL_SERVER = True  # the real boto3 client calls it over HTTP (conftest's `server`)
CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"


def test_a_bad_recommendation_parameter_on_both_apis(server):
    """The same RecommendationError (context value too long) through both routes."""
    context = {"device": "x" * 1001}
    http = server["http"]
    native = http.post("/v1/recommendations", headers=READ,
                       json={"user_id": "u1", "context": context})
    assert native.status_code == 422
    assert native.json()["detail"][0]["field"] == "context.device"
    # botocore would refuse it before sending: the call goes out as it would from elsewhere
    aws = http.post("/personalize/recommendations", headers=READ,
                    json={"campaignArn": CAMPAIGN, "userId": "u1", "context": context})
    assert (aws.status_code, aws.headers["x-amzn-ErrorType"]) == (400, "InvalidInputException")
    assert aws.json() == {"__type": "InvalidInputException",
                          "message": "context.device: a string of at most 1000 characters"}


def test_filter_and_lookup_errors_keep_the_aws_shapes(server):
    client = boto_client(server["base"], "personalize-runtime")
    with pytest.raises(client.exceptions.ResourceNotFoundException) as missing:
        client.get_recommendations(
            campaignArn=CAMPAIGN, userId="u1",
            filterArn="arn:aws:personalize:us-east-1:000000000000:filter/nothing-here")
    assert missing.value.response["Error"]["Message"] == (
        "filterArn: no filter named 'nothing-here'")
    with pytest.raises(client.exceptions.InvalidInputException, match="filterArn: expected"):
        client.get_recommendations(campaignArn=CAMPAIGN, userId="u1", filterArn="not-an-arn")
    native = server["http"].post("/v1/recommendations", headers=READ,
                                 json={"user_id": "u1", "filters": [{"field": "x", "op": "bad"}]})
    assert native.status_code == 422
    assert native.json()["detail"][0]["field"].startswith("filters[0]")
