"""What serving reads of the raw log: every line appended since the last poll, and where each
sits (`sluice.intake.log_positions`), so that a model's fold-in can tell what it trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from sluice.intake.eventlog import is_url, location, read_complete, segment_sizes
from sluice.intake.log_positions import position, segment_name


class LogFollower:
    """Reads what was appended to every segment since the last call (serving follows the log)."""

    def __init__(self, root: Path | str):
        self.root = location(root)
        self.offsets: dict[Path | str, int] = {}

    def poll(self, skip: tuple[bytes, ...] = (),
             positions: list[int] | None = None) -> list[dict[str, Any]]:
        """New complete lines as events; lines containing any `skip` marker are not parsed.
        `positions`, when given, gets each returned event's position in the log (`position`)."""
        events: list[dict[str, Any]] = []
        for path, size in segment_sizes(self.root):
            start = self.offsets.get(path, 0)
            if size <= start:
                continue
            try:
                data, offset = read_complete(path, start, size=size if is_url(path) else None)
            except FileNotFoundError:
                continue
            self.offsets[path] = offset
            end = position(segment_name(path), start)
            for line in data.split(b"\n")[:-1]:  # complete lines: data ends in one
                end += len(line) + 1
                if skip and any(marker in line for marker in skip):
                    continue
                try:
                    events.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a torn line is quarantined by ingest; serving skips it
                if positions is not None:
                    positions.append(end)
        return events
