"""Section of dials.spot_size_histogram: histogram bars, per-experiment overlay."""

from __future__ import annotations

import numpy as np

from dials_refl_stats.report.figures import (
    Figure,
    bars,
    colour,
    empty_note,
    layout,
    lines,
    scale_buttons,
)
from dials_refl_stats.report.model import (
    Budget,
    Content,
    Table,
    fmt,
    group_column,
    group_labels,
    label_of,
    records,
)
from dials_refl_stats.report.programs.groups import group_rows, per_group_figure
from dials_refl_stats.report.sections import builder
from dials_refl_stats.report.thin import (
    block_sum,
    coarse_edges,
    factor,
    plain,
)


def _histogram(histogram: dict, budget: Budget) -> tuple[np.ndarray, np.ndarray, str]:
    """``(edges, counts, note)`` with slots merged to at most ``budget.points`` bars."""
    k = factor(len(histogram["counts"]), budget.points)
    note = f"{k} adjacent slots merged per bar" if k > 1 else ""
    return coarse_edges(histogram["edges"], k), block_sum(histogram["counts"], k), note


def _spot_figure(results: dict, budget: Budget) -> Figure:
    overall = results["overall"]["histogram"]
    edges, counts, note = _histogram(overall, budget)
    centres = (edges[:-1] + edges[1:]) / 2
    ranges = np.stack([edges[:-1], edges[1:]], axis=1)
    traces = [
        bars(
            plain(centres),
            plain(counts),
            "all selected",
            width=plain(np.diff(edges)),
            customdata=[plain(r) for r in ranges],
            hovertemplate="size %{customdata[0]}–%{customdata[1]} px<br>"
            "count %{y}<extra>all</extra>",
            opacity=0.75,
        )
    ]
    histograms = results.get("per_experiment_histograms") or []
    groups = results.get("per_experiment")
    if not histograms and isinstance(groups, list):  # schema 1: a histogram in each entry
        histograms = [dict(g["histogram"], label=label_of(g)) for g in records(groups)]
    if 2 <= len(histograms) <= budget.overlay:
        for i, histogram in enumerate(histograms):
            g_edges, g_counts, _ = _histogram(histogram, budget)
            g_centres = (g_edges[:-1] + g_edges[1:]) / 2
            traces.append(
                lines(
                    plain(g_centres),
                    plain(g_counts),
                    histogram.get("label", f"group {i}"),
                    i + 1,
                    line={"shape": "hvh", "color": colour(i + 1), "width": 1.5},
                    mode="lines",
                )
            )
    nonzero = np.flatnonzero(counts)
    xrange = None
    if nonzero.size:
        last = min(nonzero[-1] + 3, counts.size)
        xrange = [float(edges[0]), float(edges[last])]
    source = ", ".join(results.get("size_source") or [])
    extra = {} if nonzero.size else {"annotations": [empty_note("no reflections selected")]}
    fig = layout(
        f"Spot size ({source})",
        "spot size (signal pixels)",
        "reflections",
        bargap=0.02,
        xaxis={"range": xrange} if xrange else {},
        updatemenus=scale_buttons(),
        **extra,
    )
    outside = [
        f"{overall[k]} {k.replace('_', ' ')}"
        for k in ("below_range", "above_range", "not_finite")
        if overall.get(k)
    ]
    notes = [n for n in (note, "not shown: " + ", ".join(outside) if outside else "") if n]
    return Figure(traces, fig, "; ".join(notes))


@builder("dials.spot_size_histogram")
def spot_size_histogram(document: dict, budget: Budget) -> Content:
    results = document["results"]
    summary = results["overall"]["summary"]
    content = Content()
    content.summary = [
        (k, fmt(summary.get(k))) for k in ("n", "mean", "median", "std", "min", "max")
    ]
    content.summary += [(k, fmt(v)) for k, v in (summary.get("percentiles") or {}).items()]
    content.summary.append(("size source", fmt(results.get("size_source"))))
    if results.get("mask_bits"):
        content.summary.append(("mask bits", fmt(results["mask_bits"])))
    if not summary.get("n"):
        content.notes.append("No reflections selected: the histogram is empty.")
    for key in ("shoebox_rule", "num_pixels_rule"):
        if results.get(key):
            content.notes.append(f"{key.replace('_', ' ')}: {results[key]}")
    content.figures.append(_spot_figure(results, budget))
    groups = results.get("per_experiment")
    labels = group_labels(groups)
    if len(labels) > budget.overlay:
        content.figures.append(
            per_group_figure(
                "Median spot size per experiment",
                labels,
                group_column(groups, "median"),
                "median size (px)",
                budget,
            )
        )
    names = ("n", "mean", "median", "std", "min", "max")
    rows, note = group_rows(groups, labels, names, budget)
    content.tables.append(
        Table(
            "Spot size per experiment",
            ["experiment", "n", "mean", "median", "std", "min", "max"],
            rows,
            note,
        )
    )
    return content
