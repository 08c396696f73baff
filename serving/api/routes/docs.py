"""/redoc with every asset from this server.

fastapi-offline serves Swagger UI and ReDoc's scripts from the API itself, but ReDoc's bundle
draws the "API docs by Redocly" logo from cdn.redoc.ly: on a machine without internet access
that is a failed request and a console error, on one with it a request to a third party each
time the page opens. This page serves the same bundle with that one image inlined (an empty
SVG), and /docs stays fastapi-offline's.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

STATIC = Path(fastapi_offline.__file__).parent / "static"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
BLANK_IMAGE = ("data:image/svg+xml,"
               "%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E")
DOCS_ASSETS = "/docs-assets"  # fastapi-offline's own assets (static_url)
REDOC_SCRIPT = "/redoc-assets/redoc.standalone.js"

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def redoc_script() -> bytes:
    """ReDoc's standalone bundle, its one remote image replaced by an inline one."""
    return (STATIC / "redoc.standalone.js").read_text().replace(REDOC_LOGO, BLANK_IMAGE).encode()


@router.get(REDOC_SCRIPT)
def redoc_js() -> Response:
    return Response(redoc_script(), media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=3600"})


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """The page fastapi-offline would serve (the app is made with redoc_url=None), with the
    script above."""
    root, app = request.scope.get("root_path", ""), request.app
    return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                          redoc_js_url=f"{root}{REDOC_SCRIPT}", with_google_fonts=False,
                          redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")
