"""What batch jobs read and write: the managed original's JSON Lines in and out, a Parquet row
per slot and per answer, and a manifest.

Input is `{"userId": ...}` (or `{"itemId": ...}`) per line; output is one line per input line,
in order, `{"input": ..., "output": {...}, "error": null}`, and a line that cannot be read gets
its `error` there instead of failing the job. Everything streams: the writers hold one block.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from sluice.errors import InputError
from sluice.intake.eventlog import is_url
from sluice.serve.answers import Answer
from sluice.vocabulary import MAX_ID_LENGTH, SIMILAR_ITEMS, SOURCES

JSONL, MANIFEST = "output.jsonl", "manifest.json"
SLOTS, ANSWERS = "slots.parquet", "answers.parquet"
COUNTS = ("personalized_count", "model_personalized_count", "model_non_personalized_count",
          "model_fallback_count", "fallback_count", "non_personalized_count", "total")
_SLOT_SCHEMAS = {
    "recommendations": pa.schema([
        ("line", pa.int64()), ("user_id", pa.string()), ("input_item_id", pa.string()),
        ("position", pa.int32()), ("item_id", pa.string()), ("score", pa.float64()),
        ("recommendation_source", pa.string()), ("model_version", pa.string()),
        ("recommendation_id", pa.string())]),
    "segments": pa.schema([
        ("line", pa.int64()), ("item_id", pa.string()), ("position", pa.int32()),
        ("user_id", pa.string()), ("score", pa.float64()),
        ("recommendation_source", pa.string()), ("model_version", pa.string())]),
}
_ANSWER_SCHEMA = pa.schema([("line", pa.int64()), ("input", pa.string()),
                            ("recommendation_id", pa.string()), ("error", pa.string()),
                            *[(name, pa.int32()) for name in COUNTS]])


@dataclass
class InputLine:
    line: int                 # 1-based line number in the input file
    input: Any                # what the line held (the raw text when it is not JSON)
    id: str | None = None     # the userId / itemId, when the line is good
    error: str | None = None  # why the line cannot be answered


def read_input(location: str | Path, key: str) -> Iterator[InputLine]:
    """The non-blank lines of a JSON Lines file (a path or any fsspec URL), each checked for
    `key` ("userId" or "itemId")."""
    with _open_input(location) as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield parse_line(number, raw, key)


def count_lines(location: str | Path) -> int:
    """Non-blank lines (read once more, so that progress can say how long is left)."""
    with _open_input(location) as handle:
        return sum(1 for raw in handle if raw.strip())


def input_location(landing: Path | str, given: str | None) -> str | None:
    """The job's input: a relative name is a file in the landing folder (a path, or
    SLUICE_LANDING_URL); a path or an fsspec URL stays as given."""
    if given is None or is_url(given) or Path(given).is_absolute():
        return given
    if isinstance(landing, str):  # SLUICE_LANDING_URL
        return f"{landing.rstrip('/')}/{given}"
    return str(landing / given)


def input_key(template: str) -> str:
    """What a line of a recommendations job's input names: an item for similar_items (its
    answers are an item's neighbours), a user for every other built-in template."""
    return "itemId" if template == SIMILAR_ITEMS else "userId"


def check_source(template: str, source: str | Path | None) -> None:
    """Without an input a job answers every user; a template answering items (`input_key`)
    has no such default: an InputError naming `input`. `template` is the built-in one (a
    configured template's base). The flow and `sluice batch`, before Prefect starts, say it."""
    if source is None and input_key(template) != "userId":
        raise InputError("input", f"the {template} template needs an input file of "
                                  f"{input_key(template)}")


def check_input(location: str | Path) -> None:
    """An InputError naming `input` when the file is not there or cannot be read (a folder,
    no permission, an unknown URL scheme): its first byte is read."""
    with _open_input(location) as handle:
        try:
            handle.read(1)
        except OSError as exc:
            raise _unreadable(location, exc) from None


def check_output(location: str | Path) -> None:
    """An InputError naming `output` when a local output folder cannot be made: a file is in
    its place (or in its path), or the folder it goes under cannot be written. A URL is
    checked by its first write."""
    if is_url(str(location)):
        return
    path = Path(location)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise InputError("output", f"{existing} is a file, not a folder: give a folder (made "
                                   "when missing) or an fsspec URL")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("output", f"{existing} cannot be written (no permission): give a "
                                   "folder you can write")


def _open_input(location: str | Path) -> Any:
    try:
        fs, path = url_to_fs(str(location))
    except (ValueError, ImportError) as exc:  # fsspec: "Protocol not known", a missing driver
        raise _unreadable(location, exc) from None
    try:
        return fs.open(path, "rb")
    except FileNotFoundError:
        raise InputError("input", f"{location} not found: give a file in the landing folder, a "
                                  "path or an fsspec URL") from None
    except OSError as exc:  # a folder, no permission
        raise _unreadable(location, exc) from None


def _unreadable(location: str | Path, exc: BaseException) -> InputError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return InputError("input", f"{location} cannot be read ({reason}): give a JSON Lines file "
                               "in the landing folder, a path or an fsspec URL")


def parse_line(number: int, raw: bytes, key: str) -> InputLine:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = raw.decode("utf-8", "replace").strip()[:MAX_ID_LENGTH]
        return InputLine(number, text, error=f"line {number}: not JSON ({exc})")
    if not isinstance(value, dict):
        return InputLine(number, value, error=f"line {number}: must be a JSON object with {key}")
    found = value.get(key)
    if isinstance(found, int) and not isinstance(found, bool):
        found = str(found)  # ids are strings; a CSV export may have made them numbers
    if not isinstance(found, str) or not 0 < len(found) <= MAX_ID_LENGTH:
        return InputLine(number, value, error=f"line {number}: {key} must be a string of 1 to "
                                              f"{MAX_ID_LENGTH} characters")
    return InputLine(number, value, id=found)


class BatchWriter:
    """Writes a job's output folder (a path or an fsspec URL): JSON Lines, Parquet, manifest.

    `flush` (once per block) writes the Parquet row groups, so memory holds one block."""

    def __init__(self, out: str | Path, kind: str, model_version: str | None):
        self.kind, self.model_version = kind, model_version
        self.fs, root = url_to_fs(str(out))
        self.root = root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)
        self._jsonl = self.fs.open(f"{self.root}/{JSONL}", "wb")
        self._handles = [self.fs.open(f"{self.root}/{name}", "wb") for name in (SLOTS, ANSWERS)]
        schema = _SLOT_SCHEMAS[kind]
        self._slots_writer = pq.ParquetWriter(self._handles[0], schema)
        self._answers_writer = pq.ParquetWriter(self._handles[1], _ANSWER_SCHEMA)
        self._slots: dict[str, list[Any]] = {name: [] for name in schema.names}
        self._answers: dict[str, list[Any]] = {name: [] for name in _ANSWER_SCHEMA.names}
        self.lines = self.errors = self.slots = 0
        self.by_source = dict.fromkeys(SOURCES, 0)
        self.unpersonalized = 0  # answers with no personalized slot (unknown users, ...)

    def answer(self, entry: InputLine, answer: Answer) -> None:
        """One recommendation answer (the slots of `answer`) for `entry`."""
        items = answer.items
        self._line(entry, {"recommendedItems": [s.item_id for s in items],
                           "scores": [s.score for s in items],
                           "recommendationId": answer.recommendation_id}, None)
        user, item = (None, entry.id) if "itemId" in entry.input else (entry.id, None)
        sources = [s.recommendation_source for s in items]
        self._slot_columns(len(items), line=entry.line, user_id=user, input_item_id=item,
                           position=[s.position for s in items],
                           item_id=[s.item_id for s in items], score=[s.score for s in items],
                           recommendation_source=sources, model_version=answer.model_version,
                           recommendation_id=answer.recommendation_id)
        for source in sources:
            self.by_source[source] += 1
        counts = answer.counts()
        self.unpersonalized += counts["personalized_count"] == 0
        self._answer(entry, answer.recommendation_id, None, counts)

    def segment(self, entry: InputLine, users: list[str], scores: list[float],
                source: str) -> None:
        """One item's segment: its users, best first."""
        scores = [round(s, 6) for s in scores]
        self._line(entry, {"usersList": users, "scores": scores}, None)
        self._slot_columns(len(users), line=entry.line, item_id=entry.id,
                           position=list(range(1, len(users) + 1)), user_id=users,
                           score=scores, recommendation_source=source,
                           model_version=self.model_version)
        self.by_source[source] += len(users)
        self.unpersonalized += not users
        self._answer(entry, None, None, {"personalized_count": len(users),
                                         "model_personalized_count": len(users),
                                         "total": len(users)})

    def error(self, entry: InputLine) -> None:
        self._line(entry, None, entry.error)
        self.errors += 1
        self._answer(entry, None, entry.error, {})

    def _line(self, entry: InputLine, output: dict[str, Any] | None, error: str | None) -> None:
        self._jsonl.write(orjson.dumps({"input": entry.input, "output": output, "error": error})
                          + b"\n")
        self.lines += 1

    def _slot_columns(self, count: int, **values: Any) -> None:
        """`count` slot rows: a list is a column's values, anything else repeats."""
        for name, column in self._slots.items():
            value = values.get(name)
            column.extend(value if isinstance(value, list) else [value] * count)
        self.slots += count

    def _answer(self, entry: InputLine, rid: str | None, error: str | None,
                counts: dict[str, int]) -> None:
        row = {"line": entry.line, "input": json.dumps(entry.input), "recommendation_id": rid,
               "error": error, **{name: counts.get(name, 0) for name in COUNTS}}
        for name, column in self._answers.items():
            column.append(row[name])

    def flush(self) -> None:
        for columns, writer in ((self._slots, self._slots_writer),
                                (self._answers, self._answers_writer)):
            if columns and any(len(column) for column in columns.values()):
                writer.write_table(pa.table(columns, schema=writer.schema))
                for column in columns.values():
                    column.clear()

    def close(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Flushes, closes the files, then writes the manifest (last: its presence says the
        job finished)."""
        self.flush()
        self._slots_writer.close()
        self._answers_writer.close()
        for handle in (*self._handles, self._jsonl):
            handle.close()
        manifest = {**manifest, "outputs": {"jsonl": JSONL, "slots": SLOTS, "answers": ANSWERS},
                    "counts": {"lines": self.lines, "answered": self.lines - self.errors,
                               "errors": self.errors, "slots": self.slots,
                               "without_personalized": self.unpersonalized,
                               "by_source": self.by_source}}
        with self.fs.open(f"{self.root}/{MANIFEST}", "w") as handle:
            handle.write(json.dumps(manifest, indent=2, default=str))
        return manifest
