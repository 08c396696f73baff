"""A page as headless Chromium draws it, watched through the DevTools protocol.

`visit(url)` starts Debian's `chromium` (`.ci/run` installs it) with a fresh profile, opens the
page, waits until it has loaded and its network has been quiet for a while, and returns what an
operator's browser would have shown: the DOM after scripts ran, every request it made, every
console message, uncaught exception and browser log entry, and every request that failed or
answered 4xx/5xx. Tests assert on those: no console error, no request outside 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.client import connect

QUIET_SECONDS = 1.0  # no request in flight for this long after load: the page is drawn


@dataclass
class Visit:
    dom: str = ""
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # "level: text", every level
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    failed: list[str] = field(default_factory=list)  # "url: reason or status"

    def outside(self, allowed: tuple[str, ...] = ("http://127.0.0.1:", "file://",
                                                  "data:", "blob:http://127.0.0.1:")) -> list[str]:
        """The requests to anything but loopback, local files and inline data."""
        return [url for url in self.requests if not url.startswith(allowed)]


def browser() -> str | None:
    return shutil.which("chromium")


def visit(url: str, timeout: float = 60.0, loopback_names: tuple[str, ...] = ()) -> Visit:
    """`loopback_names`: host names the browser resolves to 127.0.0.1, to open a page the way
    a machine on the network names the server (a page may treat loopback URLs apart)."""
    exe = browser()
    assert exe is not None, "needs Debian's chromium (apt-get install chromium)"
    # Chromium's helper processes may still write into the profile as the main one exits:
    # the whole process group is stopped, and the folder's removal is retried, not failed
    with tempfile.TemporaryDirectory(prefix="sluice-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             *([f"--host-resolver-rules={', '.join(f'MAP {n} 127.0.0.1' for n in loopback_names)}"]
               if loopback_names else []),
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            return _watch(_page_socket(proc, timeout), url, timeout)
        finally:
            _stop(proc)
            for _ in range(20):
                shutil.rmtree(profile, ignore_errors=True)
                if not os.path.exists(profile):
                    break
                time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    """Chromium and every helper it started (they share its new process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # the helpers' own exits
        return


def _page_socket(proc: subprocess.Popen, timeout: float) -> str:
    """The blank page's DevTools websocket, from the port Chromium prints on stderr."""
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"DevTools listening on (ws://[^\s]+)", line)
        if found:
            port = found.group(1).split(":")[2].split("/")[0]
            break
        if not line and proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
    else:
        raise TimeoutError("chromium did not open its DevTools port")
    import httpx

    while time.monotonic() < deadline:
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                 if t["type"] == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.1)
    raise TimeoutError("chromium opened no page")


class _Session:
    def __init__(self, ws: Any):
        self.ws, self.next_id, self.events = ws, 0, []  # type: list[dict[str, Any]]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self.events.append(message)

    def event(self, timeout: float) -> dict[str, Any] | None:
        if self.events:
            return self.events.pop(0)
        try:
            return dict(json.loads(self.ws.recv(timeout=timeout)))
        except TimeoutError:
            return None


def _watch(socket: str, url: str, timeout: float) -> Visit:
    found, pending = Visit(), {}  # type: Visit, dict[str, str]
    with connect(socket, max_size=None, open_timeout=timeout) as ws:
        session = _Session(ws)
        for domain in ("Runtime", "Log", "Network", "Page"):
            session.call(f"{domain}.enable")
        session.call("Page.navigate", url=url)
        loaded, quiet_since = False, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = session.event(0.1)
            if message is not None:
                loaded |= message.get("method") == "Page.loadEventFired"
                _record(found, pending, message)
                quiet_since = time.monotonic()
            elif loaded and not pending and time.monotonic() - quiet_since > QUIET_SECONDS:
                break
        else:
            raise TimeoutError(f"{url} did not finish loading; in flight: "
                               f"{sorted(pending.values())}")
        result = session.call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                              returnByValue=True)
        found.dom = str(result["result"]["value"])
    return found


def _record(found: Visit, pending: dict[str, str], message: dict[str, Any]) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Network.requestWillBeSent":
        found.requests.append(params["request"]["url"])
        if params["request"]["url"].startswith(("http:", "https:")):  # blob: and data: never
            pending[params["requestId"]] = params["request"]["url"]  # report a finish
    elif method in ("Network.loadingFinished", "Network.loadingFailed"):
        url = pending.pop(params["requestId"], params["requestId"])
        if method == "Network.loadingFailed":
            found.failed.append(f"{url}: {params.get('errorText')}")
    elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
        found.failed.append(f"{params['response']['url']}: {params['response']['status']}")
    elif method == "Runtime.consoleAPICalled":
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        found.console.append(f"{params['type']}: {text}")
        if params["type"] in ("error", "assert"):
            found.errors.append(f"console.{params['type']}: {text}")
    elif method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        found.errors.append("exception: " + str(details.get("exception", {}).get(
            "description", details.get("text"))))
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        found.errors.append(f"log: {entry.get('text')} ({entry.get('url', '')})")
