"""The largest body of each Personalize operation that botocore sends within its service
model's limits, as the size above which a body is refused (413) unread.

botocore writes a body with `json.dumps` as it is (ASCII output, `", "` and `": "` between
members), checks a string's length in characters (code points) and not its pattern: so any
character of any string may take 12 bytes, one outside the BMP being two `\\uXXXX` escapes.
Each bound below is the body of every member at its model maximum, each character at its
widest: every body botocore can send is accepted, and a larger one is refused naming the
limit (tests/serving/test_personalize_bodies.py serializes the largest ones with botocore
itself and sends them). A list the model leaves unbounded is taken at
Personalize's documented limit (GetPersonalizedRanking's inputList, 500 items); a number at
the most characters botocore writes for it.
"""

from __future__ import annotations

from sluice.intake.personalize import (
    MAX_ATTRIBUTION_SOURCE,
    MAX_EVENT_PROPERTIES,
    MAX_EVENTS,
    MAX_IMPRESSION,
    MAX_ITEM_PROPERTIES,
    MAX_RECOMMENDATION_ID,
    MAX_USER_PROPERTIES,
)
from sluice.serve.personalize import (
    MAX_COLUMN_NAME,
    MAX_CONTEXT,
    MAX_CONTEXT_NAME,
    MAX_FILTER_VALUE,
    MAX_FILTER_VALUE_NAME,
    MAX_FILTER_VALUES,
)
from sluice.vocabulary import MAX_ID_LENGTH

WIDEST_CHARACTER = 12  # "\ud83d\ude00": one character outside the BMP
MAX_ARN = 256
MAX_RANKING_INPUT = 500  # GetPersonalizedRanking's inputList, in Personalize's guide
# numbers: an integer without a maximum (numResults) as Python writes it, at most
# sys.int_info.default_max_str_digits digits; a float (eventValue) is an int too in botocore's
# validation, and the largest one it can check (math.isnan) has 309 digits and a sign; a
# timestamp is epoch seconds with microseconds (-62135596799.000012 in year 1)
INTEGER_CHARS, FLOAT_CHARS, TIMESTAMP_CHARS = 4300, 310, 19
MODEL_METADATA_COLUMNS, MAX_DATASET_TYPE = 99, 256  # the model's (Sluice refuses over 10)
MAX_PROMOTION_NAME, MAX_PERCENT_CHARS = 63, 3


def text(chars: int) -> int:
    return 2 + chars * WIDEST_CHARACTER


def listed(count: int, item: int) -> int:
    return 2 + count * item + 2 * max(count - 1, 0)


def mapped(count: int, key: int, value: int) -> int:
    return 2 + count * (key + 2 + value) + 2 * max(count - 1, 0)


def structure(**members: int) -> int:
    return 2 + sum(len(name) + 4 + size for name, size in members.items()) + 2 * (
        len(members) - 1)


_ARN, _ID = text(MAX_ARN), text(MAX_ID_LENGTH)
_FILTER_VALUES = mapped(MAX_FILTER_VALUES, text(MAX_FILTER_VALUE_NAME), text(MAX_FILTER_VALUE))
_SHARED = {"context": mapped(MAX_CONTEXT, text(MAX_CONTEXT_NAME), text(1000)),
           "filterArn": _ARN, "filterValues": _FILTER_VALUES,
           "metadataColumns": mapped(1, text(MAX_DATASET_TYPE), listed(
               MODEL_METADATA_COLUMNS, text(MAX_COLUMN_NAME)))}
_EVENT = structure(
    eventId=_ID, eventType=_ID, eventValue=FLOAT_CHARS, itemId=_ID,
    properties=text(MAX_EVENT_PROPERTIES), sentAt=TIMESTAMP_CHARS,
    recommendationId=text(MAX_RECOMMENDATION_ID), impression=listed(MAX_IMPRESSION, _ID),
    metricAttribution=structure(eventAttributionSource=text(MAX_ATTRIBUTION_SOURCE)))

PUT_EVENTS = structure(trackingId=_ID, userId=_ID, sessionId=_ID,
                       eventList=listed(MAX_EVENTS, _EVENT))
PUT_ITEMS = structure(datasetArn=_ARN, items=listed(MAX_EVENTS, structure(
    itemId=_ID, properties=text(MAX_ITEM_PROPERTIES))))
PUT_USERS = structure(datasetArn=_ARN, users=listed(MAX_EVENTS, structure(
    userId=_ID, properties=text(MAX_USER_PROPERTIES))))
GET_RECOMMENDATIONS = structure(
    campaignArn=_ARN, itemId=_ID, userId=_ID, numResults=INTEGER_CHARS, recommenderArn=_ARN,
    promotions=listed(1, structure(name=text(MAX_PROMOTION_NAME),
                                   percentPromotedItems=MAX_PERCENT_CHARS, filterArn=_ARN,
                                   filterValues=_FILTER_VALUES)), **_SHARED)
GET_PERSONALIZED_RANKING = structure(campaignArn=_ARN, inputList=listed(MAX_RANKING_INPUT, _ID),
                                     userId=_ID, **_SHARED)
