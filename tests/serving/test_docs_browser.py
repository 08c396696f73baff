"""/docs and /redoc as an operator's browser opens them: headless Chromium (Debian's
`chromium`, which .ci/run installs) watched through the DevTools protocol (tests/utils/browser.py)
draws the operations, logs no console error and requests nothing but this server."""

from __future__ import annotations

import pytest

from tests.utils import browser

REAL_SERVER = True  # a browser needs a real HTTP server

pytestmark = pytest.mark.skipif(browser.browser() is None,
                                reason="needs Debian's chromium (apt-get install chromium)")


@pytest.mark.parametrize("page, drawn", [("/docs", 'class="opblock-summary-path"'),
                                         ("/redoc", 'api-content')])
def test_docs_page_draws_with_no_console_error_and_no_request_elsewhere(server, page, drawn):
    seen = browser.visit(f"{server['base']}{page}")
    assert seen.errors == [], seen.errors
    assert seen.failed == [], seen.failed
    assert seen.outside() == [], seen.outside()  # ReDoc's logo came from cdn.redoc.ly
    assert drawn in seen.dom and "/v1/recommendations" in seen.dom
    assert f"{server['base']}/openapi.json" in seen.requests  # the spec it drew, from here
    # ReDoc warns when our schema leaves it guessing (it did on /v1/events' body, one event
    # or an array of them, before that body carried examples)
    assert [c for c in seen.console if c.startswith("warning")] == [], seen.console
