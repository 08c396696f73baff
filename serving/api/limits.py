"""Bodies are bounded before anything parses them: a size per route and a nesting depth (and
the Personalize routes' answers carry an AWS request id, `AwsRequestIds`).

A pure ASGI middleware: it refuses on Content-Length alone when that is already too large,
reads at most the limit otherwise, measures the JSON depth without parsing
(`sluice.intake.limits.json_depth`), then hands the same bytes on to the route. Outside the
`lenient` prefixes (event intake, which reads its own bodies, and the Personalize API), a body
that is not UTF-8 or gives a key twice is refused too (`sluice.intake.limits.body_problem`):
the JSON parsers would take it, and keep one of the two values without a word. Under the
`own_depth` prefixes (the Personalize API) the route measures the depth itself, once the caller
is authenticated and the media types are checked, as the protocol's deserialization error
(sluice/intake/restjson.py): the size is all that is bounded here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.errors import PERSONALIZE_PREFIX, aws_error, problem
from sluice.intake.limits import MAX_JSON_DEPTH, body_problem, too_deep

BIG_BODY = 1024 * 1024  # measure bodies above this in a worker thread, off the event loop


class BodyLimits:
    def __init__(self, app: ASGIApp, limits: Sequence[tuple[str, int]], default: int,
                 max_depth: int = MAX_JSON_DEPTH, lenient: Sequence[str] = (),
                 own_depth: Sequence[str] = ()):
        self.app, self.limits, self.default, self.max_depth = app, limits, default, max_depth
        self.lenient, self.own_depth = tuple(lenient), tuple(own_depth)

    def limit(self, path: str) -> int:
        return next((size for prefix, size in self.limits if path.startswith(prefix)),
                    self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.limit(path)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, 413, f"larger than {limit} bytes")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nothing to answer, nothing was stored
            body += message.get("body", b"")
            if len(body) > limit:
                await self._refuse(scope, receive, send, 413, f"larger than {limit} bytes")
                return
            if not message.get("more_body", False):
                break
        data = bytes(body)
        deep = not path.startswith(self.own_depth) and (
            await anyio.to_thread.run_sync(too_deep, data, self.max_depth)
            if len(data) > BIG_BODY else too_deep(data, self.max_depth))
        if deep:
            await self._refuse(scope, receive, send, 422,
                               f"JSON nested deeper than {self.max_depth} levels")
            return
        wrong = None if path.startswith(self.lenient) else body_problem(data)
        if wrong is not None:
            await self._refuse(scope, receive, send, 422, wrong)
            return
        await self.app(scope, _replay(data, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int,
                      reason: str) -> None:
        if scope["path"].startswith(PERSONALIZE_PREFIX):
            response = aws_error("InvalidInputException", f"body: {reason}", status)
        else:
            response = problem(status, "body", reason)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for a disconnect, as the server would

    return replay


class AwsRequestIds:
    """Every answer under /personalize carries `x-amzn-RequestId`, as AWS's do: boto3 gives it
    as `ResponseMetadata["RequestId"]`, which applications log for answers and errors alike."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PERSONALIZE_PREFIX and not path.startswith(PERSONALIZE_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4()).encode()

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"x-amzn-requestid", request_id)]
            await send(message)

        await self.app(scope, receive, with_id)
