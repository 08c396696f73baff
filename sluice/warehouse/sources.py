"""What ingest reads: the new tail of a raw log segment and the records of a landing file.

A record is (line number, original text, parsed JSON object or `Unparsable`); the loader turns
each into an event or a quarantine row. Paths are local `Path`s or fsspec URLs.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from sluice.intake import eventlog, tabular
from sluice.intake.events import EventError
from sluice.intake.limits import gives_a_key_twice, repeated_key

LANDING_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".csv", ".parquet")

Record = tuple[int, bytes | str, Any]


@dataclass
class Unparsable:
    reason: str


class UnreadableFile(Exception):
    """A landing file that cannot be read or parsed at all: it is quarantined whole."""


class SegmentChanged(Exception):
    """The part of a raw log segment already loaded was rewritten since."""


@dataclass
class SegmentTail:
    """The complete lines of a segment past what was loaded, and the manifest values after."""

    records: Iterator[Record]
    lines: int
    end: int
    checksum: str


_BLOCK_LINES = 10_000  # lines parsed before they are checked and handed on together


def json_lines(data: bytes, first_line: int, keys_once: bool = False) -> Iterator[Record]:
    """(line number, line, parsed JSON or Unparsable) for each non-blank line. With
    `keys_once` (a landing file: outside input), a line giving a key twice in one object is
    Unparsable, as `POST /v1/events` refuses one: a reader would keep the last value silently.
    The raw log's lines were written by intake from parsed events, so cannot hold one."""
    lines = data.splitlines()
    for start in range(0, len(lines), _BLOCK_LINES):
        block = list(_parsed(lines[start:start + _BLOCK_LINES], first_line + start))
        yield from _keys_given_once(block) if keys_once else block


_LineRecord = tuple[int, bytes, Any]


def _parsed(lines: list[bytes], first_line: int) -> Iterator[_LineRecord]:
    loads, error = orjson.loads, orjson.JSONDecodeError
    for number, line in enumerate(lines, first_line):
        try:
            yield number, line, loads(line)
        except error as exc:
            if line.strip():
                yield number, line, Unparsable(f"line is not JSON: {exc}")


def _keys_given_once(block: list[_LineRecord]) -> list[_LineRecord]:
    read = [record for record in block if not isinstance(record[2], Unparsable)]
    text = b"\n".join(record[1] for record in read)
    if not gives_a_key_twice(text, [record[2] for record in read]):
        return block  # one count for the whole block; lines are looked at only when it differs
    checked: list[_LineRecord] = []
    for number, line, value in block:
        where = None if isinstance(value, Unparsable) else repeated_key(line)
        checked.append((number, line, value) if where is None else (number, line, Unparsable(
            f"{where}: given twice in one object; write it once (a JSON reader would keep "
            f"only the last value, silently)")))
    return checked


# raw log segments grow: the manifest row says how far (and with what checksum) it was read
def segment_tail(path: Path | str, seen: tuple[int, str] | None,
                 size: int | None = None) -> SegmentTail | None:
    """The new complete lines of a segment, or None when there are none. `size`: what a
    listing said (an object store's segment is then not asked for it again)."""
    consumed, digest, lines_before = 0, hashlib.sha256(), 0
    if seen is not None:
        consumed = seen[0]
        prefix, _ = eventlog.read_complete(path, 0, max_bytes=consumed, size=size)
        digest = hashlib.sha256(prefix)
        if len(prefix) != consumed or digest.hexdigest() != seen[1]:
            raise SegmentChanged(str(path))
        lines_before = prefix.count(b"\n")
    if size is not None and size <= consumed:
        return None
    data, end = eventlog.read_complete(path, consumed, size=size)
    if not data:
        return None
    digest.update(data)
    return SegmentTail(json_lines(data, 1 + lines_before), data.count(b"\n"), end,
                       digest.hexdigest())


# a file being written by its uploader: skipped without a word until renamed, like hidden ones
IN_PROGRESS_SUFFIXES = (".tmp", ".partial")
# what ingest says of a file in the landing folder that no reader takes (`events.json`,
# `export.CSV`): it would otherwise wait there, never loaded, in silence
IGNORED = ("not loaded: a landing file's name ends in " + ", ".join(LANDING_SUFFIXES)
           + "; rename a data file to one (a file never loaded may be renamed)")
# what ingest says of a symbolic link in the landing folder, each run until it is replaced: a
# link is not followed, since what it loads could change under the same name after loading
# (retargeted: loaded twice, or missed as unchanged) or lie outside the landing folder
LINK = ("not loaded: a symbolic link, which ingest does not follow (its target could change "
        "after loading, or lie outside the landing folder); put the file itself in the "
        "landing folder (move or copy it) in the link's place")


def landing_files(landing_dir: Path | str) -> list[Path] | list[str]:
    """Landing files to consider, sorted; hidden path parts and symlinks skipped."""
    return landing_listing(landing_dir)[0]


def landing_listing(landing_dir: Path | str) -> tuple[list[Any], list[Any], list[Any]]:
    """(landing files to consider, visible files whose name no reader takes, visible symbolic
    links), each sorted. Links are refused, never followed (see LINK); a linked folder is not
    entered."""
    if isinstance(landing_dir, str):
        return _remote_landing_files(landing_dir)
    if not landing_dir.exists():
        return [], [], []
    root = landing_dir.resolve()
    found: list[Path] = []
    ignored: list[Path] = []
    links: list[Path] = []
    for path in sorted(root.rglob("*")):  # rglob does not enter a linked folder
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_symlink():
            links.append(path)
        elif path.is_file() and not path.name.endswith(IN_PROGRESS_SUFFIXES):
            (found if path.name.endswith(LANDING_SUFFIXES) else ignored).append(path)
    return found, ignored, links


def _remote_landing_files(url: str) -> tuple[list[str], list[str], list[str]]:
    """Landing files under a URL; hidden path parts skipped. Object stores have no links; a
    `file://` folder may (fsspec lists them, not followed, with `islink`)."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    try:  # a missing prefix holds no files; a missing bucket is a mistake to name
        listed = fs.find(root, detail=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"landing folder {url} cannot be listed: {exc}") from exc
    found: list[str] = []
    ignored: list[str] = []
    links: list[str] = []
    for path, info in sorted(listed.items()):
        parts = path[len(root):].strip("/").split("/")
        if any(part.startswith(".") for part in parts):
            continue
        if info.get("islink"):
            links.append(eventlog.file_url(fs, path))
        elif not path.endswith(IN_PROGRESS_SUFFIXES):
            (found if path.endswith(LANDING_SUFFIXES) else ignored).append(
                eventlog.file_url(fs, path))
    return found, ignored, links


def landing_records(path: Path | str, default_tenant: str) -> tuple[Iterator[Record], int]:
    """The file's records and about how many there are; UnreadableFile if it cannot be read."""
    name = _name(path)
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
        try:
            with _open(path, gzipped=name.endswith(".gz")) as handle:
                data = handle.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableFile(f"cannot read {name}: {exc}") from exc
        data = data.removeprefix(codecs.BOM_UTF8)  # as Windows tools save UTF-8 (RFC 8259 §8.1)
        return (json_lines(data, 1, keys_once=True),
                data.count(b"\n") + (not data.endswith(b"\n")))
    lines: list[int] | None = None
    try:
        if name.endswith(".parquet"):
            with _open(path) if isinstance(path, str) else nullcontext(path) as source:
                frame = pd.read_parquet(source)
        else:
            with _open(path) as handle:
                data = handle.read()
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                                na_values=[""])
            lines = csv_record_lines(data, len(frame))
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"cannot parse {name}: {_not_utf8(path)}") from exc
    except Exception as exc:
        raise UnreadableFile(f"cannot parse {name}: {exc}") from exc
    # a Parquet file keeps the index pandas wrote: a named one is a column (set_index), an
    # unnamed one is positions of some other frame (repeated after a concat): rows by position
    named = any(level is not None for level in frame.index.names)
    frame = frame.reset_index(drop=not named)
    if name.endswith(".parquet"):  # typed columns: a boolean column is already one
        return _tabular_records(frame, default_tenant, 1), len(frame)
    # a CSV's line 1 is its header
    return _tabular_records(frame, default_tenant, 2, lines, as_text=True), len(frame)


def csv_record_lines(data: bytes, records: int) -> list[int] | None:
    """The file line each CSV record starts on (the header left out), where quoted cells
    holding line breaks or skipped blank lines make it other than its position + 2; None when
    the position is the line (no quote, no blank line: the common case, not scanned again),
    or when Python's csv reader does not find the records pandas read."""
    if b'"' not in data and b"\n\n" not in data and b"\n\r\n" not in data:
        return None
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    starts, end = [], 0
    try:
        for row in reader:
            if row:  # pandas skips blank lines
                starts.append(end + 1)
            end = reader.line_num
    except (csv.Error, UnicodeDecodeError):
        return None
    return starts[1:] if len(starts) == records + 1 else None


def _not_utf8(path: Path | str) -> str:
    """Where a CSV stops being UTF-8 (pandas names a byte of its buffer, not of the file)."""
    with _open(path) as handle:
        data = handle.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return (f"line {line} is not UTF-8 (byte {data[exc.start]:#04x} at offset "
                f"{exc.start}): save the file as UTF-8")
    return "not UTF-8: save the file as UTF-8"


def _tabular_records(frame: pd.DataFrame, default_tenant: str, first: int = 2,
                     lines: list[int] | None = None, as_text: bool = False) -> Iterator[Record]:
    """Refused rows, then events; numbered by `lines` (a CSV record's own line) when given,
    else `first` + the row's position (CSV lines, or Parquet rows counted from 1). `as_text`: the
    cells were read as text (a CSV), whose columns of true and false are booleans."""
    if lines is not None:
        first = 0
        frame = frame.set_axis(pd.Index(lines))  # rows named by their lines from here on
    try:
        kind, good, bad = tabular.validate(frame)
    except ValueError as exc:
        raise UnreadableFile(str(exc)) from exc
    booleans = tabular.boolean_columns(frame) if as_text else frozenset()
    originals = frame.to_dict("index")
    for index, reason in sorted(bad.items()):
        yield index + first, orjson.dumps(originals[index], default=str).decode(), Unparsable(
            reason)
    for index, row in zip(good.index, good.to_dict("records"), strict=True):
        text = orjson.dumps(originals[index], default=str).decode()
        try:
            events = tabular.row_to_events(kind, row, default_tenant, booleans)
        except EventError as exc:  # a column the rule refuses: named, as pandera's are
            yield index + first, text, Unparsable(str(exc))
        except (TypeError, ValueError) as exc:
            yield index + first, text, Unparsable(f"row cannot be read: {exc}")
        else:
            for event in events:
                yield index + first, text, event


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with _open(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _name(path: Path | str) -> str:
    return path.rsplit("/", 1)[-1] if isinstance(path, str) else path.name


def _open(path: Path | str, gzipped: bool = False) -> Any:
    """A binary reader: plain open (or gzip.open) for local paths, fsspec for URLs."""
    if isinstance(path, str):
        import fsspec

        return fsspec.open(path, "rb", compression="gzip" if gzipped else None)
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
