"""What one ingest run did, per file and in total, and the plain-text table that shows it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FileResult:
    path: str
    kind: str
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duplicates_skipped: int = 0
    # loaded | unchanged | changed_after_loading | unreadable | ignored | refused (a link)
    status: str = "loaded"
    message: str = ""
    seconds: float = 0.0


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def duplicates_skipped(self) -> int:
        return sum(f.duplicates_skipped for f in self.files)

    def as_rows(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.files if f.status != "unchanged"]

    def table_rows(self, root: Path | None = None) -> list[dict[str, Any]]:
        """One row per file that was not unchanged, then a total row: the summary table."""
        rows: list[dict[str, Any]] = [
            {"file": _display(f.path, root), "kind": f.kind, "status": f.status,
             "rows_loaded": f.rows_loaded, "quarantined": f.rows_quarantined,
             "duplicates_skipped": f.duplicates_skipped, "seconds": f.seconds}
            for f in self.files if f.status != "unchanged"]
        unchanged = len(self.files) - len(rows)
        rows.append({
            "file": f"total: {len(rows)} files" + (f" ({unchanged} unchanged)" if unchanged
                                                  else ""),
            "kind": "", "status": "", "rows_loaded": self.rows_loaded,
            "quarantined": self.rows_quarantined, "duplicates_skipped": self.duplicates_skipped,
            "seconds": round(sum(f.seconds for f in self.files), 3),
        })
        return rows

    def summary(self) -> dict[str, Any]:
        return {
            "files": len([f for f in self.files if f.status == "loaded"]),
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "duplicates_skipped": self.duplicates_skipped,
            "unreadable_files": [f.path for f in self.files if f.status == "unreadable"],
            "changed_files": [f.path for f in self.files if f.status == "changed_after_loading"],
            "ignored_files": [f.path for f in self.files if f.status == "ignored"],
            "refused_files": [f.path for f in self.files if f.status == "refused"],
        }


SUMMARY_COLUMNS = ["file", "kind", "status", "rows_loaded", "quarantined", "duplicates_skipped",
                   "seconds"]


def format_table(rows: list[dict[str, Any]], columns: list[str] = SUMMARY_COLUMNS) -> str:
    """A plain-text table; numbers right-aligned with thousands separators."""
    def cell(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), int | float) for r in rows if r.get(c) != "")
               for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    return "\n".join(out + [line(row) for row in cells])


def _display(path: str, root: Path | None) -> str:
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return path
