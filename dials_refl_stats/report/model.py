"""The report's data model: size budget, tables, section content, cell formatting."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from dials_refl_stats.compact import decode, expand
from dials_refl_stats.compact import group_labels as compact_labels
from dials_refl_stats.report.figures import Figure


@dataclass(frozen=True)
class Budget:
    """Size limits of one section; the whole report scales them down if it is too big."""

    points: int = 2000  # per plotted series
    table_rows: int = 300
    list_items: int = 25  # files, groups, beam centres listed
    heatmap_cells: int = 40_000  # per document, over all panels
    json_chars: int = 40_000
    overlay: int = 8  # most groups overlaid in one plot
    compact: bool = False  # leave out the full parameters and the JSON view

    def scaled(self, fraction: float) -> "Budget":
        def f(value: int, least: int) -> int:
            return max(least, int(value * fraction))

        return replace(
            self,
            points=f(self.points, 50),
            table_rows=f(self.table_rows, 20),
            list_items=f(self.list_items, 5),
            heatmap_cells=f(self.heatmap_cells, 400),
            json_chars=f(self.json_chars, 2000),
        )


#: Cells shown right-aligned: numbers (with a unit), ranges of numbers, dashes, blanks.
NUMERIC = re.compile(r"[-+]?[0-9][0-9.,eE+\-–]*( ?(%|B|kB|MB|GB|TB|Å))?|–|")


@dataclass
class Table:
    """A table of already formatted cells; ``note`` says when rows were merged or left out."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    collapsed: bool = True

    @property
    def numeric(self) -> list[bool]:
        """Per column: every cell is a number (right-aligned)."""
        return [
            all(NUMERIC.fullmatch(str(row[i])) for row in self.rows if i < len(row))
            for i in range(len(self.columns))
        ]


@dataclass
class Content:
    """What a builder makes from one document."""

    summary: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def fmt(value: Any) -> str:
    """A cell: ``None`` as an en dash, floats to 6 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def size_text(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "–"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return ""  # pragma: no cover


def bounded_rows(rows: list[list[str]], limit: int, what: str) -> tuple[list[list[str]], str]:
    """The first ``limit`` rows and a note on how many were left out."""
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], f"first {limit} of {len(rows)} {what} shown"


def records(table, limit: int | None = None) -> list[dict]:
    """Rows of a column table (dict of equal-length lists, runs decoded) or a list of
    dicts, as dicts."""
    if isinstance(table, list):
        return [r for r in table[:limit] if isinstance(r, dict)]
    if not isinstance(table, dict):
        return []
    columns = {k: v for k, v in expand(table).items() if isinstance(v, list)}
    n = min((len(v) for v in columns.values()), default=0)
    n = n if limit is None else min(n, limit)
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def label_of(row: dict) -> str:
    """A group's label, from a flat row or one with an ``experiment`` entry."""
    if "label" in row:
        return str(row["label"])
    return str((row.get("experiment") or {}).get("label", "?"))


def group_column(table, name: str) -> list:
    """Column ``name`` of a group table: column arrays (runs decoded), or a list of rows
    (the value looked up in the row, then in its ``summary``)."""
    if isinstance(table, dict):
        if name == "strong_fraction" and name not in table:  # compact form: derived
            strong, selected = decode(table.get("n_strong")), decode(table.get("n_selected"))
            return [s / n if n else None for s, n in zip(strong, selected)]
        return decode(table.get(name))
    return [r.get(name, (r.get("summary") or {}).get(name)) for r in records(table)]


def group_labels(table) -> list[str]:
    """Each group's label: the ``label`` column, else (compact form) made from
    ``file_index`` and ``id``."""
    if isinstance(table, dict):
        if "label" in table:
            return [str(v) for v in table.get("label") or []]
        files, ids = decode(table.get("file_index")), decode(table.get("id"))
        return compact_labels(files, ids, len(set(files)))
    return [label_of(r) for r in records(table)]
