"""Where an event sits in the raw log, as one int, so that serving can tell the events a model
trained on (ingest loaded them, sluice.warehouse.positions) from those it did not."""

from __future__ import annotations

import threading
from pathlib import Path

# Where a line ends in the raw log, as one int: the segment's number in this process (its file
# name interned, `segment_number`) above OFFSET_BITS, the byte offset just past the line below.
# Ingest's manifest records the bytes it loaded per segment, so a line was loaded (and reached
# the marts) when its end is within them. Segment names are unique per log (`_next_name`:
# start time and writer id), so a name matches whatever path or URL spells the segment.
OFFSET_BITS = 40
OFFSET_MASK = (1 << OFFSET_BITS) - 1
NO_POSITION = -1  # an event not read from the raw log (or from before positions were kept)
_segment_numbers: dict[str, int] = {}
_segment_names: list[str] = []
_segments_lock = threading.Lock()


def segment_name(path: Path | str) -> str:
    """A segment's file name: the part of its path or URL after the last slash."""
    return path.name if isinstance(path, Path) else str(path).rsplit("/", 1)[-1]


def segment_number(name: str) -> int:
    """A small number for a segment's name, the same for the whole process."""
    number = _segment_numbers.get(name)
    if number is None:
        with _segments_lock:
            number = _segment_numbers.get(name)
            if number is None:
                number = _segment_numbers[name] = len(_segment_names)
                _segment_names.append(name)
    return number


def position(name: str, end: int) -> int:
    """A line's position: its segment's name and the offset just past it, packed."""
    return (segment_number(name) << OFFSET_BITS) | end


def unpack(packed: int) -> tuple[str, int]:
    """(segment name, end offset) of a position."""
    return _segment_names[packed >> OFFSET_BITS], packed & OFFSET_MASK
