"""The dbt docs site, as `sluice dbt -- docs generate` writes it and `... -- docs serve` serves
it: dbt's own page with the two asset references that a browser cannot load put right.

dbt-docs' packaged `index.html` asks for assets that do not exist: the menu's icons are
`<use xlink:href="{{ getIcon(...) }}">` in its Angular templates, so the browser requests the
raw template text (404) before Angular fills it in, and its favicon link is a webpack
`${require(...)}` that was never substituted (404). The icons become `ng-attr-href`, which
Angular sets once it holds the page's own `#icn-...` fragment (no request at all); the favicon
becomes an inline empty icon, so a browser does not fall back to `/favicon.ico` either. A dbt
release that fixes them leaves nothing to replace: the page is written as dbt ships it.

`docs serve` is served here rather than by dbt, because dbt's server copies its packaged page
over the fixed one each time it starts. It serves the same folder (the target path the flow
uses), copying nothing there, on the same options: `--host` (127.0.0.1), `--port` (8080),
`--browser/--no-browser`.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import webbrowser
from collections.abc import Callable
from pathlib import Path

from sluice.errors import OperatorError

# (what dbt-docs ships, what a browser can load without a request that fails)
FIXES = (
    ("xlink:href=\"{{ getIcon(", "ng-attr-href=\"{{ getIcon("),
    ("href=\"${require('./assets/favicons/favicon.ico')}\"", "href=\"data:,\""),
)


def fixed_index(html: str) -> str:
    """dbt-docs' page with FIXES applied (those it does not contain are left out)."""
    for broken, fixed in FIXES:
        html = html.replace(broken, fixed)
    return html


def fix_pages(target: Path) -> list[Path]:
    """The docs pages `docs generate` wrote into `target` (index.html, and static_index.html
    with --static), fixed in place; returns those it found."""
    pages = [p for p in (target / "index.html", target / "static_index.html") if p.exists()]
    for page in pages:
        html = page.read_text(encoding="utf-8")
        fixed = fixed_index(html)
        if fixed != html:
            page.write_text(fixed, encoding="utf-8")
    return pages


def serve(target: Path, args: list[str], say: Callable[[str], None]) -> int:
    """`docs serve [--host H] [--port P] [--no-browser]` over `target`, until interrupted."""
    parser = argparse.ArgumentParser(prog="sluice dbt -- docs serve", add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--browser", action=argparse.BooleanOptionalAction, default=True)
    options, unknown = parser.parse_known_args(args)
    if unknown:
        raise OperatorError(f"docs serve: {' '.join(unknown)} not understood: it takes "
                            "--host, --port and --browser/--no-browser")
    if not (target / "manifest.json").exists() or not fix_pages(target):
        raise OperatorError(f"no docs in {target} yet: run `sluice dbt -- docs generate` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(target))
    with http.server.ThreadingHTTPServer((options.host, options.port), handler) as site:
        url = f"http://{options.host}:{site.server_address[1]}"
        say(f"Serving the dbt docs of {target} at {url} (Ctrl+C stops)")
        if options.browser:
            webbrowser.open_new_tab(url)
        try:
            site.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0

