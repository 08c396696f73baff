"""`POST /admin/reload` for every serving process of a home, not only the worker the request
reached: with `sluice serve --workers N` the others would serve the old champion until their
next registry poll (`serving.model_poll_seconds`). Creating or stopping an experiment through
the admin routes reloads the same way, so that every worker answers within it (or outside it)
when the route answers.

The folder `$SLUICE_HOME/serving-reloads/` holds a reload generation (a counter, raised by each
reload) and, per serving process of this host, the generation it last reloaded at
(`worker-<host>-<pid>`), beside a file it holds locked while it lives
(`worker-<host>-<pid>.lock`: the kernel drops the lock when the process ends, killed or not,
so a record left behind is told from a live one without trusting a pid that may have been
reused). Each process's model poller looks at the counter every
CHECK_SECONDS (a `stat`); when it moved, it polls the registry and records the generation.
The worker that took the request polls too, then waits until every other live process of
this host has recorded its generation, for at most `serving.reload_wait_seconds` (120 s by
default; then WorkersBehindError names those that had not, and they move when they get to it,
or at their next poll): when it answers, every worker serves the registry, and the
experiments, as they were when the reload was asked. Processes of other hosts sharing the
home are not waited for (their liveness cannot be checked from here); their own poll still
moves them.

The CLI asks for a reload the same way after `sluice models promote` / `rollback` and
`sluice experiments create` / `stop` (`reload_serving`), so an operator on the serving host
needs no HTTP call for every worker to move.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from typing import IO

FOLDER = "serving-reloads"
GENERATION = "generation"
CHECK_SECONDS = 0.1  # how often a serving process looks for a reload another one asked


class WorkersBehindError(RuntimeError):
    """A reload this process made, which some other serving processes of this host had not
    made within the wait (`serving.reload_wait_seconds`); `pids` names them."""

    def __init__(self, pids: list[int], seconds: float, what: str = "the registry's models"):
        self.pids, self.seconds = pids, seconds
        super().__init__(f"serving processes {', '.join(map(str, pids))} had not loaded {what} "
                         f"within {seconds:g} s (serving.reload_wait_seconds; this one has); "
                         "they move when they get to it, or at their next poll: see their log")


class Reloads:
    """This process's view of the home's reload generation, and its record in the folder."""

    def __init__(self, home: Path):
        self.folder = Path(home) / FOLDER
        self._host = socket.gethostname()
        self._me = self.folder / f"worker-{self._host}-{os.getpid()}"
        self._held: IO[str] | None = None  # the lock held while this process serves
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # the counter file last read
        self._asked = 0
        self.done_at = -1  # the generation this process last reloaded at; -1: not serving

    def asked(self) -> int:
        """The latest generation asked for (0: none yet); the file is read only when it
        changed (a `stat` otherwise)."""
        path = self.folder / GENERATION
        try:
            found = path.stat()
        except FileNotFoundError:
            return 0
        key = (found.st_ino, found.st_size, found.st_mtime_ns)
        if key != self._seen:
            try:
                self._asked = int(path.read_text().strip() or 0)
            except (FileNotFoundError, ValueError):  # replaced meanwhile: read at the next look
                return self._asked
            self._seen = key
        return self._asked

    def ask(self) -> int:
        """A new generation, for every serving process to reload at; returns it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{GENERATION}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.folder / GENERATION
            try:
                current = int(path.read_text().strip() or 0)
            except (FileNotFoundError, ValueError):
                current = 0
            _replace(path, str(current + 1))
        return current + 1

    def done(self, generation: int) -> None:
        """This process serves the registry as of `generation` (its start counts as one);
        never an earlier one than it said (the poller and a reload may finish in any order)."""
        with self._lock:
            if generation <= self.done_at:
                return
            if self._held is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._held = open(_lock_of(self._me), "a")  # noqa: SIM115 -- held for life
                fcntl.flock(self._held, fcntl.LOCK_EX)
            _replace(self._me, str(generation))
            self.done_at = generation

    def leave(self) -> None:
        with self._lock:
            self._me.unlink(missing_ok=True)
            if self._held is not None:
                _lock_of(self._me).unlink(missing_ok=True)
                self._held.close()
                self._held = None
            self.done_at = -1

    def wait(self, generation: int, timeout: float) -> list[int]:
        """Until every other live serving process of this host has reloaded at `generation`
        (or a later one); returns the pids of those that had not when `timeout` ran out."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [pid for pid, done in self._others() if done < generation]
            if not behind or time.monotonic() >= deadline:
                return behind
            time.sleep(CHECK_SECONDS / 2)

    def serving(self) -> list[int]:
        """The pids of the live serving processes of this host (other than this one)."""
        return [pid for pid, _ in self._others()]

    def _others(self) -> list[tuple[int, int]]:
        """(pid, generation it reloaded at) of the other live processes of this host; the
        record of one that is gone (killed) is removed."""
        found = []
        for path in self.folder.glob(f"worker-{self._host}-*"):
            if path.suffix == ".lock" or path == self._me:
                continue
            pid = int(path.name.rsplit("-", 1)[1])
            if not _alive(path):
                path.unlink(missing_ok=True)
                continue
            try:
                found.append((pid, int(path.read_text().strip() or -1)))
            except (FileNotFoundError, ValueError):  # left (or being replaced) meanwhile
                continue
        return found


def _lock_of(record: Path) -> Path:
    return record.with_name(f"{record.name}.lock")


def _alive(record: Path) -> bool:
    """Whether the process that wrote `record` still holds its lock; a lock nobody holds is
    removed with the record."""
    try:
        with open(_lock_of(record), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            _lock_of(record).unlink(missing_ok=True)  # still locked by us: no one reads it
            return False
    except FileNotFoundError:
        return False


def _replace(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees a half-written number."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def reload_serving(home: Path, wait_seconds: float, what: str) -> str:
    """Every serving process of the home reloads the registry and the experiments now; waits
    for those of this host, at most `wait_seconds`. Returns one line saying what happened
    (for a command that changed what they serve: a champion, an experiment)."""
    reloads = Reloads(home)
    if not reloads.folder.exists():
        return ("no serving process has run in this home: a server started now serves it; one "
                "on another host at its next registry poll (serving.model_poll_seconds)")
    generation = reloads.ask()
    behind = reloads.wait(generation, wait_seconds)
    if behind:
        return str(WorkersBehindError(behind, wait_seconds, what))
    if not reloads.serving():
        return ("no serving process runs on this host: a server started now serves it; one on "
                "another host at its next registry poll (serving.model_poll_seconds)")
    return (f"every serving process of this host serves {what} now; one on another host "
            "at its next registry poll (serving.model_poll_seconds)")
