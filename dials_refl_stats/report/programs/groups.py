"""Per-group (experiment) plots and tables shared by the builders."""

from __future__ import annotations

from dials_refl_stats.report.figures import (
    Figure,
    layout,
    lines,
    ptext,
)
from dials_refl_stats.report.model import (
    Budget,
    fmt,
    group_column,
)
from dials_refl_stats.report.thin import (
    as_float,
    plain,
    stride,
)


def per_group_figure(title, labels, values, ytitle, budget: Budget) -> Figure:
    """One point per group (experiment), every k-th group when there are many."""
    keep = stride(len(labels), budget.points)
    trace = lines(
        keep.tolist(),
        plain(as_float(values)[keep]),
        ytitle,
        0,
        mode="markers",
        text=[ptext(labels[i]) for i in keep.tolist()],
        hovertemplate="%{text}<br>%{y}<extra></extra>",
    )
    note = (
        f"every {keep[1] - keep[0]}-th of {len(labels)} groups shown"
        if len(keep) < len(labels)
        else ""
    )
    return Figure([trace], layout(title, "experiment (index in the results)", ytitle), note)


def group_rows(groups, labels: list[str], names, budget: Budget) -> tuple[list, str]:
    """Table rows (label + ``names`` columns) of the first ``budget.table_rows`` groups."""
    n = min(len(labels), budget.table_rows)
    columns = [group_column(groups, k)[:n] for k in names]
    rows = [[labels[i]] + [fmt(c[i]) if i < len(c) else "–" for c in columns] for i in range(n)]
    note = f"first {n} of {len(labels)} experiments shown" if len(labels) > n else ""
    return rows, note
