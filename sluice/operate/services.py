"""`sluice doctor`'s checks of what runs beside the home: the Prefect server, the ports; and
the `Finding` every check yields."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from sluice.settings import Settings


@dataclass
class Finding:
    check: str
    problem: str | None = None  # None: fine
    fix: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


def prefect() -> Iterator[Finding]:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        yield Finding("prefect", note="PREFECT_API_URL not set (flows run in-process)")
        return
    try:
        ok = httpx.get(f"{url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        ok = False
    if ok:
        yield Finding("prefect", note=f"{url} answers")
    else:
        yield Finding("prefect", f"the Prefect server at {url} does not answer",
                      "sluice up  (or `prefect server start`), or unset PREFECT_API_URL")


def ports(settings: Settings) -> Iterator[Finding]:
    wanted = {settings.port: "SLUICE_PORT"}
    answering = []
    if not os.environ.get("PREFECT_API_URL"):
        wanted[settings.prefect_port] = "the Prefect server of `sluice up`"
    for port, who in wanted.items():
        if not port_taken(settings.host if who == "SLUICE_PORT" else "127.0.0.1", port):
            continue
        if who != "SLUICE_PORT" and _prefect_answers(port):
            answering.append(port)  # `sluice up` runs: CLI flows go to it (cli.processes)
            continue
        fix = ("stop what holds it, or set SLUICE_PORT to a free port" if who == "SLUICE_PORT"
               else f"stop what holds port {port}, or set SLUICE_PREFECT_PORT to a free port")
        yield Finding("ports", f"port {port} ({who}) is taken (by Sluice itself if it is "
                      "already serving: then ignore this)", fix)
        return
    free = [str(p) for p in wanted if p not in answering]
    note = ", ".join(free) + " free" if free else ""
    if answering:
        note += f"{'; ' if note else ''}the Prefect server of `sluice up` answers on " \
                f"{answering[0]} (flows run there)"
    yield Finding("ports", note=note)


def _prefect_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def port_taken(host: str, port: int) -> bool:
    """Whether a server could not listen on (host, port) now (another process holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
