"""Limits every input path shares: how deep JSON may nest, measured before it is parsed.

`json_depth` reads the bytes without building anything: escaped backslashes and quotes are
cut out (two `bytes.replace`), everything but quotes and brackets is deleted
(`bytes.translate`), and numpy finds which brackets lie outside strings and the running sum of
opening minus closing ones. On malformed JSON it may be wrong either way, but the parser
refuses such a text anyway; on valid JSON (and JSON Lines) it is exact.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

import numpy as np
import orjson

MAX_JSON_DEPTH = 32
_CHUNK = 1 << 20
_NOT_SYNTAX = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = np.zeros(256, dtype=np.int32)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_QUOTE = ord('"')


def json_depth(data: bytes | str, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in a JSON text (or JSON Lines); 0 for scalars.

    With `stop_above`, returns as soon as the depth passes it (memory stays a few MiB).
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if b"\\" in data:  # pairs first, left to right, as a JSON reader consumes them
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    syntax = np.frombuffer(data.translate(None, _NOT_SYNTAX), np.uint8)
    deepest = level = quotes = 0
    for start in range(0, len(syntax), _CHUNK):
        chunk = syntax[start:start + _CHUNK]
        seen = np.cumsum(chunk == _QUOTE, dtype=np.int32) + quotes
        running = np.cumsum(_STEP[chunk] * ((seen & 1) == 0)) + level
        deepest = max(deepest, int(running.max()))
        level, quotes = int(running[-1]), int(seen[-1]) & 1
        if stop_above is not None and deepest > stop_above:
            break
    return deepest


def too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    if isinstance(data, bytes) and data.count(b"[") + data.count(b"{") <= limit:
        return False  # a small body cannot nest deeper than it has brackets: no numpy pass
    return json_depth(data, stop_above=limit) > limit


# a whole-number literal of 20+ digits: wider than 64 bits, which orjson reads as a float
_WIDE_INT = re.compile(rb"(?<![0-9.])[0-9]{20,}(?![0-9.eE])")


def without_bom(body: bytes) -> bytes:
    """A request body without the UTF-8 byte order mark some .NET and Windows PowerShell
    clients put first: JSON readers may ignore it (RFC 8259 §8.1), as the landing folder's
    JSON Lines reader does. Only at the very start: one anywhere else is not JSON."""
    return body.removeprefix(codecs.BOM_UTF8)


# every digit written as 0 and every other byte as a blank: a run of 20 digits is then a
# substring search, where `_WIDE_INT`'s look-around at each byte costs four orjson parses
_TWENTY_DIGITS = b"0" * 20
_ALL_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))


def _may_hold_wide_int(data: bytes) -> bool:
    return _TWENTY_DIGITS in data.translate(_ALL_DIGITS_AS_ZERO)


def loads_exact(data: bytes) -> Any:
    """JSON as orjson reads it, except that integers wider than 64 bits stay integers (orjson
    would round them to floats), so validation refuses them naming the field; NaN and
    Infinity are refused as orjson does, and so is a number beyond a double's range (1e400),
    which json.loads would read as an infinity. Raises json.JSONDecodeError."""
    if not _may_hold_wide_int(data) or _WIDE_INT.search(data) is None:
        return orjson.loads(data)
    return json.loads(data, parse_constant=no_constant, parse_float=_finite)


def loads_named(data: bytes) -> Any:
    """As `loads_exact`, but NaN, Infinity and -Infinity are read as floats, for a body whose
    every value is validated after (native events): the refusal then names the field that
    held one, not a character offset. Raises json.JSONDecodeError as `loads_exact` does."""
    try:
        return loads_exact(data)
    except json.JSONDecodeError as exc:
        try:
            return json.loads(data, parse_constant=float)
        except ValueError:  # not JSON for another reason (or not UTF-8): orjson's word on it
            raise exc from None


def no_constant(name: str) -> Any:
    """For json.loads' parse_constant: NaN and Infinity are no JSON numbers (orjson refuses
    them too)."""
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # as orjson words it
        raise json.JSONDecodeError("number is infinity when parsed as double", text, 0)
    return value


_NOT_PAIR_SYNTAX = bytes(b for b in range(256) if b not in b'":')
_COLON = ord(":")


def _pairs(data: bytes) -> int:
    """How many name-value pairs a JSON text (or JSON Lines) writes: its colons outside
    strings, found as `json_depth` finds brackets (exact on valid JSON)."""
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    syntax = np.frombuffer(data.translate(None, _NOT_PAIR_SYNTAX), np.uint8)
    outside = (np.cumsum(syntax == _QUOTE, dtype=np.int32) & 1) == 0
    return int(np.count_nonzero((syntax == _COLON) & outside))


def gives_a_key_twice(data: bytes, parsed: Any) -> bool:
    """Whether the valid JSON text (or JSON Lines) `data`, read as `parsed` (for JSON Lines,
    the list of its lines' values), gave some name twice in one object: parsers keep the last
    value without a word, so the text then writes more pairs than `parsed` holds. Costs a
    fraction of orjson's parse (parsed written back by orjson, two vectorized counts)."""
    try:
        again = orjson.dumps(parsed)
    except orjson.JSONEncodeError:  # an integer wider than 64 bits (loads_exact keeps them)
        again = json.dumps(parsed).encode()
    return _pairs(data) != _pairs(again)


class _Repeated(dict[str, Any]):
    """An object that gave the name `repeated` more than once."""

    repeated = ""


def _marking_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked, seen = _Repeated(obj), set()
    for key, _ in pairs:
        if key in seen:
            marked.repeated = key
            return marked
        seen.add(key)
    return marked  # not reached: fewer names than pairs means one came twice


def _repeated_in(value: Any, path: str) -> str | None:
    if isinstance(value, _Repeated):
        return f"{path}.{value.repeated}" if path else value.repeated
    if isinstance(value, dict):
        children = ((f"{path}.{key}" if path else key, child) for key, child in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{index}]", child) for index, child in enumerate(value))
    else:
        return None
    for where, child in children:
        if (found := _repeated_in(child, where)) is not None:
            return found
    return None


def repeated_key(data: bytes) -> str | None:
    """Where the valid JSON text `data` first gives a name twice in one object, as a field
    path (`user`, `fields[2].name`), or None. Parses `data` again: for the error path."""
    return _repeated_in(json.loads(data, object_pairs_hook=_marking_pairs,
                                   parse_constant=float), "")


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def body_problem(data: bytes) -> str | None:
    """Why a JSON body that a parser would take silently is still wrong, or None.

    Not UTF-8 (RFC 8259 requires it), or a key given twice in one object (the parsers keep
    the last value without a word). Syntax errors are left to the parser that reads the body.
    Meant for request bodies of a few hundred KiB: it parses the text once more."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
    try:
        json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        return f"key {str(exc)!r} appears twice in one object"
    except ValueError:  # not JSON (or NaN-like constants): the route's parser says so
        return None
    return None
