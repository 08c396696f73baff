"""A bundle's `.npz` written so that its large arrays can be memory-mapped, and read so.

`np.savez` stores each array uncompressed, but where an array's bytes begin in the file
depends on everything before it, so they are seldom aligned and `np.load` copies every array
into the process. `save` writes the same `.npz` (any `np.load` reads it) with each member's
local header padded by an extra field (as Android's zipalign does), so that every array's
bytes start at a multiple of 64 in the file (`.npy` headers are themselves padded to 64
bytes). `load` then maps the arrays named in `mapped` read-only from the file instead of
copying them: the processes that load one file (the workers of a server share one download
of a model, `sluice.learn.registry.local_copy`) share one copy of its pages, and a worker's
memory no longer grows with the catalog's factors. An array that cannot be mapped (another
writer's `.npz`, a compressed member, an unaligned start, an object dtype) is read as
`np.load` reads it.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy

ALIGN = npy.ARRAY_ALIGN  # 64: .npy headers are padded to it, so member starts are enough
_PAD_ID = 0xD935  # the extra field id zipalign uses; readers skip unknown ids
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip local file header, 30 bytes
_ZIP64_EXTRA = 20  # what zipfile appends to a local header written with force_zip64


def save(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """`np.savez(path, **arrays)`, with every array's bytes at a multiple of `ALIGN`.
    Written beside `path` and renamed over it: a process that mapped the file it replaces
    keeps reading that one (truncating a mapped file in place would crash its readers)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as zf:
            for key, value in arrays.items():
                name = f"{key}.npy"
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED
                assert zf.fp is not None
                start = (zf.fp.tell() + _LOCAL_HEADER.size + len(name.encode()) + 4
                         + _ZIP64_EXTRA)
                pad = -start % ALIGN
                info.extra = struct.pack("<HH", _PAD_ID, pad) + bytes(pad)
                with zf.open(info, "w", force_zip64=True) as member:
                    npy.write_array(member, np.asanyarray(value), allow_pickle=False)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # a failed write leaves nothing beside the bundle


def load(path: Path, mapped: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Every array of the `.npz` at `path`; those named in `mapped` memory-mapped read-only
    where the file allows it (see the module docstring), the others read into memory. The
    mapped arrays share one mapping of the file (one file descriptor, held while any lives)."""
    with np.load(path, allow_pickle=False) as arrays, open(path, "rb") as handle:
        infos = {info.filename: info for info in arrays.zip.infolist()}
        pages: mmap.mmap | None = None
        out = {}
        for key in arrays.files:
            where = _where(handle, infos.get(f"{key}.npy")) if key in mapped else None
            if where is None:
                out[key] = arrays[key]
                continue
            offset, shape, dtype = where
            if pages is None:
                pages = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            out[key] = np.frombuffer(pages, dtype=dtype, count=math.prod(shape),
                                     offset=offset).reshape(shape)
    return out


def is_mapped(array: np.ndarray) -> bool:
    """Whether `array` is a view of a file mapping (as `load` makes them)."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def _where(handle: BinaryIO, info: zipfile.ZipInfo | None
           ) -> tuple[int, tuple[int, ...], np.dtype] | None:
    """Where a member's array lies in the file (offset, shape, dtype), if it can be mapped."""
    if info is None or info.compress_type != zipfile.ZIP_STORED:
        return None
    handle.seek(info.header_offset)
    fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    if fields[0] != b"PK\x03\x04":
        return None
    start = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]
    handle.seek(start)
    version = npy.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(handle)
    else:
        return None
    offset, count = handle.tell(), math.prod(shape)
    if (fortran or dtype.hasobject or count == 0 or offset % ALIGN
            or offset - start + count * dtype.itemsize != info.file_size):
        return None  # count 0: nothing worth mapping
    return offset, tuple(shape), dtype
