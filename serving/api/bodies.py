"""What every JSON request body of the native API shares: exact types, known fields only.

Pydantic's default (lax) mode would take `"num_results": true` as 1, `"5"` as 5 and
`"fill_with_random": "yes"` as true, and drop a misspelt field without a word; a body is JSON,
so each value must already be of its type, and each name one of the fields. Query parameters
are text and keep the lax conversions (`?num_results=5`), but not unknown names either.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class QueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JsonBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
