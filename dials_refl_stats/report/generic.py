"""The generic section: any program's results, without a builder of its own.

Shows the scalar numbers of ``results`` (two levels deep) and, for every column-oriented
table found in it (a dict of equal-length lists of numbers, e.g. a per-image table), a
bounded table and a plot of its numeric columns, one visible at a time via the legend.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from dials_refl_stats.report.figures import Figure, layout, lines, scale_buttons
from dials_refl_stats.report.model import Budget, Content, Table, fmt
from dials_refl_stats.report.thin import as_float, plain, stride

#: Column names taken as the x axis of a column table, in order of preference.
X_NAMES = ("image_number", "image", "frame", "frame_first", "experiment", "index", "id")

#: Columns that identify rows (not plotted as values).
ID_NAMES = ("experiment", "experiment_index", "id", "file_index", "index", "panel")

MAX_TABLES = 4
MAX_SUMMARY = 30


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def scalars(results: Any, prefix: str = "", depth: int = 2) -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of numbers, strings and booleans, ``depth`` levels deep."""
    if not isinstance(results, dict):
        return
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) < 40):
            yield name, value
        elif isinstance(value, dict) and depth > 1:
            yield from scalars(value, f"{name}.", depth - 1)


def column_tables(value: Any, path: str = "results", depth: int = 7) -> Iterator[tuple[str, dict]]:
    """``(path, {column: list})`` for dicts holding 2+ equal-length lists of numbers."""
    if depth < 0:
        return
    if isinstance(value, dict):
        numeric = {
            k: v
            for k, v in value.items()
            if isinstance(v, list) and len(v) >= 2 and all(_is_number(x) for x in v[:1000])
        }
        lengths = {len(v) for v in numeric.values()}
        if len(numeric) >= 2 and len(lengths) == 1:
            yield path, numeric
        else:
            for key, item in value.items():
                yield from column_tables(item, f"{path}.{key}", depth - 1)
    elif isinstance(value, list):
        for i, item in enumerate(value[:MAX_TABLES]):
            yield from column_tables(item, f"{path}[{i}]", depth - 1)


def _x_column(columns: dict) -> str | None:
    for name in X_NAMES:
        if name in columns:
            return name
    return None


def column_figure(path: str, columns: dict, budget: Budget) -> Figure:
    """Each numeric column against the x column (or the row index), every k-th row."""
    n = len(next(iter(columns.values())))
    keep = stride(n, budget.points)
    x_name = _x_column(columns)
    x = as_float(columns[x_name])[keep] if x_name else keep.astype(float)
    traces, shown = [], False
    plotted = [(k, v) for k, v in columns.items() if k != x_name and k not in ID_NAMES]
    for i, (name, values) in enumerate(plotted):
        y = as_float(values)[keep]
        trace = lines(plain(x), plain(y), name, i)
        varies = np.unique(y[np.isfinite(y)]).size > 1
        if shown or not varies:
            trace["visible"] = "legendonly"
        shown = shown or varies
        traces.append(trace)
    note = f"every {keep[1] - keep[0]}-th of {n} rows shown" if len(keep) < n else ""
    return Figure(
        traces,
        layout(
            f"{path} (click the legend to show columns)",
            x_name or "row",
            "value",
            updatemenus=scale_buttons(),
        ),
        note,
    )


def column_table(path: str, columns: dict, budget: Budget) -> Table:
    n = len(next(iter(columns.values())))
    keep = stride(n, budget.table_rows)
    names = list(columns)
    rows = [[fmt(columns[c][i]) for c in names] for i in keep.tolist()]
    note = f"every {keep[1] - keep[0]}-th of {n} rows shown" if len(keep) < n else ""
    return Table(path, names, rows, note)


def generic(document: dict, budget: Budget) -> Content:
    """Summary numbers, column tables and their plots for any document."""
    results = document.get("results")
    content = Content(
        notes=[f"No dedicated section for {document.get('program')}: generic view of its results."]
    )
    content.summary = [(k, fmt(v)) for k, v in list(scalars(results))[:MAX_SUMMARY]]
    for path, columns in list(column_tables(results))[:MAX_TABLES]:
        content.figures.append(column_figure(path, columns, budget))
        content.tables.append(column_table(path, columns, budget))
    return content
